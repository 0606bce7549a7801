"""The reference's text outputs of `detector map` and `detector valid`, character for character.

- `map_lines`: `detector map`'s printout from `detections_count` on.
- `coco_result_lines`, `voc_result_lines`: the result files of `detector valid` (print_cocos,
  print_detector_detections).
Values are float32 computed in C's order, then printed with C's rounding.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from darkcfg.eval.metrics import MapResult
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.printout import json_number

F32 = np.float32


def map_lines(res: MapResult, names: Sequence[str]) -> list[str]:
    """The reference's printout of `detector map`, from `detections_count` on."""
    lines = [f" detections_count = {res.detections}, unique_truth_count = {res.truths}  "]
    lines += [f" rank = {r} of ranks = {res.detections} " for r in range(0, res.detections, 100)]
    for c in res.classes:
        name = names[c.class_id] if c.class_id < len(names) else str(c.class_id)
        lines.append("class_id = %d, name = %s, ap = %2.2f%%   \t (TP = %d, FP = %d) "
                     % (c.class_id, name, c.ap * 100, c.tp, c.fp))
    lines += ["", " for conf_thresh = %1.2f, precision = %1.2f, recall = %1.2f, F1-score = %1.2f "
              % (res.thresh, res.precision, res.recall, res.f1),
              " for conf_thresh = %0.2f, TP = %d, FP = %d, FN = %d, average IoU = %2.2f %% "
              % (res.thresh, res.tp, res.fp, res.truths - res.tp, float(F32(res.avg_iou) * F32(100))),
              "",
              " IoU threshold = %2.0f %%, " % (res.iou_thresh * 100)
              + (f"used {res.points} Recall-points " if res.points
                 else "used Area-Under-Curve for each unique Recall "),
              " mean average precision (mAP@%0.2f) = %f, or %2.2f %% " % (res.iou_thresh, res.map, res.map * 100),
              "", "Set -points flag:", " `-points 101` for MS COCO ",
              " `-points 11` for PascalVOC 2007 (uncomment `difficult` in voc.data) ",
              " `-points 0` (AUC) for ImageNet, PascalVOC 2010-2012, your custom dataset"]
    return lines


def map_notes(res: MapResult) -> list[str]:
    """What the printout's `nan`s mean, for stderr (the printout itself stays the reference's)."""
    notes = []
    if res.tp + res.fp == 0:
        notes.append(f"note: no detection above conf_thresh {res.thresh:g}: precision (and F1) are 0/0, printed as "
                     "nan as the reference prints them")
    elif res.tp == 0 and res.truths:
        notes.append(f"note: no true positive at conf_thresh {res.thresh:g}: F1 is 0/0, printed as nan as the "
                     "reference prints it")
    if res.truths == 0:
        notes.append("note: the labels hold no boxes: recall is 0/0 and every AP is 0 (are the label files where "
                     "the images are, or in a labels/ folder beside images/?)")
    return notes


COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33,
            34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
            62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


def coco_image_id(path: str) -> int:
    """detector.c:get_coco_image_id: the number after the last '_' (else after the last '/') of the path."""
    base = path.replace("\\", "/")
    tail = base[base.rfind("_") + 1:] if "_" in base else base[base.rfind("/") + 1:]
    digits = ""
    for ch in tail:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def _pixels(dets: DetectionArray) -> np.ndarray:
    """Boxes in pixels as get_network_boxes(relative=0) makes them: x, w *= width; y, h *= height (float)."""
    b = dets.boxes.astype(F32, copy=True)
    b[:, [0, 2]] *= F32(dets.width)
    b[:, [1, 3]] *= F32(dets.height)
    return b


def coco_result_lines(dets: DetectionArray, image_id: int, category_ids: Sequence[int]) -> list[str]:
    """detector.c:print_cocos: per (detection, class) with prob > 0, the box as [x, y, w, h] in pixels
    clipped to the image."""
    out = []
    b = _pixels(dets)
    half = F32(2)
    for i in range(len(dets)):
        x, y, w, h = (F32(v) for v in b[i])
        xmin, xmax = max(float(x - w / half), 0.0), min(float(x + w / half), float(dets.width))
        ymin, ymax = max(float(y - h / half), 0.0), min(float(y + h / half), float(dets.height))
        bx, by, bw, bh = xmin, ymin, float(F32(xmax) - F32(xmin)), float(F32(ymax) - F32(ymin))
        for j in np.flatnonzero(dets.probs[i] > 0):
            out.append('{"image_id":%d, "category_id":%d, "bbox":[%s, %s, %s, %s], "score":%s}'
                       % (image_id, category_ids[j], *(json_number(v) for v in (bx, by, bw, bh)),
                          json_number(float(dets.probs[i, j]))))
    return out


def voc_result_lines(dets: DetectionArray, image_name: str) -> list[tuple[int, str]]:
    """detector.c:print_detector_detections: (class, `id prob xmin ymin xmax ymax`) with 1-based pixel
    corners clipped to [1, size]."""
    out = []
    b = _pixels(dets)
    for i in range(len(dets)):
        x, y, w, h = (float(v) for v in b[i])
        xmin, xmax = max(x - w / 2 + 1, 1.0), min(x + w / 2 + 1, float(dets.width))
        ymin, ymax = max(y - h / 2 + 1, 1.0), min(y + h / 2 + 1, float(dets.height))
        for j in np.flatnonzero(dets.probs[i] > 0):
            out.append((int(j), "%s %f %f %f %f %f" % (image_name, float(dets.probs[i, j]), xmin, ymin, xmax, ymax)))
    return out
