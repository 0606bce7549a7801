"""Head outputs -> Darknet's detection array (network.c:get_network_boxes), as the reference computes it.

For each head in network order and each image: the candidate cells (objectness > thresh, strict, at the
head's `objectness_entry`; every cell for a head without one, such as [region]) in the reference's order,
cells row-major and anchors inner; their boxes, objectness and class probabilities from the head's own
`decode` (darkcfg.model.heads), in the reference's C arithmetic; prob_j kept iff > thresh, else 0. Then
correct_yolo_boxes maps boxes from the network input to the original image, undoing the letterbox (for
heads whose `undo_letterbox` says so): x = (x - (net_w - new_w)/2/net_w) / (new_w/net_w), w *= net_w/new_w
(same for y, h), new_* from the reference's integer letterbox formula.

Candidates are selected on the host in numpy (whose calls cost microseconds where torch's cost tens: this
runs per head and image), or with torch where the outputs live on a GPU, and only they are decoded.

With an `EmbeddingTap` (darkcfg.infer.track.appearance), each candidate also gets its embedding: the cfg's
embedding layer at its cell (yolo_layer.c:get_yolo_detections), or the feature map pooled inside its box.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.preprocess import letterbox_size
from darkcfg.infer.track.appearance import EmbeddingTap
from darkcfg.model.heads import CellIndex, DetectionHead, head_layers

F32, F64 = np.float32, np.float64


def select_candidates(planes: Tensor, obj: Optional[int], thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """One image's head output as planes (n, E, H, W) -> the candidates: their flat indices (N,) in the
    reference's order (cell-major, anchor-minor: index = cell * n + anchor) and their entries (N, E) float32,
    without reordering the whole output. `obj`: the entry compared with thresh (None: every cell)."""
    if planes.device.type != "cpu":
        return _candidates_on_device(planes, obj, thresh)
    v = planes.float().numpy()
    n, _, _, w = v.shape
    if obj is None:
        a, y, x = (k.reshape(-1) for k in np.indices((n, v.shape[2], w)))
    else:
        a, y, x = np.nonzero(v[:, obj] > thresh)  # (N,) each, in (anchor, row, col) order
    idx = (y * w + x) * n + a
    o = np.argsort(idx, kind="stable")
    return idx[o], v[a[o], :, y[o], x[o]]  # (N,), (N, E)


def _candidates_on_device(v: Tensor, obj: Optional[int], thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """`select_candidates` in torch ops, where v (n, E, H, W) lives -> indices (N,), entries (N, E) on the host."""
    n, _, _, w = v.shape
    keep = v[:, obj] > thresh if obj is not None else torch.ones_like(v[:, 0], dtype=torch.bool)
    a, y, x = torch.nonzero(keep, as_tuple=True)  # (N,) each
    idx = (y * w + x) * n + a
    o = torch.argsort(idx)  # distinct keys: stable or not, the same order
    return idx[o].cpu().numpy(), v[a[o], :, y[o], x[o]].float().cpu().numpy()


def _decode_head(head: DetectionHead, planes: Tensor, net_w: int, net_h: int, thresh: float,
                 embed: Optional[Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """One image's head planes (n, E, H, W) -> boxes (N, 4) relative to the network input, objectness (N,),
    probs (N, C) zeroed at or below thresh, and embed(indices (N,), boxes, live (N,)) -> (N, D) where asked
    (else None; live: the candidates with a prob above thresh)."""
    n, _, lh, lw = planes.shape
    idx, rows = select_candidates(planes, head.objectness_entry, thresh)
    if not len(idx):
        empty = None if embed is None else embed(idx, np.zeros((0, 4), F32), np.zeros(0, bool))
        return np.zeros((0, 4), F32), np.zeros(0, F32), np.zeros((0, head.classes), F32), empty
    cell, slot = np.divmod(idx, n)
    row, col = np.divmod(cell, lw)
    at = CellIndex(torch.from_numpy(col.astype(F32)), torch.from_numpy(row.astype(F32)), torch.from_numpy(slot),
                   lw, lh)
    d = head.decode(torch.from_numpy(rows), at, net_w, net_h, exact=True)
    boxes = torch.stack([d.x, d.y, d.w, d.h], 1).numpy()
    probs = d.probs.numpy()
    probs = np.where(probs > F32(thresh), probs, F32(0)).astype(F32)
    emb = None if embed is None else embed(idx, boxes, (probs > 0).any(1))
    return boxes, d.objectness.numpy().astype(F32), probs, emb


def correct_boxes(boxes: np.ndarray, width: int, height: int, net_w: int, net_h: int, letter: bool) -> np.ndarray:
    """yolo_layer.c:correct_yolo_boxes. boxes (N, 4) relative to the network input -> relative to the image."""
    if letter:
        new_w, new_h = letterbox_size(width, height, net_w, net_h)
    else:
        new_w, new_h = net_w, net_h
    b = boxes.astype(F32, copy=True)
    b[:, 0] = ((b[:, 0].astype(F64) - (net_w - new_w) / 2.0 / net_w) / F64(F32(new_w) / F32(net_w))).astype(F32)
    b[:, 1] = ((b[:, 1].astype(F64) - (net_h - new_h) / 2.0 / net_h) / F64(F32(new_h) / F32(net_h))).astype(F32)
    b[:, 2] *= F32(net_w) / F32(new_w)
    b[:, 3] *= F32(net_h) / F32(new_h)
    return b


def _quiet_floats(fn: Callable) -> Callable:
    """An untrained or diverging network gives exp overflows: they decode to inf boxes, as in the C code,
    without numpy's warnings."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)

    return wrapper


@_quiet_floats
def decode(model: torch.nn.Module, outputs: Sequence[Tensor], sizes: Sequence[tuple[int, int]], thresh: float,
           letterbox: bool, tap: Optional[EmbeddingTap] = None) -> list[DetectionArray]:
    """get_network_boxes for a batch.

    Args:
        model: the Darknet network that produced `outputs` (its heads and [net] size are used).
        outputs: the head outputs of `model(x)`, x (B, C, net_h, net_w).
        sizes: (width, height) of each original image, B of them.
        thresh: detection threshold (strict >), on objectness and on each class probability.
        letterbox: whether the inputs were letterboxed (boxes are mapped back accordingly).
        tap: the hooks that saw this forward's layers (darkcfg.infer.track.appearance): each detection's
            embedding is filled in (`DetectionArray.embeddings`); None: no embeddings.
    Returns:
        B `DetectionArray`, each with boxes relative to its original image, in the reference's order.
    """
    heads = head_layers(model)
    net_w, net_h = model.net.width, model.net.height
    classes = heads[-1].classes
    planes = [h.planes(out.detach()) for h, out in zip(heads, outputs)]  # (B, n, E, H, W) views
    if tap is not None:
        tap.check()
    result = []
    for b, (w, h) in enumerate(sizes):
        parts = [(head, _decode_head(head, p[b], net_w, net_h, thresh, _embedder(tap, k, b, head.n)))
                 for k, (head, p) in enumerate(zip(heads, planes))]
        if sum(len(d[0]) for _, d in parts) == 0:
            empty = DetectionArray.empty(classes, w, h)
            if tap is not None:
                empty.embeddings = np.zeros((0, tap.size), F32)
            result.append(empty)
            continue
        boxes = np.concatenate([correct_boxes(d[0], w, h, net_w, net_h, letterbox and head.undo_letterbox)
                                for head, d in parts])
        obj = np.concatenate([d[1] for _, d in parts])
        probs = np.concatenate([d[2] for _, d in parts])
        emb = None if tap is None else np.concatenate([d[3] for _, d in parts]).astype(F32)
        result.append(DetectionArray(boxes, obj, probs, w, h, embeddings=emb))
    return result


def _embedder(tap: Optional[EmbeddingTap], head: int, image: int,
              n: int) -> Optional[Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]]:
    """(candidate indices, boxes relative to the network input, which have a prob) -> their embeddings, for one
    head and image."""
    if tap is None:
        return None
    return lambda idx, boxes, live: tap.embed(head, image, idx, n, boxes, live)
