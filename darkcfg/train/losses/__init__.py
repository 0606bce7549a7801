"""Training losses of detection heads, one module per head type, and the loss of a whole network.

Contract of a head's loss: a function `(layer, x, truths, *, net_w, net_h, seen) -> HeadLoss` registered
with `@register_loss(LayerClass)` in a module of this package (the package imports every public module on
the first lookup). x (B, C, H, W) is the tensor entering the head, truths (B, T, >=5) the reference's truth
rows relative to the network input (an image's list ends at its first row with x == 0), seen the images
seen so far by the reference's count. The result's `loss.backward()` gives x.grad == -delta (the
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
from darkcfg.model.heads import DetectionHead, head_layers
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


def loss_for(layer: DetectionHead, cfg_file: str = "") -> LossFn:
    """The registered loss of `layer`'s class; a one-line NotTrainableError when there is none."""
    fn = _LOSSES.get(type(layer))
    if fn is None:
        known = ", ".join(sorted(f"[{getattr(t, 'ltype', t.__name__)}]" for t in _LOSSES.keys()))
        where = f"{cfg_file}: " if cfg_file else ""
        raise NotTrainableError(f"{where}layer {layer.index} [{layer.ltype}]: training this head type is not "
                                f"supported (darkcfg trains {known})")
    return fn


def trainable_heads(model: Darknet) -> list[DetectionHead]:
    """The heads of `model`, each with a loss; a one-line error naming the first one without."""
    try:
        heads = head_layers(model)
    except DarkcfgError:
        raise NotTrainableError(f"{model.cfg_file}: no detection head to train ([yolo] or [region])") from None
    for h in heads:
        loss_for(h, model.cfg_file)
    for m in model.layers:
        if m.untrainable:
            raise NotTrainableError(f"{model.cfg_file}: layer {m.index} [{m.ltype}]: {m.untrainable}")
    return heads


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
        results.append((i, fn(layer, inp, truths, net_w=model.net.width, net_h=model.net.height, seen=seen)))
    if not results:
        raise NotTrainableError(f"{model.cfg_file}: no detection head to train ([yolo] or [region])")
    loss = torch.stack([r.loss for _, r in results]).sum()
    return NetworkLoss(loss, sum(r.cost for _, r in results) / len(results), results)
