"""Annotated images: boxes and labels drawn like image.c:draw_detections_v3.

Same boxes as the printout (best class above thresh, other classes above thresh added to the label), the
reference's colour per class (get_color at offset class*123457 % classes), line width im.h*.006 (at least
1), drawn in ascending order of confidence so the surest box is on top. Labels are set with OpenCV's
font on a filled box of the class colour instead of the reference's bitmap alphabet.
"""
from __future__ import annotations

import math

import numpy as np

from darkcfg.infer.detections import DetectionArray

_COLORS = ((1, 0, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 0, 0))


def _get_color(c: int, x: int, top: int) -> float:
    ratio = (x / top) * 5
    i, j = math.floor(ratio), math.ceil(ratio)
    ratio -= i
    return (1 - ratio) * _COLORS[i][c] + ratio * _COLORS[j][c]


def class_color(class_id: int, classes: int) -> tuple[int, int, int]:
    """The reference's colour of a class, as an OpenCV BGR triple 0..255."""
    offset = class_id * 123457 % classes
    r, g, b = (_get_color(c, offset, classes) for c in (2, 1, 0))
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(bgr: np.ndarray, dets: DetectionArray, thresh: float) -> np.ndarray:
    """bgr (H, W, 3) uint8 -> a copy with the boxes and labels of `dets` drawn on it."""
    import cv2

    out = bgr.copy()
    h, w = out.shape[:2]
    classes = dets.probs.shape[1]
    chosen = dets.best_classes(thresh)
    chosen.sort(key=lambda ib: float(dets.probs[ib[0], ib[1]]))  # compare_by_probs, ascending
    width = max(1, int(h * 0.006))
    scale = max(0.4, h * 0.03 / 22)
    t = np.float32(thresh)
    for i, best in chosen:
        cx, cy, bw, bh = (float(v) for v in dets.boxes[i])
        left, right = int((cx - bw / 2) * w), int((cx + bw / 2) * w)
        top, bot = int((cy - bh / 2) * h), int((cy + bh / 2) * h)
        left, top = max(left, 0), max(top, 0)
        right, bot = min(right, w - 1), min(bot, h - 1)
        color = class_color(best, classes)
        cv2.rectangle(out, (left, top), (right, bot), color, width)
        others = [dets.name(int(j)) for j in np.flatnonzero(dets.probs[i] > t) if j != best and dets.shown(int(j))]
        label = ", ".join([f"{dets.name(best)} {dets.probs[i, best] * 100:.0f}%"] + others)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        y0 = top - th - base - 2 if top - th - base - 2 >= 0 else top + width
        x0 = max(0, min(left, w - tw - 4))  # keep the label inside the image
        cv2.rectangle(out, (x0, y0), (x0 + tw + 4, y0 + th + base + 2), color, -1)
        cv2.putText(out, label, (x0 + 2, y0 + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out
