"""Annotated images: boxes and labels drawn like image.c:draw_detections_v3.

Same boxes as the printout (best class above thresh, other classes above thresh added to the label), the
reference's colour per class (get_color at offset class*123457 % classes), line width im.h*.006 (at least
1), drawn in ascending order of confidence so the surest box is on top. Labels are set with OpenCV's
font on a filled box of the class colour instead of the reference's bitmap alphabet, above the box where there is
room, else inside it (at the image's top edge), placed surest first so that no label covers another's: a label
whose place is taken moves below the box or down a line.

Tracked detections (`dets.track_ids` set) are coloured by track instead (`track_color`: hues a golden-ratio step
apart, so neighbouring ids differ) and labelled `id 7 car 81%`; a box without a track keeps its class colour and
plain label. `counts` (`darkcfg.infer.track.counting.LineCounter.counts`) draws each counting line with its number
and, top left, the counts so far per line, class and direction.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.printout import directions_text

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


def pixel_box(box: object, w: int, h: int) -> Optional[tuple[int, int, int, int]]:
    """A box (cx, cy, w, h) relative to a w x h image -> (left, top, right, bottom) pixels clipped to the image, as
    draw_detections_v3 clips them; None for a box with a NaN coordinate (an untrained network's infinite sizes are
    clipped, not an error)."""
    cx, cy, bw, bh = (float(v) for v in box)  # type: ignore[attr-defined]
    edges = np.array([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
    if np.isnan(edges).any():
        return None
    left, top, right, bot = np.clip(edges, -1, max(w, h) + 1).astype(int)
    return max(int(left), 0), max(int(top), 0), min(int(right), w - 1), min(int(bot), h - 1)


def track_color(track_id: int) -> tuple[int, int, int]:
    """A track's colour, OpenCV BGR 0..255: hue id x 0.618 (mod 1), full saturation, bright."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((track_id * 0.6180339887) % 1.0, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(bgr: np.ndarray, dets: DetectionArray, thresh: float, counts: Optional[dict] = None) -> np.ndarray:
    """bgr (H, W, 3) uint8 -> a copy with the boxes and labels of `dets` drawn on it (tracked boxes by track, and the
    counting lines with their `counts`, module docstring)."""
    import cv2

    out = bgr.copy()
    h, w = out.shape[:2]
    classes = dets.probs.shape[1]
    chosen = dets.best_classes(thresh)
    chosen.sort(key=lambda ib: float(dets.probs[ib[0], ib[1]]))  # compare_by_probs, ascending
    width = max(1, int(h * 0.006))
    scale = max(0.4, h * 0.03 / 22)
    t = np.float32(thresh)
    drawn: list[tuple[tuple[int, int, int, int], tuple[int, int, int], str]] = []  # (box, colour, label)
    for i, best in chosen:
        place = pixel_box(dets.boxes[i], w, h)
        if place is None:
            continue
        left, top, right, bot = place
        tid = -1 if dets.track_ids is None else int(dets.track_ids[i])
        color = track_color(tid) if tid > 0 else class_color(best, classes)
        cv2.rectangle(out, (left, top), (right, bot), color, width)
        others = [dets.name(int(j)) for j in np.flatnonzero(dets.probs[i] > t) if j != best and dets.shown(int(j))]
        first = f"{dets.name(best)} {dets.probs[i, best] * 100:.0f}%"
        drawn.append(((left, top, right, bot), color, ", ".join([f"id {tid} {first}" if tid > 0 else first] + others)))
    taken: list[tuple[int, int, int, int]] = []
    for (left, top, _, bot), color, label in reversed(drawn):  # surest first: it gets its first choice
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        lw, lh = tw + 4, th + base + 2
        x0 = max(0, min(left, w - lw))  # keep the label inside the image
        y0 = _label_row(top, bot, lh, width, h, x0, lw, taken)
        taken.append((x0, y0, x0 + lw, y0 + lh))
        cv2.rectangle(out, (x0, y0), (x0 + lw, y0 + lh), color, -1)
        cv2.putText(out, label, (x0 + 2, y0 + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    if counts is not None:
        _draw_counts(out, counts, width, scale)
    return out


LINE_COLOR = (0, 255, 255)  # counting lines: yellow


def count_text(counts: dict) -> list[str]:
    """The counts of every line, one text line per (line, class): `line 1 car: left_to_right 3, right_to_left 1`,
    and `line 1: 0` for a line nothing crossed yet."""
    out = []
    for k, line in enumerate(counts.get("lines", []), 1):
        classes = line.get("classes", {})
        if not classes:
            out.append(f"line {k}: 0")
        for name, by_dir in classes.items():
            out.append(f"line {k} {name}: {directions_text(by_dir)}")
    return out


def _draw_counts(out: np.ndarray, counts: dict, width: int, scale: float) -> None:
    """The counting lines (numbered at their first end) and, top left, their counts on a dark panel; in place."""
    import cv2

    for k, line in enumerate(counts.get("lines", []), 1):
        x1, y1, x2, y2 = (int(round(v)) for v in line["line"])
        cv2.line(out, (x1, y1), (x2, y2), LINE_COLOR, max(2, width))
        cv2.putText(out, str(k), (x1 + 3, y1 + 14), cv2.FONT_HERSHEY_SIMPLEX, scale, LINE_COLOR, 1, cv2.LINE_AA)
    rows = count_text(counts)
    if not rows:
        return
    sizes = [cv2.getTextSize(r, cv2.FONT_HERSHEY_SIMPLEX, scale, 1) for r in rows]
    lh = max(th + base for (_, th), base in sizes) + 4
    pw = min(out.shape[1], max(tw for (tw, _), _ in sizes) + 8)
    ph = min(out.shape[0], lh * len(rows) + 4)
    region = out[:ph, :pw]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken: the text stays readable
    for n, r in enumerate(rows):
        cv2.putText(out, r, (4, (n + 1) * lh - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, LINE_COLOR, 1, cv2.LINE_AA)


def _label_row(top: int, bot: int, lh: int, width: int, h: int, x0: int, lw: int,
               taken: list[tuple[int, int, int, int]]) -> int:
    """The label's top edge: above the box, else inside it, else below it, else further down inside, the first
    of these that lies in the image and overlaps no label already placed (the first in the image if all do)."""
    rows = [top - lh, top + width, bot + width] + [top + width + k * lh for k in range(1, 6)]
    inside = [y for y in rows if 0 <= y and y + lh <= h] or [max(0, min(top, h - lh))]
    for y in inside:
        if not any(x0 < r and a < x0 + lw and y < b and c < y + lh for a, c, r, b in taken):
            return y
    return inside[0]
