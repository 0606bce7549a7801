"""mAP as the reference computes it (detector.c:validate_detector_map).

Per image (`MapAccumulator.add`, after detection with thresh .005 and the cfg's NMS):
- every (detection, class) with prob > 0 is a ranked detection; it is matched to the truth of the same
  class with the largest IoU > iou_thresh (strict; the first such truth on ties). Unmatched detections
  overlapping a `difficult` truth of their class (IoU > iou_thresh) are dropped from the ranking;
- at the confidence threshold (`thresh`, default .25) a detection is a TP if it matched a truth that no
  earlier detection of the same image matched, else an FP (the per-class TP/FP printed, precision, recall,
  F1 and the average IoU of the TPs). The reference's loop bounds are kept: after a difficult drop the last
  kept detection of the image is left out of the "matched before" check, and dropped detections above the
  threshold still count as FP.
Then (`MapAccumulator.result`): all detections sorted by prob descending (glibc's stable qsort); walking
the ranks, a matched truth claimed for the first time is a TP, any other detection an FP; precision and
recall per class at every rank; AP is the area under the running-max precision over each unique recall
(points=0, VOC2010 and later), or the mean over r = k/(N-1) of the best precision at recall >= r (points
N: 11 for VOC2007, 101 for COCO); mAP is the mean over all classes (a class without truths scores 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from darkcfg.infer.boxes import box_iou
from darkcfg.infer.detections import DetectionArray

F32 = np.float32


@dataclass
class ClassAP:
    """One class's curve and score. precision/recall: at each of the class's detections in rank order."""

    class_id: int
    ap: float
    truths: int
    tp: int  # at the confidence threshold
    fp: int
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)


@dataclass
class MapResult:
    """What `darkcfg map` prints, as numbers."""

    classes: list[ClassAP]
    map: float
    points: int
    iou_thresh: float
    thresh: float
    detections: int
    truths: int
    tp: int
    fp: int
    avg_iou: float  # of the TPs at thresh, over TP + FP as the reference divides
    confusion: Optional[np.ndarray] = None  # (C+1, C+1) true x predicted at thresh, last = background

    @property
    def precision(self) -> float:
        return float(F32(self.tp) / (F32(self.tp) + F32(self.fp))) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        n = F32(self.tp) + F32(self.truths - self.tp)
        return float(F32(self.tp) / n) if n else float("nan")

    @property
    def f1(self) -> float:
        p, r = F32(self.precision), F32(self.recall)
        return float(F32(2) * p * r / (p + r)) if p + r else float("nan")


def average_precision(precision: Sequence[float], recall: Sequence[float], points: int = 0) -> float:
    """AP of one class from its precision/recall at each of its ranked detections (in rank order).

    points=0: area under the running-max precision over each unique recall, from the last rank back to
    recall 0; points=N: mean over r = k/(N-1), k = 0..N-1, of the best precision with recall >= r.
    """
    p = np.asarray(precision, dtype=np.float64)
    r = np.asarray(recall, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    if points == 0:
        ap = 0.0
        last_r, last_p = r[-1], p[-1]
        for k in range(len(p) - 2, -1, -1):
            ap += (last_r - r[k]) * last_p
            last_r = r[k]
            last_p = max(last_p, p[k])
        return ap + last_r * last_p  # the remaining area down to recall 0
    if points < 2:
        raise ValueError(f"points={points}: expected 0 (all points), or 2 and more (11, 101)")
    total = 0.0
    for k in range(points):
        cur = k * 1.0 / (points - 1)
        ok = r >= cur
        total += float(p[ok].max()) if ok.any() else 0.0
    return total / points


@dataclass
class ImageOutcome:
    """One image's detections at the confidence threshold as `map` counts them: TPs (detection index, class,
    prob, truth index in the image) and FPs (detection index, class, prob), its truths (N, 5) and which of them
    no TP matched (the FNs)."""

    tp: list[tuple[int, int, float, int]]
    fp: list[tuple[int, int, float]]
    truths: np.ndarray
    missed: np.ndarray  # indices into truths


class MapAccumulator:
    """Collects matched detections image by image; `result()` scores them. With `record`, `outcomes` keeps each
    image's `ImageOutcome` (for the error analysis of `map --report`)."""

    def __init__(self, classes: int, iou_thresh: float = 0.5, thresh: float = 0.25, record: bool = False) -> None:
        self.record = record
        self.outcomes: list[ImageOutcome] = []
        self.classes, self.iou_thresh, self.thresh = classes, iou_thresh, thresh
        self.probs: list[float] = []
        self.class_ids: list[int] = []
        self.truth_index: list[int] = []  # unique truth index, or -1
        self.truth_count = np.zeros(classes, np.int64)
        self.unique_truths = 0
        self.tp_per_class = np.zeros(classes, np.int64)
        self.fp_per_class = np.zeros(classes, np.int64)
        self.avg_iou = F32(0)
        self.images = 0
        self.confusion = np.zeros((classes + 1, classes + 1), np.int64)  # true x predicted, last = background

    def add(self, dets: DetectionArray, truths: np.ndarray, difficult: Optional[np.ndarray] = None) -> None:
        """dets: one image's detections after NMS; truths, difficult: (N, 5) rows (id, x, y, w, h) relative."""
        truths = np.asarray(truths, np.float32).reshape(-1, 5)
        difficult = np.zeros((0, 5), np.float32) if difficult is None else np.asarray(difficult, np.float32)
        t_ids = truths[:, 0].astype(np.int64)
        bad = t_ids[(t_ids < 0) | (t_ids >= self.classes)]
        if len(bad):
            raise ValueError(f"label class id {bad[0]}: expected 0..{self.classes - 1}")
        np.add.at(self.truth_count, t_ids, 1)
        iou = box_iou(dets.boxes, truths[:, 1:]) if len(dets) and len(truths) else np.zeros((len(dets), 0), F32)
        d_iou = (box_iou(dets.boxes, difficult[:, 1:]) if len(dets) and len(difficult)
                 else np.zeros((len(dets), 0), F32))
        d_ids = difficult[:, 0].astype(np.int64)
        thr, conf = F32(self.iou_thresh), F32(self.thresh)
        seen: dict[int, int] = {}  # truth index -> how many of this image's kept detections matched it
        last = None  # truth index of the image's last kept detection
        tps: list[tuple[int, int, float, int]] = []
        fps: list[tuple[int, int, float]] = []
        for i, c in zip(*np.nonzero(dets.probs > 0)):  # detection, then class: the reference's loop order
            prob = dets.probs[i, c]
            ok = (iou[i] > thr) & (t_ids == c)
            ti, max_iou = -1, F32(0)
            if ok.any():
                j = int(np.flatnonzero(ok)[np.argmax(iou[i][ok])])  # first of the largest
                ti, max_iou = self.unique_truths + j, iou[i, j]
            dropped = ti < 0 and bool(((d_iou[i] > thr) & (d_ids == c)).any())
            # matched by an earlier kept detection of this image (after a drop, the last one is not looked at)
            found = seen.get(ti, 0) - (1 if dropped and last == ti else 0) > 0
            if not dropped:
                self.probs.append(float(prob))
                self.class_ids.append(int(c))
                self.truth_index.append(ti)
                seen[ti] = seen.get(ti, 0) + 1
                last = ti
            if prob > conf:
                if ti > -1 and not found:
                    self.avg_iou += max_iou
                    self.tp_per_class[c] += 1
                    tps.append((int(i), int(c), float(prob), ti - self.unique_truths))
                else:
                    self.fp_per_class[c] += 1
                    fps.append((int(i), int(c), float(prob)))
        if self.record:
            matched = {t[3] for t in tps}
            missed = np.array([j for j in range(len(truths)) if j not in matched], np.int64)
            self.outcomes.append(ImageOutcome(tps, fps, truths, missed))
        self.unique_truths += len(truths)
        self.images += 1
        self._confuse(dets, truths, iou)

    def _confuse(self, dets: DetectionArray, truths: np.ndarray, iou: np.ndarray) -> None:
        """Confusion at the confidence threshold: each detection's best class; in order of confidence, the
        free truth of any class with the largest IoU > iou_thresh; the rest pair with background."""
        bg = self.classes
        p = np.where(dets.probs > F32(self.thresh), dets.probs, 0)
        keep = np.flatnonzero(p.max(axis=1) > 0) if len(p) else np.zeros(0, np.int64)
        keep = keep[np.argsort(-p[keep].max(axis=1), kind="stable")]
        free = np.ones(len(truths), bool)
        t_ids = truths[:, 0].astype(np.int64)
        for i in keep:
            c = int(p[i].argmax())
            cand = np.where(free & (iou[i] > F32(self.iou_thresh)), iou[i], -1) if len(truths) else np.zeros(0)
            if len(cand) and cand.max() > 0:
                j = int(cand.argmax())
                free[j] = False
                self.confusion[t_ids[j], c] += 1
            else:
                self.confusion[bg, c] += 1
        for j in np.flatnonzero(free):
            self.confusion[t_ids[j], bg] += 1

    def result(self, points: int = 0) -> MapResult:
        n = len(self.probs)
        probs = np.asarray(self.probs, np.float32)
        order = np.argsort(-probs, kind="stable")  # qsort(detections_comparator) is glibc's merge sort
        cls = np.asarray(self.class_ids, np.int64)[order]
        tix = np.asarray(self.truth_index, np.int64)[order]
        claimed = np.zeros(self.unique_truths, bool)
        is_tp = np.zeros(n, bool)
        for k in range(n):
            t = tix[k]
            if t >= 0 and not claimed[t]:
                claimed[t] = True
                is_tp[k] = True
        per_class = []
        for c in range(self.classes):
            sel = cls == c
            tp = np.cumsum(is_tp[sel])
            fp = np.cumsum(~is_tp[sel])
            total = self.truth_count[c]
            precision = tp / np.maximum(tp + fp, 1)
            recall = tp / total if total > 0 else np.zeros(len(tp))
            per_class.append(ClassAP(c, average_precision(precision, recall, points), int(total),
                                     int(self.tp_per_class[c]), int(self.fp_per_class[c]), precision, recall,
                                     probs[order][sel]))
        tp_t, fp_t = int(self.tp_per_class.sum()), int(self.fp_per_class.sum())
        avg_iou = float(self.avg_iou / F32(tp_t + fp_t)) if tp_t + fp_t else 0.0
        m = float(sum(c.ap for c in per_class) / self.classes)
        return MapResult(per_class, m, points, self.iou_thresh, self.thresh, n, self.unique_truths, tp_t, fp_t,
                         avg_iou, self.confusion.copy())
