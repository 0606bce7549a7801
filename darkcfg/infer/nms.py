"""Non-maximum suppression as the reference does it (box.c:do_nms_sort and diounms_sort).

The reference works in place on its detection array, and that order is visible (the `-out` JSON lists
detections in it; the printed list breaks ties by it), so this returns the final order too:

1. detections with objectness 0 are swapped to the end (a swap loop, not a stable partition) and left out;
2. for each class k in turn, the array is sorted by prob[k] descending with glibc's qsort, a stable merge
   sort; then for each i whose prob[k] is still non-zero, every later j with criterion(i, j) > nms gets
   prob[k] = 0. The criterion is the IoU (`default`, and `cornersnms`, whose box merging box.c has commented
   out), iou - (d^2/c^2)^0.6 (`greedynms`, exponent fixed by box_diou) or iou - (d^2/c^2)^beta_nms
   (`diounms`): `darkcfg.model.heads.NMS_KINDS`, the one list of kinds the heads accept.

A class whose probabilities are all 0 leaves the order unchanged (a stable sort of equal keys) and is
skipped. Pairwise criteria are computed once for all detections when there are at most `_PAIRWISE_ONCE`
of them (one vectorised call instead of one per class: the usual case in detection), else once per class
over that class's non-zero detections (the low thresholds of mAP runs), so memory stays O(m^2) per class.
The criterion of a pair is the same float32 value either way (element-wise arithmetic).
"""
from __future__ import annotations

import numpy as np

from darkcfg.infer.boxes import box_diou, box_iou
from darkcfg.model.heads import NMS_KINDS

_PAIRWISE_ONCE = 1024  # detections; the (N, N) criterion then takes 4 MiB per temporary


def _zero_objectness_to_end(objectness: np.ndarray) -> tuple[np.ndarray, int]:
    """The swap loop at the top of do_nms_sort: (order, number of detections kept)."""
    order = np.arange(len(objectness))
    if (objectness != 0).all():
        return order, len(order)
    k = len(order) - 1
    i = 0
    while i <= k:
        if objectness[order[i]] == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
        else:
            i += 1
    return order, k + 1


def _criterion(boxes: np.ndarray, kind: str, beta: float) -> np.ndarray:
    """(N, N) float32 criterion of every pair for an nms_kind."""
    criterion = NMS_KINDS[kind]
    if criterion == "iou":
        return box_iou(boxes, boxes)
    return box_diou(boxes, boxes, 0.6 if criterion == "diou" else beta)


def nms_sort(boxes: np.ndarray, objectness: np.ndarray, probs: np.ndarray, nms: float, kind: str = "default",
             beta: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Reference NMS over one image's detections.

    Args:
        boxes: (N, 4) float32 (cx, cy, w, h).
        objectness: (N,) float32.
        probs: (N, C) float32 class probabilities (0 = below threshold).
        nms: the threshold; a pair is suppressed when its criterion is strictly greater.
        kind: one of `NMS_KINDS` (the last head's nms_kind).
        beta: beta_nms, used by "diounms".
    Returns:
        order (N,) int64: the reference's final order of the detections (indices into the input);
        probs (N, C) float32 after suppression, in that order (row i belongs to detection order[i]).
    """
    if kind not in NMS_KINDS:
        raise ValueError(f"nms kind '{kind}': expected one of {', '.join(NMS_KINDS)}")
    nms32 = np.float32(nms)
    order, total = _zero_objectness_to_end(np.asarray(objectness))
    probs = np.array(probs, dtype=np.float32, copy=True)
    boxes = np.asarray(boxes, dtype=np.float32)
    head = order[:total]
    crit_all = None  # (N, N) bool, indexed by input detection
    if len(boxes) <= _PAIRWISE_ONCE:
        crit_all = _criterion(boxes, kind, beta) > nms32
    for k in np.flatnonzero((probs[head] != 0).any(axis=0)):
        key = probs[head, k]
        head = head[np.argsort(-key, kind="stable")]  # qsort(nms_comparator) in glibc is a stable merge sort
        nz = head[probs[head, k] != 0]  # (m,) the only ones that can suppress or be suppressed
        if len(nz) < 2:
            continue
        if crit_all is not None:
            crit = crit_all[nz[:, None], nz]  # (m, m)
        else:
            crit = _criterion(boxes[nz], kind, beta) > nms32
        alive = np.ones(len(nz), dtype=bool)
        for i in range(len(nz) - 1):
            if alive[i]:
                alive[i + 1:] &= ~crit[i, i + 1:]
        probs[nz[~alive], k] = 0
    order = np.concatenate([head, order[total:]])
    return order, probs[order]
