"""[avgpool] / [avg] (avgpool_layer.c): global average, (B, C, H, W) -> (B, C, 1, 1)."""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class AvgPool(DarknetLayer):
    ltype = "avg"

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)

    def describe(self) -> str:
        return f"avg{'':27s}{self.in_shape} ->   {self.out_shape.c:4d}"


@register("avgpool", "avg")
def build(sec: Section, ctx: BuildContext) -> AvgPool:
    ctx.require_image("avgpool")
    return AvgPool(ctx.input, Shape(ctx.input.c, 1, 1))
