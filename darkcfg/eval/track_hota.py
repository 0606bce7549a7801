"""HOTA (Luiten et al., "HOTA: A Higher Order Metric for Evaluating Multi-Object Tracking", IJCV 2021), as TrackEval
computes it: detection (DetA), association (AssA) and localisation (LocA) accuracy at each localisation threshold
alpha = 0.05, 0.10, .., 0.95 and HOTA = sqrt(DetA * AssA) there; the reported figures are means over the alphas.

Per frame, ground truth and predictions are matched (Hungarian) on IoU weighted by how well their two tracks align
over the whole sequence (the mean per-frame "soft" IoU-Jaccard of the two ids); a pair is a true positive at alpha
when its IoU >= alpha. A true positive's association score is the Jaccard index of the two ids' matches: TPA /
(TPA + FNA + FPA), and AssA is its mean over the true positives.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from darkcfg.eval.track_data import EPS, TrackFrames

ALPHAS = np.arange(0.05, 0.99, 0.05)  # the 19 localisation thresholds 0.05 .. 0.95 (TrackEval's array_labels)


def _zeros() -> np.ndarray:
    return np.zeros(len(ALPHAS))


@dataclass
class Hota:
    """HOTA's counts and scores at each alpha, arrays of shape (19,) (see ALPHAS).

    tp, fn, fp: detection counts; ass_a, ass_re, ass_pr: association accuracy, recall and precision (means over the
    true positives); loc_a: mean IoU of the true positives (1 where there are none).
    """

    tp: np.ndarray = field(default_factory=_zeros)
    fn: np.ndarray = field(default_factory=_zeros)
    fp: np.ndarray = field(default_factory=_zeros)
    ass_a: np.ndarray = field(default_factory=_zeros)
    ass_re: np.ndarray = field(default_factory=_zeros)
    ass_pr: np.ndarray = field(default_factory=_zeros)
    loc_a: np.ndarray = field(default_factory=lambda: np.ones(len(ALPHAS)))

    @property
    def det_re(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fn)

    @property
    def det_pr(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fp)

    @property
    def det_a(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fn + self.fp)

    @property
    def hota(self) -> np.ndarray:
        return np.sqrt(self.det_a * self.ass_a)

    @property
    def owta(self) -> np.ndarray:
        return np.sqrt(self.det_re * self.ass_a)

    def summary(self) -> dict[str, float]:
        """The figures TrackEval reports: each score's mean over the alphas, and HOTA, LocA at alpha = 0.05."""
        out = {k: float(np.mean(getattr(self, a))) for k, a in (
            ("HOTA", "hota"), ("DetA", "det_a"), ("AssA", "ass_a"), ("DetRe", "det_re"), ("DetPr", "det_pr"),
            ("AssRe", "ass_re"), ("AssPr", "ass_pr"), ("LocA", "loc_a"), ("OWTA", "owta"))}
        out["HOTA(0)"] = float(self.hota[0])
        out["LocA(0)"] = float(self.loc_a[0])
        out["HOTALocA(0)"] = out["HOTA(0)"] * out["LocA(0)"]
        return out


def hota(seq: TrackFrames) -> Hota:
    """HOTA of one sequence."""
    res = Hota()
    if seq.num_pred_dets == 0 or seq.num_gt_dets == 0:
        if seq.num_pred_dets == 0:
            res.fn[:] = seq.num_gt_dets
        else:
            res.fp[:] = seq.num_pred_dets
        return res
    ng, npred = seq.num_gt_ids, seq.num_pred_ids
    gt_count = np.zeros(ng)
    pred_count = np.zeros(npred)
    soft = np.zeros((ng, npred))  # summed per-frame soft matches of each id pair
    for g, p, sim in zip(seq.gt_ids, seq.pred_ids, seq.similarity):
        gt_count[g] += 1
        pred_count[p] += 1
        if not len(g) or not len(p):
            continue
        denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim  # (G_t, P_t)
        soft_t = np.zeros_like(sim)
        ok = denom > EPS
        soft_t[ok] = sim[ok] / denom[ok]
        soft[g[:, None], p[None, :]] += soft_t
    align = soft / (gt_count[:, None] + pred_count[None, :] - soft)  # (G, P): the ids' global alignment

    loc_sum = _zeros()  # summed IoU of the true positives
    pair_g, pair_p, pair_sim = [], [], []  # every frame's matched pairs (before the alpha test)
    for g, p, sim in zip(seq.gt_ids, seq.pred_ids, seq.similarity):
        if not len(g) or not len(p):
            res.fn += len(g)
            res.fp += len(p)
            continue
        rows, cols = linear_sum_assignment(align[g[:, None], p[None, :]] * sim, maximize=True)
        s = sim[rows, cols]
        hit = s[None, :] >= ALPHAS[:, None] - EPS  # (19, K)
        n_hit = hit.sum(1)
        res.tp += n_hit
        res.fn += len(g) - n_hit
        res.fp += len(p) - n_hit
        loc_sum += (hit * s[None, :]).sum(1)
        pair_g.append(g[rows])
        pair_p.append(p[cols])
        pair_sim.append(s)
    pg, pp, ps = (np.concatenate(v) for v in (pair_g, pair_p, pair_sim)) if pair_g else (np.zeros(0, int),) * 3
    for a, alpha in enumerate(ALPHAS):
        m = ps >= alpha - EPS
        matches = np.bincount(pg[m] * npred + pp[m], minlength=ng * npred).reshape(ng, npred).astype(np.float64)
        tp = max(1.0, res.tp[a])
        res.ass_a[a] = np.sum(matches * matches / np.maximum(1, gt_count[:, None] + pred_count[None, :] - matches)) / tp
        res.ass_re[a] = np.sum(matches * matches / np.maximum(1, gt_count[:, None])) / tp
        res.ass_pr[a] = np.sum(matches * matches / np.maximum(1, pred_count[None, :])) / tp
    res.loc_a = np.maximum(1e-10, loc_sum) / np.maximum(1e-10, res.tp)
    return res


def combine_hota(parts: list[Hota]) -> Hota:
    """Several sequences as one: counts summed, AssA/AssRe/AssPr and LocA averaged weighted by true positives."""
    res = Hota()
    if not parts:
        return res
    res.tp, res.fn, res.fp = (sum(getattr(h, k) for h in parts) for k in ("tp", "fn", "fp"))
    for k in ("ass_a", "ass_re", "ass_pr"):
        setattr(res, k, sum(getattr(h, k) * h.tp for h in parts) / np.maximum(1.0, res.tp))
    res.loc_a = np.maximum(1e-10, sum(h.loc_a * h.tp for h in parts)) / np.maximum(1e-10, res.tp)
    return res
