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

With --classify, a classifier instead (the issue's target: darkcfg's top-1 >= the reference's at >= 3x its
images/s):

    python scripts/bench_train.py --classify [--iterations 1000] [--train-images 2000] [--valid-images 200]
        [--reference PATH/TO/darknet]

trains OUT/shapes-classifier.cfg (scripts/make_shapes_dataset.py --classify: 3 classes, 64x64, batch 32, steps at 70
and 90 % of the iterations) on the generated classification set, with darkcfg (`darkcfg train`, the reference's
recipe) and, given --reference, with `darknet classifier train` on the same set, cfg and schedule (one cfg file for
both, OUT/shapes-classifier-bench.cfg); then each one's top-1 on the valid list (`classifier valid`, the reference's
own for its weights) and the reference's `classifier valid` on darkcfg's weights, which must print darkcfg's
top-1. images/s is the whole run's (iterations x batch / its wall time, start-up and the last save included) for
both, and darkcfg's after its tenth iteration too.

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
import os
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
    """The machine every benchmark prints first: CPU model and count, the GPU if any, threads and versions."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{model} ({os.cpu_count()} logical CPUs){gpu}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


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


CLASSIFIER_LINE = re.compile(r"^(\d+), [0-9.]+: (\S+), (\S+) avg, ")
TOP1 = re.compile(r"^\s*(\d+): top 1: ([0-9.]+), top (\d+): ([0-9.]+)")


class ClassifierRun(NamedTuple):
    images_per_s: float  # iterations x batch / the run's wall seconds
    seconds: float
    final: Path  # the weights at the end
    avg_loss: float
    nan_at: Optional[int] = None


def darknet_top1(darknet: Path, data: Path, cfg: Path, weights: Path, log: Path) -> tuple[float, int]:
    """`darknet classifier valid DATA CFG WEIGHTS`: its last running top-1 and the images it counted."""
    with open(log, "w") as f:
        done = subprocess.run([str(darknet), "classifier", "valid", str(data), str(cfg), str(weights)], stdout=f,
                              stderr=subprocess.STDOUT, cwd=data.parent)
    rows = [m for m in (TOP1.match(line) for line in log.read_text(errors="replace").splitlines()) if m]
    if done.returncode or not rows:
        raise SystemExit(f"{darknet} classifier valid: exit status {done.returncode}; see {log}")
    return float(rows[-1][2]), int(rows[-1][1]) + 1


def darkcfg_top1(data: Path, cfg: Path, weights: Path) -> tuple[float, int]:
    """darkcfg's classifier-valid (validate_classifier_single): the last running top-1 and the images counted."""
    import darkcfg
    from darkcfg.eval.classifier import run_classifier_valid

    run = run_classifier_valid(str(data), darkcfg.load(cfg, weights), batch=16)
    steps = list(run.steps)
    return float(steps[-1].top1), len(steps)


def darknet_classifier_train(darknet: Path, data: Path, cfg: Path, log: Path) -> ClassifierRun:
    """`darknet classifier train DATA CFG -dont_show` from scratch, its backup folder OUT/reference-backup."""
    backup = data.parent / "reference-backup"
    backup.mkdir(exist_ok=True)
    for f in backup.glob("*"):
        f.unlink()
    ref_data = data.with_name(f"{data.stem}-reference.data")
    ref_data.write_text(re.sub(r"(?m)^backup\s*=.*$", f"backup = {backup}/", data.read_text()))
    t0 = time.time()
    with open(log, "w") as f:
        done = subprocess.run([str(darknet), "classifier", "train", str(ref_data), str(cfg), "-dont_show"], stdout=f,
                              stderr=subprocess.STDOUT, cwd=data.parent)
    seconds = time.time() - t0
    rows = [m for m in (CLASSIFIER_LINE.match(line) for line in log.read_text(errors="replace").splitlines()) if m]
    final = backup / f"{cfg.stem}_final.weights"
    if done.returncode or not rows or not final.is_file():
        raise SystemExit(f"{darknet} classifier train: exit status {done.returncode}, {len(rows)} iteration lines; "
                         f"see {log}")
    nan_at = next((int(m[1]) for m in rows if "nan" in m[2].lower()), None)
    return ClassifierRun(int(rows[-1][1]) * _net_value(cfg, "batch") / seconds, seconds, final, float(rows[-1][3]),
                         nan_at)


def _net_value(cfg: Path, key: str) -> int:
    m = re.search(rf"(?m)^\s*{key}\s*=\s*(\d+)", cfg.read_text())
    assert m, f"{cfg}: no {key}="
    return int(m.group(1))


def classify_main(a: argparse.Namespace) -> int:
    """--classify (module docstring)."""
    n = a.iterations or 1000
    out = Path(a.out) / "shapes-classify"
    data = out / "shapes.data"
    train_images = a.train_images or 2000
    if not data.is_file() or len((out / "train.txt").read_text().split()) != train_images or \
            len((out / "valid.txt").read_text().split()) != a.valid_images:
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_shapes_dataset.py"), str(out), "--classify",
                        "--train", str(train_images), "--valid", str(a.valid_images), "--size", "96", "--classes",
                        "3", "--seed", "0"], check=True)
    base = out / "shapes-classifier.cfg"
    cfg = out / "shapes-classifier-bench.cfg"  # the same file for both: the schedule scaled to the iterations
    net = {"max_batches": str(n), "steps": f"{int(n * .7)},{int(n * .9)}", "burn_in": str(max(1, min(50, n // 20)))}
    if a.batch:
        net.update(batch=str(a.batch), subdivisions="1")
    cfg.write_text(edit_cfg_text(base.read_text(), str(base), {(0, k): v for k, v in net.items()}))
    batch = _net_value(cfg, "batch")
    for f in (out / "backup").glob("*"):
        f.unlink()
    print(f"machine: {machine()}")
    print(f"{cfg.name}: 64x64, batch {batch}, {n} iterations ({n * batch / train_images:.1f} epochs of "
          f"{train_images} images), steps {net['steps']}; valid: {a.valid_images} images")
    opts = TrainOptions(data=str(data), cfg=str(cfg), device=a.device, workers=a.workers, seed=0, calc_map=False,
                        backup=str(out / "backup"))
    t0 = time.time()
    r = Trainer(opts).run()
    wall = time.time() - t0
    assert r.final is not None
    rows = list(csv.DictReader(open(out / "backup" / f"{cfg.stem}.csv")))
    rates = [float(row["images_per_s"]) for row in rows[10:]] or [float(row["images_per_s"]) for row in rows]
    steady = len(rates) * batch / sum(batch / v for v in rates)
    ours = ClassifierRun(n * batch / wall, wall, Path(r.final), r.avg_loss)
    top1, counted = darkcfg_top1(data, cfg, ours.final)
    table = [("darkcfg", ours, top1)]
    cross = None
    if a.reference:
        ref = darknet_classifier_train(a.reference, data, cfg, out / "reference-train.log")
        ref_top1, _ = darknet_top1(a.reference, data, cfg, ref.final, out / "reference-valid.log")
        table.append((f"reference {a.reference.name}", ref, ref_top1))
        cross, _ = darknet_top1(a.reference, data, cfg, ours.final, out / "reference-valid-darkcfg-weights.log")
    print(f"| trainer | top-1 on {counted} valid images | images/s (whole run) | wall s | final avg loss |")
    print("|---|---|---|---|---|")
    for name, run, t in table:
        print(f"| {name} | {t * 100:.2f} % | {run.images_per_s:.1f} | {run.seconds:.0f} | {run.avg_loss:.3f}"
              f"{f' (NaN from iteration {run.nan_at})' if run.nan_at else ''} |")
    print(f"darkcfg after its tenth iteration: {steady:.1f} training images/s")
    if a.reference:
        ref = table[1][1]
        print(f"darkcfg / reference: **{ours.images_per_s / ref.images_per_s:.1f}x** images/s; top-1 "
              f"{top1 * 100:.2f} % against {table[1][2] * 100:.2f} %")
        print(f"the reference's classifier valid on darkcfg's {ours.final.name}: top-1 {cross * 100:.2f} % "
              f"({'the same as' if abs(cross - top1) < 5e-7 else 'DIFFERENT from'} darkcfg's classifier-valid)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "darkcfg-bench-train"))
    ap.add_argument("--iterations", type=int, help="default 600 (--classify: 1000)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, help="default 16 (--classify: the cfg's 32)")
    ap.add_argument("--train-images", type=int, help="default 400 (--classify: 2000)")
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
    ap.add_argument("--classify", action="store_true", help="a classifier on the shapes classification set")
    ap.add_argument("--valid-images", type=int, default=200, help="--classify: the valid list's length")
    ap.add_argument("--threads", type=int, help="torch threads, and OMP_NUM_THREADS of the reference (default: "
                    "PyTorch's, the cores; on a busy host 1 can be much faster: each operator waits for every thread)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
    if a.classify:
        return classify_main(a)
    a.iterations, a.batch, a.train_images = a.iterations or 600, a.batch or 16, a.train_images or 400
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
