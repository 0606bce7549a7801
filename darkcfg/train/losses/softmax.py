"""The loss of a classifier: [softmax] (softmax_layer.c) and the [cost] after it (cost_layer.c), as
`darknet classifier train` computes them.

forward_softmax_layer with a truth t (B, K) sets its delta to t - p (softmax_x_ent_cpu; p the softmax output)
and its cost to the sum of -log(p) where t != 0. A [cost] after it (l2_cpu for type=sse, smooth_l1_cpu for
smooth) sets delta_c = t - p (smooth: clipped to +-1 where |t - p| >= 1) and its cost to the sum of (t - p)^2
(smooth: 2|d| - 1 beyond 1). Backward adds scale * delta_c into the softmax's delta, which the softmax passes to
its input unchanged: the gradient the network sees at the softmax input is minus (t - p) + scale * delta_c, the
softmax's Jacobian never applied (for temperature 1 and no [cost], the exact cross-entropy gradient). The
network's cost is the mean over the layers that have one (get_network_cost): (softmax + cost) / 2.
Label smoothing is in the truth itself (train.classify_data.fill_truth). Word trees (tree=) are not trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from darkcfg.model.layers.cost import Cost
from darkcfg.model.layers.softmax import Softmax
from darkcfg.train.losses import register_loss
from darkcfg.train.losses._truths import delta_loss


@dataclass
class SoftmaxLossResult:
    loss: Tensor
    delta: Tensor  # (B, K): what the softmax passes to its input (the reference's net.delta there)
    cost: float
    count: int
    avg_iou: float = 0.0

    def log_line(self, index: int) -> str:
        return ""  # the classifier loop prints one line per iteration, no per-layer lines


def _cost_delta(kind: str, diff: Tensor) -> tuple[Tensor, Tensor]:
    """(delta, error) of l2_cpu (sse, masked) or smooth_l1_cpu (smooth) for diff = truth - input."""
    if kind == "smooth":
        big = diff.abs() >= 1
        return torch.where(big, diff.sign(), diff), torch.where(big, 2 * diff.abs() - 1, diff * diff)
    return diff, diff * diff


@register_loss(Softmax)
def softmax_loss(layer: Softmax, x: Tensor, truths: Tensor, *, following: Optional[object] = None,
                 **_: object) -> SoftmaxLossResult:
    """x: the tensor entering the [softmax] (B, ...) with K = x[0].numel() values per image; truths (B, K);
    following: the layer after the softmax (a [cost] adds its term). Gradient: x.grad == -delta."""
    b = x.shape[0]
    p = layer(x, []).reshape(b, -1).detach().float()  # (B, K)
    t = truths.reshape(b, -1).to(p)
    if t.shape != p.shape:
        raise ValueError(f"truth of {t.shape[1]} classes for a softmax of {p.shape[1]} outputs")
    diff = t - p
    delta = diff.clone()
    ce = float(torch.where(t != 0, -torch.log(p.double()), torch.zeros_like(p, dtype=torch.float64)).sum())
    cost, layers = ce, 1
    if isinstance(following, Cost):
        d_c, err = _cost_delta(following.kind, diff)
        delta = delta + following.scale * d_c
        cost, layers = ce + float(err.double().sum()), 2
    loss = delta_loss(x, delta.reshape(x.shape).to(x.dtype), cost / layers)
    return SoftmaxLossResult(loss, delta, cost / layers, b)
