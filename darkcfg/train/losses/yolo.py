"""The training loss of a [yolo] layer, as yolo_layer.c:forward_yolo_layer/process_batch computes it.

The reference does not differentiate a loss: it writes a `delta` for every output entry (target minus
output with its own weights, ignore rules, IoU gradients and clipping) and passes it unchanged to the
layer before. Several of its terms are not the gradient of any closed-form function (x, y have no
sigmoid derivative; the IoU gradients come from `dx_box_iou` and are clipped), so `yolo_loss` returns the
first-order surrogate `-sum(delta * x)` whose autograd gradient with respect to the layer's input x is
exactly `-delta`, shifted so that its value is the reference's `l.cost`. All of it is batched tensor code:
the only Python loop is over the (at most a few) entries of the mask.

Truths use the reference's layout: (B, T, 6) rows `x, y, w, h, class id, track id` relative to the
network input, the list of an image ending at its first row with x == 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from darkcfg.model.heads import CellIndex
from darkcfg.model.layers.yolo import Yolo
from darkcfg.train import iou_grad
from darkcfg.train.iou_grad import XYWH
from darkcfg.train.losses import register_loss
from darkcfg.train.losses._truths import delta_loss, focal_class_factor, read_truths


@dataclass
class YoloLossResult:
    """One [yolo] layer's training step.

    loss: scalar tensor, value = the reference's `l.cost`, d loss / d x = -delta.
    delta: (B, n*(5+C), H, W), the reference's `l.delta` (detached).
    cost: float(loss). count: truths assigned to an anchor of this layer (min 1, as the reference).
    avg_iou: mean IoU of those assignments. class_loss, iou_loss, total_loss: the printed values
    (per image, divided by B as the reference prints them).
    """

    loss: Tensor
    delta: Tensor
    cost: float
    count: int
    avg_iou: float
    class_loss: float
    iou_loss: float
    total_loss: float
    layer: Optional[Yolo] = field(default=None, repr=False)

    def log_line(self, index: int) -> str:
        """The line forward_yolo_layer prints for this layer."""
        p = self.layer.params  # type: ignore[union-attr]
        return (f"v3 ({p.iou_loss} loss, Normalizer: (iou: {p.iou_normalizer:.2f}, obj: {p.obj_normalizer:.2f}, "
                f"cls: {p.cls_normalizer:.2f}) Region {index} Avg (IOU: {self.avg_iou:f}), count: {self.count}, "
                f"class_loss = {self.class_loss:f}, iou_loss = {self.iou_loss:f}, total_loss = "
                f"{self.total_loss:f} \n")


def _pred_boxes(layer: Yolo, o: Tensor, net_w: int, net_h: int) -> XYWH:
    """get_yolo_box for every cell: o (B, n, H, W, E) layer outputs -> boxes (B, n, H, W) each."""
    _, n, h, w, _ = o.shape
    at = CellIndex(torch.arange(w, device=o.device, dtype=o.dtype).view(1, 1, 1, w),
                   torch.arange(h, device=o.device, dtype=o.dtype).view(1, 1, h, 1),
                   torch.arange(n, device=o.device).view(1, n, 1, 1), w, h)
    d = layer.decode(o, at, net_w, net_h)
    return XYWH(d.x, d.y, d.w, d.h)


def _take(b: XYWH, idx: Tensor) -> XYWH:
    return XYWH(*(t.reshape(-1)[idx] for t in b))


def yolo_delta(layer: Yolo, out: Tensor, truths: Tensor, net_w: int, net_h: int) -> tuple[Tensor, dict]:
    """The reference's delta for one [yolo] layer.

    out: (B, n*(5+C), H, W) the layer's output (l.output: activated, scale_x_y applied).
    truths: (B, T, 6) as described in the module docstring. Returns (delta of out's shape, stats) where
    stats has cost, count, avg_iou, class_loss, iou_loss, total_loss as in `YoloLossResult`.
    """
    p = layer.params
    out = out.detach()
    bsz, _, h, w = out.shape
    n, ncls = len(p.mask), p.classes
    ent = 5 + ncls
    dev, dt = out.device, out.dtype
    o = layer.planes(out).permute(0, 1, 3, 4, 2)  # B n H W E
    ncell = bsz * n * h * w
    of = o.reshape(ncell, ent)
    anchors = torch.tensor(p.anchors, dtype=dt, device=dev).view(-1, 2)  # all `num` anchors: best-shape match
    total = anchors.shape[0]
    mask = torch.tensor(p.mask, device=dev, dtype=torch.long)
    pred = _pred_boxes(layer, o, net_w, net_h)
    cm_all = torch.tensor(p.classes_multipliers or [1.0] * ncls, dtype=dt, device=dev)
    smooth_eps = p.label_smooth_eps

    truths, tbox, tcls, ok = read_truths(truths, ncls, dev, dt)

    # A. every cell: best IoU with any truth; objectness towards 0 unless it matches well enough
    def bc(t: Tensor) -> Tensor:
        return t.view(bsz, 1, 1, 1, -1)

    ious = iou_grad.iou(XYWH(*(c.unsqueeze(-1) for c in pred)), XYWH(*(bc(c) for c in tbox)))
    ious = torch.where(bc(ok), ious, torch.zeros_like(ious))
    if ious.shape[-1]:  # argmax: the first of equal maxima, as the reference's strict > loop
        best_t = ious.argmax(-1)
        best_iou = ious.gather(-1, best_t.unsqueeze(-1)).squeeze(-1)
    else:
        best_iou, best_t = torch.zeros_like(pred.x), torch.zeros_like(pred.x, dtype=torch.long)
    class_match = (o[..., 5:] > 0.25).any(-1)  # compare_yolo_class: class-agnostic, at this anchor
    best_match = torch.where(class_match, best_iou, torch.zeros_like(best_iou))
    obj = o[..., 4]
    dobj = p.obj_normalizer * (0 - obj)
    ignore = best_match > p.ignore_thresh
    if p.objectness_smooth:
        dobj = torch.where(ignore, torch.maximum(dobj, p.obj_normalizer * (best_match - obj)), dobj)
    else:
        dobj = torch.where(ignore, torch.zeros_like(dobj), dobj)
    dobj = dobj.reshape(ncell)

    # assignments: (cell, anchor, truth box, class, order key); A = truth_thresh positives, key -1
    cells, anchor_of, keys, kinds, truth_rows = [], [], [], [], []
    pos_a = (best_iou > p.truth_thresh).reshape(ncell)
    if pos_a.any():
        ca = pos_a.nonzero().squeeze(1)
        slot = (ca // (h * w)) % n
        cells.append(ca)
        anchor_of.append(mask[slot])
        keys.append(torch.full_like(ca, -1))
        kinds.append(torch.zeros_like(ca))
        b_idx = ca // (n * h * w)
        truth_rows.append(b_idx * truths.shape[1] + best_t.reshape(ncell)[ca])

    # B. every truth: the best of all `num` anchors by shape, and (iou_thresh) other anchors of this mask
    tw_all, th_all = anchors[:, 0] / net_w, anchors[:, 1] / net_h
    zero = torch.zeros((), dtype=dt, device=dev)
    shape_a = XYWH(zero, zero, tw_all.view(1, 1, -1), th_all.view(1, 1, -1))
    shape_t = XYWH(zero, zero, tbox.w.unsqueeze(-1), tbox.h.unsqueeze(-1))
    best_n = iou_grad.iou(shape_a, shape_t).argmax(-1) if total else None  # (B, T)
    slot_of = torch.full((total,), -1, dtype=torch.long, device=dev)
    for k in reversed(range(n)):  # int_index: the first mask entry holding the anchor
        slot_of[p.mask[k]] = k
    gi = (tbox.x * w).long().clamp(0, w - 1)  # C truncation; x == 1 would index past the row: clamped
    gj = (tbox.y * h).long().clamp(0, h - 1)
    t_count = truths.shape[1]
    arange_b = torch.arange(bsz, device=dev).view(-1, 1).expand(bsz, t_count)
    arange_t = torch.arange(t_count, device=dev).view(1, -1).expand(bsz, t_count)

    def add_b(sel: Tensor, anchor: Tensor, key: Tensor) -> None:
        bi, ti, an, ky = arange_b[sel], arange_t[sel], anchor[sel], key[sel]
        slot = slot_of[an]
        cells.append(((bi * n + slot) * h + gj[bi, ti]) * w + gi[bi, ti])
        anchor_of.append(an)
        keys.append(ky)
        kinds.append(torch.ones_like(ky))
        truth_rows.append(bi * t_count + ti)

    prim = ok & (slot_of[best_n] >= 0)
    add_b(prim, best_n, arange_t * (total + 1))
    if p.iou_thresh < 1.0:
        kiou = iou_grad.iou_kind(shape_a, shape_t, p.iou_thresh_kind)  # (B, T, total)
        nn_ = torch.arange(total, device=dev).view(1, 1, -1)
        extra = ok.unsqueeze(-1) & (slot_of >= 0).view(1, 1, -1) & (nn_ != best_n.unsqueeze(-1)) & \
            (kiou > p.iou_thresh)
        for an in range(total):  # anchors of the mask, in order: a few iterations
            if slot_of[an] >= 0 and extra[..., an].any():
                add_b(extra[..., an], torch.full_like(best_n, an), arange_t * (total + 1) + 1 + an)

    cell = torch.cat(cells) if cells else torch.zeros(0, dtype=torch.long, device=dev)
    anchor = torch.cat(anchor_of) if cells else cell
    key = torch.cat(keys) if cells else cell
    kind = torch.cat(kinds) if cells else cell
    row = torch.cat(truth_rows) if cells else cell
    flat_t = truths.reshape(-1, truths.shape[-1])[row]
    truth = XYWH(flat_t[:, 0], flat_t[:, 1], flat_t[:, 2], flat_t[:, 3])
    cls = flat_t[:, 4].long().clamp(0, ncls - 1)
    cm = cm_all[cls]
    isb = kind == 1
    og = of[cell]
    pb = _take(pred, cell)
    ci = (cell % w).to(dt)
    cj = ((cell // w) % h).to(dt)

    # box deltas (delta_yolo_box, accumulated with +=)
    a_iou = iou_grad.iou(pb, truth)
    norm = p.iou_normalizer * cm
    if p.iou_loss == "mse":
        scale = 2 - truth.w * truth.h
        tx, ty = truth.x * w - ci, truth.y * h - cj
        if p.new_coords:
            tw = torch.sqrt(truth.w * net_w / (4 * anchors[anchor, 0]))
            th = torch.sqrt(truth.h * net_h / (4 * anchors[anchor, 1]))
        else:
            tw = torch.log(truth.w * net_w / anchors[anchor, 0])
            th = torch.log(truth.h * net_h / anchors[anchor, 1])
        dbox = torch.stack([scale * (t - og[:, k]) * norm for k, t in enumerate((tx, ty, tw, th))], 1)
    else:
        pf = XYWH(pb.x, pb.y, torch.where(pb.w == 0, torch.ones_like(pb.w), pb.w),
                  torch.where(pb.h == 0, torch.ones_like(pb.h), pb.h))
        g = iou_grad.dx_box_iou(pf, truth, p.iou_loss)
        gw, gh = g.w, g.h
        if not p.new_coords:
            gw, gh = gw * torch.exp(og[:, 2]), gh * torch.exp(og[:, 3])
        dbox = torch.stack([g.x, g.y, gw, gh], 1) * norm.unsqueeze(1)
        dbox = torch.where(torch.isfinite(dbox), dbox, torch.zeros_like(dbox))
        if p.max_delta != float("inf"):
            dbox = dbox.clamp(-p.max_delta, p.max_delta)
    box = torch.zeros(ncell, 4, dtype=dt, device=dev).index_add_(0, cell, dbox)

    # objectness
    obj_f = obj.reshape(ncell)
    if (~isb).any():
        ca = cell[~isb]
        best = best_iou.reshape(ncell)[ca]
        target = best * best if p.objectness_smooth else torch.ones_like(best)
        dobj[ca] = p.obj_normalizer * (target - obj_f[ca])
    big = torch.iinfo(torch.long).max
    if isb.any():
        cb, kb = cell[isb], key[isb]
        val = cm[isb] * p.obj_normalizer * (1 - obj_f[cb])
        if p.objectness_smooth:  # only the first truth at the anchor, and only if delta is still 0
            first = torch.full((ncell,), big, dtype=torch.long, device=dev).scatter_reduce(
                0, cb, kb, "amin")
            sel = (kb == first[cb]) & (dobj[cb] == 0)
        else:  # each truth overwrites: the last one stays
            last = torch.full((ncell,), -2, dtype=torch.long, device=dev).scatter_reduce(0, cb, kb, "amax")
            sel = kb == last[cb]
        dobj[cb[sel]] = val[sel]

    # classes (delta_yolo_class): the first call at an anchor writes every class, later calls their own
    dcls = torch.zeros(ncell, ncls, dtype=dt, device=dev)
    if cell.numel():
        first = torch.full((ncell,), big, dtype=torch.long, device=dev).scatter_reduce(0, cell, key, "amin")
        is_first = key == first[cell]
        cf, kf = cell[is_first], cls[is_first]
        probs = of[cf, 5:]
        onehot = torch.nn.functional.one_hot(kf, ncls).to(dt)
        if p.focal_loss:
            fresh = (onehot - probs) * focal_class_factor(probs, kf)
        else:
            y = onehot * (1 - smooth_eps) + 0.5 * smooth_eps if smooth_eps else onehot
            fresh = y - probs
            fresh = torch.where(torch.isfinite(fresh), fresh, torch.zeros_like(fresh))
            if p.classes_multipliers:
                fresh = fresh * torch.where(onehot.bool(), (cm[is_first] * p.cls_normalizer).unsqueeze(1),
                                            torch.ones_like(fresh))
        dcls[cf] = fresh
        if p.objectness_smooth and (~isb).any():  # truth_thresh positives: the class target is iou^2
            ca, ka = cell[~isb], cls[~isb]
            best = best_iou.reshape(ncell)[ca]
            dcls[ca, ka] = cm[~isb] * (best * best - of[ca, 5 + ka])
        later = ~is_first
        if later.any():
            cl, kl = cell[later], cls[later]
            y1 = 1 - smooth_eps + 0.5 * smooth_eps if smooth_eps else 1.0
            v = y1 - of[cl, 5 + kl]
            if p.classes_multipliers:
                v = v * cm[later]
            dcls[cl, kl] = v

    # C. iou_thresh: average the box deltas over the classes with a positive delta
    if p.iou_thresh < 1.0:
        k = (dcls > 0).sum(1, keepdim=True).to(dt)
        div = (dobj != 0).unsqueeze(1) & (k > 0)
        box = torch.where(div, box / torch.where(div, k, torch.ones_like(k)), box)

    delta = torch.cat([box, dobj.unsqueeze(1), dcls], 1).view(bsz, n, h, w, ent).permute(0, 1, 4, 2, 3)
    delta = delta.reshape(bsz, n * ent, h, w)

    count = max(int(isb.sum()), 1)
    total_sq = float((delta * delta).sum())
    class_sq = p.obj_normalizer * float((delta.view(bsz, n, ent, h, w)[:, :, 4:] ** 2).sum())
    if p.iou_loss == "mse":
        cost = total_sq
    else:
        term = iou_grad.giou(pb, truth) if p.iou_loss == "giou" else a_iou
        cost = p.iou_normalizer * float((1 - term[isb]).sum()) / count + class_sq
    stats = {
        "cost": cost,
        "count": int(isb.sum()),
        "avg_iou": float(a_iou[isb].sum()) / count,
        "class_loss": class_sq / bsz,
        "iou_loss": (total_sq - class_sq) / bsz,
        "total_loss": total_sq / bsz,
    }
    return delta, stats


@register_loss(Yolo)
def yolo_loss(layer: Yolo, x: Tensor, truths: Tensor, net_w: int, net_h: int,
              seen: Optional[int] = None, **_: object) -> YoloLossResult:
    """The training loss of one [yolo] layer, checkable against the reference.

    layer: the built [yolo] layer (its params carry every option of the section).
    x: (B, n*(5+C), H, W), the tensor entering the layer (what the conv before it produced).
    truths: (B, T, 6) reference layout, relative to the network input of net_w x net_h pixels.
    seen: not used by [yolo] (the common loss signature of `darkcfg.train.losses`).
    Returns a `YoloLossResult` whose `loss.backward()` gives x.grad == -delta (summed over the batch,
    the reference's convention), and whose value is the reference's cost for this layer.
    """
    with torch.no_grad():
        out = layer(x.detach().float(), [])  # in float32 also under mixed precision
        delta, stats = yolo_delta(layer, out, truths, net_w, net_h)
    # the GPU path scales by delta_normalizer (the CPU path ignores it; default 1)
    delta = delta * layer.params.delta_normalizer if layer.params.delta_normalizer != 1 else delta
    loss = delta_loss(x, delta, stats["cost"])
    return YoloLossResult(loss, delta, stats["cost"], stats["count"], stats["avg_iou"], stats["class_loss"],
                          stats["iou_loss"], stats["total_loss"], layer)
