#!/usr/bin/env python3
"""Training benchmark on the synthetic shapes set: training images/s, wall time, the mAP@0.5 on the validation split
(the reference's validate_detector_map) and the chart (OUT/backup/chart.png); with --profile, where the time goes.

    python scripts/bench_train.py [--out DIR] [--iterations 600] [--size 128] [--batch 16] [--device cpu|cuda]
        [--cfg cfg/yolov4-tiny.cfg] [--partial N] [--fixed-size] [--amp] [--no-map] [--profile]
        [--reference PATH/TO/darknet [--reference-iterations 30]]

Two runs this project reports (README, "Training"):
- from scratch: yolov4-tiny.cfg adapted to the set's 3 classes (as a Darknet user adapts a cfg), 128 x 128,
  600 iterations, with four mAP runs: speed and the accuracy reached.
- fine-tuning speed against the reference's: `--cfg cfg/yolov3-tiny.cfg --size 224 --partial 15 --fixed-size
  --iterations 100 --no-map --profile --reference PATH/TO/darknet`: yolov3-tiny from `darkcfg partial` of the shipped
  weights at layer 15, batch 16, at 224 x 224 throughout (`--fixed-size` writes random=0 into the adapted cfg: with
  random=1 the reference trains its last 100 iterations, here all of them, at the largest multi-scale size, 352).

--reference runs a darknet binary you built (`darknet detector train DATA CFG WEIGHTS -dont_show -nomap`) on the
same set, cfg ([net] set to the same batch, size and schedule: OUT/<cfg>-reference.cfg), weights and host, before
and after darkcfg's run (a ratio in one run: the host's speed moves between hours), and prints both rates and
their ratio. Its rate is from the seconds it prints per iteration, after its third; a NaN loss it prints is
reported.

The schedule is the cfg's with burn_in and steps shortened to the run (given as [net] overrides, the cfg is not
changed): burn_in=100 (10 with --no-map), steps at 80 % and 90 % of the iterations. The images/s figure counts
iterations after the tenth (the loader's start and the first allocations left out); --profile prints the loop's
phases (loader wait, forward + loss, backward, update, the rest) over the same iterations and then, from
torch.profiler over 5 more steps, the step's operators grouped by kind.
"""
from __future__ import annotations

import argparse
import csv
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple, Optional

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from darkcfg.model.cfg import edit_cfg_text  # noqa: E402
from darkcfg.train.trainer import Trainer, TrainOptions  # noqa: E402

KINDS = (("convolution", ("convolution",)), ("batch norm", ("batch_norm",)),
         ("activation", ("leaky_relu", "mish", "silu", "sigmoid", "tanh", "relu", "softplus")),
         ("pooling", ("pool",)), ("memory (copy, fill, pad, cat)", ("copy_", "fill_", "zero_", "pad", "cat", "clone")),
         ("optimiser", ("Optimizer", "add_", "mul_", "addcmul", "lerp")))


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    return f"{model}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {platform.python_version()}"


def op_profile(opts: TrainOptions, steps: int = 5) -> None:
    """torch.profiler over `steps` training steps of a fresh Trainer (loader outside the timed part): self CPU
    time per step, grouped by operator kind."""
    from torch.profiler import ProfilerActivity, profile

    tr = Trainer(TrainOptions(**{**opts.__dict__, "workers": 0, "progress": False}))
    loader = iter(tr._loader())
    batches = [next(loader) for _ in range(steps + 2)]

    def step(b: dict) -> None:
        tr._iteration(b)
        tr.opt.step(1, 1e-4)

    tr.model.train()
    for b in batches[:2]:
        step(b)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches[2:]:
            step(b)
    per_kind: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        kind = next((k for k, keys in KINDS if any(key in e.key for key in keys)), "loss and the rest")
        per_kind[kind] += e.self_cpu_time_total / 1000 / steps
    total = sum(per_kind.values())
    print(f"operators of one step (torch.profiler, self CPU time, {steps} steps; both threads' work counted once):")
    for kind, ms in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:32s} {ms:7.1f} ms  {ms / total * 100:5.1f} %")


REFERENCE_LINE = re.compile(r"^\s*(\d+): (\S+), \S+ avg loss, \S+ rate, ([0-9.]+) seconds, (\d+) images")
REFERENCE_BUILD = (" Used AVX", " Used FMA & AVX2", " OpenCV isn't used", " GPU isn't used", "OpenCV version")


class ReferenceRun(NamedTuple):
    rate: float  # training images/s over its iterations after the third
    build: list[str]  # the build lines it printed: AVX, OpenCV
    nan_at: Optional[int]  # the first iteration whose loss it printed as NaN


def reference_rate(darknet: Path, data: Path, cfg: Path, weights: Optional[Path], opts: TrainOptions,
                   iterations: int, log: Path) -> ReferenceRun:
    """Train the reference binary `darknet` for `iterations` iterations on the same data, cfg (its [net] set to
    darkcfg's batch, size and schedule) and weights, and read its per-iteration lines. Runs the binary directly, no
    shell; its output goes to `log`."""
    ref_cfg = cfg.with_name(f"{cfg.stem}-reference.cfg")
    net = {**opts.overrides, "batch": str(opts.batch), "subdivisions": "1", "width": str(opts.size[0]),
           "height": str(opts.size[1]), "max_batches": str(iterations)}
    ref_cfg.write_text(edit_cfg_text(cfg.read_text(), str(cfg), {(0, k): v for k, v in net.items()}))
    backup = data.parent / "reference-backup"
    backup.mkdir(exist_ok=True)
    ref_data = data.with_name(f"{data.stem}-reference.data")
    ref_data.write_text(re.sub(r"(?m)^backup\s*=.*$", f"backup = {backup}/", data.read_text()))
    cmd = [str(darknet), "detector", "train", str(ref_data), str(ref_cfg)] + ([str(weights)] if weights else [])
    with open(log, "w") as f:
        done = subprocess.run(cmd + ["-dont_show", "-nomap"], stdout=f, stderr=subprocess.STDOUT, cwd=data.parent)
    text = log.read_text(errors="replace")
    rows = [m for m in (REFERENCE_LINE.match(line) for line in text.splitlines()) if m]
    if done.returncode or len(rows) < 4:
        raise SystemExit(f"{darknet}: exit status {done.returncode}, {len(rows)} iteration lines; see {log}")
    seconds = sum(float(m[3]) for m in rows[3:])
    build = [line.strip() for line in text.splitlines() if line.startswith(REFERENCE_BUILD)]
    nan_at = next((int(m[1]) for m in rows if "nan" in m[2].lower()), None)
    return ReferenceRun((int(rows[-1][4]) - int(rows[2][4])) / seconds, build, nan_at)


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
    ap.add_argument("--partial", type=int, help="start from the first N layers of weights/yolov3-tiny.weights")
    ap.add_argument("--fixed-size", action="store_true", help="random=0 in the adapted cfg: no multi-scale")
    ap.add_argument("--amp", action="store_true", help="bfloat16 mixed precision (darkcfg train --amp)")
    ap.add_argument("--no-map", action="store_true", help="no mAP runs (speed only)")
    ap.add_argument("--profile", action="store_true", help="print where the time goes")
    ap.add_argument("--reference", type=Path, help="a darknet binary: its rate on the same run, before and after")
    ap.add_argument("--reference-iterations", type=int, default=30)
    a = ap.parse_args()
    out = Path(a.out) / f"{Path(a.cfg).stem}-{a.size}"
    cfg = out / f"{Path(a.cfg).stem}-shapes.cfg"
    if not (out / "shapes.data").is_file() or not cfg.is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_shapes_dataset.py"), str(out), "--train",
                        str(a.train_images), "--valid", "100", "--size", str(a.size), "--seed", "0", "--cfg", a.cfg],
                       check=True)
    if a.fixed_size:
        fixed = out / f"{cfg.stem}-fixed.cfg"
        fixed.write_text(re.sub(r"(?m)^random\s*=\s*\S+", "random=0", cfg.read_text()))
        cfg = fixed
    weights = None
    if a.partial:
        weights = out / f"{Path(a.cfg).stem}.conv.{a.partial}"
        shipped = REPO / "weights" / "yolov3-tiny.weights"
        subprocess.run([sys.executable, "-m", "darkcfg", "partial", a.cfg, str(shipped), str(weights), str(a.partial)],
                       check=True, cwd=REPO)
    for f in (out / "backup").glob("*"):
        f.unlink()
    n = a.iterations
    opts = TrainOptions(data=str(out / "shapes.data"), cfg=str(cfg), weights=str(weights) if weights else None,
                        size=(a.size, a.size), batch=a.batch, subdivisions=1, max_batches=n, device=a.device,
                        workers=a.workers, seed=0, calc_map=not a.no_map, map_every=max(1, n // 4), amp=a.amp,
                        backup=str(out / "backup"),
                        overrides={"burn_in": "10" if a.no_map else "100", "steps": f"{int(n * .8)},{int(n * .9)}",
                                   "scales": ".1,.1"})
    print(f"machine: {machine()}")
    ref: list[float] = []
    if a.reference:
        run = reference_rate(a.reference, out / "shapes.data", cfg, weights, opts, a.reference_iterations,
                             out / "reference-1.log")
        ref.append(run.rate)
        print(f"reference {a.reference} ({', '.join(run.build)}): {run.rate:.1f} training images/s"
              f"{f'; its loss was NaN from iteration {run.nan_at}' if run.nan_at else ''}")
    t0 = time.time()
    r = Trainer(opts).run()
    wall = time.time() - t0
    rows = list(csv.DictReader(open(out / "backup" / f"{cfg.stem}.csv")))
    rates = [float(row["images_per_s"]) for row in rows[10:]] or [float(row["images_per_s"]) for row in rows]
    steady = len(rates) * a.batch / sum(a.batch / v for v in rates)
    print(f"{cfg.name}, device {a.device}{', bf16 autocast' if a.amp else ''}: {n} iterations x {a.batch} images at "
          f"{a.size}x{a.size}{'' if a.fixed_size else ' (multi-scale when the cfg has random)'}"
          f"{', from ' + weights.name if weights else ''} in {wall:.0f} s"
          f"{'' if a.no_map else ' (incl. 4 mAP runs)'}: **{steady:.1f} training images/s** after iteration 10 "
          f"(median iteration {statistics.median(rates):.1f})")
    if not a.no_map:
        print(f"final avg loss {r.avg_loss:.3f}; mAP@0.5 on {out / 'valid.txt'}: {r.best_map * 100:.2f} % (best); "
              f"chart: {out / 'backup' / 'chart.png'}")
    else:
        print(f"final avg loss {r.avg_loss:.3f}")
    if a.reference:
        run = reference_rate(a.reference, out / "shapes.data", cfg, weights, opts, a.reference_iterations,
                             out / "reference-2.log")
        ref.append(run.rate)
        mean = statistics.mean(ref)
        print(f"reference before and after: {ref[0]:.1f} and {ref[1]:.1f} training images/s"
              f"{f' (the second run: NaN from iteration {run.nan_at})' if run.nan_at else ''}; darkcfg / reference: "
              f"**{steady / mean:.1f}x** ({steady:.1f} / {mean:.1f})")
    if a.profile:
        its = max(1, r.iteration)
        print(f"the loop's phases over all {its} iterations (ms per iteration):")
        for k, v in r.profile.items():
            print(f"  {k:14s} {v / its * 1000:7.1f}")
        op_profile(opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
