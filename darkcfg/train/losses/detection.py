"""The training loss of a YOLOv1 [detection] layer, as detection_layer.c:forward_detection_layer computes it.

Truths are first put on the layer's grid as the reference's REGION_DATA loader does (data.c:fill_truth_region,
the loader YOLOv1 was trained with): a truth goes to the cell holding its centre, as is_obj, one-hot class,
x, y offsets in the cell and w, h; boxes with w or h < .001 are skipped and the first truth of a cell wins (the
reference shuffles the truths before; darkcfg keeps their order). Then, on the layer's output (softmax
applied):

* every objectness: noobject_scale * (0 - p);
* in a cell with a truth: classes class_scale * (onehot - p); the responsible box j is the one with the best
  IoU with the truth (x, y divided by side; w, h squared with `sqrt`), or the least RMSE while no box
  overlaps it; `forced` picks box 1 for small truths (w*h < .1), else 0; `random` picks one at random while
  `seen` < 64000. Its objectness gets object_scale * (1 - p) (rescore: (IoU - p)), its x, y coord_scale *
  (t - p), its w, h coord_scale * (t - p) (sqrt: (sqrt(t) - p)).

The delta is passed back unchanged (backward_detection_layer), so `loss.backward()` gives x.grad == -delta;
the value is the reference's cost, sum(delta^2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from darkcfg.model.layers.detection import Detection
from darkcfg.train.iou_grad import XYWH, iou
from darkcfg.train.losses import register_loss
from darkcfg.train.losses._truths import delta_loss, read_truths

RANDOM_SEEN = 64000  # images below which `random=1` assigns truths to a random box


@dataclass
class DetectionLossResult:
    """One [detection] layer's training step: loss (value = cost, gradient -delta), delta in the input's
    layout, and the values of the reference's "Detection Avg IOU" line."""

    loss: Tensor
    delta: Tensor
    cost: float
    count: int
    avg_iou: float
    avg_cat: float
    avg_allcat: float
    avg_obj: float
    avg_anyobj: float

    def log_line(self, index: int = -1) -> str:
        return (f"Detection Avg IOU: {self.avg_iou:f}, Pos Cat: {self.avg_cat:f}, All Cat: {self.avg_allcat:f}, "
                f"Pos Obj: {self.avg_obj:f}, Any Obj: {self.avg_anyobj:f}, count: {self.count}\n")


def grid_truths(layer: Detection, truths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """truths (B, T, >=5) relative to the input -> on the layer's grid: is_obj (B, S*S) bool, class one-hot
    (B, S*S, C), box (B, S*S, 4) x, y in the cell, w, h (fill_truth_region)."""
    side, classes = layer.side, layer.classes
    t, _, cls, ok = read_truths(truths, classes, torch.device("cpu"), torch.float32)
    b = t.shape[0]
    is_obj = torch.zeros(b, side * side, dtype=torch.bool)
    onehot = torch.zeros(b, side * side, classes)
    box = torch.zeros(b, side * side, 4)
    for i in range(b):
        for j in torch.nonzero(ok[i]).flatten().tolist():
            x, y, w, h = (float(v) for v in t[i, j, :4])
            if w < 0.001 or h < 0.001:
                continue
            col, row = int(x * side), int(y * side)
            if not (0 <= col < side and 0 <= row < side):
                continue
            cell = col + row * side
            if is_obj[i, cell]:
                continue
            is_obj[i, cell] = True
            onehot[i, cell, int(cls[i, j])] = 1
            box[i, cell] = torch.tensor([x * side - col, y * side - row, w, h])
    return is_obj, onehot, box


def detection_delta(layer: Detection, x: Tensor, truths: Tensor, seen: int,
                    generator: Optional[torch.Generator] = None) -> tuple[Tensor, dict]:
    """The reference's delta (B, inputs) for one [detection] layer and its log values; x (B, ...) its input."""
    bsz = x.shape[0]
    out = layer(x, []).reshape(bsz, -1).float()
    cls, obj, box = layer.split(out)
    is_obj, onehot, tbox = (v.to(out.device) for v in grid_truths(layer, truths))
    d_cls, d_obj, d_box = torch.zeros_like(cls), layer.noobject_scale * (0 - obj), torch.zeros_like(box)
    m = is_obj  # (B, L)
    d_cls[m] = layer.class_scale * (onehot[m] - cls[m])
    side = layer.side
    truth = XYWH(tbox[..., 0:1] / side, tbox[..., 1:2] / side, tbox[..., 2:3], tbox[..., 3:4])  # (B, L, 1)
    pw, ph = (box[..., 2] ** 2, box[..., 3] ** 2) if layer.sqrt else (box[..., 2], box[..., 3])
    pred = XYWH(box[..., 0] / side, box[..., 1] / side, pw, ph)  # (B, L, n)
    ious = iou(pred, truth)
    rmse = torch.sqrt((pred.x - truth.x) ** 2 + (pred.y - truth.y) ** 2 + (pred.w - truth.w) ** 2
                      + (pred.h - truth.h) ** 2)
    best_iou = torch.zeros_like(ious[..., 0])
    best_rmse = torch.full_like(best_iou, 20.0)
    best = torch.full(best_iou.shape, -1, dtype=torch.long, device=out.device)
    for j in range(layer.n):  # the reference's loop: IoU once any box overlaps, else RMSE
        by_iou = (best_iou > 0) | (ious[..., j] > 0)
        take = torch.where(by_iou, ious[..., j] > best_iou, rmse[..., j] < best_rmse)
        best = torch.where(take, torch.full_like(best, j), best)
        best_iou = torch.where(take & by_iou, ious[..., j], best_iou)
        best_rmse = torch.where(take & ~by_iou, rmse[..., j], best_rmse)
    if layer.forced:
        best = torch.where(truth.w[..., 0] * truth.h[..., 0] < 0.1, 1, 0).to(best)
    if layer.random and seen < RANDOM_SEEN:
        best = torch.randint(0, layer.n, best.shape, generator=generator).to(best)
    # a cell whose truth no box matched (all RMSE >= 20) uses index -1 in C, i.e. the previous cell's last
    # box; that needs w, h > 20 image widths and is left out here
    m = m & (best >= 0)
    bi, li = torch.nonzero(m, as_tuple=True)
    j = best[bi, li]
    p = obj[bi, li, j]
    chosen_iou = ious[bi, li, j]
    d_obj[bi, li, j] = layer.object_scale * ((chosen_iou if layer.rescore else 1.0) - p)
    t = tbox[bi, li]
    target = torch.stack([t[:, 0], t[:, 1], t[:, 2].sqrt() if layer.sqrt else t[:, 2],
                          t[:, 3].sqrt() if layer.sqrt else t[:, 3]], 1)
    d_box[bi, li, j] = layer.coord_scale * (target - box[bi, li, j][:, :4])
    delta = torch.cat([d_cls.flatten(1), d_obj.flatten(1), d_box.flatten(1)], 1)
    count = len(bi)
    objm = is_obj.unsqueeze(-1)
    stats = {
        "cost": float((delta.double() ** 2).sum()),
        "count": count,
        "avg_iou": float(chosen_iou.sum()) / count if count else float("nan"),
        "avg_cat": float((cls * onehot * objm).sum()) / count if count else float("nan"),
        "avg_allcat": float((cls * objm).sum()) / (count * layer.classes) if count else float("nan"),
        "avg_obj": float(p.sum()) / count if count else float("nan"),
        "avg_anyobj": float(obj.sum()) / obj.numel(),
    }
    return delta, stats


@register_loss(Detection)
def detection_loss(layer: Detection, x: Tensor, truths: Tensor, seen: int, net_w: Optional[int] = None,
                   net_h: Optional[int] = None, **_: object) -> DetectionLossResult:
    """The training loss of one [detection] layer: x (B, ...) the tensor entering it, truths (B, T, >=5)
    relative to the input; returns a result whose `loss.backward()` gives x.grad == -delta."""
    with torch.no_grad():
        delta, s = detection_delta(layer, x.detach().float(), truths, seen)
        delta = delta.view_as(x).to(x.dtype)
    loss = delta_loss(x, delta, s["cost"])
    return DetectionLossResult(loss, delta, s["cost"], s["count"], s["avg_iou"], s["avg_cat"], s["avg_allcat"],
                               s["avg_obj"], s["avg_anyobj"])
