"""`darkcfg data check DATA [CFG] [--fix DIR]`: everything that would stop or spoil training, found before it.

The dataset's own problems come from `darkcfg.data.check`; with a cfg, its heads against the dataset's classes
(`darkcfg.model.cfgcheck`), boxes much smaller than one cell of the head with the finest grid (both sides below
a quarter of a cell at the network size), and the cfg's anchors against the boxes: the mean over the training
boxes of the best IoU with an anchor (boxes and anchors aligned at a corner, at the network size, letterboxed
when [net] letter_box=1), with k-means anchors for comparison (`calc-anchors`). `--fix` writes the cfg with
classes and filters corrected beside the original (`<name>.fixed.cfg`; when that file exists with other text,
it is kept and the next free `<name>.fixed-2.cfg`, `-3`, ... is written instead, and printed) and a cleaned
copy of the dataset into a new folder; the user's files are never changed, and everything is checked (the
folder is new or empty, no destination is a file the check read) before anything is written.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from darkcfg.data.check import (
    CleanCopy,
    DatasetCheck,
    Problem,
    check_dataset,
    check_new_folder,
    dataset_sources,
    write_clean,
)
from darkcfg.data.dataset import label_file
from darkcfg.errors import DarkcfgError
from darkcfg.files import write_text
from darkcfg.infer.preprocess import network_scale
from darkcfg.model.cfg import read_cfg
from darkcfg.model.cfgcheck import check_cfg_heads, fix_cfg_text
from darkcfg.model.heads import head_layers
from darkcfg.model.network import Darknet
from darkcfg.train.anchors import cfg_anchors, kmeans_anchors, wh_iou

PathLike = Union[str, Path]
LOW_ANCHOR_IOU = 0.5  # below this mean best IoU the anchors are reported as a poor fit
TINY_FRACTION = 0.25  # a box whose both sides are below this fraction of the finest head's cell is reported


@dataclass
class AnchorFit:
    """The cfg's anchors against the training boxes at the network size: mean best IoU, and k-means anchors of
    the same count with theirs."""

    mean_iou: float
    kmeans_iou: float
    kmeans: np.ndarray
    boxes: int


@dataclass
class CheckRun:
    """The dataset check, and with a cfg: its net size, anchors fit, and what --fix wrote."""

    dataset: DatasetCheck
    cfg_problems: list[Problem] = field(default_factory=list)
    anchors: Optional[AnchorFit] = None
    fixed_cfg: Optional[Path] = None
    clean: Optional[CleanCopy] = None

    @property
    def problems(self) -> list[Problem]:
        return self.dataset.problems + self.cfg_problems

    @property
    def blocking(self) -> bool:
        return any(p.blocking for p in self.problems)


def box_sizes(check: DatasetCheck, net_w: int, net_h: int, letterbox: bool, split: str = "train") -> np.ndarray:
    """(N, 2) widths and heights of the split's boxes in network-input pixels, as the network sees them."""
    out = []
    for e in check.images:
        if e.split != split or e.size is None or not len(e.rows):
            continue
        out.append(e.rows[:, 3:5] * network_scale(*e.size, net_w, net_h, letterbox))
    return np.concatenate(out) if out else np.zeros((0, 2))


def _network(text: str, file: str) -> Optional[Darknet]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Darknet(text, file, warn_unused=False)
    except DarkcfgError:
        return None


def check_with_cfg(check: DatasetCheck, cfg: PathLike) -> tuple[list[Problem], Optional[AnchorFit], str]:
    """The cfg's problems against the dataset, the anchors fit, and the fixed cfg text."""
    text, file = read_cfg(cfg)
    problems = [Problem(p.where, p.kind, p.message, p.blocking) for p in check_cfg_heads(text, file, check.classes)]
    fixed = fix_cfg_text(text, file, check.classes) if check.classes is not None else text
    model = _network(fixed, file)
    if model is None:
        return problems, None, fixed
    try:
        heads = head_layers(model)
    except DarkcfgError:
        heads = []
    net_w, net_h = model.net.width, model.net.height
    wh = box_sizes(check, net_w, net_h, bool(model.net.letter_box))
    fit = None
    if heads and len(wh):
        finest = max(heads, key=lambda h: h.in_shape.w * h.in_shape.h)
        cell_w, cell_h = net_w / finest.in_shape.w, net_h / finest.in_shape.h
        _tiny(check, cell_w, cell_h, net_w, net_h, bool(model.net.letter_box), problems)
        a = cfg_anchors(heads, net_w, net_h)
        if a is not None:
            mean = float(wh_iou(wh, a).max(axis=1).mean())
            k = min(len(a), len(wh))
            km, km_iou = kmeans_anchors(wh, k, seed=0, restarts=3)
            fit = AnchorFit(mean, km_iou, km, len(wh))
            if mean < LOW_ANCHOR_IOU:
                problems.append(Problem(file, "anchors fit", f"the boxes' mean best IoU with the cfg's anchors is "
                                        f"{mean:.2f} at {net_w}x{net_h} (k-means anchors: {km_iou:.2f}); run "
                                        "darkcfg calc-anchors", blocking=False))
    return problems, fit, fixed


def _tiny(check: DatasetCheck, cell_w: float, cell_h: float, net_w: int, net_h: int, letterbox: bool,
          problems: list[Problem]) -> None:
    for e in check.images:
        if e.size is None or not len(e.rows):
            continue
        sx, sy = network_scale(*e.size, net_w, net_h, letterbox)
        small = (e.rows[:, 3] * sx < TINY_FRACTION * cell_w) & (e.rows[:, 4] * sy < TINY_FRACTION * cell_h)
        for r in e.rows[small]:
            problems.append(Problem(label_file(e.path), "box much smaller than a cell",
                                    f"class {int(r[0])} box {r[3] * sx:.1f}x{r[4] * sy:.1f} px at the network size, "
                                    f"the finest head's cell is {cell_w:.0f}x{cell_h:.0f}", blocking=False))


def fixed_cfg_path(cfg: PathLike, text: str) -> tuple[Path, bool]:
    """Where `--fix` puts the fixed cfg: `<name>.fixed.cfg` beside `cfg`, else (that file exists with other
    text) the first of `<name>.fixed-2.cfg`, `-3`, ... that is free or already holds `text`; and whether it
    still has to be written (False: an existing file already holds exactly this text)."""
    cfg = Path(cfg)
    for k in range(1, 10_000):
        dest = cfg.with_name(cfg.stem + (".fixed.cfg" if k == 1 else f".fixed-{k}.cfg"))
        if not dest.exists():
            return dest, True
        try:
            if dest.is_file() and dest.read_text(encoding="utf-8") == text:
                return dest, False
        except (OSError, UnicodeDecodeError):
            pass
    raise DarkcfgError(f"{cfg}: no free <name>.fixed-N.cfg name beside it")


def run_check(data: PathLike, cfg: Optional[PathLike] = None, fix: Optional[PathLike] = None,
              classes: Optional[int] = None, progress: bool = True) -> CheckRun:
    """Check DATA (and CFG against it); with `fix`, write the fixed cfg beside CFG (`fixed_cfg_path`: an
    existing one is never replaced) and a cleaned copy of the dataset into the new folder `fix`."""
    check = check_dataset(data, classes, progress)
    run = CheckRun(check)
    fixed_text = None
    if cfg is not None:
        run.cfg_problems, run.anchors, fixed_text = check_with_cfg(check, cfg)
    if fix is not None:
        n = check.classes if check.classes is not None else (len(check.names) or None)
        if n is None:
            raise DarkcfgError(f"{data}: the number of classes is unknown (no classes= or names file): cannot fix")
        check_new_folder(fix)
        sources = dataset_sources(check)
        cfg_dest: Optional[tuple[Path, bool]] = None
        if cfg is not None and fixed_text is not None:
            sources.add(cfg)
            cfg_dest = fixed_cfg_path(cfg, fixed_text)
            sources.check_dest(cfg_dest[0])
        if cfg_dest is not None:
            dest, needed = cfg_dest
            if needed:
                write_text(dest, fixed_text, sources=sources)  # type: ignore[arg-type]
            run.fixed_cfg = dest
        run.clean = write_clean(check, fix, n, check.names, sources)
    return run
