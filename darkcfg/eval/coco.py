"""COCO metrics with pycocotools: AP@[.5:.95], AP50, AP75, APs/m/l and AR, for `darkcfg map --coco`.

Ground truth is either the reference's list + label files (converted here: a label (id, cx, cy, w, h)
relative becomes a box [x, y, w, h] in pixels of the image, category id+1, area w*h) or a COCO
`instances_*.json` (images found by file name; class j of the network is the j-th category by id, which
is COCO's order of coco.names). DetectionArray are the same (detection, class) pairs `map` ranks.
"""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import DetectionArray

STAT_NAMES = (
    "AP @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "AP @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "AP @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "AP @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "AP @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "AP @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "AR @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "AR @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "AR @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "AR @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "AR @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "AR @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
)


@dataclass
class CocoCollector:
    """Builds the ground truth and results of a validation run, image by image."""

    names: list[str]
    gt_json: Optional[dict] = None  # a COCO instances file, when given
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_name: dict[str, int] = {}
        if self.gt_json is not None:
            self._by_name = {Path(im["file_name"]).name: im["id"] for im in self.gt_json["images"]}
            cats = sorted(c["id"] for c in self.gt_json["categories"])
            if len(cats) < len(self.names):
                raise DarkcfgError(f"COCO ground truth has {len(cats)} categories, the network {len(self.names)}")
            self.category_ids = cats[: len(self.names)]
        else:
            self.category_ids = list(range(1, len(self.names) + 1))

    def add(self, path: str, dets: DetectionArray, truths: Optional[np.ndarray] = None) -> None:
        w, h = dets.width, dets.height
        if self.gt_json is not None:
            name = Path(path).name
            if name not in self._by_name:
                raise DarkcfgError(f"{path}: not among the images of the COCO ground truth")
            image_id = self._by_name[name]
        else:
            image_id = len(self.images) + 1
            self.images.append({"id": image_id, "file_name": Path(path).name, "width": w, "height": h})
            for cid, cx, cy, bw, bh in np.asarray(truths, np.float64).reshape(-1, 5):
                box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
                self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id,
                                         "category_id": self.category_ids[int(cid)], "bbox": box,
                                         "area": box[2] * box[3], "iscrowd": 0})
        for i, j in zip(*np.nonzero(dets.probs > 0)):
            cx, cy, bw, bh = (float(v) for v in dets.boxes[i])
            self.results.append({"image_id": image_id, "category_id": self.category_ids[int(j)],
                                 "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h],
                                 "score": float(dets.probs[i, j])})

    def ground_truth(self) -> dict:
        if self.gt_json is not None:
            return self.gt_json
        cats = [{"id": c, "name": n} for c, n in zip(self.category_ids, self.names)]
        return {"images": self.images, "annotations": self.annotations, "categories": cats}

    def evaluate(self) -> np.ndarray:
        return coco_stats(self.ground_truth(), self.results)


def coco_stats(gt: dict, results: list[dict]) -> np.ndarray:
    """pycocotools' COCOeval (bbox) -> the 12 standard numbers (-1 where undefined)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return np.full(12, -1.0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools talks a lot
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, np.float64)


def read_coco_gt(path: Union[str, Path]) -> dict:
    p = Path(path)
    try:
        gt = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise DarkcfgError(f"{p}: cannot read COCO ground truth: {e}") from None
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise DarkcfgError(f"{p}: not a COCO instances file (no '{key}')")
    return gt


def stats_lines(stats: np.ndarray) -> list[str]:
    """pycocotools' summary format: ' Average Precision  (AP) @[ ... ] = 0.123'."""
    out = []
    for name, v in zip(STAT_NAMES, stats):
        title = "Average Precision  (AP)" if name.startswith("AP") else "Average Recall     (AR)"
        out.append(f" {title} {name[3:]} = {v:0.3f}")
    return out
