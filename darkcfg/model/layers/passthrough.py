"""Layers whose inference output is their input: [empty]/[silence], and [cost].

[cost] computes a training loss against truth in the reference; without truth its output is not the
network's result (get_network_output skips it), so here it passes the prediction through.
"""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer
from darkcfg.model.layers._registry import register

COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan")


class Passthrough(DarknetLayer):
    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return x

    def describe(self) -> str:
        if self.ltype == "cost":
            return f"cost{'':43s}{self.in_shape.size:4d}"
        return self.ltype


@register("empty", "silence")
def build_empty(sec: Section, ctx: BuildContext) -> Passthrough:
    layer = Passthrough(ctx.input, ctx.input)
    layer.ltype = "empty"
    return layer


@register("cost")
def build_cost(sec: Section, ctx: BuildContext) -> Passthrough:
    kind = sec.str("type", "sse")
    if kind not in COST_TYPES:
        raise sec.error(f"type={kind}: expected one of {', '.join(COST_TYPES)}")
    sec.float("scale", 1)
    sec.float("ratio", 0)
    layer = Passthrough(ctx.input, ctx.input)
    layer.ltype = "cost"
    return layer
