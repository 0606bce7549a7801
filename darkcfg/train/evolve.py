"""`darkcfg evolve DATA CFG`: a genetic search over the training hyperparameters, as the Scaled-YOLOv4 authors
chose theirs ("with k-means and genetic algorithms"; their train.py --evolve), on an unchanged Darknet cfg.

The genes are cfg options (`GENES`: [net] learning_rate, momentum, decay, hue, saturation, exposure, mosaic and
each [yolo]'s jitter, iou_normalizer, obj_normalizer, cls_normalizer, iou_thresh), so a candidate is a cfg text
and the best one is a cfg the reference trains. Candidate 0 is the starting cfg as it is; every other candidate
takes a parent among the 5 fittest so far (drawn with weights fitness - min + 1e-6) and mutates it as the
authors do: each gene with probability 0.8 by a factor 1 + gain x N(0, 1) x U(0, 1) x 0.2 (clipped to 0.3..3),
then clipped to the gene's range. Each candidate trains `iterations` iterations from scratch (or from `weights`)
with the chosen recipe and is scored on the valid list: fitness = 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 (their weights;
mAP@0.5:0.95 by pycocotools on the same detections).

Everything lands in the output folder: `evolve.csv` (one row per finished candidate: generation, candidate,
fitness, the two mAPs, the genes), each candidate's cfg and training folder, `evolve.png` (fitness against each
gene) and `best.cfg`. A run resumes from the CSV: finished candidates are not repeated (the draws are seeded from
--seed, generation and candidate, so a resumed run draws what the uninterrupted one would have).
"""
from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from darkcfg.errors import DarkcfgError
from darkcfg.files import write_bytes, write_text
from darkcfg.model.cfg import edit_cfg_text, parse_cfg_text, read_cfg

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Gene:
    """One hyperparameter: a [net] key (`net`) or a key of every [yolo]-like head section, its range, whether it
    is an integer flag, and its mutation gain."""

    key: str
    low: float
    high: float
    net: bool = True
    gain: float = 1.0
    integer: bool = False


GENES = (Gene("learning_rate", 1e-5, 1e-1), Gene("momentum", 0.6, 0.98, gain=0.3), Gene("decay", 0.0, 1e-3),
         Gene("hue", 0.0, 0.1), Gene("saturation", 1.0, 2.0), Gene("exposure", 1.0, 2.0),
         Gene("mosaic", 0, 1, integer=True), Gene("jitter", 0.0, 0.5, net=False),
         Gene("iou_normalizer", 0.02, 1.0, net=False), Gene("obj_normalizer", 0.2, 4.0, net=False),
         Gene("cls_normalizer", 0.2, 4.0, net=False), Gene("iou_thresh", 0.1, 1.0, net=False))
DEFAULTS = {"learning_rate": 0.001, "momentum": 0.9, "decay": 0.0001, "hue": 0.0, "saturation": 1.0,
            "exposure": 1.0, "mosaic": 0, "jitter": 0.2, "iou_normalizer": 0.75, "obj_normalizer": 1.0,
            "cls_normalizer": 1.0, "iou_thresh": 1.0}  # the reference's defaults when the cfg has no value
FITNESS = (0.1, 0.9)  # weights of mAP@0.5 and mAP@0.5:0.95


def _head_sections(text: str, file: str) -> list[tuple[int, tuple[str, ...]]]:
    """(position, the keys it takes) of the head sections whose options head genes set (`DetectionHead.tunable`)."""
    from darkcfg.model.layers import layer_class

    out = []
    for k, sec in enumerate(parse_cfg_text(text, file)):
        tunable = getattr(layer_class(sec.type), "tunable", ())
        if tunable:
            out.append((k, tuple(tunable)))
    return out


def read_genes(text: str, file: str) -> dict[str, float]:
    """The genes' values in a cfg (a head gene: the first head's), the reference's defaults where absent."""
    sections = parse_cfg_text(text, file)
    heads = _head_sections(text, file)
    values = {}
    for g in GENES:
        where = [pos for pos, keys in heads if g.key in keys]
        sec = sections[0] if g.net else (sections[where[0]] if where else None)
        v = sec.float(g.key) if sec is not None else None
        values[g.key] = float(DEFAULTS[g.key] if v is None else v)
    return values


def write_genes(text: str, file: str, genes: dict[str, float]) -> str:
    """The cfg text with the genes set ([net] keys in [net], head keys in every head); other lines unchanged."""
    heads = _head_sections(text, file)
    edits = {}
    for g in GENES:
        value = genes[g.key]
        shown = str(int(round(value))) if g.integer else f"{value:.5g}"
        for pos in ([0] if g.net else [pos for pos, keys in heads if g.key in keys]):
            edits[(pos, g.key)] = shown
    return edit_cfg_text(text, file, edits)


def mutate(parent: dict[str, float], rng: np.random.Generator) -> dict[str, float]:
    """The authors' mutation of `parent` (module docstring), clipped to each gene's range."""
    gains = np.array([g.gain for g in GENES])
    v = np.ones(len(GENES))
    while (v == 1).all():
        v = (gains * (rng.random(len(GENES)) < 0.8) * rng.standard_normal(len(GENES)) * rng.random() * 0.2 + 1)
        v = v.clip(0.3, 3.0)
    child = {}
    for g, f in zip(GENES, v):
        base = parent[g.key]
        if g.integer:  # a flag: flips with the mutation's strength
            value = float(1 - base) if abs(f - 1) > 0.2 else base
        elif base:
            value = base * f
        else:  # a zero value (no decay, no hue) cannot be scaled: a step of the mutation's size into the range
            value = (g.high - g.low) * 0.1 * abs(f - 1)
        child[g.key] = float(min(max(value, g.low), g.high))
    return child


@dataclass
class Candidate:
    generation: int
    index: int
    genes: dict[str, float]
    fitness: float = math.nan
    map50: float = math.nan
    map50_95: float = math.nan


def read_results(csv_path: Path) -> list[Candidate]:
    """The finished candidates of a run (none when the file does not exist yet)."""
    if not csv_path.is_file():
        return []
    out = []
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                out.append(Candidate(int(row["generation"]), int(row["candidate"]),
                                     {g.key: float(row[g.key]) for g in GENES}, float(row["fitness"]),
                                     float(row["map50"]), float(row["map50_95"])))
            except (KeyError, ValueError):
                raise DarkcfgError(f"{csv_path}: a row that is not an evolve result ({row}): give a new --out "
                                   "folder, or remove it") from None
    return out


def _write_results(csv_path: Path, results: list[Candidate]) -> None:
    lines = [",".join(["generation", "candidate", "fitness", "map50", "map50_95"] + [g.key for g in GENES])]
    for c in results:
        lines.append(",".join([str(c.generation), str(c.index), f"{c.fitness:.6f}", f"{c.map50:.6f}",
                               f"{c.map50_95:.6f}"] + [f"{c.genes[g.key]:.6g}" for g in GENES]))
    write_text(csv_path, "\n".join(lines) + "\n")


def next_candidate(start: dict[str, float], results: list[Candidate], generation: int, index: int,
                   seed: int) -> Candidate:
    """Candidate (generation, index): the starting genes for (0, 0), else a mutation of a parent drawn among the
    5 fittest results so far."""
    if generation == 0 and index == 0:
        return Candidate(0, 0, dict(start))
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0xE70, generation, index])
    done = [c for c in results if math.isfinite(c.fitness)]
    if not done:
        return Candidate(generation, index, mutate(start, rng))
    best = sorted(done, key=lambda c: -c.fitness)[:5]
    w = np.array([c.fitness for c in best])
    w = w - w.min() + 1e-6
    parent = best[int(rng.choice(len(best), p=w / w.sum()))]
    return Candidate(generation, index, mutate(parent.genes, rng))


Scorer = Callable[[str, Path], tuple[float, float]]  # (cfg path, its folder) -> (mAP@0.5, mAP@0.5:0.95)


def evolve(cfg: PathLike, out: PathLike, generations: int, population: int, score: Scorer, seed: int = 0,
           progress: Optional[Callable[[Candidate], None]] = None) -> Iterator[Candidate]:
    """Run (or resume) the search, yielding each candidate as it finishes; `score` trains and measures one."""
    text, file = read_cfg(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "evolve.csv"
    results = read_results(csv_path)
    start = read_genes(text, file)
    done = {(c.generation, c.index) for c in results}
    for gen in range(generations):
        for k in range(population):
            if (gen, k) in done:
                continue
            cand = next_candidate(start, results, gen, k, seed)
            folder = out / f"g{gen:03d}_c{k:02d}"
            folder.mkdir(exist_ok=True)
            cfg_path = folder / f"{Path(file).stem}.cfg"
            write_text(cfg_path, write_genes(text, file, cand.genes))
            cand.map50, cand.map50_95 = score(str(cfg_path), folder)
            cand.fitness = FITNESS[0] * cand.map50 + FITNESS[1] * cand.map50_95
            results.append(cand)
            _write_results(csv_path, results)
            _finish(out, text, file, results)
            if progress is not None:
                progress(cand)
            yield cand


def _finish(out: Path, text: str, file: str, results: list[Candidate]) -> None:
    """best.cfg (the fittest so far) and evolve.png (fitness against each gene)."""
    best = max(results, key=lambda c: c.fitness)
    write_text(out / "best.cfg", write_genes(text, file, best.genes))
    write_bytes(out / "evolve.png", _plot(results))


def _plot(results: list[Candidate]) -> bytes:
    """A grid of scatter plots, one per gene: the gene's value (x) against fitness (y), the best candidate red."""
    import cv2

    cols, cw, ch = 4, 300, 220
    rows = math.ceil(len(GENES) / cols)
    img = np.full((rows * ch, cols * cw, 3), 255, np.uint8)
    fit = np.array([c.fitness for c in results])
    lo, hi = float(np.nanmin(fit)), float(np.nanmax(fit))
    best = int(np.nanargmax(fit))
    for n, g in enumerate(GENES):
        x0, y0 = (n % cols) * cw + 40, (n // cols) * ch + 20
        w, h = cw - 60, ch - 60
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), (180, 180, 180), 1)
        cv2.putText(img, g.key, (x0, y0 + h + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for i, c in enumerate(results):
            fx = (c.genes[g.key] - g.low) / (g.high - g.low) if g.high > g.low else 0.5
            fy = (c.fitness - lo) / (hi - lo) if hi > lo else 0.5
            p = (int(x0 + fx * w), int(y0 + h - fy * h))
            cv2.circle(img, p, 5 if i == best else 3, (0, 0, 220) if i == best else (160, 90, 0), -1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    return buf.tobytes()


def trained_score(data: str, iterations: int, recipe: str = "darknet", size: Optional[tuple[int, int]] = None,
                  batch: Optional[int] = None, subdivisions: Optional[int] = None, workers: int = 2, seed: int = 0,
                  weights: Optional[str] = None, device: str = "cpu", multi_scale: bool = False) -> Scorer:
    """The scorer of `evolve`: train the candidate's cfg `iterations` iterations into its folder, then measure
    mAP@0.5 and mAP@0.5:0.95 (pycocotools, the same detections) of its final weights on DATA's valid list."""

    def score(cfg: str, folder: Path) -> tuple[float, float]:
        from darkcfg.data.dataset import image_list, open_data
        from darkcfg.eval.coco import CocoCollector
        from darkcfg.eval.runner import compute_map
        from darkcfg.infer.names import names_for
        from darkcfg.model.loading import load
        from darkcfg.train.trainer import Trainer, TrainOptions

        opts = TrainOptions(data=data, cfg=cfg, weights=weights, clear=True, size=size, batch=batch,
                            subdivisions=subdivisions, max_batches=iterations, backup=str(folder / "backup"),
                            device=device, workers=workers, seed=seed, progress=False, recipe=recipe,
                            multi_scale=multi_scale)
        r = Trainer(opts).run()
        dc = open_data(data)
        model = load(cfg, r.final, size=size).eval()
        names = names_for(model, dc.names) if dc.names else [str(k) for k in range(model.layers[-1].classes)]
        collector = CocoCollector(names)
        res = compute_map(model, image_list(dc.valid_list()), names, progress=False, coco=collector)
        return float(res.map), max(0.0, float(collector.evaluate()[0]))

    return score
