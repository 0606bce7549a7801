"""Training losses, one module per layer type that has one (detection heads, a classifier's [softmax]), and the
loss of a whole network.

Contract of a loss: a function `(layer, x, truths, *, net_w, net_h, seen, following) -> HeadLoss` registered
with `@register_loss(LayerClass)` in a module of this package (the package imports every public module on
the first lookup). x (B, C, H, W) is the tensor entering the head, truths (B, T, >=5) the reference's truth
rows relative to the network input (an image's list ends at its first row with x == 0), seen the images
seen so far by the reference's count, following the layer after it (a classifier's [softmax] reads its [cost]);
a loss ignores the keywords it does not use (`**_`). A classifier's [softmax] is trained the same way, its
truths (B, K) the class vector. The result's `loss.backward()` gives x.grad == -delta (the
reference's own delta; its value is the reference's cost), and `log_line(index)` is the line the reference
prints for the layer. A head type with no registered loss (e.g. [Gaussian_yolo]) is refused for training in
one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch
from torch import Tensor

from darkcfg.errors import DarkcfgError
from darkcfg.model.layers import DarknetLayer
from darkcfg.model.network import Darknet
from darkcfg.registry import Registry


class HeadLoss(Protocol):
    loss: Tensor
    delta: Tensor
    cost: float
    count: int
    avg_iou: float

    def log_line(self, index: int) -> str: ...


LossFn = Callable[..., HeadLoss]
_LOSSES: Registry[LossFn] = Registry(__name__, lambda t: f"a loss for {t.__name__} is")


class NotTrainableError(DarkcfgError, NotImplementedError):
    """A network or head darkcfg cannot train: the message names the layer."""


def register_loss(layer_type: type) -> Callable[[LossFn], LossFn]:
    """Register the loss of a head class (exactly that class: a subclass registers its own)."""
    return _LOSSES.register(layer_type)


def loss_for(layer: DarknetLayer, cfg_file: str = "") -> LossFn:
    """The registered loss of `layer`'s class; a one-line NotTrainableError when there is none."""
    fn = _LOSSES.get(type(layer))
    if fn is None:
        known = ", ".join(sorted(f"[{getattr(t, 'ltype', t.__name__)}]" for t in _LOSSES.keys()))
        where = f"{cfg_file}: " if cfg_file else ""
        raise NotTrainableError(f"{where}layer {layer.index} [{layer.ltype}]: training this head type is not "
                                f"supported (darkcfg trains {known})")
    return fn


def trainable_layers(model: Darknet) -> list[DarknetLayer]:
    """The layers of `model` that take a loss in training (its detection heads, or a classifier's [softmax]), in
    network order, each with a registered loss; a one-line error naming the first one without, or saying that
    there is nothing to train."""
    layers = [m for m in model.layers if m.is_head or getattr(m, "has_loss", False)]
    if not layers:
        raise NotTrainableError(f"{model.cfg_file}: nothing to train: no detection head ([yolo], [region], "
                                "[detection]) and no [softmax] with a loss")
    for m in layers:
        loss_for(m, model.cfg_file)
    for m in model.layers:
        if m.untrainable:
            raise NotTrainableError(f"{model.cfg_file}: layer {m.index} [{m.ltype}]: {m.untrainable}")
    return layers


@dataclass
class NetworkLoss:
    """A training forward of a whole network.

    loss: the sum of every head's loss (its gradient is the reference's summed deltas).
    cost: get_network_cost, the mean of the heads' costs. heads: (layer index, that head's loss result).
    """

    loss: Tensor
    cost: float
    heads: list[tuple[int, HeadLoss]]


def network_loss(model: Darknet, x: Tensor, truths: Tensor, cpu_1x1_overwrite: bool = False,
                 seen: Optional[int] = None) -> NetworkLoss:
    """Forward `x` (B, C, H, W) through `model` in training mode and apply every head's loss.

    truths: (B, T, 6) in the reference's layout, relative to the input. cpu_1x1_overwrite: see
    `Darknet.forward_heads` (only for comparing with the reference's CPU numbers). seen: the reference's
    image count during this forward (default: the header's `seen` plus this batch, as train_network_datum
    counts before its forward).
    """
    if seen is None:
        seen = int(model.header.seen) + x.shape[0]
    results: list[tuple[int, HeadLoss]] = []
    for i, inp in model.forward_heads(x, cpu_1x1_overwrite):
        layer = model.layers[i]
        fn = loss_for(layer, model.cfg_file)
        following = model.layers[i + 1] if i + 1 < len(model.layers) else None
        results.append((i, fn(layer, inp, truths, net_w=model.net.width, net_h=model.net.height, seen=seen,
                              following=following)))
    if not results:
        raise NotTrainableError(f"{model.cfg_file}: nothing to train: no detection head and no [softmax] with a loss")
    loss = torch.stack([r.loss for _, r in results]).sum()
    return NetworkLoss(loss, sum(r.cost for _, r in results) / len(results), results)
