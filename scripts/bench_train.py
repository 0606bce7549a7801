#!/usr/bin/env python3
"""Training benchmark: yolov4-tiny.cfg (adapted to 3 classes like a Darknet user does) from scratch on the
synthetic shapes set, at a reduced input size. Prints training images/s, wall time and the mAP@0.5 on the
validation split (the reference's validate_detector_map), and writes the chart to OUT/backup/chart.png.

    python scripts/bench_train.py [--out DIR] [--iterations 600] [--size 128]
        [--batch 16] [--device cpu|cuda] [--cfg cfg/yolov2-tiny.cfg]

The schedule is the cfg's with burn_in and steps shortened to the run (given with --set, the cfg is not
changed): burn_in=100, steps at 80 % and 90 % of the iterations.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from darkcfg.train.trainer import Trainer, TrainOptions  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "darkcfg-bench-train"))
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--train-images", type=int, default=400)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cfg", default=str(REPO / "cfg" / "yolov4-tiny.cfg"), help="adapted to the set's classes")
    a = ap.parse_args()
    out = Path(a.out)
    cfg = out / f"{Path(a.cfg).stem}-shapes.cfg"
    if not (out / "shapes.data").is_file() or not cfg.is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_shapes_dataset.py"), str(out), "--train",
                        str(a.train_images), "--valid", "100", "--size", str(a.size), "--seed", "0", "--cfg", a.cfg],
                       check=True)
    for f in (out / "backup").glob("*"):
        f.unlink()
    n = a.iterations
    opts = TrainOptions(data=str(out / "shapes.data"), cfg=str(cfg), size=(a.size, a.size),
                        batch=a.batch, subdivisions=1, max_batches=n, device=a.device, workers=a.workers, seed=0,
                        calc_map=True, map_every=max(1, n // 4),
                        overrides={"burn_in": "100", "steps": f"{int(n * .8)},{int(n * .9)}", "scales": ".1,.1"})
    t0 = time.time()
    r = Trainer(opts).run()
    wall = time.time() - t0
    images = n * a.batch
    print(f"{cfg.name}, device {a.device}, torch threads {torch.get_num_threads()}: {n} iterations x {a.batch} "
          f"images at "
          f"{a.size}x{a.size} in {wall:.0f} s (incl. {4} mAP runs): {images / wall:.1f} training images/s")
    print(f"final avg loss {r.avg_loss:.3f}; mAP@0.5 on {out / 'valid.txt'}: {r.best_map * 100:.2f} % (best); "
          f"chart: {out / 'backup' / 'chart.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
