"""Images/s of `darkcfg detect` on a folder, against OpenCV DNN's Darknet importer in the same run.

    python scripts/bench_detect.py [--cfg cfg/yolov3-tiny.cfg] [--images 64] [--batch 1 8] [--threads N]
                                   [--modes plain fast compiled]

Writes a folder of JPEGs (the shipped sample, flipped, cropped and scaled to 640x480 .. 1280x720), then:
- darkcfg: the whole pipeline of the CLI (read + pre-process in worker threads, batched forward, decode,
  NMS; no output files), per --batch and per mode: plain (`--no-fast`), fast (the default), compiled
  (`--compile`; the first, compiling pass is the warm-up);
- OpenCV DNN: cv2.imread, blobFromImage (its own resize, not the reference's), net.forward, decode of
  its rows and cv2.dnn.NMSBoxes, one image at a time.
Both use the same number of torch/OpenCV threads. The figure people quote is the ratio in the last line.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import darkcfg  # noqa: E402
from darkcfg.infer.detector import Detector  # noqa: E402
from darkcfg.infer.fast import prepare_for_inference  # noqa: E402
from darkcfg.infer.names import default_names  # noqa: E402
from darkcfg.infer.sources import expand_sources, iter_frames  # noqa: E402
from darkcfg.model.loading import default_weights  # noqa: E402


def make_folder(d: Path, n: int) -> list[str]:
    base = cv2.imread(str(REPO / "darkcfg" / "assets" / "grace_hopper.jpg"))
    sizes = [(640, 480), (800, 600), (1024, 768), (1280, 720)]
    for i in range(n):
        im = base[:, ::-1] if i % 2 else base
        im = im[(i * 7) % 80:, (i * 5) % 60:]
        im = cv2.resize(im, sizes[i % len(sizes)])
        cv2.imwrite(str(d / f"{i:05d}.jpg"), im)
    return sorted(str(p) for p in d.glob("*.jpg"))


def bench_darkcfg(model: torch.nn.Module, folder: Path, batch: int) -> tuple[float, int]:
    det = Detector(model, default_names(model), batch=batch)
    sources, _ = expand_sources([str(folder)])
    t0 = time.perf_counter()
    n = boxes = 0
    for r in det.stream(iter_frames(sources)):
        n += 1
        boxes += len(r.detections.best_classes(det.thresh)) if r.detections is not None else 0
    return n / (time.perf_counter() - t0), boxes


def bench_opencv(cfg: Path, weights: Path, files: list[str], size: tuple[int, int]) -> tuple[float, int]:
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    names = net.getUnconnectedOutLayersNames()
    t0 = time.perf_counter()
    boxes = 0
    for f in files:
        im = cv2.imread(f)
        h, w = im.shape[:2]
        net.setInput(cv2.dnn.blobFromImage(im, 1 / 255.0, size, swapRB=True, crop=False))
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in net.forward(names)])
        scores = rows[:, 5:]
        cls = scores.argmax(1)
        conf = scores[np.arange(len(rows)), cls]
        keep = conf > 0.25
        b = rows[keep, :4] * [w, h, w, h]
        xywh = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], 1)
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), conf[keep].tolist(), 0.25, 0.45)
        boxes += len(idx)
    return len(files) / (time.perf_counter() - t0), boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", default=str(REPO / "cfg" / "yolov3-tiny.cfg"))
    ap.add_argument("--weights", default=None, help="default: weights/<cfg name>.weights")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--modes", nargs="+", default=["plain", "fast", "compiled"], choices=["plain", "fast", "compiled"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    weights = Path(args.weights) if args.weights else default_weights(args.cfg)
    model = darkcfg.load(args.cfg, weights)
    size = (model.net.width, model.net.height)
    with tempfile.TemporaryDirectory() as d:
        files = make_folder(Path(d), args.images)
        print(f"{Path(args.cfg).name} {size[0]}x{size[1]}, {len(files)} JPEGs 640x480..1280x720, "
              f"{args.threads} threads, torch {torch.__version__}, OpenCV {cv2.__version__}")
        rates = {}
        for mode in args.modes:
            fresh = model if mode == args.modes[0] else darkcfg.load(args.cfg, weights)  # prepared in place
            m = prepare_for_inference(fresh, fast=mode != "plain", compile=mode == "compiled")
            for b in args.batch:
                bench_darkcfg(m, Path(d), b)  # warm-up (first forward, compiling, page cache)
                rates[mode, b], boxes = bench_darkcfg(m, Path(d), b)
                print(f"darkcfg detect {mode:8s} batch {b:2d}: {rates[mode, b]:7.2f} images/s  ({boxes} boxes)",
                      flush=True)
        cv_rate, cv_boxes = bench_opencv(Path(args.cfg), weights, files, size)
        print(f"OpenCV DNN              batch  1: {cv_rate:7.2f} images/s  ({cv_boxes} boxes)")
        best = max(rates, key=rates.get)
        print(f"ratio darkcfg/OpenCV images/s: {rates[best] / cv_rate:.2f} ({best[0]}, batch {best[1]})")


if __name__ == "__main__":
    main()
