"""A tracker's output set against the ground truth of one sequence, frame by frame: the input of the tracking
metrics (`track_hota`, `track_clear`, `track_identity`), prepared as TrackEval's MOTChallenge dataset prepares it.

Preprocessing, `preproc=`:
- "none" (the default; TrackEval's MOT15 / DO_PREPROC=False): ground-truth rows whose conf column, read as a whole
  number, is 0 are dropped (MOT's gt.txt marks rows not to evaluate that way); every other ground-truth row counts
  whatever its class, and every predicted row counts (class-agnostic: one class, as MOTChallenge evaluates
  pedestrians). Nothing is removed from the predictions.
- "mot17" / "mot20" (TrackEval's MOT17 / MOT20 preprocessing): in each frame the predictions are matched to all
  ground-truth rows (Hungarian on IoU, IoU >= 0.5) and those matched to a distractor (class 2 person on vehicle,
  7 static person, 8 distractor, 12 reflection; MOT20 also 6 non-MOT vehicle) are dropped; then only ground-truth
  rows of class 1 (pedestrian) with conf != 0 are kept. Ground-truth classes must be MOT's 1..13 and predicted
  classes (column 8, where given) at most 1.
Ids are then renumbered 0.. in order of value, separately for ground truth and predictions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from darkcfg.data.mot import MotRows, check_unique_ids
from darkcfg.errors import DarkcfgError

EPS = float(np.finfo(np.float64).eps)
PREPROC = ("none", "mot17", "mot20")
MOT_CLASSES = tuple(range(1, 14))  # pedestrian .. crowd
DISTRACTORS = {"mot17": (2, 7, 8, 12), "mot20": (2, 6, 7, 8, 12)}


@dataclass
class TrackFrames:
    """One sequence, frame by frame (T frames): ids renumbered 0..num_gt_ids-1 and 0..num_pred_ids-1.

    gt_ids[t] (G_t,) int64 and pred_ids[t] (P_t,) int64, in file order; similarity[t] (G_t, P_t) float64: IoU.
    """

    name: str
    gt_ids: list[np.ndarray]
    pred_ids: list[np.ndarray]
    similarity: list[np.ndarray]
    num_gt_ids: int
    num_pred_ids: int

    @property
    def frames(self) -> int:
        return len(self.gt_ids)

    @property
    def num_gt_dets(self) -> int:
        return sum(len(g) for g in self.gt_ids)

    @property
    def num_pred_dets(self) -> int:
        return sum(len(p) for p in self.pred_ids)


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) and (M, 4), both (x, y, w, h) in pixels -> (N, M) float64. A box of zero area has IoU
    0 with everything."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    a1, b1 = a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:]  # bottom-right corners, (N, 2) and (M, 2)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    hi = np.minimum(a1[:, None, :], b1[None, :, :])
    wh = np.maximum(hi - lo, 0.0)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    area_a = (a1[:, 0] - a[:, 0]) * (a1[:, 1] - a[:, 1])
    area_b = (b1[:, 0] - b[:, 0]) * (b1[:, 1] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    inter[area_a <= EPS, :] = 0.0
    inter[:, area_b <= EPS] = 0.0
    inter[union <= EPS] = 0.0
    return inter / np.where(union <= EPS, 1.0, union)


def _renumber(ids: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Ids of every frame -> the same ids as 0..K-1 in order of value, and K."""
    if not ids or not sum(len(i) for i in ids):
        return [np.zeros(0, np.int64) for _ in ids], 0
    uniq, inv = np.unique(np.concatenate(ids), return_inverse=True)
    splits = np.cumsum([len(i) for i in ids])[:-1]
    return [p.astype(np.int64) for p in np.split(inv.reshape(-1), splits)], len(uniq)


def _check_classes(gt: MotRows, pred: MotRows, gt_name: str, pred_name: str) -> None:
    bad = np.setdiff1d(np.unique(gt.cls), MOT_CLASSES)
    if len(bad):
        row = int(np.argmax(np.isin(gt.cls, bad)))
        raise DarkcfgError(f"{gt_name}: frame {gt.frame[row]}: class {bad[0]}: MOT17/MOT20 preprocessing expects "
                           "MOT's classes 1..13 in column 8 (use --preproc none for other ground truth)")
    if len(pred) and pred.cls.max() > 1:
        row = int(np.argmax(pred.cls > 1))
        raise DarkcfgError(f"{pred_name}: frame {pred.frame[row]}: class {pred.cls[row]}: MOTChallenge evaluates "
                           "pedestrians only; expected class 1 or -1 in column 8 (or --preproc none)")


def prepare_sequence(gt: MotRows, pred: MotRows, frames: Optional[int] = None, preproc: str = "none",
                     name: str = "", gt_name: str = "ground truth", pred_name: str = "predictions") -> TrackFrames:
    """Ground truth and predictions of one sequence -> TrackFrames (see the module docstring for `preproc`).

    frames: the sequence's number of frames (seqinfo.ini's seqLength); a row past it is a DarkcfgError, and None
    means the last frame of either file. Negative ids in the predictions and an id twice in one frame are
    DarkcfgErrors naming the file.
    """
    if preproc not in PREPROC:
        raise DarkcfgError(f"preprocessing {preproc!r}: expected one of {', '.join(PREPROC)}")
    for rows, label in ((gt, gt_name), (pred, pred_name)):
        check_unique_ids(rows, label)
        if frames is not None and rows.frames > frames:
            raise DarkcfgError(f"{label}: frame {rows.frames}: the sequence has {frames} frames (seqinfo.ini)")
    if len(pred) and pred.track.min() < 0:
        row = int(np.argmax(pred.track < 0))
        raise DarkcfgError(f"{pred_name}: frame {pred.frame[row]}: id {pred.track[row]}: expected track ids >= 0 "
                           "(a detection without a track cannot be scored)")
    if preproc != "none":
        _check_classes(gt, pred, gt_name, pred_name)
    n = frames if frames is not None else max(gt.frames, pred.frames)
    g_order = np.argsort(gt.frame, kind="stable")
    p_order = np.argsort(pred.frame, kind="stable")
    g_split = np.searchsorted(gt.frame[g_order], np.arange(1, n + 2))  # frame t's rows: [g_split[t-1], g_split[t])
    p_split = np.searchsorted(pred.frame[p_order], np.arange(1, n + 2))
    gt_ids, pred_ids, sims = [], [], []
    for t in range(n):
        g = gt.take(g_order[g_split[t]:g_split[t + 1]])
        p = pred.take(p_order[p_split[t]:p_split[t + 1]])
        sim = box_iou_xywh(g.box, p.box)  # (G_t, P_t)
        keep_p = np.ones(len(p), bool)
        if preproc != "none" and len(g) and len(p):
            score = np.where(sim < 0.5 - EPS, 0.0, sim)
            rows, cols = linear_sum_assignment(score, maximize=True)
            matched = score[rows, cols] > EPS
            keep_p[cols[matched & np.isin(g.cls[rows], DISTRACTORS[preproc])]] = False
        keep_g = g.conf.astype(np.int64) != 0  # MOT's gt flag, read as TrackEval reads it (int truncation)
        if preproc != "none":
            keep_g &= g.cls == 1
        gt_ids.append(g.track[keep_g])
        pred_ids.append(p.track[keep_p])
        sims.append(sim[keep_g][:, keep_p])
    gt_ids, num_gt = _renumber(gt_ids)
    pred_ids, num_pred = _renumber(pred_ids)
    return TrackFrames(name, gt_ids, pred_ids, sims, num_gt, num_pred)
