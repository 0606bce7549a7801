"""The CLEAR MOT metrics (Bernardin & Stiefelhagen, "Evaluating Multiple Object Tracking Performance: The CLEAR MOT
Metrics", 2008) as TrackEval computes them: MOTA = 1 - (FN + FP + IDSW) / GT boxes, MOTP = mean IoU of the
matches, and the counts behind them, with mostly tracked / partly tracked / mostly lost ids and fragmentations.

Each frame, ground truth and predictions with IoU >= threshold are matched (Hungarian), keeping first the pairs
matched in the frame before (a pair continues whenever it still overlaps enough), then the largest total IoU. An
ID switch is a ground-truth id matched to another prediction id than at its previous match, however many frames
ago. A frame without predictions (or without ground truth) leaves the "matched in the frame before" record as it
was, as TrackEval does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from darkcfg.eval.track_data import EPS, TrackFrames


@dataclass
class Clear:
    """CLEAR MOT counts of one sequence (or several, summed).

    tp, fn, fp: matched, missed and false boxes; idsw: ID switches; mt, pt, ml: ground-truth ids tracked in
    > 80 %, 20 % .. 80 %, < 20 % of their frames; frag: times a ground-truth id's matching resumed after a gap;
    motp_sum: summed IoU of the matches; frames: frames evaluated.
    """

    tp: int = 0
    fn: int = 0
    fp: int = 0
    idsw: int = 0
    mt: int = 0
    pt: int = 0
    ml: int = 0
    frag: int = 0
    motp_sum: float = 0.0
    frames: int = 0

    def summary(self) -> dict[str, float]:
        """MOTA, MOTP, MODA, recall, precision and the counts (TrackEval's CLEAR names)."""
        gt = max(1.0, self.tp + self.fn)
        return {"MOTA": (self.tp - self.fp - self.idsw) / gt, "MOTP": self.motp_sum / max(1.0, self.tp),
                "MODA": (self.tp - self.fp) / gt, "CLR_Re": self.tp / gt,
                "CLR_Pr": self.tp / max(1.0, self.tp + self.fp), "sMOTA": (self.motp_sum - self.fp - self.idsw) / gt,
                "CLR_TP": self.tp, "CLR_FN": self.fn, "CLR_FP": self.fp, "IDSW": self.idsw, "MT": self.mt,
                "PT": self.pt, "ML": self.ml, "Frag": self.frag}


def clear(seq: TrackFrames, threshold: float = 0.5) -> Clear:
    """CLEAR MOT of one sequence; a match needs IoU >= threshold."""
    res = Clear(frames=seq.frames)
    if seq.num_pred_dets == 0 or seq.num_gt_dets == 0:
        res.fn, res.fp = seq.num_gt_dets, seq.num_pred_dets
        res.ml = seq.num_gt_ids if seq.num_pred_dets == 0 else 0
        return res
    n = seq.num_gt_ids
    frames_seen = np.zeros(n)  # frames each ground-truth id is present
    frames_matched = np.zeros(n)
    runs = np.zeros(n)  # times each id's matching started (a run of matched frames)
    last_match = np.full(n, -1)  # the prediction id each ground-truth id last matched (-1: never)
    prev_frame = np.full(n, -1)  # the prediction id it matched in the previous evaluated frame
    for g, p, sim in zip(seq.gt_ids, seq.pred_ids, seq.similarity):
        if not len(g) or not len(p):
            res.fp += len(p)
            res.fn += len(g)
            frames_seen[g] += 1
            continue
        score = 1000.0 * (p[None, :] == prev_frame[g][:, None]) + sim  # (G_t, P_t): continuing pairs first
        score[sim < threshold - EPS] = 0.0
        rows, cols = linear_sum_assignment(score, maximize=True)
        ok = score[rows, cols] > EPS
        rows, cols = rows[ok], cols[ok]
        mg, mp = g[rows], p[cols]
        res.idsw += int(np.sum((last_match[mg] >= 0) & (last_match[mg] != mp)))
        frames_seen[g] += 1
        frames_matched[mg] += 1
        was_tracked = prev_frame >= 0
        last_match[mg] = mp
        prev_frame[:] = -1
        prev_frame[mg] = mp
        runs += ~was_tracked & (prev_frame >= 0)
        res.tp += len(rows)
        res.fn += len(g) - len(rows)
        res.fp += len(p) - len(rows)
        res.motp_sum += float(np.sum(sim[rows, cols]))
    present = frames_seen > 0
    ratio = frames_matched[present] / frames_seen[present]
    res.mt = int(np.sum(ratio > 0.8))
    res.pt = int(np.sum(ratio >= 0.2)) - res.mt
    res.ml = n - res.mt - res.pt
    res.frag = int(np.sum(runs[runs > 0] - 1))
    return res


def combine_clear(parts: list[Clear]) -> Clear:
    """Several sequences as one: every count summed."""
    out = Clear()
    for c in parts:
        for k in ("tp", "fn", "fp", "idsw", "mt", "pt", "ml", "frag", "motp_sum", "frames"):
            setattr(out, k, getattr(out, k) + getattr(c, k))
    return out
