#!/usr/bin/env python3
"""Tiled detection of small objects in large images: AP50 by object size, duplicates at tile seams and time per
image, for whole-image detection, darkcfg's tiles and SAHI's slicing around the same darkcfg model, in one run.

    python scripts/bench_train.py --out bench-tiles/train --iterations 1200 --size 128 --train-images 800
    python scripts/make_large_set.py bench-tiles/large --images 12 --seam-tile 128
    python scripts/bench_tiles.py --cfg bench-tiles/train/yolov4-tiny-128/yolov4-tiny-shapes.cfg \\
        --weights bench-tiles/train/yolov4-tiny-128/backup/yolov4-tiny-shapes_final.weights \\
        --data bench-tiles/large/large.data [--size 128] [--tile N] [--overlap 0.2] [--thresh 0.05]
        [--sahi-batch 64] [--no-sahi] [--images N] [--device cpu|cuda]

The model is a yolov4-tiny trained on scripts/make_shapes_dataset.py's set (bench_train.py; its weights stay
under /tmp), run at --size (the size it was trained at) with darkcfg's inference fast path; the images are
make_large_set.py's (1920x1080 to 3840x2160, many 10-30 px shapes, some across tile seams, and a few large
ones). Contenders, each over every image, file to detections:
- whole image: `darkcfg detect` as it is (each image resized to the network);
- darkcfg tiles: `darkcfg detect --tiles <tile>px --tile-overlap <overlap> --tiles-full` (the Detector's
  batched stream: each image's tiles in one forward; seams merged, then the cfg's NMS), and the same without
  the seam merge (`--seam-ios 1`), which shows what the merge does;
- SAHI (`pip install sahi`, optional): `sahi.predict.get_sliced_prediction` with a SAHI DetectionModel that runs
  the same darkcfg Detector on each slice (its pre-processing, decode and NMS), the same slice size and overlap,
  its full-image pass (perform_standard_pred), its default merge (GREEDYNMM, IOS > 0.5), at its default
  batch_size 1 (a slice per call) and at --sahi-batch (its batched path, the slices through one Detector call).
All at one detection threshold (--thresh; SAHI's switch to NMS below 0.1 turned off so that its own merge runs).

Measured: AP50 (pycocotools, 101-point, IoU 0.5, up to 10000 detections per image) over all objects and by
COCO area (small < 32^2 pixels, medium, large >= 96^2); duplicates: for each object, the detections above 0.25
of its class that lie mostly on it (intersection over the smaller box > 0.5) beyond the first, summed over the
objects crossing an inner edge of darkcfg's tiles ("at seams") and over all; time per image (wall time, file
reading included, after one warm-up call of each contender; the contenders take turns image by image, so that
the load of a shared machine weighs on all of them alike). The machine is printed first.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import darkcfg  # noqa: E402
from darkcfg.data.dataset import image_list, label_file, open_data, read_labels  # noqa: E402
from darkcfg.data.images import read_bgr  # noqa: E402
from darkcfg.eval.runner import frames_for  # noqa: E402
from darkcfg.infer.detections import DetectionArray  # noqa: E402
from darkcfg.infer.detector import Detector  # noqa: E402
from darkcfg.infer.fast import prepare_for_inference  # noqa: E402
from darkcfg.infer.tiles import Tiling, tile_plan  # noqa: E402
from scripts.bench_train import machine  # noqa: E402

Dets = list[tuple[int, float, float, float, float, float]]  # (class, score, x0, y0, x1, y1) pixels


def pixel_dets(d: DetectionArray, thresh: float) -> Dets:
    return [(t.class_id, t.confidence, *t.box) for t in d.to_list(thresh)]


def darkcfg_runner(det: Detector) -> Callable[[str], Dets]:
    """One image file through the Detector's stream (as `darkcfg detect` runs it: loading and cutting into tiles
    in a worker thread, the tiles in one forward) -> its detections."""
    def one(path: str) -> Dets:
        return [d for r in det.stream(frames_for([path])) if r.detections is not None
                for d in pixel_dets(r.detections, det.thresh)]
    return one


def sahi_model(det: Detector, batched: bool):  # noqa: ANN201 - a sahi DetectionModel
    """A SAHI DetectionModel running `det` (pre-processing, network, decode, NMS) on each slice it is given."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    class DarkcfgModel(DetectionModel):
        def set_model(self, model: Detector, **kwargs: object) -> None:
            self.model = model

        def perform_inference(self, image: np.ndarray) -> None:  # (H, W, 3) uint8 RGB: one call per slice
            self._run([image])

        def perform_batch_inference(self, images: list[np.ndarray]) -> None:
            if batched:  # the slices of a batch through one Detector call
                self._batch_images = None
                self._run(images)
            else:  # SAHI's default: deferred to one perform_inference per slice
                super().perform_batch_inference(images)

        def _run(self, images: list[np.ndarray]) -> None:
            ims = [self.model.to_image(np.ascontiguousarray(im[:, :, ::-1])) for im in images]
            self._original_predictions = self.model.run_batch([self.model.prepare(im) for im in ims],
                                                               [(im.shape[2], im.shape[1]) for im in ims])
            self._original_shapes = [im.shape for im in images]

        def _create_object_prediction_list_from_original_predictions(self, shift_amount_list=None,
                                                                     full_shape_list=None) -> None:
            from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

            shifts = fix_shift_amount_list(shift_amount_list or [[0, 0]])
            shapes = fix_full_shape_list(full_shape_list)
            per_image = []
            for k, d in enumerate(self._original_predictions):
                shift = [int(v) for v in shifts[k]]
                full = None if shapes is None else [int(v) for v in shapes[k]]
                preds = []
                for t in d.to_list(self.confidence_threshold):
                    x0, y0, x1, y1 = (max(0.0, v) for v in t.box)
                    x1, y1 = min(float(d.width), x1), min(float(d.height), y1)
                    if x1 <= x0 or y1 <= y0:
                        continue
                    preds.append(ObjectPrediction([x0, y0, x1, y1], t.class_id, t.name, None, t.confidence, shift,
                                                  full))
                per_image.append(preds)
            self._object_prediction_list_per_image = per_image

    names = {str(i): n for i, n in enumerate(det.names)}
    return DarkcfgModel(model=det, confidence_threshold=det.thresh, category_mapping=names, device="cpu")


def sahi_runner(det: Detector, tile: int, overlap: float, batch: int) -> Callable[[str], Dets]:
    """One image file through SAHI's get_sliced_prediction around `det` -> its detections."""
    from sahi.predict import get_sliced_prediction

    model = sahi_model(det, batch > 1)

    def one(path: str) -> Dets:
        with contextlib.redirect_stdout(io.StringIO()):
            r = get_sliced_prediction(path, model, slice_height=tile, slice_width=tile, overlap_height_ratio=overlap,
                                      overlap_width_ratio=overlap, perform_standard_pred=True,
                                      postprocess_type="GREEDYNMM", postprocess_match_metric="IOS",
                                      postprocess_match_threshold=0.5, verbose=0, force_postprocess_type=True,
                                      batch_size=batch)
        return [(p.category.id, p.score.value, *p.bbox.to_xyxy()) for p in r.object_prediction_list]
    return one


def run_all(contenders: list[tuple[str, Callable[[str], Dets]]], paths: list[str]
            ) -> tuple[list[list[Dets]], list[float]]:
    """Every contender on every image, round-robin image by image (a shared machine's load then weighs on all
    alike), after one warm-up call each on the first image: per contender, its detections per image and its
    mean seconds per image."""
    for _, fn in contenders:
        fn(paths[0])
    dets: list[list[Dets]] = [[] for _ in contenders]
    seconds = [0.0] * len(contenders)
    for p in paths:
        for k, (_, fn) in enumerate(contenders):
            t0 = time.perf_counter()
            dets[k].append(fn(p))
            seconds[k] += time.perf_counter() - t0
    return dets, [t / len(paths) for t in seconds]


def ap50_by_size(truths: list[np.ndarray], sizes: list[tuple[int, int]], dets: list[Dets],
                 classes: int) -> dict[str, float]:
    """pycocotools AP at IoU 0.5 (101-point), all objects and by COCO area range, up to 10000 detections/image."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results = [], [], []
    for i, ((w, h), t, d) in enumerate(zip(sizes, truths, dets)):
        images.append({"id": i + 1, "width": w, "height": h})
        for c, cx, cy, bw, bh in t.astype(np.float64):
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
        results += [{"image_id": i + 1, "category_id": c + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s}
                    for c, s, x0, y0, x1, y1 in d]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": k + 1} for k in range(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        e = COCOeval(gt, dt, "bbox")
        e.params.iouThrs = np.array([0.5])
        e.params.maxDets = [10000]
        e.evaluate()
        e.accumulate()
    p = e.eval["precision"][0, :, :, :, 0]  # (recall, class, area)
    out = {}
    for a, name in enumerate(("all", "small", "medium", "large")):
        v = p[:, :, a]
        have = (v > -1).any(0)  # classes with objects of that size
        out[name] = float(np.mean(np.where(v[:, have] > -1, v[:, have], 0))) if have.any() else float("nan")
    return out


def crosses_seam(box: np.ndarray, tiles: list) -> bool:
    """Whether a pixel box (x0, y0, x1, y1) crosses an inner edge of the tiles (the full pass not counted)."""
    x0, y0, x1, y1 = box
    for t in tiles:
        for e in (t.x0, t.x1):
            if x0 < e < x1 and t.y0 < y1 and y0 < t.y1:
                return True
        for e in (t.y0, t.y1):
            if y0 < e < y1 and t.x0 < x1 and x0 < t.x1:
                return True
    return False


def duplicates(truths: list[np.ndarray], sizes: list[tuple[int, int]], dets: list[Dets], tiling: Tiling,
               net: tuple[int, int], thresh: float = 0.25) -> tuple[int, int, int]:
    """(duplicates at seam objects, seam objects, duplicates over all objects) at `thresh`."""
    seam_dups = seam_objects = all_dups = 0
    for (w, h), t, d in zip(sizes, truths, dets):
        tiles = tile_plan(w, h, Tiling(tiling.grid, tiling.size, tiling.overlap), *net)
        db = np.array([[c, x0, y0, x1, y1] for c, s, x0, y0, x1, y1 in d if s > thresh]).reshape(-1, 5)
        for c, cx, cy, bw, bh in t.astype(np.float64):
            g = np.array([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
            mine = db[db[:, 0] == c, 1:]
            iw = np.clip(np.minimum(mine[:, 2], g[2]) - np.maximum(mine[:, 0], g[0]), 0, None)
            ih = np.clip(np.minimum(mine[:, 3], g[3]) - np.maximum(mine[:, 1], g[1]), 0, None)
            smaller = np.minimum((mine[:, 2] - mine[:, 0]) * (mine[:, 3] - mine[:, 1]), (g[2] - g[0]) * (g[3] - g[1]))
            n = int((iw * ih > 0.5 * np.maximum(smaller, 1e-9)).sum())
            all_dups += max(0, n - 1)
            if crosses_seam(g, tiles):
                seam_objects += 1
                seam_dups += max(0, n - 1)
    return seam_dups, seam_objects, all_dups


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cfg", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True, help="make_large_set.py's .data file")
    ap.add_argument("--size", type=int, default=128, help="network input size (the trained one)")
    ap.add_argument("--tile", type=int, default=None, help="tile (slice) size in pixels; default: --size (auto)")
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--thresh", type=float, default=0.05, help="detection threshold of every contender")
    ap.add_argument("--sahi-batch", type=int, default=64, help="SAHI's batch_size for its batched row")
    ap.add_argument("--no-sahi", action="store_true")
    ap.add_argument("--images", type=int, default=None, help="the first N images only")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    tile = a.tile or a.size
    dc = open_data(a.data)
    paths = image_list(dc.valid_list())[: a.images]
    classes = dc.classes or 1
    truths = [read_labels(label_file(p), classes) for p in paths]
    sizes = [tuple(reversed(read_bgr(p).shape[:2])) for p in paths]
    model = prepare_for_inference(darkcfg.load(a.cfg, a.weights, size=a.size).to(a.device))
    names = [str(i) for i in range(classes)]
    tiling = Tiling(size=(tile, tile), overlap=a.overlap, full=True)
    net = (model.net.width, model.net.height)
    n_tiles = [len(tile_plan(w, h, tiling, *net)) for w, h in sizes]
    print(f"machine: {machine()}")
    print(f"model: {Path(a.cfg).name} at {a.size}x{a.size}, {Path(a.weights).name}, device {a.device}; images: "
          f"{len(paths)} of {dc.valid_list()} ({', '.join(sorted({f'{w}x{h}' for w, h in sizes}))}), "
          f"{sum(len(t) for t in truths)} objects; tiles {tile}px overlap {a.overlap:g} + full pass: "
          f"{min(n_tiles)}..{max(n_tiles)} network inputs per image; threshold {a.thresh:g}", flush=True)
    contenders: list[tuple[str, Callable[[str], Dets]]] = [
        ("whole image (detect)", darkcfg_runner(Detector(model, names, a.thresh))),
        (f"darkcfg --tiles {tile}px --tiles-full", darkcfg_runner(Detector(model, names, a.thresh, tiles=tiling))),
        ("darkcfg tiles, no seam merge", darkcfg_runner(Detector(model, names, a.thresh,
                                                                 tiles=replace(tiling, seam_ios=1.0)))),
    ]
    if not a.no_sahi:
        try:
            import sahi
        except ImportError:
            print("SAHI: not installed (pip install sahi); its rows are left out")
        else:
            det = Detector(model, names, a.thresh)
            contenders += [(f"SAHI {sahi.__version__} batch_size 1", sahi_runner(det, tile, a.overlap, 1)),
                           (f"SAHI {sahi.__version__} batch_size {a.sahi_batch}",
                            sahi_runner(det, tile, a.overlap, a.sahi_batch))]
    all_dets, seconds = run_all(contenders, paths)
    print(f"\n| {'contender':38s} | AP50 all | small | medium | large | dup. at seams | dup. all | s/image |")
    print(f"|{'-' * 40}|---------:|------:|-------:|------:|--------------:|---------:|--------:|")
    for (label, _), dets, sec in zip(contenders, all_dets, seconds):
        ap50 = ap50_by_size(truths, sizes, dets, classes)
        seam_dups, seam_objects, all_dups = duplicates(truths, sizes, dets, tiling, net)
        print(f"| {label:38s} | {ap50['all'] * 100:8.1f} | {ap50['small'] * 100:5.1f} | {ap50['medium'] * 100:6.1f} "
              f"| {ap50['large'] * 100:5.1f} | {seam_dups:5d} of {seam_objects:4d} | {all_dups:8d} | "
              f"{sec:7.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
