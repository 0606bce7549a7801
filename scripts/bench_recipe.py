#!/usr/bin/env python3
"""Training recipes compared on the synthetic shapes set from scratch: `--recipe darknet` (the reference's) and
`--recipe scaled` (the Scaled-YOLOv4 authors' optimisation), several seeds each on the same iteration budget, one
table of mAP@0.5 and mAP@0.5:0.95 (pycocotools on the same detections) as mean and spread; with --evolve, also
`darkcfg evolve`'s best candidate against its starting cfg on the same budget.

    python scripts/bench_recipe.py [--out DIR] [--iterations 1000] [--seeds 3] [--size 128] [--batch 16]
        [--cfg cfg/yolov4-tiny.cfg] [--recipes darknet scaled scaled+multi-scale] [--recipe-set KEY=VALUE ...]
        [--lr-scale 1] [--evolve GENERATIONS POPULATION ITERATIONS]

The set and the adapted cfg are scripts/make_shapes_dataset.py's (the cfg's schedule shortened to the budget as
bench_train.py does: burn_in 100, steps at 80 % and 90 %). Each run trains into
OUT/<cfg>-<size>/<recipe>-<seed>-it<iterations>-b<batch>/ and is scored
on its _final weights (the recipe's EMA for scaled); finished runs are reused when the script is run again.
`scaled+multi-scale` is `--recipe scaled --multi-scale`; `--recipe-set KEY=VALUE` replaces a value of the scaled
recipe (a field of darkcfg.train.recipe.ScaledRecipe, as it is: no cap applied; e.g. warmup=600 for the authors'
1000 capped at half of a 1200-iteration run, ema_ramp=2000), for the ablations in docs/benchmarks.md.
`--lr-scale K` multiplies the budget cfg's learning_rate by K for every recipe (the runs' names get `-lrxK`), to
compare the recipes at other rates than the cfg's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from darkcfg.train.evolve import trained_score  # noqa: E402
from scripts.bench_train import machine  # noqa: E402


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def set_recipe_values(pairs: list[str]) -> str:
    """Make ScaledRecipe.for_run replace the named values (KEY=VALUE, cast to the field's type) -> a folder tag."""
    import dataclasses

    from darkcfg.train.recipe import ScaledRecipe

    types = {f.name: f.type for f in dataclasses.fields(ScaledRecipe)}
    values = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in types or not value:
            raise SystemExit(f"--recipe-set {pair}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        values[key] = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true")}.get(
            str(types[key]), float)(value)
    if not values:
        return ""
    made = ScaledRecipe.for_run.__func__  # type: ignore[attr-defined]

    def for_run(cls, model, iterations_per_epoch, multi_scale=False):  # noqa: ANN001, ANN202
        return dataclasses.replace(made(cls, model, iterations_per_epoch, multi_scale), **values)

    ScaledRecipe.for_run = classmethod(for_run)  # type: ignore[method-assign]
    return "".join(f"+{k}={v:g}" if isinstance(v, float) else f"+{k}={v}" for k, v in values.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "darkcfg-bench-recipe"))
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--train-images", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cfg", default=str(REPO / "cfg" / "yolov4-tiny.cfg"))
    ap.add_argument("--recipes", nargs="+", default=["darknet", "scaled"],
                    choices=["darknet", "scaled", "scaled+multi-scale"])
    ap.add_argument("--recipe-set", nargs="+", default=[], metavar="KEY=VALUE")
    ap.add_argument("--lr-scale", type=float, default=1.0, help="the cfg's learning_rate times this, every recipe")
    ap.add_argument("--evolve", nargs=3, type=int, metavar=("GENERATIONS", "POPULATION", "ITERATIONS"))
    a = ap.parse_args()
    if not a.lr_scale > 0 or float(f"{a.lr_scale:g}") != a.lr_scale:
        ap.error(f"--lr-scale {a.lr_scale}: expected a number > 0 of at most 6 significant digits")
    out = Path(a.out) / f"{Path(a.cfg).stem}-{a.size}"
    cfg = out / f"{Path(a.cfg).stem}-shapes.cfg"
    if not (out / "shapes.data").is_file() or not cfg.is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_shapes_dataset.py"), str(out), "--train",
                        str(a.train_images), "--valid", "100", "--size", str(a.size), "--seed", "0", "--cfg", a.cfg],
                       check=True)
    n = a.iterations
    lr_tag = "" if a.lr_scale == 1 else f"-lrx{a.lr_scale:g}"
    budget = out / f"{cfg.stem}-budget{n}{lr_tag}.cfg"
    from darkcfg.model.cfg import edit_cfg_text, parse_cfg_text

    edits = {(0, "burn_in"): "100", (0, "max_batches"): str(n), (0, "steps"): f"{int(n * .8)},{int(n * .9)}",
             (0, "scales"): ".1,.1"}
    if a.lr_scale != 1:
        rate = parse_cfg_text(cfg.read_text(), str(cfg))[0].float("learning_rate", 0.001)
        edits[(0, "learning_rate")] = f"{rate * a.lr_scale:g}"
    budget.write_text(edit_cfg_text(cfg.read_text(), str(cfg), edits))
    tag = set_recipe_values(a.recipe_set)
    print(f"machine: {machine()}")
    print(f"set: {out / 'shapes.data'} ({a.train_images} training images, 100 valid), {budget.name}: {n} iterations "
          f"x {a.batch} images at {a.size}x{a.size}, {a.seeds} seeds per recipe")
    table: dict[str, list[tuple[float, float, float]]] = {}
    for recipe in a.recipes:
        for seed in range(a.seeds):
            name = recipe + (tag if recipe != "darknet" else "") + lr_tag
            # a finished run is reused for the same budget only
            folder = out / f"{name.replace('+', '-')}-{seed}-it{n}-b{a.batch}"
            done = folder / "score.json"
            if done.is_file():
                m50, m5095, wall = json.loads(done.read_text())
            else:
                folder.mkdir(parents=True, exist_ok=True)
                t0 = time.time()
                m50, m5095 = trained_score(str(out / "shapes.data"), n, recipe.split("+")[0], (a.size, a.size),
                                           a.batch, 1, a.workers, seed,
                                           multi_scale=recipe.endswith("multi-scale"))(str(budget), folder)
                wall = time.time() - t0
                done.write_text(json.dumps([m50, m5095, wall]))
            table.setdefault(name, []).append((m50, m5095, wall))
            print(f"  {name} seed {seed}: mAP@0.5 {m50 * 100:.2f} %, mAP@0.5:0.95 {m5095 * 100:.2f} % "
                  f"({wall:.0f} s)", flush=True)
    print("\n| recipe | mAP@0.5 (mean +- sd) | mAP@0.5:0.95 (mean +- sd) | runs (mAP@0.5:0.95) | s per run |")
    print("|---|---|---|---|---|")
    for recipe, rows in table.items():
        m50 = [r[0] * 100 for r in rows]
        m5095 = [r[1] * 100 for r in rows]
        print(f"| {recipe} | {statistics.mean(m50):.2f} +- {sd(m50):.2f} | {statistics.mean(m5095):.2f} +- "
              f"{sd(m5095):.2f} | {', '.join(f'{v:.2f}' for v in m5095)} | "
              f"{statistics.mean(r[2] for r in rows):.0f} |")
    for name in table:
        base = "darknet" + lr_tag
        if name != base and base in table:
            gain = statistics.mean(r[1] for r in table[name]) - statistics.mean(r[1] for r in table[base])
            print(f"\n{name} - {base}, mAP@0.5:0.95: {gain * 100:+.2f} points (target: >= +2)")
    if a.evolve:  # from the budget cfg of --iterations (its burn_in and steps): give ITERATIONS the same
        gens, pop, its = a.evolve
        evolve_dir = out / f"evolve-{budget.stem}-{gens}x{pop}x{its}"  # resumes only a search of the same settings
        r = subprocess.run([sys.executable, "-m", "darkcfg", "evolve", str(out / "shapes.data"), str(budget),
                            "--generations", str(gens), "--population", str(pop), "--iterations", str(its),
                            "--size", str(a.size), "--batch", str(a.batch), "--subdivisions", "1",
                            "--out-dir", str(evolve_dir)], cwd=REPO)
        if r.returncode:
            return r.returncode
        from darkcfg.train.evolve import read_results

        rows = read_results(evolve_dir / "evolve.csv")
        start = next(c for c in rows if (c.generation, c.index) == (0, 0))
        best = max(rows, key=lambda c: c.fitness)
        print(f"\nevolve ({gens} generations x {pop} candidates, {its} iterations each): starting cfg fitness "
              f"{start.fitness:.4f} (mAP@0.5 {start.map50 * 100:.2f} %, mAP@0.5:0.95 {start.map50_95 * 100:.2f} %); "
              f"best g{best.generation} c{best.index} {best.fitness:.4f} (mAP@0.5 {best.map50 * 100:.2f} %, "
              f"mAP@0.5:0.95 {best.map50_95 * 100:.2f} %): {evolve_dir / 'best.cfg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
