"""[dropout] (dropout_layer.c): identity at inference; in training zero with probability p, else x/(1-p)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Dropout(DarknetLayer):
    ltype = "dropout"

    def __init__(self, in_shape: Shape, probability: float = 0.2) -> None:
        super().__init__(in_shape, in_shape)
        self.probability = probability

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return F.dropout(x, self.probability, self.training) if self.training else x

    def describe(self) -> str:
        n = self.in_shape.size
        return f"dropout    p = {self.probability:.3f} {n:12d}  -> {n:7d}"


@register("dropout")
def build(sec: Section, ctx: BuildContext) -> Dropout:
    p = sec.float("probability", 0.2)
    if not 0 <= p < 1:
        raise sec.error(f"probability={p}: expected a value in [0, 1)")
    if sec.int("dropblock", 0):
        raise sec.error("option 'dropblock' is not supported by darkcfg")
    sec.float("dropblock_size_rel", 0)
    sec.float("dropblock_size_abs", 0)
    return Dropout(ctx.input, p)
