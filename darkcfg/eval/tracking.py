"""Tracking accuracy of MOTChallenge files: HOTA (`track_hota`), CLEAR MOT (`track_clear`) and the identity
metrics (`track_identity`) per sequence and over all sequences, as TrackEval computes and combines them (counts
summed over the sequences, HOTA's association and localisation scores weighted by true positives; never means
of per-sequence ratios), on inputs prepared as `track_data` describes (its `preproc`: by default class-agnostic,
ground-truth rows with conf 0 ignored, no MOT17 distractor removal).

`evaluate_tracking` is the library entry; `tracking_table` and `tracking_json` format its result for
`darkcfg track-eval`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from darkcfg.data.mot import MotRows, MotSequence, read_mot
from darkcfg.eval.track_clear import Clear, clear, combine_clear
from darkcfg.eval.track_data import prepare_sequence
from darkcfg.eval.track_hota import ALPHAS, Hota, combine_hota, hota
from darkcfg.eval.track_identity import Identity, combine_identity, identity

COMBINED = "COMBINED"


@dataclass
class TrackScores:
    """The three metric families of one sequence (or of several combined), with the ids and boxes they saw."""

    name: str
    hota: Hota
    clear: Clear
    identity: Identity
    gt_ids: int = 0
    pred_ids: int = 0
    gt_dets: int = 0
    pred_dets: int = 0

    def summary(self) -> dict[str, float]:
        """Every figure by TrackEval's name (fractions, not percent): HOTA, DetA, AssA, LocA, ..., MOTA, MOTP,
        IDSW, ..., IDF1, IDP, IDR, ..., and the id and box counts (GT_IDs, Pred_IDs, GT_Dets, Pred_Dets)."""
        out = {**self.hota.summary(), **self.clear.summary(), **self.identity.summary()}
        out.update(GT_IDs=self.gt_ids, Pred_IDs=self.pred_ids, GT_Dets=self.gt_dets, Pred_Dets=self.pred_dets)
        return out


@dataclass
class TrackingResult:
    """Scores per sequence (in name order) and combined, and the settings that produced them."""

    sequences: list[TrackScores]
    combined: TrackScores
    threshold: float = 0.5
    preproc: str = "none"


def score_sequence(gt: MotRows, pred: MotRows, frames: Optional[int] = None, name: str = "", preproc: str = "none",
                   threshold: float = 0.5, gt_name: str = "ground truth", pred_name: str = "predictions"
                   ) -> TrackScores:
    """TrackScores of one sequence's ground truth and predictions (see `track_data.prepare_sequence` for frames,
    preproc and the errors). threshold: the IoU a CLEAR or identity match needs (HOTA uses all its alphas)."""
    seq = prepare_sequence(gt, pred, frames, preproc, name, gt_name, pred_name)
    return TrackScores(name, hota(seq), clear(seq, threshold), identity(seq, threshold), seq.num_gt_ids,
                       seq.num_pred_ids, seq.num_gt_dets, seq.num_pred_dets)


def combine_scores(parts: list[TrackScores], name: str = COMBINED) -> TrackScores:
    """Several sequences' scores as TrackEval's COMBINED_SEQ (ids counted per sequence: an id of two sequences is
    two objects)."""
    return TrackScores(name, combine_hota([p.hota for p in parts]), combine_clear([p.clear for p in parts]),
                       combine_identity([p.identity for p in parts]), sum(p.gt_ids for p in parts),
                       sum(p.pred_ids for p in parts), sum(p.gt_dets for p in parts), sum(p.pred_dets for p in parts))


def evaluate_tracking(sequences: list[MotSequence], preproc: str = "none", threshold: float = 0.5
                      ) -> TrackingResult:
    """Read and score every sequence (`darkcfg.data.mot.find_sequences` pairs the files), then combine them."""
    scores = [score_sequence(read_mot(s.gt), read_mot(s.pred), s.length, s.name, preproc, threshold, str(s.gt),
                             str(s.pred)) for s in sequences]
    return TrackingResult(scores, combine_scores(scores), threshold, preproc)


TABLE = (("HOTA", "HOTA", True), ("DetA", "DetA", True), ("AssA", "AssA", True), ("LocA", "LocA", True),
         ("MOTA", "MOTA", True), ("MOTP", "MOTP", True), ("IDF1", "IDF1", True), ("IDP", "IDP", True),
         ("IDR", "IDR", True), ("IDSW", "IDSW", False), ("FP", "CLR_FP", False), ("FN", "CLR_FN", False),
         ("Frag", "Frag", False), ("MT", "MT", False), ("ML", "ML", False), ("GT_IDs", "GT_IDs", False),
         ("IDs", "Pred_IDs", False))


def tracking_table(result: TrackingResult) -> list[str]:
    """One row per sequence and a COMBINED row: scores in percent with 3 decimals (as TrackEval prints them)."""
    rows = [*result.sequences, result.combined] if len(result.sequences) != 1 else result.sequences
    width = max([len("Sequence"), *(len(r.name) for r in rows)])
    cols = [max(len(h), 7 if pct else 5) for h, _, pct in TABLE]
    lines = [" ".join([f"{'Sequence':<{width}}", *(f"{h:>{c}}" for (h, _, _), c in zip(TABLE, cols))])]
    for r in rows:
        s = r.summary()
        cells = [f"{s[k] * 100:>{c}.3f}" if pct else f"{int(s[k]):>{c}d}" for (_, k, pct), c in zip(TABLE, cols)]
        lines.append(" ".join([f"{r.name:<{width}}", *cells]))
    return lines


def _plain(v: Union[float, int, np.generic]) -> Union[float, int]:
    return int(v) if isinstance(v, (int, np.integer)) else float(v)


def tracking_json(result: TrackingResult) -> dict[str, Any]:
    """The result as JSON-ready data: settings, then per sequence and combined every `TrackScores.summary` figure
    (fractions) and HOTA, DetA, AssA, LocA at each alpha."""

    def one(s: TrackScores) -> dict[str, Any]:
        curves = {k: [float(v) for v in getattr(s.hota, a)] for k, a in (
            ("HOTA", "hota"), ("DetA", "det_a"), ("AssA", "ass_a"), ("LocA", "loc_a"))}
        return {**{k: _plain(v) for k, v in s.summary().items()}, "per_alpha": curves}

    return {"threshold": result.threshold, "preproc": result.preproc, "alphas": [round(float(a), 2) for a in ALPHAS],
            "sequences": {s.name: one(s) for s in result.sequences}, "combined": one(result.combined)}
