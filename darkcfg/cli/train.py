"""Commands that train: `train` (`darknet detector train`), `calc-anchors` (`detector calc_anchors`) and `evolve`
(a genetic search over the training hyperparameters)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from darkcfg.cli import main
from darkcfg.cli._common import device_option, friendly, ignored_flags, parse_size, size_option


def _key_values(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise click.BadParameter(f"'{item}': expected KEY=VALUE, e.g. burn_in=100", param_hint="--set")
        out[key.strip()] = value.strip()
    return out


@main.command(context_settings={"max_content_width": 110})
@click.argument("data", type=click.Path())
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--map", "-map", "calc_map", is_flag=True,
              help="Measure mAP@0.5 on valid= as it trains; save _best.weights.")
@click.option("--map-every", type=click.IntRange(1), default=None,
              help="Iterations between mAP runs (default: the reference's max(--map-epochs epochs, 100)).")
@click.option("--map-epochs", "-mAP_epochs", type=click.IntRange(1), default=4, show_default=True,
              help="Epochs between mAP runs when --map-every is not given.")
@click.option("--clear", "-clear", is_flag=True, help="Start from iteration 0 even if WEIGHTS has a `seen` count.")
@ignored_flags("-dont_show", "-show_imgs")
@click.option("--batch", type=click.IntRange(1), default=None, help="Override [net] batch (the cfg is not changed).")
@click.option("--subdivisions", type=click.IntRange(1), default=None, help="Override [net] subdivisions.")
@click.option("--max-batches", type=click.IntRange(1), default=None, help="Override [net] max_batches.")
@click.option("--backup", type=click.Path(file_okay=False), default=None, help="Overrides backup= of DATA.")
@click.option("--classes", type=click.IntRange(1), default=None, help="Classes, when DATA is a folder.")
@device_option
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True,
              help="Data-loading processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw (augmentation, order).")
@click.option("--amp/--no-amp", default=None, help="bfloat16 mixed precision (default: on with CUDA).")
@click.option("--no-augment", is_flag=True, help="Plain resize, no random transforms (for checks).")
@click.option("--recipe", type=click.Choice(["darknet", "scaled"]), default="darknet", show_default=True,
              help="darknet: the reference's training, exactly. scaled: the Scaled-YOLOv4 authors' optimisation on "
                   "the same cfg and loss (model EMA, one-cycle cosine rate, warm-up of bias rate and momentum, decay "
                   "on convolution weights only); every value is printed at start-up.")
@click.option("--multi-scale", is_flag=True,
              help="With --recipe scaled: a network size drawn each iteration within +-50 % in steps of the "
                   "largest stride (the authors' opt-in --multi-scale).")
@click.option("--auto-anchors", is_flag=True,
              help="When the cfg's anchors fit under 98 % of the training boxes, write better ones (k-means, then "
                   "a genetic refinement) into <cfg>.anchors.cfg beside it and train with that.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Set a [net] key for this run (e.g. --set burn_in=100); the cfg file is not changed.")
@size_option
@friendly
def train(data: str, cfg: str, weights: Optional[str], calc_map: bool, map_every: Optional[int], map_epochs: int,
          clear: bool, batch: Optional[int], subdivisions: Optional[int], max_batches: Optional[int],
          backup: Optional[str], classes: Optional[int], device: Optional[str], workers: int, seed: int,
          amp: Optional[bool], no_augment: bool, recipe: str, multi_scale: bool, auto_anchors: bool,
          overrides: tuple[str, ...], size: Optional[str]) -> None:
    """Train CFG on DATA like `darknet detector train DATA CFG [WEIGHTS]`.

    DATA is a .data file (train=, valid=, names=, backup=, saveweights=, savelast=) or a folder of images
    with their .txt labels beside them. WEIGHTS may be a prefix (e.g. yolov4-tiny.conv.29 from
    `darkcfg partial`) or a checkpoint to resume (backup/x_last.weights resumes at its iteration, exactly
    when its .state.pt sidecar is beside it). Several GPUs or machines: `torchrun --nproc_per_node N -m
    darkcfg train ...` (the learning rate is multiplied by N, as the reference does with -gpus).
    """
    from darkcfg.infer.runtime import resolve_device
    from darkcfg.train.trainer import Trainer, TrainOptions

    opts = TrainOptions(data=data, cfg=cfg, weights=weights, clear=clear, size=parse_size(size), batch=batch,
                        subdivisions=subdivisions, max_batches=max_batches, backup=backup,
                        device=resolve_device(device), workers=workers, seed=seed, calc_map=calc_map,
                        map_every=map_every, map_epochs=map_epochs, amp=amp, augment=not no_augment,
                        classes=classes, overrides=_key_values(overrides), recipe=recipe, multi_scale=multi_scale,
                        auto_anchors=auto_anchors)
    try:
        r = Trainer(opts).run()
    except KeyboardInterrupt:
        sys.exit(130)
    if r.final is not None:
        best = f", best mAP@0.5 {r.best_map * 100:.2f} %" if opts.calc_map else ""
        click.echo(f"done: iteration {r.iteration}, avg loss {r.avg_loss:.4f}{best}; {r.final}")


@main.command("calc-anchors")
@click.argument("data", type=click.Path(exists=True))
@click.option("--num", "-num_of_clusters", "num", type=click.IntRange(1), default=None,
              help="Number of anchors. Default: the cfg's num (--cfg), else 5.")
@click.option("--width", "-width", type=click.IntRange(1), default=None,
              help="Network input width (default: the cfg's).")
@click.option("--height", "-height", type=click.IntRange(1), default=None, help="Network input height.")
@click.option("--cfg", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A cfg: its size, letter_box and num by default, and the mean IoU of its current anchors.")
@click.option("--letterbox/--no-letterbox", default=None,
              help="Measure boxes as the network sees letterboxed images (default: the cfg's letter_box; the "
                   "reference always stretches).")
@ignored_flags("-show")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the k-means++ start.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="anchors.txt", show_default=True,
              help="File for the anchors line.")
@friendly
def calc_anchors(data: str, num: Optional[int], width: Optional[int], height: Optional[int], cfg: Optional[str],
                 letterbox: Optional[bool], seed: int, out: str) -> None:
    """k-means anchors (IoU distance) over the labels of DATA's train list (a .data file, or a folder of images
    with their labels), like `darknet detector calc_anchors`."""
    from darkcfg.train.anchors import calc_anchors as compute
    from darkcfg.train.anchors import read_cfg_anchors

    current = None
    if cfg is not None:
        c = read_cfg_anchors(cfg, width, height)
        width, height, current = c.width, c.height, c.current
        letterbox = c.letterbox if letterbox is None else letterbox
        if current is not None:
            num = num or len(current)
    if width is None or height is None:
        raise click.UsageError("give --width and --height, or --cfg")
    num = num or 5
    click.echo(f" num_of_clusters = {num}, width = {width}, height = {height} ")
    r = compute(data, num, width, height, seed, out, letterbox=bool(letterbox), current=current)
    click.echo(f" read labels from {r.images} images, {r.boxes} boxes" + (" (letterboxed)" if letterbox else ""))
    click.echo(f"\n avg IoU = {r.avg_iou * 100:2.2f} % \n")
    if r.current_iou is not None:
        click.echo(f" avg IoU with the cfg's current anchors = {r.current_iou * 100:2.2f} % \n")
    click.echo(f"Saving anchors to the file: {out} ")
    click.echo(f"anchors = {r.line}")


@main.command(context_settings={"max_content_width": 110})
@click.argument("data", type=click.Path(exists=True))
@click.argument("cfg", type=click.Path(exists=True, dir_okay=False))
@click.option("--generations", type=click.IntRange(1), default=10, show_default=True, help="Generations to run.")
@click.option("--population", type=click.IntRange(1), default=4, show_default=True, help="Candidates per generation.")
@click.option("--iterations", type=click.IntRange(1), required=True, help="Training iterations per candidate.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="evolve", show_default=True,
              help="Folder of the run: evolve.csv, evolve.png, best.cfg and each candidate's cfg and training; an "
                   "existing run there is resumed.")
@click.option("--recipe", type=click.Choice(["darknet", "scaled"]), default="darknet", show_default=True,
              help="How each candidate trains (see train --recipe).")
@click.option("-w", "--weights", type=click.Path(dir_okay=False), default=None,
              help="Start every candidate from these weights (e.g. a backbone prefix); default: from scratch.")
@click.option("--batch", type=click.IntRange(1), default=None, help="Override [net] batch.")
@click.option("--subdivisions", type=click.IntRange(1), default=None, help="Override [net] subdivisions.")
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="Data-loading processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draws (and of each training).")
@device_option
@size_option
@friendly
def evolve(data: str, cfg: str, generations: int, population: int, iterations: int, out_dir: str, recipe: str,
           weights: Optional[str], batch: Optional[int], subdivisions: Optional[int], workers: int, seed: int,
           device: Optional[str], size: Optional[str]) -> None:
    """Search CFG's training hyperparameters on DATA with a genetic algorithm, as the Scaled-YOLOv4 authors did:
    each candidate cfg trains ITERATIONS iterations and scores 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 on the valid list.

    \b
    darkcfg evolve obj.data cfg/yolov4-tiny.cfg --iterations 500 --generations 6 --population 4 --size 256
    """
    from darkcfg.infer.runtime import resolve_device
    from darkcfg.progress import Progress
    from darkcfg.train.evolve import evolve as run_evolve
    from darkcfg.train.evolve import read_results, trained_score

    total = generations * population
    done = len([c for c in read_results(Path(out_dir) / "evolve.csv") if c.generation < generations])
    score = trained_score(data, iterations, recipe, parse_size(size), batch, subdivisions, workers, seed, weights,
                          resolve_device(device))
    best = None
    with Progress(total, "evolve", unit="cand") as bar:
        bar.update(done)
        for c in run_evolve(cfg, out_dir, generations, population, score, seed):
            best = c if best is None or c.fitness > best.fitness else best
            bar.write(f"generation {c.generation} candidate {c.index}: fitness {c.fitness:.4f} (mAP@0.5 "
                      f"{c.map50 * 100:.2f} %, mAP@0.5:0.95 {c.map50_95 * 100:.2f} %)")
            bar.update(1, best=f"{best.fitness:.4f}")
    click.echo(f"best cfg: {Path(out_dir) / 'best.cfg'} (results: {Path(out_dir) / 'evolve.csv'}, "
               f"{Path(out_dir) / 'evolve.png'})")
