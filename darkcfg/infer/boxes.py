"""Box overlap measures as the reference computes them (box.c), pairwise and in float32.

Boxes here are Darknet's `box`: (N, 4) float32 (cx, cy, w, h), usually relative to the image. The
arithmetic follows box.c's order of float operations (overlap, box_intersection, box_union, box_iou,
box_c, box_diou, box_diou_nms) so that a criterion compared with a threshold lands on the same side as in
the reference; `pow` is taken in double, as C's `pow` is. An untrained network's infinite sizes give infinite or
NaN overlaps, as in the reference's float arithmetic (never suppressing, or suppressed by, anything): numpy is told
not to warn about them.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def _overlap(c1: np.ndarray, s1: np.ndarray, c2: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """box.c:overlap for every pair: c1, s1 (N, 1) and c2, s2 (1, M) -> (N, M)."""
    half = F32(2)
    left = np.maximum(c1 - s1 / half, c2 - s2 / half)
    right = np.minimum(c1 + s1 / half, c2 + s2 / half)
    return right - left


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """box.c:box_iou for every pair. a (N, 4), b (M, 4) cxcywh -> (N, M) float32; 0 where I or U is 0."""
    a = a.astype(F32, copy=False)[:, None, :]  # (N, 1, 4)
    b = b.astype(F32, copy=False)[None, :, :]  # (1, M, 4)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = _overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2])
        h = _overlap(a[..., 1], a[..., 3], b[..., 1], b[..., 3])
        inter = np.where((w < 0) | (h < 0), F32(0), w * h)  # (N, M)
        union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
        iou = inter / union
    return np.where((inter == 0) | (union == 0), F32(0), iou).astype(F32, copy=False)


def box_diou(a: np.ndarray, b: np.ndarray, beta: float = 0.6) -> np.ndarray:
    """box.c:box_diou_nms (box_diou is beta=0.6) for every pair: iou - (d^2/c^2)^beta -> (N, M) float32.

    d is the distance of the centres, c the diagonal of the smallest box enclosing both; where c is 0 the
    result is the IoU.
    """
    iou = box_iou(a, b)
    a = a.astype(F32, copy=False)[:, None, :]
    b = b.astype(F32, copy=False)[None, :, :]
    half = F32(2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        top = np.minimum(a[..., 1] - a[..., 3] / half, b[..., 1] - b[..., 3] / half)
        bot = np.maximum(a[..., 1] + a[..., 3] / half, b[..., 1] + b[..., 3] / half)
        left = np.minimum(a[..., 0] - a[..., 2] / half, b[..., 0] - b[..., 2] / half)
        right = np.maximum(a[..., 0] + a[..., 2] / half, b[..., 0] + b[..., 2] / half)
        w, h = right - left, bot - top
        c = w * w + h * h
        dx, dy = a[..., 0] - b[..., 0], a[..., 1] - b[..., 1]
        d = dx * dx + dy * dy
        u = np.power((d / c).astype(np.float64), np.float64(F32(beta))).astype(F32)
    return np.where(c == 0, iou, iou - u).astype(F32, copy=False)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) (cx, cy, w, h) -> (N, 4) (x1, y1, x2, y2), same units."""
    cx, cy, w, h = boxes.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
