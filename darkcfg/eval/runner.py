"""Running a network over a validation list: `detector map` (`compute_map`, `run_map`) and `detector
valid` (`write_valid`, `run_valid`).

Images go through the batched, streaming Detector (thresh .005, nms .45, the cfg's NMS kind and
letter_box, as validate_detector_map), and their labels are read by the reference's path rule. With `tiles`
(a `darkcfg.infer.tiles.Tiling`) each image is detected in tiles as `detect --tiles` does; map merges seams
among the detections above its --thresh (`Tiling.merge_thresh`), so its counts at that threshold are the
boxes `detect --tiles --thresh` prints.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from darkcfg.data.dataset import DataConfig, DataError, image_list, label_file, open_data, read_labels
from darkcfg.data.images import read_bgr
from darkcfg.eval.coco import CocoCollector, read_coco_gt
from darkcfg.eval.metrics import MapAccumulator, MapResult
from darkcfg.eval.printout import COCO_IDS, coco_image_id, coco_result_lines, voc_result_lines
from darkcfg.files import write_text
from darkcfg.infer.detector import Detector, Result
from darkcfg.infer.names import names_for
from darkcfg.infer.sources import Frame, Source
from darkcfg.infer.tiles import Tiling
from darkcfg.progress import Progress

PathLike = Union[str, Path]

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
                coco: Optional[CocoCollector] = None, record: Optional[list] = None,
                tiles: Optional[Tiling] = None) -> MapResult:
    """validate_detector_map over `paths` (labels by label_file; `difficult` is a parallel list whose
    labels are the difficult truths). With `coco`, the same detections and truths are collected for
    pycocotools as well; with `record` (a list), each image's (path, DetectionArray, ImageOutcome) is appended.
    `tiles`: detect in tiles (its merge_thresh, when None, becomes `thresh`)."""
    if tiles is not None and tiles.merge_thresh is None:
        tiles = tiles.with_merge_thresh(thresh)
    det = Detector(model, names, MAP_THRESH, MAP_NMS, None, batch, tiles)
    acc = MapAccumulator(det.classes, iou_thresh, thresh, record=record is not None)
    index = {p: k for k, p in enumerate(paths)}
    with Progress(len(paths), "map", unit="img", enabled=progress) as bar:
        for r in det.stream(frames_for(paths, loader)):
            acc_add(acc, r, det.classes, difficult, index, coco)
            if record is not None and r.detections is not None:
                record.append((r.frame.source.path, r.detections, acc.outcomes[-1]))
            bar.update(1)
    return acc.result(points)


def acc_add(acc: MapAccumulator, r: Result, classes: int, difficult: Optional[Sequence[str]],
            index: dict[str, int], coco: Optional[CocoCollector] = None) -> None:
    if r.error is not None or r.detections is None:
        raise DataError(r.error or f"{r.frame.name}: cannot read")
    path = r.frame.source.path
    truths = read_labels(label_file(path), classes)
    dif = read_labels(label_file(difficult[index[path]]), classes) if difficult else None
    acc.add(r.detections, truths, dif)
    if coco is not None:
        coco.add(path, r.detections, truths)


VALID_THRESH, VALID_NMS = 0.001, 0.6


def write_valid(model: torch.nn.Module, paths: Sequence[str], names: Sequence[str], kind: str, out_dir: Path,
                batch: int = 1, prefix: str = "comp4_det_test_", progress: bool = True,
                tiles: Optional[Tiling] = None) -> list[Path]:
    """detector.c:validate_detector (thresh .001, nms .6): `kind` coco -> <out_dir>/coco_results.json with
    COCO category ids for 80-class models (else class id + 1); voc (or anything else) ->
    <out_dir>/<prefix><class name>.txt per class. Files are written beside and renamed into place. `tiles`:
    detect in tiles (seams merged among all the detections written, unless its merge_thresh says otherwise)."""
    det = Detector(model, names, VALID_THRESH, VALID_NMS, None, batch, tiles)
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
        write_text(dest, "[\n" + ",\n".join(json_lines) + "\n]\n")
        return [dest]
    written = []
    for c, lines in enumerate(per_class):
        dest = out_dir / f"{prefix}{names[c]}.txt"
        write_text(dest, "".join(line + "\n" for line in lines))
        written.append(dest)
    return written


def validation_list(data: PathLike) -> tuple[DataConfig, list[str]]:
    """A .data file (or a folder of images) and its validation images (each checked to exist)."""
    dc = open_data(data)
    paths = image_list(dc.valid_list())
    check_paths(paths, dc.valid_list())
    return dc, paths


@dataclass
class MapRun:
    """What `run_map` measured: the reference's numbers, COCO's 12 (with `coco`), the pictures written."""

    result: MapResult
    names: list[str]
    coco_stats: Optional[np.ndarray] = None
    plots: list[Path] = field(default_factory=list)
    report: Optional[Path] = None  # the error-analysis page
    analysis: Optional[object] = None  # its darkcfg.eval.analysis.Analysis


def run_map(data: PathLike, model: torch.nn.Module, names: Optional[PathLike] = None, iou_thresh: float = 0.5,
            thresh: float = 0.25, points: int = 0, batch: int = 1, coco: bool = False,
            coco_gt: Optional[PathLike] = None, plots: Optional[PathLike] = None, progress: bool = True,
            report: Optional[PathLike] = None, tiles: Optional[Tiling] = None) -> MapRun:
    """`darknet detector map DATA CFG WEIGHTS` with `model`: mAP over DATA's valid list (labels by the
    reference's rule; `difficult=` names a parallel list of difficult truths). `names` overrides names=.
    With `coco`/`coco_gt` also pycocotools' metrics; with `plots` a folder for pr_curves.png and
    confusion_matrix.png; with `report` a folder for the error-analysis page (darkcfg.eval.html_report);
    with `tiles`, detected in tiles (`compute_map`)."""
    dc, paths = validation_list(data)
    difficult = image_list(dc.difficult) if dc.difficult else None
    if difficult is not None and len(difficult) != len(paths):
        raise DataError(f"{dc.difficult}: {len(difficult)} lines, expected one per image of {dc.valid_list()} "
                        f"({len(paths)})")
    class_names = names_for(model, names or dc.names)
    collector = CocoCollector(class_names, read_coco_gt(coco_gt) if coco_gt else None) if coco or coco_gt else None
    record: Optional[list] = [] if report else None
    res = compute_map(model, paths, class_names, iou_thresh, thresh, points, batch, difficult, progress=progress,
                      coco=collector, record=record, tiles=tiles)
    run = MapRun(res, class_names)
    if report and record is not None:
        from darkcfg.eval.analysis import analyse
        from darkcfg.eval.html_report import write_report
        from darkcfg.eval.printout import map_lines

        net = model.net
        run.analysis = analyse(res, class_names, [r[2] for r in record], [(r[0], r[1]) for r in record], net.width,
                               net.height, bool(net.letter_box))
        run.report = write_report(Path(report), run.analysis, res, class_names, map_lines(res, class_names),
                                  f"{model.cfg_file} on {dc.valid_list()}")
    if plots:
        from darkcfg.eval.plots import confusion_matrix, pr_curves

        assert res.confusion is not None
        run.plots = [Path(plots) / "pr_curves.png", Path(plots) / "confusion_matrix.png"]
        pr_curves(res, class_names, run.plots[0])
        confusion_matrix(res.confusion, class_names, run.plots[1])
    if collector is not None:
        run.coco_stats = collector.evaluate()
    return run


def run_valid(data: PathLike, model: torch.nn.Module, names: Optional[PathLike] = None, kind: Optional[str] = None,
              out: Optional[PathLike] = None, batch: int = 1, progress: bool = True,
              tiles: Optional[Tiling] = None) -> tuple[int, list[Path]]:
    """`darknet detector valid DATA CFG WEIGHTS`: (images, files written) of `write_valid` over DATA's valid
    list, in `kind` (default eval= of DATA) into `out` (default results= of DATA), in tiles with `tiles`."""
    dc, paths = validation_list(data)
    class_names = names_for(model, names or dc.names)
    files = write_valid(model, paths, class_names, kind or dc.eval, Path(out or dc.results), batch, progress=progress,
                        tiles=tiles)
    return len(paths), files
