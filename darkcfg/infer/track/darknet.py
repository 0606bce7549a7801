"""The reference's demo tracker: http_stream.cpp:set_track_id, as `darknet detector demo` calls it (demo.c) for
cfgs whose [yolo] has `embedding_layer`, in numpy.

State: the detections of the last `track_history_size` frames (a deque; each kept detection with its box,
probabilities, embedding, track id and count) and the next id (from 1). Each frame:
1. the cosine similarity of every (kept, new) pair of embeddings (0 where a norm is 0: cosine_similarity);
   pairs taken in decreasing similarity (std::sort; equal similarities here in (kept, new) order, which the
   C leaves unspecified);
2. a pair whose best classes agree (check_classes_id: the first class with the highest prob > thresh) is
   scored sim x (1 - track_ciou_norm) + IoU x track_ciou_norm (box_iou, float32, on the relative boxes); if the
   kept detection is still free, its track not yet taken this frame (track 0, none, is never taken) and the
   score beats both `sim_thresh` and the new detection's best score so far, the new detection takes the
   track and count + 1 (a new detection may be taken again by a later, better-scoring pair; the kept one and
   the track are used up either way);
3. fill_remaining_id: a new detection without a track, with a prob > thresh and a count > `dets_for_track`,
   gets the next id;
4. the new detections with a prob > thresh join the history (the oldest frame leaves when there are more
   than track_history_size);
5. a detection whose count is < `dets_for_show` is hidden: its probabilities become 0 (in `dets.probs`).

The count is the C's `sort_class` field, which NMS (do_nms_sort / diounms_sort) leaves at the last class index
(classes - 1) on every detection it sorts, and which is 0 without NMS; a new detection's count starts there
(`after_nms`). So with many classes a detection gets an id on its first frame, and with one class after
dets_for_track + 1 matched frames, as in the reference.

Embeddings: `dets.embeddings` (N, E), the cfg's embedding layer at each box's cell (darkcfg.infer.decode).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from darkcfg.errors import DarkcfgError
from darkcfg.infer.boxes import box_iou
from darkcfg.infer.detections import DetectionArray

F32 = np.float32

# parser.c:parse_yolo defaults
DEFAULTS = {"track_history_size": 5, "sim_thresh": 0.8, "dets_for_track": 1, "dets_for_show": 1,
            "track_ciou_norm": 0.01}


@dataclass
class _Kept:
    """One frame's detections in the history: boxes (K, 4) relative float32, probs (K, C), embeddings (K, E),
    track ids (K,) (0: none) and counts (K,)."""

    boxes: np.ndarray
    probs: np.ndarray
    emb: np.ndarray
    tid: np.ndarray
    count: np.ndarray


def class_ids(probs: np.ndarray, thresh: float) -> np.ndarray:
    """check_classes_id's class of each row: probs (N, C) -> (N,) the first class with the highest prob that is
    > thresh (and > 0), -1 where none."""
    p = np.asarray(probs, F32)
    if not p.size:
        return np.full(len(p), -1, np.int64)
    ok = (p > F32(thresh)) & (p > 0)
    q = np.where(ok, p, -np.inf)
    cls = q.argmax(1)
    return np.where(ok.any(1), cls, -1).astype(np.int64)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """blas.c:cosine_similarity of every pair: a (M, E), b (N, E) -> (M, N) float32; 0 where a norm is 0."""
    a32, b32 = np.asarray(a, F32), np.asarray(b, F32)
    mul = a32 @ b32.T  # float32 as the C (whose sums run in order: the last bits may differ)
    div = np.sqrt((a32 * a32).sum(1))[:, None] * np.sqrt((b32 * b32).sum(1))[None]
    return np.divide(mul, div, out=np.zeros_like(mul), where=div > 0).astype(F32)


class DarknetTracker:
    """set_track_id (module docstring). thresh: the demo's threshold; the rest are the [yolo] options of the same
    names; after_nms: the detections went through NMS (their count starts at classes - 1)."""

    def __init__(self, thresh: float = 0.25, sim_thresh: float = DEFAULTS["sim_thresh"],
                 track_ciou_norm: float = DEFAULTS["track_ciou_norm"],
                 track_history_size: int = DEFAULTS["track_history_size"],
                 dets_for_track: int = DEFAULTS["dets_for_track"], dets_for_show: int = DEFAULTS["dets_for_show"],
                 after_nms: bool = True) -> None:
        self.thresh, self.sim_thresh, self.track_ciou_norm = float(thresh), float(sim_thresh), float(track_ciou_norm)
        self.history, self.dets_for_track, self.dets_for_show = int(track_history_size), int(dets_for_track), \
            int(dets_for_show)
        self.after_nms = after_nms
        self.reset()

    @classmethod
    def from_params(cls, params: object, thresh: float = 0.25) -> DarknetTracker:
        """The tracker a [yolo] head's options ask for (`YoloParams`; parser.c's defaults for any not set)."""
        opts = {k: getattr(params, k, None) for k in DEFAULTS}
        return cls(thresh, **{k: DEFAULTS[k] if v is None else v for k, v in opts.items()})  # type: ignore[arg-type]

    @property
    def detect_thresh(self) -> float:
        """The threshold the detector runs at (the demo's own)."""
        return self.thresh

    def reset(self) -> None:
        self.next_id = 1
        self.kept: deque[_Kept] = deque()

    def update(self, dets: DetectionArray) -> np.ndarray:
        """One frame's detections (after NMS, with embeddings) -> (N,) int64 track ids (-1: none); sets
        dets.track_ids and zeroes the probabilities of detections not yet shown (dets_for_show)."""
        n = len(dets)
        if dets.embeddings is None:
            raise DarkcfgError(f"{dets.source or 'frame'}: the darknet tracker needs each box's embedding: a cfg whose "
                               "[yolo] has embedding_layer (e.g. yolov4-tiny_contrastive.cfg), or use --tracker "
                               "bytetrack")
        probs = np.asarray(dets.probs, F32)
        emb = np.asarray(dets.embeddings, F32).reshape(n, -1) if n else np.zeros((0, 1), F32)  # a frame with no box
        boxes = np.asarray(dets.boxes, F32).reshape(n, 4)
        tid = np.zeros(n, np.int64)
        count = np.full(n, max(probs.shape[1] - 1, 0) if self.after_nms else 0, np.int64)
        best = np.zeros(n, F32)  # detection.sim: calloc'd
        shown_new = class_ids(probs, self.thresh)
        if self.kept and n:
            old = _Kept(*(np.concatenate([getattr(k, f) for k in self.kept]) for f in _Kept.__dataclass_fields__))
            if old.emb.shape[1] != emb.shape[1]:
                raise DarkcfgError(f"{dets.source or 'frame'}: embeddings of size {emb.shape[1]}, the tracker's "
                                   f"history has {old.emb.shape[1]}")
            self._match(old, boxes, emb, shown_new, tid, count, best)
        # fill_remaining_id
        has_prob = (probs > F32(self.thresh)).any(1) if probs.size else np.zeros(n, bool)
        for i in np.flatnonzero((tid == 0) & has_prob & (count > self.dets_for_track)):
            tid[i] = self.next_id
            self.next_id += 1
        keep = np.flatnonzero(has_prob)
        self.kept.append(_Kept(boxes[keep], probs[keep], emb[keep], tid[keep], count[keep]))
        if len(self.kept) > self.history:
            self.kept.popleft()
        hide = count < self.dets_for_show
        if hide.any():
            dets.probs = np.where(hide[:, None], F32(0), probs).astype(F32)
        ids = np.where(tid > 0, tid, -1).astype(np.int64)
        dets.track_ids = ids
        return ids

    def _match(self, old: _Kept, boxes: np.ndarray, emb: np.ndarray, shown_new: np.ndarray, tid: np.ndarray,
               count: np.ndarray, best: np.ndarray) -> None:
        """Steps 1-2 of the module docstring, in place on tid, count, best (the new detections')."""
        n = len(boxes)
        sim = cosine(old.emb, emb)  # (M, N)
        norm = F32(self.track_ciou_norm)
        score = (sim * (F32(1) - norm) + box_iou(old.boxes, boxes) * norm).astype(F32)  # (M, N)
        shown_old = class_ids(old.probs, self.thresh)
        # only pairs that can change anything: same class, score above sim_thresh
        cand = (shown_old[:, None] == shown_new[None]) & (shown_new[None] >= 0) & (score > F32(self.sim_thresh))
        flat = np.flatnonzero(cand)  # old * N + new, ascending
        if not len(flat):
            return
        order = flat[np.argsort(-sim.ravel()[flat], kind="stable")]
        old_free = np.ones(len(old.tid), bool)
        taken: set[int] = set()
        for k in order.tolist():
            o, j = divmod(k, n)
            t = int(old.tid[o])
            if old_free[o] and t not in taken and best[j] < score[o, j]:
                best[j] = score[o, j]
                tid[j] = t
                count[j] = old.count[o] + 1
                old_free[o] = False
                if t:
                    taken.add(t)

