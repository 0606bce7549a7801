"""Anchor boxes by k-means over the training labels (detector.c:calc_anchors).

Every label's (w*width, h*height) is a point; the distance is 1 - IoU of two boxes sharing a corner
(IoU = min(w)*min(h) / union). Centres start with k-means++ (seeded, so runs repeat), move to the mean of
their points until no assignment changes; the best of 10 starts is kept, sorted by area like the
reference. Reported: the anchors in cfg form and the average over points of the best IoU with an anchor.
"""
from __future__ import annotations

import numpy as np


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
