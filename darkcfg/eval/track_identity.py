"""The identity metrics (Ristani et al., "Performance Measures and a Data Set for Multi-Target, Multi-Camera
Tracking", 2016) as TrackEval computes them: each ground-truth id is paired with at most one prediction id, once
for the whole sequence, so as to maximise the boxes they share (IoU >= threshold in the same frame); IDTP counts
those boxes, IDFN the other ground-truth boxes and IDFP the other predicted ones. IDF1 = 2 IDTP / (2 IDTP + IDFP +
IDFN), IDP = IDTP / predicted boxes, IDR = IDTP / ground-truth boxes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from darkcfg.eval.track_data import TrackFrames


@dataclass
class Identity:
    """IDTP, IDFN, IDFP of one sequence (or several, summed)."""

    idtp: int = 0
    idfn: int = 0
    idfp: int = 0

    def summary(self) -> dict[str, float]:
        return {"IDF1": self.idtp / max(1.0, self.idtp + 0.5 * self.idfp + 0.5 * self.idfn),
                "IDP": self.idtp / max(1.0, self.idtp + self.idfp), "IDR": self.idtp / max(1.0, self.idtp + self.idfn),
                "IDTP": self.idtp, "IDFN": self.idfn, "IDFP": self.idfp}


def identity(seq: TrackFrames, threshold: float = 0.5) -> Identity:
    """The identity counts of one sequence; boxes are shared when their IoU >= threshold.

    Minimising IDFN + IDFP over one-to-one id pairings (TrackEval's formulation, with a "no partner" column per
    id) is maximising the shared boxes of the paired ids, which is what is solved here.
    """
    n_gt, n_pred = seq.num_gt_dets, seq.num_pred_dets
    if n_gt == 0 or n_pred == 0:
        return Identity(0, n_gt, n_pred)
    shared = np.zeros((seq.num_gt_ids, seq.num_pred_ids))  # (G, P): frames each id pair overlaps enough
    for g, p, sim in zip(seq.gt_ids, seq.pred_ids, seq.similarity):
        gi, pi = np.nonzero(sim >= threshold)
        np.add.at(shared, (g[gi], p[pi]), 1)
    rows, cols = linear_sum_assignment(shared, maximize=True)
    idtp = int(round(shared[rows, cols].sum()))
    return Identity(idtp, n_gt - idtp, n_pred - idtp)


def combine_identity(parts: list[Identity]) -> Identity:
    """Several sequences as one: the counts summed."""
    return Identity(sum(i.idtp for i in parts), sum(i.idfn for i in parts), sum(i.idfp for i in parts))
