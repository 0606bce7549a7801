"""Why a model misses (`darkcfg map --report`): per class TP / FP / FN at the confidence threshold, the
F1-best threshold per class, AP for small / medium / large objects, and the images with the most errors.

TP and FP are `map`'s own (the per-image outcomes `MapAccumulator` records while it counts them), so the
report's counts are the printed ones; FN of a class = its truths no TP matched. Object sizes are COCO's areas
(< 32^2, 32^2..96^2, > 96^2 pixels) measured at the network size (boxes scaled as the network sees the image:
resized, or letterboxed with [net] letter_box=1); their AP at map's IoU threshold is pycocotools' COCOeval
over the same detections.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from darkcfg.eval.metrics import ImageOutcome, MapResult
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.preprocess import network_scale

AREAS = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


@dataclass
class ImageErrors:
    """One image at the threshold: boxes (x, y, w, h relative) of its TPs and FPs (class, box, prob) and FNs
    (class, box)."""

    path: str
    width: int
    height: int
    tp: list[tuple[int, np.ndarray, float]] = field(default_factory=list)
    fp: list[tuple[int, np.ndarray, float]] = field(default_factory=list)
    fn: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return len(self.fp) + len(self.fn)


@dataclass
class ClassErrors:
    """One class: truths, TP / FP / FN at the threshold, AP, and the confidence threshold with the best F1 over
    the ranked detections (with that F1, precision and recall; 0s when the class has no detection)."""

    class_id: int
    name: str
    truths: int
    tp: int
    fp: int
    fn: int
    ap: float
    best_thresh: float
    best_f1: float
    best_precision: float
    best_recall: float


@dataclass
class SizeAP:
    """AP at map's IoU threshold for one COCO area range at the network size, and its number of truths."""

    name: str
    ap: float
    truths: int


@dataclass
class Analysis:
    classes: list[ClassErrors]
    images: list[ImageErrors]
    sizes: list[SizeAP]
    thresh: float
    iou_thresh: float

    def worst(self, n: int = 12) -> list[ImageErrors]:
        """The n images with the most errors (FP + FN), most first; ties in list order."""
        ranked = sorted(range(len(self.images)), key=lambda k: -self.images[k].errors)
        return [self.images[k] for k in ranked[:n] if self.images[k].errors > 0]


def best_f1(precision: np.ndarray, recall: np.ndarray, scores: np.ndarray) -> tuple[float, float, float, float]:
    """(threshold, F1, precision, recall) at the rank with the largest F1 (the first of ties)."""
    if not len(scores):
        return 0.0, 0.0, 0.0, 0.0
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    k = int(np.argmax(f1))
    return float(scores[k]), float(f1[k]), float(precision[k]), float(recall[k])


def size_aps(images: Sequence[tuple[str, DetectionArray]], truths: Sequence[np.ndarray], classes: int, net_w: int,
             net_h: int, letterbox: bool, iou_thresh: float) -> list[SizeAP]:
    """COCOeval (bbox, IoU = iou_thresh, maxDets 100) per COCO area range, boxes at the network size."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt: dict = {"images": [], "annotations": [], "categories": [{"id": c + 1} for c in range(classes)]}
    results = []
    counts = dict.fromkeys(AREAS, 0)
    for k, ((_, dets), tr) in enumerate(zip(images, truths)):
        sx, sy = network_scale(dets.width, dets.height, net_w, net_h, letterbox)
        gt["images"].append({"id": k + 1, "width": sx, "height": sy})
        for cid, cx, cy, w, h in np.asarray(tr, np.float64).reshape(-1, 5):
            box = [(cx - w / 2) * sx, (cy - h / 2) * sy, w * sx, h * sy]
            area = box[2] * box[3]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": k + 1, "category_id": int(cid) + 1,
                                      "bbox": box, "area": area, "iscrowd": 0})
            counts[next(n for n, (lo, hi) in AREAS.items() if lo <= area < hi)] += 1
        for i, c in zip(*np.nonzero(dets.probs > 0)):
            cx, cy, w, h = (float(v) for v in dets.boxes[i])
            results.append({"image_id": k + 1, "category_id": int(c) + 1, "score": float(dets.probs[i, c]),
                            "bbox": [(cx - w / 2) * sx, (cy - h / 2) * sy, w * sx, h * sy]})
    if not gt["annotations"] or not results:
        return [SizeAP(n, 0.0, counts[n]) for n in AREAS]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.params.iouThrs = np.array([iou_thresh])
        ev.params.areaRng = [list(AREAS[n]) for n in AREAS]
        ev.params.areaRngLbl = list(AREAS)
        ev.evaluate()
        ev.accumulate()
    out = []
    for a, n in enumerate(AREAS):
        s = ev.eval["precision"][0, :, :, a, -1]  # (R, K) at maxDets 100, as COCOeval.summarize
        out.append(SizeAP(n, float(s[s > -1].mean()) if (s > -1).any() else 0.0, counts[n]))
    return out


def analyse(result: MapResult, names: Sequence[str], outcomes: Sequence[ImageOutcome],
            images: Sequence[tuple[str, DetectionArray]], net_w: int, net_h: int, letterbox: bool,
            sizes: Optional[list[SizeAP]] = None) -> Analysis:
    """The error analysis of a `map` run: its result, the per-image outcomes (in `images` order) and each image's
    path and detections."""
    per_image = []
    for (path, dets), o in zip(images, outcomes):
        e = ImageErrors(path, dets.width, dets.height)
        e.tp = [(c, dets.boxes[i], p) for i, c, p, _ in o.tp]
        e.fp = [(c, dets.boxes[i], p) for i, c, p in o.fp]
        e.fn = [(int(o.truths[j, 0]), o.truths[j, 1:]) for j in o.missed]
        per_image.append(e)
    classes = []
    for c in result.classes:
        t, f1, p, r = best_f1(c.precision, c.recall, c.scores)
        classes.append(ClassErrors(c.class_id, names[c.class_id], c.truths, c.tp, c.fp, c.truths - c.tp, c.ap, t, f1,
                                   p, r))
    if sizes is None:
        sizes = size_aps(images, [o.truths for o in outcomes], len(result.classes), net_w, net_h, letterbox,
                         result.iou_thresh)
    return Analysis(classes, per_image, sizes, result.thresh, result.iou_thresh)
