"""Head outputs -> Darknet's detection array (network.c:get_network_boxes), as the reference computes it.

- [yolo] (yolo_layer.c:get_yolo_detections): cells in row-major order, anchors inner; a detection iff
  objectness > thresh (strict); bx = (col + x)/lw, by = (row + y)/lh; bw = exp(tw)*anchor_w/net_w, or with
  new_coords bw = tw*tw*4*anchor_w/net_w; prob_j = obj*cls_j kept iff > thresh, else 0.
- [Gaussian_yolo] (gaussian_yolo_layer.c): the same on entries x=0, y=2, w=4, h=6, obj=8, classes from 9,
  prob_j = obj*cls_j*(1 - mean of the four uncertainties 1, 3, 5, 7); `yolo_point` moves the centre.
- [region] (region_layer.c:get_region_detections, YOLOv2): every cell and anchor is a detection with
  objectness 1; bx = (col + logistic(x))/lw, bw = exp(tw)*anchor_w/lw (anchors in grid units); prob_j =
  obj*cls_j kept iff > thresh.
- correct_yolo_boxes maps boxes from the network input to the original image, undoing the letterbox:
  x = (x - (net_w - new_w)/2/net_w) / (new_w/net_w), w *= net_w/new_w (same for y, h), new_* from the
  reference's integer letterbox formula. The reference calls it with letter=0 for [region] even when the
  image was letterboxed (which misplaces YOLOv2 boxes); here the letterbox is undone for every head.

Arithmetic follows the C types: float32, with double where C promotes (exp, the letterbox offset).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from darkcfg.detections import Detections
from darkcfg.image import letterbox_size
from darkcfg.layers.region import Region
from darkcfg.layers.yolo import Yolo

F32, F64 = np.float32, np.float64


def _rows(layer: torch.nn.Module, out: Tensor) -> Tensor:
    """A head's output -> (B, H*W*n, entries): row r is cell r // n (row-major), anchor r % n."""
    if isinstance(layer, Region):  # already (B, H, W, n*entries)
        b = out.shape[0]
        return out.reshape(b, -1, layer.entries)
    b, _, h, w = out.shape
    y = out.view(b, layer.n, layer.entries, h, w).permute(0, 3, 4, 1, 2)  # (B, H, W, n, E)
    return y.reshape(b, h * w * layer.n, layer.entries)


def _yolo_candidates(layer: Yolo, out: Tensor, thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """One image's [yolo] output (n*E, H, W) -> the rows whose objectness > thresh: their flat indices (N,)
    in `_rows` order (cell-major, anchor-minor) and the rows (N, E) float32, without reordering the whole
    output. On a GPU the selection runs there and only these rows travel to the host; on the CPU in numpy,
    whose calls cost microseconds where torch's cost tens (this runs per head and image)."""
    n, e = layer.n, layer.entries
    h, w = out.shape[-2:]
    obj = e - layer.params.classes - 1
    if out.device.type != "cpu":
        return _candidates_on_device(out.reshape(n, e, h, w), obj, thresh)
    v = out.float().numpy().reshape(n, e, h, w)
    a, y, x = np.nonzero(v[:, obj] > thresh)  # (N,) each, in (anchor, row, col) order
    idx = (y * w + x) * n + a
    o = np.argsort(idx, kind="stable")
    return idx[o], v[a[o], :, y[o], x[o]]  # (N,), (N, E)


def _candidates_on_device(v: Tensor, obj: int, thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """`_yolo_candidates` in torch ops: v (n, E, H, W) -> flat indices (N,), rows (N, E) on the host."""
    n, _, _, w = v.shape
    a, y, x = torch.nonzero(v[:, obj] > thresh, as_tuple=True)  # (N,) each
    idx = (y * w + x) * n + a
    o = torch.argsort(idx)  # distinct keys: stable or not, the same order
    return idx[o].cpu().numpy(), v[a[o], :, y[o], x[o]].float().cpu().numpy()


def _yolo(layer: Yolo, rows: np.ndarray, idx: np.ndarray, lw: int, lh: int, net_w: int, net_h: int,
          thresh: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selected rows (N, E) at flat indices idx -> boxes (N, 4) relative to the network input, obj, probs."""
    p = layer.params
    n = layer.n
    cell, a = idx // n, idx % n
    row, col = (cell // lw).astype(F32), (cell % lw).astype(F32)
    anchors = np.asarray(p.anchors, dtype=F32).reshape(-1, 2)[np.asarray(p.mask)[a]]  # (N, 2)
    if layer.gaussian:
        x, y, tw, th, obj = rows[:, 0], rows[:, 2], rows[:, 4], rows[:, 6], rows[:, 8]
        cls = rows[:, 9:]
    else:
        x, y, tw, th, obj = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        cls = rows[:, 5:]
    bx = (col + x) / F32(lw)
    by = (row + y) / F32(lh)
    if not layer.gaussian and p.new_coords:
        bw = tw * tw * F32(4) * anchors[:, 0] / F32(net_w)
        bh = th * th * F32(4) * anchors[:, 1] / F32(net_h)
    else:
        bw = (np.exp(tw.astype(F64)) * anchors[:, 0].astype(F64) / net_w).astype(F32)
        bh = (np.exp(th.astype(F64)) * anchors[:, 1].astype(F64) / net_h).astype(F32)
    if layer.gaussian:
        if p.yolo_point == "left_top":
            bx, by = bx + bw / F32(2), by + bh / F32(2)
        elif p.yolo_point == "right_bottom":
            bx, by = bx - bw / F32(2), by - bh / F32(2)
        uc = ((rows[:, 1] + rows[:, 3] + rows[:, 5] + rows[:, 7]).astype(F64) / 4.0).astype(F32)
        probs = ((obj[:, None] * cls).astype(F64) * (1.0 - uc.astype(F64))[:, None]).astype(F32)
    else:
        probs = obj[:, None] * cls
    probs = np.where(probs > thresh, probs, F32(0)).astype(F32)
    return np.stack([bx, by, bw, bh], axis=1).astype(F32), obj.astype(F32), probs


def _region(layer: Region, rows: np.ndarray, lw: int, lh: int,
            thresh: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = layer.params
    n = layer.n
    idx = np.arange(len(rows))
    cell, a = idx // n, idx % n
    row, col = (cell // lw).astype(F32), (cell % lw).astype(F32)
    anchors = np.asarray(p.anchors, dtype=F32).reshape(-1, 2)[a]
    logistic = lambda v: (1.0 / (1.0 + np.exp(-v.astype(F64)))).astype(F32)  # noqa: E731 (activations.h)
    bx = (col + logistic(rows[:, 0])) / F32(lw)
    by = (row + logistic(rows[:, 1])) / F32(lh)
    bw = (np.exp(rows[:, 2].astype(F64)) * anchors[:, 0].astype(F64) / lw).astype(F32)
    bh = (np.exp(rows[:, 3].astype(F64)) * anchors[:, 1].astype(F64) / lh).astype(F32)
    scale = rows[:, p.coords].astype(F32)
    if p.classfix == -1:
        scale = np.where(scale < F32(0.5), F32(0), scale)
    probs = scale[:, None] * rows[:, p.coords + 1:]
    probs = np.where(probs > thresh, probs, F32(0)).astype(F32)
    return np.stack([bx, by, bw, bh], axis=1).astype(F32), np.ones(len(rows), F32), probs


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


def head_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The detection heads ([yolo], [Gaussian_yolo], [region]) in network order."""
    heads = [model.layers[i] for i in model.output_layers]
    bad = [m for m in heads if not isinstance(m, (Yolo, Region))]
    if bad:
        raise ValueError(f"{model.cfg_file}: layer {bad[0].index} ({bad[0].ltype}) is not a detection head; "
                         "detection needs a cfg ending in [yolo], [Gaussian_yolo] or [region] layers")
    return heads


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
           letterbox: bool) -> list[Detections]:
    """get_network_boxes for a batch.

    Args:
        model: the Darknet network that produced `outputs` (its heads and [net] size are used).
        outputs: the head outputs of `model(x)`, x (B, C, net_h, net_w).
        sizes: (width, height) of each original image, B of them.
        thresh: detection threshold (strict >), on objectness and on each class probability.
        letterbox: whether the inputs were letterboxed (boxes are mapped back accordingly).
    Returns:
        B `Detections`, each with boxes relative to its original image, in the reference's order.
    """
    heads = head_layers(model)
    net_w, net_h = model.net.width, model.net.height
    t32 = F32(thresh)
    classes = heads[-1].params.classes
    result = []
    for b, (w, h) in enumerate(sizes):
        parts = []
        for m, out in zip(heads, outputs):
            out = out.detach()
            if isinstance(m, Region):
                lh, lw = out.shape[1], out.shape[2]
                parts.append(_region(m, _rows(m, out.float())[b].cpu().numpy(), lw, lh, t32))
                continue
            lh, lw = out.shape[2], out.shape[3]
            idx, sel = _yolo_candidates(m, out[b], thresh)
            parts.append(_yolo(m, sel, idx, lw, lh, net_w, net_h, t32))
        if not parts or sum(len(p[0]) for p in parts) == 0:
            result.append(Detections.empty(classes, w, h))
            continue
        boxes = np.concatenate([p[0] for p in parts])
        boxes = correct_boxes(boxes, w, h, net_w, net_h, letterbox)
        obj = np.concatenate([p[1] for p in parts])
        probs = np.concatenate([p[2] for p in parts])
        result.append(Detections(boxes, obj, probs, w, h))
    return result
