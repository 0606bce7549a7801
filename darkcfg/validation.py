"""Running a network over a validation list: the image loop of `detector map` (and later `valid`).

Images go through the batched, streaming Detector (thresh .005, nms .45, the cfg's NMS kind and
letter_box, as validate_detector_map), and their labels are read by the reference's path rule.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Callable, Optional

import numpy as np
import torch

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
    import os

    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{what}: image {missing[0]} does not exist{more}")


def compute_map(model: torch.nn.Module, paths: Sequence[str], names: Sequence[str], iou_thresh: float = 0.5,
                thresh: float = 0.25, points: int = 0, batch: int = 1, difficult: Optional[Sequence[str]] = None,
                loader: Callable[[str], np.ndarray] = read_bgr, progress: bool = True) -> MapResult:
    """validate_detector_map over `paths` (labels by label_path; `difficult` is a parallel list whose
    labels are the difficult truths)."""
    det = Detector(model, names, MAP_THRESH, MAP_NMS, None, batch)
    acc = MapAccumulator(det.classes, iou_thresh, thresh)
    index = {p: k for k, p in enumerate(paths)}
    with Progress(len(paths), "map", unit="img", enabled=progress) as bar:
        for r in det.stream(frames_for(paths, loader)):
            acc_add(acc, r, det.classes, difficult, index)
            bar.update(1)
    return acc.result(points)


def acc_add(acc: MapAccumulator, r: Result, classes: int, difficult: Optional[Sequence[str]],
            index: dict[str, int]) -> None:
    if r.error is not None or r.detections is None:
        raise DataError(r.error or f"{r.frame.name}: cannot read")
    path = r.frame.source.path
    truths = read_labels(label_path(path), classes)
    dif = read_labels(label_path(difficult[index[path]]), classes) if difficult else None
    acc.add(r.detections, truths, dif)
