"""Layers whose output is their input: [empty]/[silence]."""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer
from darkcfg.model.layers._registry import register


class Passthrough(DarknetLayer):
    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return x

    def describe(self) -> str:
        return self.ltype


@register("empty", "silence")
def build_empty(sec: Section, ctx: BuildContext) -> Passthrough:
    layer = Passthrough(ctx.input, ctx.input)
    layer.ltype = "empty"
    return layer
