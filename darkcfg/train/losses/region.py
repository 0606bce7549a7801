"""The training loss of a [region] layer (YOLOv2), as region_layer.c:forward_region_layer computes it.

Like [yolo], the reference writes a `delta` per entry and passes it back unchanged; `region_loss` returns
the surrogate `-sum(delta * x)` (autograd gradient exactly `-delta` with respect to the layer's input x),
shifted to the reference's cost `sum(delta^2)`. Unlike [yolo], [region] keeps x, y, w, h raw in its output,
so its deltas carry the logistic's derivative where the reference applies one:

* every cell and anchor: objectness towards 0 with `noobject_scale` unless its predicted box overlaps a
  truth by more than `thresh` (classfix=-1: towards that best IoU; classfix>0: also the class of that
  truth); while `seen` < 12800 images, x, y, w, h are pulled towards the anchor at the cell's centre with
  scale .01;
* every truth: the anchor of its cell whose box (`bias_match`: the anchor itself, else the predicted w, h)
  best matches the truth's shape gets coord_scale * (target - value) on x, y (through the logistic), w, h
  (log of the size in anchor units), objectness towards 1 (rescore: towards the IoU) with
  `object_scale`, and classes towards one-hot with `class_scale` (softmax: the cross-entropy gradient;
  focal_loss: scaled as the reference's focal variant). A later truth at the same cell and anchor
  overwrites an earlier one, as the reference's loop does.

Anchors are in grid units (the reference's DOABS). Truths: (B, T, >=5) rows `x, y, w, h, class id` relative
to the input, the list of an image ending at its first row with x == 0 (the reference reads 5 numbers a
truth for [region]; extra columns are ignored).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from darkcfg.model.heads import CellIndex
from darkcfg.model.layers.region import Region
from darkcfg.train import iou_grad
from darkcfg.train.iou_grad import XYWH
from darkcfg.train.losses import register_loss
from darkcfg.train.losses._truths import delta_loss, focal_class_factor, read_truths

PRIOR_SEEN = 12800  # images after which the reference stops pulling idle boxes towards their anchors
PRIOR_SCALE = 0.01


@dataclass
class RegionLossResult:
    """One [region] layer's training step.

    loss: scalar tensor, value = the reference's `l.cost` (sum of delta^2), d loss / d x = -delta.
    delta: (B, n*(coords+1+C), H, W), the reference's delta in the layer's input layout (detached).
    The rest are the values of the reference's "Region Avg IOU" line: avg_iou, avg_cat (class), avg_obj,
    avg_anyobj (no obj), recall (IoU > .5), count (truths).
    """

    loss: Tensor
    delta: Tensor
    cost: float
    count: int
    avg_iou: float
    avg_cat: float
    avg_obj: float
    avg_anyobj: float
    recall: float

    def log_line(self, index: int = -1) -> str:
        """The line forward_region_layer prints (the layer index is not part of it)."""
        return (f"Region Avg IOU: {self.avg_iou:f}, Class: {self.avg_cat:f}, Obj: {self.avg_obj:f}, "
                f"No Obj: {self.avg_anyobj:f}, Avg Recall: {self.recall:f},  count: {self.count}\n")


def _class_delta(probs: Tensor, cls: Tensor, scale: Tensor, focal: bool) -> Tensor:
    """delta_region_class for rows of `probs` (N, C) with target class `cls` (N,) and `scale` (N,)."""
    onehot = torch.nn.functional.one_hot(cls, probs.shape[1]).to(probs.dtype)
    d = scale.unsqueeze(1) * (onehot - probs)
    if focal:
        d = d * focal_class_factor(probs, cls)
    return d


def region_delta(layer: Region, x: Tensor, truths: Tensor, seen: int) -> tuple[Tensor, dict]:
    """The reference's delta for one [region] layer.

    x: (B, num*(coords+1+classes), H, W) the tensor entering the layer. truths: (B, T, >=5) as in the
    module docstring. seen: the reference's `net.seen` during this forward (images so far, this
    mini-batch included). Returns (delta of x's shape, stats as in `RegionLossResult`).
    """
    p = layer.params
    if p.coords != 4:
        raise NotImplementedError(f"training [region] with coords={p.coords} is not supported (only 4)")
    x = x.detach()
    bsz, _, h, w = x.shape
    n, ncls = p.num, p.classes
    ent = 5 + ncls
    dev, dt = x.device, x.dtype
    raw = x.view(bsz, n, ent, h, w).permute(0, 3, 4, 1, 2)  # B H W n E: the reference's flattened order
    sx, sy, obj = torch.sigmoid(raw[..., 0]), torch.sigmoid(raw[..., 1]), torch.sigmoid(raw[..., 4])
    probs = raw[..., 5:].softmax(-1) if p.softmax else raw[..., 5:]
    anchors = layer.anchors.to(dt)  # (n, 2) grid units
    aw, ah = anchors[:, 0], anchors[:, 1]
    at = CellIndex.grid(n, h, w, dev, dt)
    gi, gj = at.col, at.row
    d = layer.decode(raw, at, w, h)  # x, y, w, h are raw in the input as in the output: the same boxes
    pred = XYWH(d.x, d.y, d.w, d.h)

    truths, tbox, tcls, ok = read_truths(truths, ncls, dev, dt)
    tcount = truths.shape[1]

    # every cell and anchor: the best IoU of its predicted box with any truth of its image
    def bc(t: Tensor) -> Tensor:
        return t.view(bsz, 1, 1, 1, tcount)

    ious = iou_grad.iou(XYWH(*(c.unsqueeze(-1) for c in pred)), XYWH(*(bc(c) for c in tbox)))
    ious = torch.where(bc(ok), ious, torch.zeros_like(ious))
    if tcount:  # argmax: the first of equal maxima, as the reference's strict > loop
        best_t = ious.argmax(-1)
        best_iou = ious.gather(-1, best_t.unsqueeze(-1)).squeeze(-1)
    else:
        best_t, best_iou = torch.zeros_like(obj, dtype=torch.long), torch.zeros_like(obj)
    dobj_grad = obj * (1 - obj)  # logistic_gradient of the activated objectness
    dcls = torch.zeros_like(probs)
    if p.classfix == -1:
        dobj = p.noobject_scale * (best_iou - obj) * dobj_grad
    else:
        dobj = p.noobject_scale * (0 - obj) * dobj_grad
        matched = best_iou > p.thresh
        dobj = torch.where(matched, torch.zeros_like(dobj), dobj)
        if p.classfix > 0 and matched.any():
            scale = p.class_scale * (obj[matched] if p.classfix == 2 else torch.ones_like(obj[matched]))
            cls_of = tcls.gather(1, best_t.view(bsz, -1)).view_as(best_t)
            dcls[matched] = _class_delta(probs[matched], cls_of[matched], scale, bool(p.focal_loss))
    dbox = torch.zeros(bsz, h, w, n, 4, dtype=dt, device=dev)
    if seen < PRIOR_SEEN:  # the anchor's own box at the cell centre, computed as the reference does
        px, py = (gi + 0.5) / w, (gj + 0.5) / h
        pw, ph = aw / w, ah / h
        targets = (px * w - gi, py * h - gj, torch.log(pw * w / aw), torch.log(ph * h / ah))
        dbox = PRIOR_SCALE * torch.stack([
            (targets[0] - sx) * sx * (1 - sx), (targets[1] - sy) * sy * (1 - sy),
            targets[2] - raw[..., 2], targets[3] - raw[..., 3]], -1)

    # every truth: the best anchor of its cell by shape
    ci = (tbox.x * w).long().clamp(0, w - 1)  # C truncation; x == 1 would index past the row: clamped
    cj = (tbox.y * h).long().clamp(0, h - 1)
    bi = torch.arange(bsz, device=dev).view(-1, 1).expand(bsz, tcount)
    cell_w = raw[bi, cj, ci]  # (B, T, n, E): the truth's cell
    if p.bias_match:
        sw, sh = (aw / w).expand(bsz, tcount, n), (ah / h).expand(bsz, tcount, n)
    else:
        sw, sh = torch.exp(cell_w[..., 2]) * aw / w, torch.exp(cell_w[..., 3]) * ah / h
    zero = torch.zeros((), dtype=dt, device=dev)
    shape_iou = iou_grad.iou(XYWH(zero, zero, sw, sh), XYWH(zero, zero, tbox.w.unsqueeze(-1), tbox.h.unsqueeze(-1)))
    # (all IoUs 0 only for degenerate boxes; the reference then writes at batch 0's first cell: not reproduced)
    best_n = shape_iou.argmax(-1)
    flat = (((bi * h + cj) * w + ci) * n + best_n)[ok]  # index into B*H*W*n
    order = (bi * tcount + torch.arange(tcount, device=dev).view(1, -1))[ok]
    tb = XYWH(*(c[ok] for c in tbox))
    tc = tcls[ok]
    ncell = bsz * h * w * n
    rawf, sxf, syf, objf = raw.reshape(ncell, ent), sx.reshape(ncell), sy.reshape(ncell), obj.reshape(ncell)
    pred_t = XYWH(*(c.reshape(ncell)[flat] for c in pred))
    t_iou = iou_grad.iou(pred_t, tb)
    fi, fj = ((flat // n) % w).to(dt), ((flat // (n * w)) % h).to(dt)
    an = flat % n
    sxt, syt = sxf[flat], syf[flat]
    box_t = p.coord_scale * torch.stack([
        (tb.x * w - fi - sxt) * sxt * (1 - sxt), (tb.y * h - fj - syt) * syt * (1 - syt),
        torch.log(tb.w * w / aw[an]) - rawf[flat, 2], torch.log(tb.h * h / ah[an]) - rawf[flat, 3]], 1)
    ot = objf[flat]
    obj_t = p.object_scale * ((t_iou if p.rescore else 1) - ot) * ot * (1 - ot)
    probs_f = probs.reshape(ncell, ncls)
    cls_t = _class_delta(probs_f[flat], tc, torch.full_like(ot, p.class_scale), bool(p.focal_loss))
    # a later truth at the same cell and anchor overwrites: keep the last writer of every cell
    last = torch.full((ncell,), -1, dtype=torch.long, device=dev).scatter_reduce(0, flat, order, "amax")
    keep = order == last[flat]
    fk = flat[keep]
    dbox = dbox.reshape(ncell, 4).clone()
    dbox[fk] = box_t[keep]
    dobj = dobj.reshape(ncell)
    dobj[fk] = obj_t[keep]
    dcls = dcls.reshape(ncell, ncls)
    dcls[fk] = cls_t[keep]

    delta = torch.cat([dbox, dobj.unsqueeze(1), dcls], 1).view(bsz, h, w, n, ent).permute(0, 3, 4, 1, 2)
    delta = delta.reshape(bsz, n * ent, h, w)
    count = int(flat.numel())
    cat = float(probs_f[flat].gather(1, tc.unsqueeze(1)).sum())
    class_count = count
    if p.classfix > 0:
        m = best_iou > p.thresh
        cat += float(probs.gather(-1, tcls.gather(1, best_t.view(bsz, -1)).view_as(best_t).unsqueeze(-1))
                     .squeeze(-1)[m].sum())
        class_count += int(m.sum())
    stats = {
        "cost": float((delta * delta).sum()),
        "count": count,
        "avg_iou": float(t_iou.sum()) / count if count else float("nan"),
        "avg_cat": cat / class_count if class_count else float("nan"),
        "avg_obj": float(ot.sum()) / count if count else float("nan"),
        "avg_anyobj": float(obj.sum()) / (w * h * n * bsz),
        "recall": float((t_iou > 0.5).sum()) / count if count else float("nan"),
    }
    return delta, stats


@register_loss(Region)
def region_loss(layer: Region, x: Tensor, truths: Tensor, seen: int, net_w: Optional[int] = None,
                net_h: Optional[int] = None, **_: object) -> RegionLossResult:
    """The training loss of one [region] layer, checkable against region_layer.c.

    layer: the built [region] layer. x: (B, num*(coords+1+classes), H, W), the tensor entering it.
    truths: (B, T, >=5) relative to the network input (module docstring). seen: images seen so far by
    the reference's count, this mini-batch included (below 12800 the anchor prior term is on).
    net_w, net_h: not used by [region] (the common loss signature of `darkcfg.train.losses`).
    Returns a `RegionLossResult` whose `loss.backward()` gives x.grad == -delta, summed over the batch.
    """
    with torch.no_grad():
        delta, stats = region_delta(layer, x.float(), truths, seen)
    loss = delta_loss(x, delta, stats["cost"])
    return RegionLossResult(loss, delta, stats["cost"], stats["count"], stats["avg_iou"], stats["avg_cat"],
                            stats["avg_obj"], stats["avg_anyobj"], stats["recall"])
