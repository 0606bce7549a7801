"""[implicit] (representation_layer.c): a learned constant (filters, atoms, 1); the input is ignored."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import Blob, BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Implicit(DarknetLayer):
    ltype = "implicit"

    def __init__(self, in_shape: Shape, filters: int, atoms: int = 1, mean: float = 0.0, std: float = 0.2) -> None:
        super().__init__(in_shape, Shape(filters, atoms, 1))
        self.mean, self.std = mean, std
        self.weight = nn.Parameter(torch.empty(filters * atoms).uniform_(-std, std).add_(mean))

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return self.weight.view(1, *self.out_shape).expand(x.shape[0], -1, -1, -1)

    def describe(self) -> str:
        return f"implicit Layer: {self.out_shape.c} x {self.out_shape.h} \t mean={self.mean:.2f}, std={self.std:.2f}"

    def darknet_blobs(self, transpose: bool = False) -> list[Blob]:
        return [Blob(self.weight)]


@register("implicit")
def build(sec: Section, ctx: BuildContext) -> Implicit:
    mean = sec.float("mean", 0.0)
    std = sec.float("std", 0.2)
    filters = ctx.positive("filters", sec.int("filters", 128))
    atoms = ctx.positive("atoms", sec.int("atoms", 1))
    ctx.check_count("the weights", filters * atoms)
    return Implicit(ctx.input, filters, atoms, mean, std)
