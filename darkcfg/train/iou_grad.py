"""IoU variants of centre-size boxes and the reference's IoU gradient (box.c: box_iou ... dx_box_iou).

Every function works elementwise on tensors of any broadcastable shape; a box is four tensors
x, y, w, h (centre and size, relative to the image). The float operations follow box.c in order, so the
float32 results are the reference's.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class XYWH(NamedTuple):
    """A batch of boxes: centre x, y and size w, h, each a tensor of the same (broadcast) shape."""

    x: Tensor
    y: Tensor
    w: Tensor
    h: Tensor


def _overlap(x1: Tensor, w1: Tensor, x2: Tensor, w2: Tensor) -> Tensor:
    left = torch.maximum(x1 - w1 / 2, x2 - w2 / 2)
    right = torch.minimum(x1 + w1 / 2, x2 + w2 / 2)
    return right - left


def intersection(a: XYWH, b: XYWH) -> Tensor:
    """box_intersection: 0 when the boxes do not overlap."""
    w = _overlap(a.x, a.w, b.x, b.w)
    h = _overlap(a.y, a.h, b.y, b.h)
    return torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)


def iou(a: XYWH, b: XYWH) -> Tensor:
    """box_iou: I/U, and 0 where I or U is 0."""
    i = intersection(a, b)
    u = a.w * a.h + b.w * b.h - i
    ok = (i != 0) & (u != 0)
    return torch.where(ok, i / torch.where(ok, u, torch.ones_like(u)), torch.zeros_like(i))


def _enclosing(a: XYWH, b: XYWH) -> tuple[Tensor, Tensor]:
    top = torch.minimum(a.y - a.h / 2, b.y - b.h / 2)
    bot = torch.maximum(a.y + a.h / 2, b.y + b.h / 2)
    left = torch.minimum(a.x - a.w / 2, b.x - b.w / 2)
    right = torch.maximum(a.x + a.w / 2, b.x + b.w / 2)
    return right - left, bot - top


def _safe_div(n: Tensor, d: Tensor) -> Tensor:
    return n / torch.where(d == 0, torch.ones_like(d), d)


def giou(a: XYWH, b: XYWH) -> Tensor:
    """box_giou: IoU - (C - U)/C with C the enclosing box's area."""
    w, h = _enclosing(a, b)
    c = w * h
    v = iou(a, b)
    u = a.w * a.h + b.w * b.h - intersection(a, b)
    return torch.where(c == 0, v, v - _safe_div(c - u, c))


def diou(a: XYWH, b: XYWH) -> Tensor:
    """box_diou: IoU - (d^2/c^2)^0.6 (the reference's exponent, not the paper's 1)."""
    w, h = _enclosing(a, b)
    c = w * w + h * h
    v = iou(a, b)
    d = (a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y)
    return torch.where(c == 0, v, v - _safe_div(d, c).pow(0.6))


def _aspect_term(pred: XYWH, truth: XYWH) -> Tensor:
    diff = torch.atan(truth.w / truth.h) - torch.atan(pred.w / pred.h)
    return 4 / (math.pi * math.pi) * diff * diff


def ciou(a: XYWH, b: XYWH) -> Tensor:
    """box_ciou(a=pred, b=truth): IoU - (d^2/c^2 + alpha v)."""
    w, h = _enclosing(a, b)
    c = w * w + h * h
    v = iou(a, b)
    d = _safe_div((a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y), c)
    ar = _aspect_term(a, b)
    alpha = ar / (1 - v + ar + 0.000001)
    return torch.where(c == 0, v, v - (d + alpha * ar))


def iou_kind(a: XYWH, b: XYWH, kind: str) -> Tensor:
    """box_iou_kind: kind is iou, giou, diou or ciou (anything else is plain IoU)."""
    return {"giou": giou, "diou": diou, "ciou": ciou}.get(kind, iou)(a, b)


def dx_box_iou(pred: XYWH, truth: XYWH, kind: str) -> XYWH:
    """d(IoU variant)/d(pred x, y, w, h) as box.c:dx_box_iou computes it (its tie and sign rules included).

    kind: "giou", "diou", "ciou", or anything else for plain IoU. The intersection I is not clamped at 0
    (as in the reference); where the boxes do not overlap, DIoU/CIoU/GIoU keep only their extra term.
    """
    pt0, pb0 = pred.y - pred.h / 2, pred.y + pred.h / 2
    pl0, pr0 = pred.x - pred.w / 2, pred.x + pred.w / 2
    pt, pb = torch.minimum(pt0, pb0), torch.maximum(pt0, pb0)
    pl, pr = torch.minimum(pl0, pr0), torch.maximum(pl0, pr0)
    tt, tb = truth.y - truth.h / 2, truth.y + truth.h / 2
    tl, tr = truth.x - truth.w / 2, truth.x + truth.w / 2

    X = (pb - pt) * (pr - pl)
    Xhat = (tb - tt) * (tr - tl)
    Ih = torch.minimum(pb, tb) - torch.maximum(pt, tt)
    Iw = torch.minimum(pr, tr) - torch.maximum(pl, tl)
    I = Iw * Ih  # noqa: E741
    U = X + Xhat - I
    S = (pred.x - truth.x) * (pred.x - truth.x) + (pred.y - truth.y) * (pred.y - truth.y)
    gCw = torch.maximum(pr, tr) - torch.minimum(pl, tl)
    gCh = torch.maximum(pb, tb) - torch.minimum(pt, tt)
    gC = gCw * gCh
    zero = torch.zeros_like(X)

    dX = {"t": -(pr - pl), "b": pr - pl, "l": -(pb - pt), "r": pb - pt}
    dI = {"t": torch.where(pt > tt, -Iw, zero), "b": torch.where(pb < tb, Iw, zero),
          "l": torch.where(pl > tl, -Ih, zero), "r": torch.where(pr < tr, Ih, zero)}
    dU = {k: dX[k] - dI[k] for k in dX}
    dC = {"t": torch.where(pt < tt, -gCw, zero), "b": torch.where(pb > tb, gCw, zero),
          "l": torch.where(pl < tl, -gCh, zero), "r": torch.where(pr > tr, gCh, zero)}

    p = {k: torch.where(U > 0, _safe_div(U * dI[k] - I * dU[k], U * U), zero) for k in dX}
    tb_ok, lr_ok = pt0 < pb0, pl0 < pr0
    p["t"] = torch.where(tb_ok, p["t"], p["b"])
    p["l"] = torch.where(lr_ok, p["l"], p["r"])
    no_overlap = (Iw <= 0) | (Ih <= 0)
    if kind == "giou":
        g = {k: (gC * dU[k] - U * dC[k]) / (gC * gC) for k in dX}  # inf/nan where gC == 0, as the reference
        p = {k: torch.where(no_overlap, g[k], torch.where(gC > 0, p[k] + g[k], p[k])) for k in dX}

    # the enclosing box again, from the unsorted edges (box.c recomputes it this way)
    Ct = torch.minimum(pred.y - pred.h / 2, truth.y - truth.h / 2)
    Cb = torch.maximum(pred.y + pred.h / 2, truth.y + truth.h / 2)
    Cl = torch.minimum(pred.x - pred.w / 2, truth.x - truth.w / 2)
    Cr = torch.maximum(pred.x + pred.w / 2, truth.x + truth.w / 2)
    Cw, Ch = Cr - Cl, Cb - Ct
    C = Cw * Cw + Ch * Ch
    one = torch.ones_like(X)
    dCt_dy = torch.where(pt < tt, one, zero)
    dCt_dh = torch.where(pt < tt, -0.5 * one, zero)
    dCb_dy = torch.where(pb > tb, one, zero)
    dCb_dh = torch.where(pb > tb, 0.5 * one, zero)
    dCl_dx = torch.where(pl < tl, one, zero)
    dCl_dw = torch.where(pl < tl, -0.5 * one, zero)
    dCr_dx = torch.where(pr > tr, one, zero)
    dCr_dw = torch.where(pr > tr, 0.5 * one, zero)
    dCw_dx, dCw_dw = dCr_dx - dCl_dx, dCr_dw - dCl_dw
    dCh_dy, dCh_dh = dCb_dy - dCt_dy, dCb_dh - dCt_dh  # dCw/dy = dCw/dh = dCh/dx = dCh/dw = 0

    dx = p["l"] + p["r"]
    dy = p["t"] + p["b"]
    dw = p["r"] - p["l"]
    dh = p["b"] - p["t"]
    if kind in ("diou", "ciou"):
        CC = C * C
        ex = (2 * (truth.x - pred.x) * C - (2 * Cw * dCw_dx) * S) / CC
        ey = (2 * (truth.y - pred.y) * C - (2 * Ch * dCh_dy) * S) / CC
        ew = (2 * Cw * dCw_dw) * S / CC
        eh = (2 * Ch * dCh_dh) * S / CC
        if kind == "ciou":
            diff = torch.atan(truth.w / truth.h) - torch.atan(pred.w / pred.h)
            ar = 4 / (math.pi * math.pi) * diff * diff
            alpha = ar / (1 - I / U + ar + 0.000001)
            ew = ew + alpha * (8 / (math.pi * math.pi) * diff * pred.h)
            eh = eh + alpha * (-8 / (math.pi * math.pi) * diff * pred.w)
        pos = C > 0
        dx = torch.where(no_overlap, ex, torch.where(pos, dx + ex, dx))
        dy = torch.where(no_overlap, ey, torch.where(pos, dy + ey, dy))
        dw = torch.where(no_overlap, ew, torch.where(pos, dw + ew, dw))
        dh = torch.where(no_overlap, eh, torch.where(pos, dh + eh, dh))
    return XYWH(dx, dy, dw, dh)
