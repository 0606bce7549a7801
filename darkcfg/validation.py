"""Running a network over a validation list: the image loop of `detector map` (and later `valid`).

Images go through the batched, streaming Detector (thresh .005, nms .45, the cfg's NMS kind and
letter_box, as validate_detector_map), and their labels are read by the reference's path rule.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from darkcfg.coco import CocoCollector
from darkcfg.dataset import DataError, label_path, read_labels
from darkcfg.detector import Detector, Result
from darkcfg.evaluate import MapAccumulator, MapResult
from darkcfg.image import read_bgr
from darkcfg.progress import Progress
from darkcfg.sources import Frame, Source

MAP_THRESH, MAP_NMS = 0.005, 0.45


def frames_for(paths: Sequence[str], loader: Callable[[str], np.ndarray] = read_bgr) -> Iterator[Frame]:
    """Frames reading each path with `loader` ((H, W, 3) uint8 BGR)."""
    for p in paths:
        yield Frame(Source(p), None, lambda p=p: loader(p))


def check_paths(paths: Sequence[str], what: str) -> None:
    """Every image of a validation list must exist: one line naming the first missing one (and the count)."""
    if not paths:
        raise DataError(f"{what}: the list is empty: nothing to validate on")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{what}: image {missing[0]} does not exist{more}")


def compute_map(model: torch.nn.Module, paths: Sequence[str], names: Sequence[str], iou_thresh: float = 0.5,
                thresh: float = 0.25, points: int = 0, batch: int = 1, difficult: Optional[Sequence[str]] = None,
                loader: Callable[[str], np.ndarray] = read_bgr, progress: bool = True,
                coco: Optional[CocoCollector] = None) -> MapResult:
    """validate_detector_map over `paths` (labels by label_path; `difficult` is a parallel list whose
    labels are the difficult truths). With `coco`, the same detections and truths are collected for
    pycocotools as well."""
    det = Detector(model, names, MAP_THRESH, MAP_NMS, None, batch)
    acc = MapAccumulator(det.classes, iou_thresh, thresh)
    index = {p: k for k, p in enumerate(paths)}
    with Progress(len(paths), "map", unit="img", enabled=progress) as bar:
        for r in det.stream(frames_for(paths, loader)):
            acc_add(acc, r, det.classes, difficult, index, coco)
            bar.update(1)
    return acc.result(points)


def acc_add(acc: MapAccumulator, r: Result, classes: int, difficult: Optional[Sequence[str]],
            index: dict[str, int], coco: Optional[CocoCollector] = None) -> None:
    if r.error is not None or r.detections is None:
        raise DataError(r.error or f"{r.frame.name}: cannot read")
    path = r.frame.source.path
    truths = read_labels(label_path(path), classes)
    dif = read_labels(label_path(difficult[index[path]]), classes) if difficult else None
    acc.add(r.detections, truths, dif)
    if coco is not None:
        coco.add(path, r.detections, truths)


VALID_THRESH, VALID_NMS = 0.001, 0.6


def write_valid(model: torch.nn.Module, paths: Sequence[str], names: Sequence[str], kind: str, out_dir: Path,
                batch: int = 1, prefix: str = "comp4_det_test_", progress: bool = True) -> list[Path]:
    """detector.c:validate_detector (thresh .001, nms .6): `kind` coco -> <out_dir>/coco_results.json with
    COCO category ids for 80-class models (else class id + 1); voc (or anything else) ->
    <out_dir>/<prefix><class name>.txt per class. Files are written beside and renamed into place."""
    from darkcfg.outputs import write_file
    from darkcfg.report import COCO_IDS, coco_image_id, coco_result_lines, voc_result_lines

    det = Detector(model, names, VALID_THRESH, VALID_NMS, None, batch)
    coco = kind == "coco"
    cats = COCO_IDS if det.classes == 80 else tuple(range(1, det.classes + 1))
    json_lines: list[str] = []
    per_class: list[list[str]] = [[] for _ in range(det.classes)]
    with Progress(len(paths), "valid", unit="img", enabled=progress) as bar:
        for r in det.stream(frames_for(paths)):
            if r.error is not None or r.detections is None:
                raise DataError(r.error or f"{r.frame.name}: cannot read")
            path = r.frame.source.path
            if coco:
                json_lines += coco_result_lines(r.detections, coco_image_id(path), cats)
            else:
                for c, line in voc_result_lines(r.detections, Path(path).stem):
                    per_class[c].append(line)
            bar.update(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    if coco:
        dest = out_dir / "coco_results.json"
        write_file(dest, ("[\n" + ",\n".join(json_lines) + "\n]\n").encode())
        return [dest]
    written = []
    for c, lines in enumerate(per_class):
        dest = out_dir / f"{prefix}{names[c]}.txt"
        write_file(dest, "".join(line + "\n" for line in lines).encode())
        written.append(dest)
    return written
