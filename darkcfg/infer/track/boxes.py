"""Box geometry for the trackers: IoU matrices and pixel conversions (numpy, float64)."""
from __future__ import annotations

import numpy as np

from darkcfg.infer.detections import DetectionArray

F64 = np.float64


def pixel_boxes(dets: DetectionArray) -> np.ndarray:
    """dets.boxes (N, 4) relative (cx, cy, w, h) -> (N, 4) (cx, cy, w, h) in pixels of the image, float64."""
    b = np.asarray(dets.boxes, F64).reshape(-1, 4)
    return b * np.array([dets.width, dets.height, dets.width, dets.height], F64)


def _iou(ax: np.ndarray, ay: np.ndarray, aw: np.ndarray, ah: np.ndarray, bx: np.ndarray, by: np.ndarray,
         bw: np.ndarray, bh: np.ndarray) -> np.ndarray:
    """Centres, widths and heights of two sets of boxes (broadcastable shapes) -> the broadcast shape's IoU (0 where
    the union is 0). Each side's half sizes are taken before broadcasting, on its own (small) shape."""
    iw = np.minimum(ax + aw / 2, bx + bw / 2) - np.maximum(ax - aw / 2, bx - bw / 2)
    ih = np.minimum(ay + ah / 2, by + bh / 2) - np.maximum(ay - ah / 2, by - bh / 2)
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    union = aw * ah + bw * bh - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (T, 4), b (N, 4) boxes as (cx, cy, w, h) -> (T, N) intersection over union (0 where the union is 0)."""
    a = np.asarray(a, F64).reshape(-1, 4)
    b = np.asarray(b, F64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), F64)
    return _iou(*(a[:, k:k + 1] for k in range(4)), *b.T)  # (T, 1) against (N,)


def nearest_iou(a: np.ndarray, reach: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (T, 4) boxes (cx, cy, w, h), reach (T, 2) how far (x, y) each may move (>= 0), b (N, 4) -> (T, N) the IoU
    of each b with its a moved towards it by at most its reach on each axis: the best IoU within the reach (the
    overlap on each axis only grows as the centres come closer, whatever the sizes)."""
    a = np.asarray(a, F64).reshape(-1, 4)
    b = np.asarray(b, F64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), F64)
    r = np.asarray(reach, F64).reshape(-1, 2)
    ax, ay, aw, ah = (a[:, k:k + 1] for k in range(4))  # (T, 1) each
    bx, by, bw, bh = b.T  # (N,) each
    mx = ax + np.minimum(np.maximum(bx - ax, -r[:, :1]), r[:, :1])  # (T, N) a's centre moved towards each b
    my = ay + np.minimum(np.maximum(by - ay, -r[:, 1:]), r[:, 1:])
    return _iou(mx, my, aw, ah, bx, by, bw, bh)


def best_class(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """probs (N, C) -> each row's score (N,) = its highest probability and class (N,) = the first class holding it."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] == 0:
        return np.zeros(len(p), F64), np.zeros(len(p), np.int64)
    cls = p.argmax(1)
    return p[np.arange(len(p)), cls].astype(F64), cls.astype(np.int64)
