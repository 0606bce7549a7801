"""`darkcfg train`: detector.c:train_detector on PyTorch, from the same .data, cfg and weights files.

Per iteration: batch*subdivisions images per process, `subdivisions` forward/backward passes accumulating
gradients, one update with the rate of `schedule.learning_rate` (times the number of processes, as the
reference multiplies by its GPUs), EMA, multi-scale every 10 iterations. Files in `backup`:
`<base>_<it>.weights` every `saveweights`, `<base>_last.weights` every `savelast` (with `_ema` when EMA
runs), `<base>_best.weights` on a best mAP, `<base>_final.weights`, each beside a sidecar that makes a resume
exact (`checkpoints`); `<base>.log`, `<base>.csv` and `chart.png` (`logs`). Several processes (torchrun)
average their gradients (`distributed`); `--map` runs are scheduled by `map_runs`. This module keeps the loop.
Warnings go through the `warnings` module (`TrainWarning`), notes through the "darkcfg" logger: both to stderr
from the command line, never stdout.
"""
from __future__ import annotations

import io
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from darkcfg.data.dataset import DataConfig, DataError, DataWarning, image_list, open_data
from darkcfg.data.names import read_names
from darkcfg.errors import DarkcfgError, DarkcfgWarning
from darkcfg.infer.names import default_names
from darkcfg.memory import keep_freed_memory
from darkcfg.model.cfg import edit_cfg_text, read_cfg
from darkcfg.model.loading import load_weights_file
from darkcfg.model.network import Darknet
from darkcfg.progress import Progress
from darkcfg.train.anchors import anchors_for_training, report_anchors
from darkcfg.train.augment import AugmentConfig
from darkcfg.train.batches import Sequences, TrainDataset, TrainSampler, collate
from darkcfg.train.checkpoints import read_sidecar, save_checkpoint_files
from darkcfg.train.classify_data import ClassifyAugment, ClassifyDataset, collate_classify
from darkcfg.train.distributed import (
    average_gradients,
    average_value,
    broadcast_model,
    init_distributed,
    process_device,
)
from darkcfg.train.interrupts import SigintBlocked, Snapshot, one_line
from darkcfg.train.logs import TrainLog
from darkcfg.train.losses import NotTrainableError, network_loss, trainable_layers
from darkcfg.train.map_runs import MapRuns
from darkcfg.train.optim import EMA, DarknetOptimizer, channels_last_weights
from darkcfg.train.recipe import RECIPES, ModelEMA, ScaledOptimizer, ScaledRecipe
from darkcfg.train.schedule import learning_rate

log = logging.getLogger("darkcfg")


class TrainError(DarkcfgError):
    """Training stopped: the message says why and which checkpoint is the last good one."""


class TrainWarning(DarkcfgWarning):
    """Something training works around (labels dropped, a class count that disagrees): one line each."""


@dataclass
class TrainOptions:
    """What `darkcfg train` takes. `data` is a .data file or a folder of images with labels beside them."""

    data: str
    cfg: str
    weights: Optional[str] = None
    clear: bool = False
    size: Optional[tuple[int, int]] = None
    batch: Optional[int] = None
    subdivisions: Optional[int] = None
    max_batches: Optional[int] = None
    backup: Optional[str] = None
    device: str = "cpu"
    workers: int = 2
    seed: int = 0
    calc_map: bool = False
    map_every: Optional[int] = None
    map_epochs: int = 4
    amp: Optional[bool] = None  # default: on for CUDA
    augment: bool = True
    progress: bool = True
    classes: Optional[int] = None
    overrides: dict[str, str] = field(default_factory=dict)  # [net] key=value, applied at load time
    recipe: str = "darknet"  # or "scaled" (train/recipe.py)
    multi_scale: bool = False  # the scaled recipe's multi-scale +-50 % (train/recipe.py)
    auto_anchors: bool = False  # write and train with new anchors when the cfg's recall on the boxes is < 0.98
    on_iteration: Optional[Callable[[int, float], None]] = field(default=None, repr=False)


@dataclass
class TrainResult:
    iteration: int
    seen: int
    avg_loss: float
    best_map: float
    final: Optional[Path]
    skipped: int = 0
    bad_class: int = 0
    out_of_range: int = 0
    missing_labels: int = 0
    # wall seconds per phase of the loop: "data" (waiting for the loader), "forward+loss", "backward",
    # "update" (optimiser and EMA), "other" (logs, chart, checkpoints, mAP runs)
    profile: dict = field(default_factory=dict)


PHASES = ("data", "forward+loss", "backward", "update", "other")


class Trainer:
    """Train `opts.cfg` on `opts.data`; `run()` returns a TrainResult. See the module docstring."""

    def __init__(self, opts: TrainOptions) -> None:
        self.opts = opts
        self.rank, self.world = init_distributed()
        self.device = process_device(opts.device, self.rank, self.world)
        self.data = self._data_config(opts.data)
        text, name = read_cfg(opts.cfg)
        torch.manual_seed(opts.seed)  # the reference's random initialisation, reproducible with --seed
        text = edit_cfg_text(text, name, {(0, key): value for key, value in opts.overrides.items()})
        model = Darknet(text, name, opts.size, warn_unused=self.rank == 0)
        model, self.anchor_check = anchors_for_training(model, self.opts.cfg, self.data.train, self.opts.auto_anchors,
                                                        self.opts.seed, self.opts.size, self.rank, self.world)
        net = model.net
        if opts.batch:
            net.batch = opts.batch
        if opts.subdivisions:
            net.subdivisions = opts.subdivisions
        if net.batch % net.subdivisions:
            raise TrainError(f"{opts.cfg}: batch={net.batch} is not a multiple of subdivisions={net.subdivisions}")
        if opts.max_batches:
            net.max_batches = opts.max_batches
        if net.max_batches < 1:
            raise TrainError(f"{opts.cfg}: max_batches={net.max_batches}: expected a positive number of iterations")
        self.base = Path(opts.cfg).name.split(".")[0]
        # a forward takes mini_batch * time_steps images (the reference's net.batch), step-major
        self.forward_images = net.mini_batch * max(1, net.time_steps)
        self.images_per_it = self.forward_images * net.subdivisions  # per process, as the reference's update
        if opts.weights:
            load_weights_file(model, opts.weights, partial=False)
        if opts.clear:
            model.header.seen = 0
        self.seen = int(model.header.seen)
        self.start = self.seen // self.images_per_it
        model.to(self.device)
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            channels_last_weights(model)
            keep_freed_memory()
        broadcast_model(model, self.world)  # every process starts from rank 0's tensors
        self.model = model
        self.init_size = (net.width, net.height)
        self.avg_loss = -1.0
        self.best_map = 0.0
        self.maps: list[tuple[int, float]] = []
        self.history: list[tuple[int, float]] = []
        self.backup = Path(opts.backup or self.data.backup or "backup")
        self.logs = TrainLog(self.backup, self.base)
        self.amp = opts.amp if opts.amp is not None else self.device.type == "cuda"
        self.last_good: Optional[Path] = None
        self.profile = dict.fromkeys(PHASES, 0.0)
        self.reported: set[str] = set()  # skipped label rows already named
        try:
            trained = trainable_layers(model)
        except NotTrainableError as e:
            raise TrainError(str(e)) from None
        self.classifier = not trained[-1].is_head  # a classifier's [softmax]: `darknet classifier train`
        if self.classifier:
            if net.mixup or net.contrastive:
                raise TrainError(f"{opts.cfg}: [net] {'mixup' if net.mixup else 'contrastive'} is not supported "
                                 "for classifiers")
            self.classes = trained[-1].in_shape.size
            self.labels = self._classifier_labels()
            self.random_coef = 0.0  # train_classifier keeps the network size
        else:
            self.aug = AugmentConfig.from_model(model)
            self.classes = self.aug.classes
            self.random_coef = trained[-1].random
        if self.data.classes is not None and self.data.classes != self.classes and self.rank == 0:
            warnings.warn(f"{self.data.file}: classes={self.data.classes} but {opts.cfg} has classes="
                          f"{self.classes}; the cfg's count is used, as the reference does", TrainWarning,
                          stacklevel=2)
        if not self.data.train:
            raise TrainError(f"{self.data.file}: no 'train' list (train = a list file or a folder of images)")
        self.train_paths = image_list(self.data.train)
        if not self.train_paths:
            raise TrainError(f"{self.data.file}: train={self.data.train}: no images listed")
        if opts.recipe not in RECIPES:
            raise TrainError(f"--recipe {opts.recipe}: expected one of {', '.join(RECIPES)}")
        if opts.multi_scale and opts.recipe != "scaled":
            raise TrainError("--multi-scale: only with --recipe scaled (the darknet recipe takes random= from the cfg)")
        self.recipe: Optional[ScaledRecipe] = None
        if opts.recipe == "scaled":
            net.learning_rate *= self.world  # as the reference multiplies by its GPUs
            self.recipe = ScaledRecipe.for_run(self.model, len(self.train_paths) / (self.images_per_it * self.world),
                                               opts.multi_scale)
            self.opt: DarknetOptimizer | ScaledOptimizer = ScaledOptimizer(self.model, self.recipe)
            self.ema: EMA | ModelEMA = ModelEMA(self.model, self.recipe)
            if self.rank == 0:
                for line in self.recipe.lines():
                    log.info("%s", line)
        else:
            self.opt = DarknetOptimizer(self.model, self.images_per_it)
            self.ema = EMA(self.model, net.ema_alpha, net.max_batches)
        if opts.weights and not opts.clear:
            self._load_sidecar(Path(opts.weights))
        self.map_runs: Optional[MapRuns] = None
        if opts.calc_map:  # what the mAP runs read, checked before the first iteration (nothing is lost)
            valid_paths = image_list(self.data.valid or self.data.train)
            if not valid_paths:
                raise TrainError(f"{self.data.file}: valid={self.data.valid or self.data.train}: no images listed")
            names = self.labels if self.classifier else self._map_names()
            self.map_runs = MapRuns(model, valid_paths, names, self.init_size, self.start, len(self.train_paths),
                                    net.batch * self.world, opts.map_every, opts.map_epochs, self.classifier)

    # -- setup ------------------------------------------------------------------------------------------
    def _data_config(self, data: str) -> DataConfig:
        try:
            return open_data(data, self.opts.classes)
        except DataError as e:
            raise TrainError(str(e)) from None

    def _classifier_labels(self) -> list[str]:
        """The class names a classifier's image paths contain: labels= of the .data file, else names=."""
        source = self.data.labels or self.data.names
        if not source:
            raise TrainError(f"{self.data.file}: a classifier needs labels= (or names=): the class names its image "
                             "paths contain")
        try:
            return read_names(source, self.classes)
        except DarkcfgError as e:
            raise TrainError(str(e)) from None

    def _load_sidecar(self, weights: Path) -> None:
        try:
            state = read_sidecar(weights, self.seen, self.model.cfg_text)
        except DarkcfgError as e:
            raise TrainError(str(e)) from None
        if state is None:
            return
        if not state:
            if self.rank == 0:
                log.info("note: %s's training state belongs to another run or iteration; resuming without optimiser "
                         "state", weights)
            return
        self.avg_loss = state.get("avg_loss", -1.0)  # the run's figures, whatever made the optimiser state
        self.best_map = state.get("best_map", 0.0)
        self.maps = list(state.get("maps", []))
        self.history = list(state.get("history", []))
        stored, now = state.get("recipe"), (self.recipe.as_dict() if self.recipe else None)
        if stored != now:
            if self.rank == 0:
                why = ", ".join(sorted(k for k in {*stored, *now} if stored.get(k) != now.get(k))) \
                    if stored and now else "darknet vs scaled"
                log.info("note: %s's training state was made with another recipe (%s); resuming without optimiser "
                         "state", weights, why)
            return
        self.opt.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])

    def _loader(self) -> torch.utils.data.DataLoader:
        net = self.model.net
        seq = Sequences(net.mini_batch, max(1, net.time_steps), net.augment_speed) if net.track else None
        recipe = self.recipe
        # the darknet recipe: the cfg's random=; the scaled one: its own multi-scale, else the cfg's size (random 0)
        scaled = recipe is not None and seq is None
        sizes = (lambda it: recipe.size_at(self.init_size, it, self.opts.seed)) \
            if scaled and recipe.multi_scale else None
        sampler = TrainSampler(len(self.train_paths), self.images_per_it, self.init_size,
                               0.0 if scaled else self.random_coef,
                               net.resize_step, net.max_batches, self.opts.seed, self.start, self.rank, self.world,
                               sequences=seq, sizes=sizes)
        self.sampler = sampler
        if self.classifier:
            ds: torch.utils.data.Dataset = ClassifyDataset(self.train_paths, self.labels,
                                                           ClassifyAugment.from_net(net), self.opts.augment,
                                                           net.channels)
        else:
            ds = TrainDataset(self.train_paths, self.aug, self.opts.augment)
        workers = max(0, self.opts.workers)
        return torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=workers,
                                           collate_fn=collate_classify if self.classifier else collate,
                                           persistent_workers=False, prefetch_factor=4 if workers else None,
                                           pin_memory=self.device.type == "cuda")

    # -- files --------------------------------------------------------------------------------------------
    def _measure(self) -> float:
        """The --map measurement, on the recipe's EMA weights when it keeps one (what `_best` saves)."""
        assert self.map_runs is not None
        if self.recipe is None or not self.ema.started:
            return self.map_runs.measure()
        self.ema.swap()
        try:
            return self.map_runs.measure()
        finally:
            self.ema.swap()

    def _save(self, name: str, iteration: int, sidecar: bool = True, averaged: bool = False) -> Path:
        """`<base>_<name>.weights` (with its sidecar); `averaged`: the recipe's EMA weights when it keeps one
        (`_best`, `_final`, then without a sidecar)."""
        if averaged and self.recipe is not None and self.ema.started:
            self.ema.swap()
            try:  # no sidecar: the averaged weights are for use; a run resumes from _last
                return self._save(name, iteration, sidecar=False)
            finally:
                self.ema.swap()
        state = None
        if sidecar:
            state = {"iteration": iteration, "seen": self.seen, "cfg_text": self.model.cfg_text,
                     "recipe": self.recipe.as_dict() if self.recipe else None,
                     "optimizer": self.opt.state_dict(), "ema": self.ema.state_dict(), "avg_loss": self.avg_loss,
                     "best_map": self.best_map, "maps": self.maps, "history": self.history[-20000:]}
        return save_checkpoint_files(self.model, self.backup / f"{self.base}_{name}.weights", self.seen, state)

    def _chart(self) -> None:
        self.logs.chart(self.history, self.maps, self.model.net.max_batches, self.model.net.max_chart_loss,
                        f"{self.base}  {self.images_per_it * self.world} images/iteration")

    def _map_names(self) -> list[str]:
        """names= of the .data file (one per class), else COCO's for 80 classes, else the class ids."""
        try:
            if self.data.names:
                return read_names(self.data.names, self.aug.classes)
        except DarkcfgError as e:
            raise TrainError(f"{e} (needed by --map)") from None
        return default_names(self.model) or []  # the Detector names the other classes by their ids

    # -- the loop -----------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        net = self.model.net
        main = self.rank == 0
        if main:
            self.backup.mkdir(parents=True, exist_ok=True)
        end = net.max_batches
        result = TrainResult(self.start, self.seen, self.avg_loss, self.best_map, None)
        if self.start >= end:
            if main:
                log.info("note: %s: already at iteration %d >= max_batches=%d; nothing to do (--clear starts again "
                         "from 0)", self.opts.weights, self.start, end)
            return result
        iter_save = iter_save_last = self.start
        saveweights = self.data.saveweights or (1000 if end < 10000 or self.classifier else 10000)
        savelast = self.data.savelast or 100
        self.model.train()
        if main:
            self.logs.start(resumed=self.start > 0)
            report_anchors(self.anchor_check, self.opts.cfg, self.opts.auto_anchors)
        loader = self._loader()
        stats = {"skipped": 0, "bad_class": 0, "out_of_range": 0, "missing_labels": 0}
        iteration = completed = self.start  # completed: the last iteration whose update is done
        snapshot = None
        t_last = time.time()
        bar = Progress(end - self.start, "train", unit="it", enabled=main and self.opts.progress)
        t_start = time.perf_counter()
        batches = iter(loader)
        doing = ""
        prof = self.profile = dict.fromkeys(PHASES, 0.0)
        t_phase = time.perf_counter()
        try:
            with bar:
                while True:
                    doing = f"loading the images of iteration {iteration + 1}"
                    batch = next(batches, None)
                    t = time.perf_counter()
                    prof["data"] += t - t_phase
                    if batch is None:
                        break
                    iteration += 1
                    doing = f"iteration {iteration}"
                    snapshot = Snapshot(self.model, self.seen)
                    for k in stats:
                        stats[k] += len(batch[k]) if k == "skipped" else batch[k]
                    if main:
                        self._report_labels(batch["label_issues"])
                    loss = self._iteration(batch)
                    if not math.isfinite(loss):
                        raise TrainError(
                            f"iteration {iteration}: the loss is {loss} (not finite): training stopped before "
                            "the update (try a lower learning_rate or a longer burn_in, and check the labels)")
                    lr = self.recipe.rates(iteration)[0] if self.recipe else \
                        learning_rate(net, self.seen // self.images_per_it) * self.world
                    t = time.perf_counter()
                    with SigintBlocked():  # the update happens whole or not at all
                        self.opt.step(iteration, lr)
                        self.ema.update(iteration)
                        self.avg_loss = loss if self.avg_loss < 0 else self.avg_loss * .9 + loss * .1
                        completed, snapshot = iteration, None
                    prof["update"] += time.perf_counter() - t
                    now = time.time()
                    dt, t_last = now - t_last, now
                    if main:
                        self._after_iteration(iteration, loss, lr, dt, bar, end)
                    if self.opts.on_iteration:
                        self.opts.on_iteration(iteration, loss)
                    if self.map_runs is not None and self.map_runs.due(iteration, end):
                        m = self._measure() if main else 0.0
                        if main:
                            self.maps.append((iteration, m))
                            best = max(m, self.best_map) * 100
                            what = "top-1 accuracy" if self.classifier else "mAP@0.5"
                            bar.write(f"{what} = {m * 100:.2f} % at iteration {iteration} (best {best:.2f} %)")
                            self.logs.write(f"\n accuracy top1 = {m:f} \n" if self.classifier else
                                            f"\n mean_average_precision (mAP@0.50) = {m:f} \n")
                            if m >= self.best_map:
                                self.best_map = m
                                self._save("best", iteration, averaged=True)
                    if main:  # the CSV row, with the mAP when it was measured at this iteration
                        self.logs.row(iteration, loss, self.avg_loss, lr, self._rate,
                                      self.maps[-1][1] if self.maps and self.maps[-1][0] == iteration else None)
                    if main and (iteration >= iter_save + saveweights or iteration % saveweights == 0):
                        iter_save = iteration
                        self._save(str(iteration), iteration, sidecar=False)
                    last_due = iteration % savelast == 0 and iteration > 1
                    if main and (iteration >= iter_save_last + savelast or last_due):
                        iter_save_last = iteration
                        self.last_good = self._save("last", iteration)
                        if self.ema.started:
                            self.ema.swap()
                            self._save("ema", iteration, sidecar=False)
                            self.ema.swap()
                    if main and (iteration % 10 == 0 or iteration == end):
                        self._chart()
                    t_phase = time.perf_counter()
        except BaseException as e:
            if completed < iteration and snapshot is not None:  # stopped inside an iteration, before its update
                self.seen = snapshot.restore()
                self.opt.zero_grad()
            saved = self._save("last", completed) if main and completed > self.start else None
            where = (f"; saved {saved} at iteration {completed}: resume with it as weights" if saved else
                     f"; last good checkpoint: {self.last_good or 'none written yet'}")
            if isinstance(e, KeyboardInterrupt):
                if main:
                    log.info("\ninterrupted%s", where)
                raise
            if isinstance(e, TrainError):
                raise TrainError(f"{e}{where}") from None
            if isinstance(e, Exception):
                raise TrainError(f"{doing}: {one_line(e)}{where}") from None
            raise
        if main:
            result.final = self._save("final", iteration, averaged=True)
            self._save("last", iteration)
            self._chart()
        result.iteration, result.seen, result.avg_loss, result.best_map = iteration, self.seen, self.avg_loss, \
            self.best_map
        result.skipped, result.bad_class = stats["skipped"], stats["bad_class"]
        result.out_of_range, result.missing_labels = stats["out_of_range"], stats["missing_labels"]
        prof["other"] = max(0.0, time.perf_counter() - t_start - sum(prof.values()))
        result.profile = dict(prof)
        if main:
            for k, what in (("skipped", "unreadable images were skipped (replaced by the next image)"),
                            ("missing_labels", "images had no label file (trained as background)" if not
                             self.classifier else "images had no single class name in their path"),
                            ("bad_class", f"label rows had a class id >= classes={self.classes} (dropped)"),
                            ("out_of_range", "label rows were skipped (a value outside [0, 1] or an empty box: "
                                             "each file:line was reported)")):
                if stats[k]:
                    warnings.warn(f"{stats[k]} {what}", TrainWarning, stacklevel=2)
        return result

    def _report_labels(self, issues: list[str]) -> None:
        """Each skipped label row once (file:line), as a warning, however often its image is drawn."""
        for message in issues:
            if message not in self.reported:
                self.reported.add(message)
                warnings.warn(message, DataWarning, stacklevel=2)

    def _iteration(self, batch: dict) -> float:
        """Forward/backward every subdivision; returns the reference's iteration loss."""
        net = self.model.net
        images, truths = batch["images"], batch["truths"]
        h, w = images.shape[-2:]
        self.model.set_size(int(w), int(h))
        self.opt.zero_grad()
        mini = self.forward_images
        total = 0.0
        for s in range(net.subdivisions):
            x = images[s * mini:(s + 1) * mini].to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            t = truths[s * mini:(s + 1) * mini].to(self.device, non_blocking=True)
            self.seen += mini
            t0 = time.perf_counter()
            with torch.autocast(self.device.type, enabled=self.amp, dtype=torch.bfloat16):
                r = network_loss(self.model, x, t, seen=self.seen)  # bfloat16 mixed precision: no loss scaling needed
            t1 = time.perf_counter()
            (r.loss / self.images_per_it).backward()
            self.profile["forward+loss"] += t1 - t0
            self.profile["backward"] += time.perf_counter() - t1
            total += r.cost
            self.last_heads = r.heads
        average_gradients(self.opt.params, self.world)
        return average_value(total, self.device, self.world) / self.images_per_it

    def _after_iteration(self, it: int, loss: float, lr: float, dt: float, bar: Progress, end: int) -> None:
        net = self.model.net
        imgs = self.images_per_it * self.world
        left = (end - it) * dt / 3600
        buf = io.StringIO()
        for i, r in getattr(self, "last_heads", []):
            buf.write(r.log_line(i))
        if self.classifier:  # train_classifier's line: iteration, epoch, loss, average, rate, seconds, images
            buf.write(f"{it}, {self.seen * self.world / len(self.train_paths):.3f}: {loss:f}, {self.avg_loss:f} avg, "
                      f"{lr:f} rate, {dt:f} seconds, {it * imgs} images, {left:f} hours left\n")
        else:
            buf.write(f"\n {it}: {loss:f}, {self.avg_loss:f} avg loss, {lr:f} rate, {dt:f} seconds, {it * imgs} "
                      f"images, {left:f} hours left\n")
        self.logs.write(buf.getvalue())
        rate = self._rate = imgs / dt if dt > 0 else 0.0
        self.history.append((it, self.avg_loss))
        bar.update(1, loss=f"{loss:.3f}", avg=f"{self.avg_loss:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}",
                   size=f"{net.width}x{net.height}")
