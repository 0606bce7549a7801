"""Box geometry for the trackers: IoU matrices and pixel conversions (numpy, float64)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from darkcfg.infer.detections import DetectionArray

F64 = np.float64


def pixel_boxes(dets: DetectionArray) -> np.ndarray:
    """dets.boxes (N, 4) relative (cx, cy, w, h) -> (N, 4) (cx, cy, w, h) in pixels of the image, float64."""
    b = np.asarray(dets.boxes, F64).reshape(-1, 4)
    return b * np.array([dets.width, dets.height, dets.width, dets.height], F64)


def _iou(ac: np.ndarray, asz: np.ndarray, bc: np.ndarray, bsz: np.ndarray) -> np.ndarray:
    """Centres and sizes of two sets of boxes, both axes stacked on the first dimension: ac (2, T, N) or (2, T, 1)
    and asz (2, T, 1) (x then y), bc and bsz (2, 1, N) -> (T, N) IoU (0 where the union is 0). Each side's half sizes
    are taken on its own (small) shape before broadcasting, and both axes go through each operation at once: the
    per-frame cost is a fixed, small number of numpy calls."""
    ah, bh = asz / 2, bsz / 2
    side = np.minimum(ac + ah, bc + bh) - np.maximum(ac - ah, bc - bh)  # (2, T, N) overlap on x and y
    np.maximum(side, 0, out=side)
    inter = side[0] * side[1]
    union = asz[0] * asz[1] + bsz[0] * bsz[1] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _sides(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """a (T, 4), b (N, 4) (cx, cy, w, h) -> a's centres and sizes (2, T, 1), b's (2, 1, N) (views of contiguous
    copies: numpy broadcasts much faster over them than over the transposed rows)."""
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    return at[:2, :, None], at[2:, :, None], bt[:2, None, :], bt[2:, None, :]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (T, 4), b (N, 4) boxes as (cx, cy, w, h) -> (T, N) intersection over union (0 where the union is 0)."""
    return nearest_iou(a, None, b)


def nearest_iou(a: np.ndarray, reach: Optional[np.ndarray], b: np.ndarray) -> np.ndarray:
    """a (T, 4) boxes (cx, cy, w, h), reach (T, 2) how far (x, y) each may move (>= 0), b (N, 4) -> (T, N) the IoU
    of each b with its a moved towards it by at most its reach on each axis: the best IoU within the reach (the
    overlap on each axis only grows as the centres come closer, whatever the sizes). A row of zero reach gives
    the plain IoU, to the last bit; reach None: no row moves (iou_matrix)."""
    a = np.asarray(a, F64).reshape(-1, 4)
    b = np.asarray(b, F64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), F64)
    ac, asz, bc, bsz = _sides(a, b)
    if reach is None:
        return _iou(ac, asz, bc, bsz)
    r = np.ascontiguousarray(np.asarray(reach, F64).reshape(-1, 2).T)[:, :, None]  # (2, T, 1)
    moved = ac + np.minimum(np.maximum(bc - ac, -r), r)  # (2, T, N) a's centre moved towards each b
    return _iou(moved, asz, bc, bsz)


def best_class(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """probs (N, C) -> each row's score (N,) = its highest probability and class (N,) = the first class holding it."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] == 0:
        return np.zeros(len(p), F64), np.zeros(len(p), np.int64)
    cls = p.argmax(1)
    return p[np.arange(len(p)), cls].astype(F64), cls.astype(np.int64)
