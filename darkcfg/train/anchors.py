"""Anchor boxes by k-means over the training labels (detector.c:calc_anchors).

Every label's (w*width, h*height) is a point; the distance is 1 - IoU of two boxes sharing a corner
(IoU = min(w)*min(h) / union). Centres start with k-means++ (seeded, so runs repeat), move to the mean of
their points until no assignment changes; the best of 10 starts is kept, sorted by area like the
reference. Reported: the anchors in cfg form and the average over points of the best IoU with an anchor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from darkcfg.data.dataset import DataError, image_list, label_file, open_data, read_labels
from darkcfg.data.images import image_size, read_bgr
from darkcfg.files import write_text
from darkcfg.infer.preprocess import network_scale
from darkcfg.model.heads import DetectionHead
from darkcfg.progress import Progress


def wh_iou(wh: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(N, 2) and (K, 2) widths/heights -> (N, K) IoU of boxes aligned at a corner."""
    inter = np.minimum(wh[:, None, 0], centers[None, :, 0]) * np.minimum(wh[:, None, 1], centers[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + centers[None, :, 0] * centers[None, :, 1] - inter
    return inter / np.maximum(union, 1e-12)


def kmeans_anchors(wh: np.ndarray, k: int, seed: int = 0, restarts: int = 10,
                   max_iter: int = 1000) -> tuple[np.ndarray, float]:
    """wh (N, 2) in pixels -> (anchors (k, 2) sorted by area, average best IoU in [0, 1]); the best of
    `restarts` seeded runs."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    if len(wh) < k:
        raise ValueError(f"{len(wh)} boxes cannot make {k} anchors")
    rng = np.random.default_rng(seed)
    runs = [_kmeans(wh, k, rng, max_iter) for _ in range(restarts)]
    return max(runs, key=lambda r: r[1])


def _kmeans(wh: np.ndarray, k: int, rng: np.random.Generator, max_iter: int) -> tuple[np.ndarray, float]:
    centers = wh[[rng.integers(len(wh))]]
    while len(centers) < k:  # k-means++: the next centre far (in 1 - IoU) from the chosen ones
        d = 1 - wh_iou(wh, centers).max(axis=1)
        p = d**2 / (d**2).sum() if d.sum() > 0 else None
        centers = np.vstack([centers, wh[rng.choice(len(wh), p=p)]])
    assign = np.full(len(wh), -1)
    for _ in range(max_iter):
        new = wh_iou(wh, centers).argmax(axis=1)
        if (new == assign).all():
            break
        assign = new
        for j in range(k):
            if (assign == j).any():
                centers[j] = wh[assign == j].mean(axis=0)
    centers = centers[np.argsort(centers[:, 0] * centers[:, 1], kind="stable")]
    return centers, float(wh_iou(wh, centers).max(axis=1).mean())


def anchors_line(anchors: np.ndarray, width: int) -> str:
    """`anchors = 10, 14, ...` as the reference prints it (%3.0f above 32 px, else %2.4f)."""
    fmt = "{:3.0f},{:3.0f}" if width > 32 else "{:2.4f},{:2.4f}"
    return ", ".join(fmt.format(w, h) for w, h in anchors)


@dataclass
class AnchorsResult:
    """What `calc_anchors` found: the anchors (k, 2) in pixels sorted by area, their cfg line, the average
    best IoU of the labelled boxes with them, how many images and boxes were read, and (when current anchors
    were given) the average best IoU of the boxes with those."""

    anchors: np.ndarray
    line: str
    avg_iou: float
    images: int
    boxes: int
    current_iou: Optional[float] = None


def cfg_anchors(heads: Sequence[DetectionHead], net_w: int, net_h: int) -> Optional[np.ndarray]:
    """The distinct anchors (k, 2) of a network's heads in network-input pixels (None: no head has anchors)."""
    sizes = [a.numpy().reshape(-1, 2) for a in (h.anchor_sizes(net_w, net_h) for h in heads) if a is not None]
    return np.unique(np.concatenate(sizes), axis=0) if sizes else None


@dataclass
class CfgAnchors:
    """What calc-anchors takes from a cfg: its (possibly overridden) network size, letter_box, and its current
    anchors (k, 2) in pixels (None: its heads have none)."""

    width: int
    height: int
    letterbox: bool
    current: Optional[np.ndarray]


def read_cfg_anchors(cfg: Union[str, Path], width: Optional[int] = None, height: Optional[int] = None) -> CfgAnchors:
    """The network of `cfg` (at width x height when both are given; unused options are not reported here)."""
    import warnings

    from darkcfg.model.heads import head_layers
    from darkcfg.model.network import Darknet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Darknet.from_file(cfg, size=(width, height) if width and height else None, warn_unused=False)
    w, h = width or model.net.width, height or model.net.height
    return CfgAnchors(w, h, bool(model.net.letter_box), cfg_anchors(head_layers(model), w, h))


def calc_anchors(data: Union[str, Path], num: int, width: int, height: int, seed: int = 0,
                 out: Optional[Union[str, Path]] = None, progress: bool = True, letterbox: bool = False,
                 current: Optional[np.ndarray] = None) -> AnchorsResult:
    """`darknet detector calc_anchors DATA -num_of_clusters num -width W -height H`: k-means anchors over
    the labels of DATA's train list; the anchors line is written to `out` when given.

    letterbox: measure each box as the network sees it after letterboxing its image (w * image_w * s with
    s = min(W / image_w, H / image_h)); the reference's calc_anchors always stretches to W x H, which is wrong
    for letter_box=1 cfgs. current: (k, 2) anchors in pixels (a cfg's) to report their average best IoU.
    """
    dc = open_data(data)
    if dc.train is None:
        raise DataError(f"{data}: no 'train' list")
    paths = image_list(dc.train)
    boxes = []
    with Progress(len(paths), "labels", unit="img", enabled=progress and len(paths) > 1) as bar:
        for p in paths:
            lab = read_labels(label_file(p), dc.classes)
            if letterbox and len(lab):
                ih, iw = read_bgr(p).shape[:2]
                boxes.append(lab[:, 3:5] * network_scale(iw, ih, width, height, True))
            else:
                boxes.append(lab[:, 3:5] * [width, height])
            bar.update(1)
    wh = np.concatenate(boxes) if boxes else np.zeros((0, 2))
    if len(wh) < num:
        raise DataError(f"{dc.train}: {len(wh)} labelled boxes, need at least --num {num}")
    anchors, iou = kmeans_anchors(wh, num, seed)
    line = anchors_line(anchors, width)
    if out is not None:
        write_text(out, line)
    cur = float(wh_iou(wh, np.asarray(current, np.float64).reshape(-1, 2)).max(axis=1).mean()) \
        if current is not None and len(current) else None
    return AnchorsResult(anchors, line, iou, len(paths), len(wh), cur)


# -- the anchor check of train (ScaledYOLOv4's autoanchor, on the reference's box measure) ------------------------
ANCHOR_T = 4.0  # the authors' anchor_t: a box fits an anchor when neither side differs by more than this factor
RECALL_TARGET = 0.98  # below this best possible recall, --auto-anchors makes new anchors


def ratio_fit(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, 2) box and (K, 2) anchor sizes -> (N, K): min over w and h of min(r, 1/r), r = box / anchor (1: equal
    sizes; 1/ANCHOR_T: one side ANCHOR_T times the other's)."""
    r = wh[:, None, :] / np.maximum(anchors[None, :, :], 1e-9)
    return np.minimum(r, 1 / np.maximum(r, 1e-12)).min(2)


def best_possible_recall(wh: np.ndarray, anchors: np.ndarray, thr: float = ANCHOR_T) -> float:
    """The fraction of boxes some anchor fits within `thr` (the authors' bpr)."""
    if not len(wh):
        return 1.0
    return float((ratio_fit(wh, anchors).max(1) > 1 / thr).mean())


def anchor_fitness(wh: np.ndarray, anchors: np.ndarray, thr: float = ANCHOR_T) -> float:
    """The authors' fitness of a set of anchors: the mean over boxes of the best fit, counted where it fits."""
    best = ratio_fit(wh, anchors).max(1)
    return float((best * (best > 1 / thr)).mean())


def evolve_anchors(wh: np.ndarray, anchors: np.ndarray, generations: int = 1000, seed: int = 0,
                   thr: float = ANCHOR_T) -> tuple[np.ndarray, float]:
    """The authors' genetic refinement: mutate every anchor side with probability 0.9 by a factor
    1 + N(0, 0.1) x U(0, 1) (clipped to 0.3..3, sizes at least 2 px), keep a mutation that raises
    `anchor_fitness`; -> (anchors sorted by area, fitness)."""
    rng = np.random.default_rng(seed)
    best, f = np.asarray(anchors, np.float64).copy(), anchor_fitness(wh, anchors, thr)
    for _ in range(generations):
        v = np.ones_like(best)
        while (v == 1).all():
            v = ((rng.random(best.shape) < 0.9) * rng.random() * rng.standard_normal(best.shape) * 0.1 + 1)
            v = v.clip(0.3, 3.0)
        cand = (best * v).clip(min=2.0)
        fc = anchor_fitness(wh, cand, thr)
        if fc > f:
            best, f = cand, fc
    return best[np.argsort(best.prod(1), kind="stable")], f


@dataclass
class AnchorCheck:
    """The anchor check at training's start: the boxes measured, the cfg's anchors and their best possible recall,
    and (with --auto-anchors, when that is below RECALL_TARGET) the new anchors, their recall and cfg file."""

    boxes: int
    anchors: np.ndarray
    recall: float
    new: Optional[np.ndarray] = None
    new_recall: Optional[float] = None
    cfg: Optional[Path] = None


def training_box_sizes(paths: Sequence[str], net_w: int, net_h: int, letterbox: bool,
                       limit: int = 5000) -> np.ndarray:
    """(N, 2) sizes in network-input pixels of the boxes of up to `limit` training images (evenly spaced), as the
    network sees them (letterboxed when the cfg letterboxes: then each image's size is read)."""

    step = max(1, len(paths) // limit)
    out = []
    for p in paths[::step]:
        lab = read_labels(label_file(p), issues=[])
        if not len(lab):
            continue
        if letterbox:
            try:
                with open(p, "rb") as fh:
                    size = image_size(fh.read(1 << 16))  # the header alone: nothing is decoded
            except OSError:
                size = None
            if size is None:
                continue
            out.append(lab[:, 3:5] * network_scale(size[0], size[1], net_w, net_h, True))
        else:
            out.append(lab[:, 3:5] * [net_w, net_h])
    return np.concatenate(out) if out else np.zeros((0, 2))


def check_anchors(model: Any, paths: Sequence[str], auto: bool = False, seed: int = 0) -> Optional[AnchorCheck]:
    """The cfg's anchors against the training boxes (None: the heads have no anchors); with `auto` and a recall
    below RECALL_TARGET, new anchors (k-means as calc_anchors, then `evolve_anchors`) when they fit better."""
    from darkcfg.model.heads import head_layers

    net = model.net
    heads = head_layers(model)
    current = cfg_anchors(heads, net.width, net.height)
    if current is None:
        return None
    wh = training_box_sizes(paths, net.width, net.height, bool(net.letter_box))
    check = AnchorCheck(len(wh), current, best_possible_recall(wh, current))
    k = _anchor_count(model, heads) or len(current)
    if auto and check.recall < RECALL_TARGET and len(wh) >= k:
        km, _ = kmeans_anchors(wh, k, seed=seed, restarts=3)
        new, _ = evolve_anchors(wh, km, seed=seed)
        recall = best_possible_recall(wh, new)
        if recall > check.recall:
            check.new, check.new_recall = new, recall
    return check


def _anchor_count(model: Any, heads: Sequence[DetectionHead]) -> int:
    """The length of the heads' anchors= lists (num=; the largest when the heads differ)."""
    from darkcfg.model.cfg import parse_cfg_text

    sections = parse_cfg_text(model.cfg_text, model.cfg_file)
    return max((sections[h.index + 1].int("num", 1) or 1 for h in heads), default=0)


def write_anchors_cfg(model: Any, anchors: np.ndarray, dest: Path) -> str:
    """The cfg text of `model` with every head's anchors= set to `anchors` (K, 2) in network-input pixels, in the
    head's own units; written to `dest`, a new file (an existing one is not replaced). Heads whose num differs
    from K keep theirs."""
    from darkcfg.errors import DarkcfgError
    from darkcfg.files import write_text
    from darkcfg.model.cfg import edit_cfg_text, parse_cfg_text
    from darkcfg.model.heads import head_layers

    net = model.net
    sections = parse_cfg_text(model.cfg_text, model.cfg_file)
    edits = {}
    for head in head_layers(model):
        sec = sections[head.index + 1]
        if sec.int("num", 1) != len(anchors):
            continue
        unit = head.anchor_sizes(net.width, net.height)
        if unit is None:
            continue
        scale = (unit / head.slot_anchors.clamp(min=1e-9)).numpy().reshape(-1, 2)[0]  # pixels per unit
        values = anchors / scale
        edits[(head.index + 1, "anchors")] = ", ".join(f"{v:.0f}" if scale[0] == 1 else f"{v:.4f}"
                                                      for v in values.reshape(-1))
    if not edits:
        raise DarkcfgError(f"{model.cfg_file}: no head has num={len(anchors)} anchors to replace")
    if dest.exists():
        raise DarkcfgError(f"{dest}: exists; the new anchors go to a new file (remove it, or rename it)")
    text = edit_cfg_text(model.cfg_text, model.cfg_file, edits)
    write_text(dest, text)
    return text


def anchors_for_training(model: Any, cfg: Union[str, Path], train: Optional[str], auto: bool, seed: int,
                         size: Optional[tuple[int, int]], rank: int = 0,
                         world: int = 1) -> tuple[Any, Optional[AnchorCheck]]:
    """Training's anchor check: the cfg's anchors against the training boxes (`check_anchors`); with `auto` and a
    recall below RECALL_TARGET, new anchors written to `<cfg>.anchors.cfg` beside the cfg (by rank 0) and the
    network built from that file instead. -> (the network to train, the check to report; None: no anchors)."""
    import logging

    import torch

    from darkcfg.model.network import Darknet
    from darkcfg.train.distributed import barrier

    if not train or not any(m.is_head for m in model.layers):
        return model, None
    try:
        c = check_anchors(model, image_list(train), auto, seed)
    except DataError:
        return model, None  # the missing list is reported where training needs it
    if c is None or c.new is None:
        return model, c
    dest = Path(cfg).with_name(Path(cfg).stem + ".anchors.cfg")
    if rank == 0:
        write_anchors_cfg(model, c.new, dest)
    barrier(world)
    c.cfg = dest
    if rank == 0:
        logging.getLogger("darkcfg").info("anchors: new anchors (recall %.4f) written to %s; training with them",
                                          c.new_recall, dest)
    torch.manual_seed(seed)
    return Darknet(dest.read_text(), str(dest), size, warn_unused=False), c


def report_anchors(check: Optional[AnchorCheck], cfg: Union[str, Path], auto: bool) -> None:
    """The check's line when a run starts; a warning when the recall is below RECALL_TARGET and `auto` is off."""
    import logging
    import warnings

    from darkcfg.data.dataset import DataWarning

    if check is None:
        return
    logging.getLogger("darkcfg").info(
        "anchors: best possible recall %.4f of %d training boxes (a box fits an anchor within %gx)",
        check.new_recall if check.new is not None else check.recall, check.boxes, ANCHOR_T)
    if check.recall < RECALL_TARGET and not auto:
        warnings.warn(f"{cfg}: the anchors fit only {check.recall * 100:.1f} % of the training boxes "
                      f"(< {RECALL_TARGET * 100:.0f} %): --auto-anchors writes better ones into a new cfg",
                      DataWarning, stacklevel=3)
