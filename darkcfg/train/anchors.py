"""Anchor boxes by k-means over the training labels (detector.c:calc_anchors).

Every label's (w*width, h*height) is a point; the distance is 1 - IoU of two boxes sharing a corner
(IoU = min(w)*min(h) / union). Centres start with k-means++ (seeded, so runs repeat), move to the mean of
their points until no assignment changes; the best of 10 starts is kept, sorted by area like the
reference. Reported: the anchors in cfg form and the average over points of the best IoU with an anchor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from darkcfg.data.dataset import DataError, image_list, label_file, open_data, read_labels
from darkcfg.data.images import read_bgr
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
