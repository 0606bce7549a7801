"""[cost] (cost_layer.c): a training loss against the truth, after a classifier's [softmax].

At inference its output is its input (get_network_output skips it). Training reads `kind` (sse: l2_cpu, delta =
truth - input, cost = sum(delta^2); smooth: smooth_l1_cpu; masked: sse where the truth is not SECRET_NUM) and
`scale` (backward_cost_layer adds scale * delta to the previous layer's delta): see
darkcfg.train.losses.softmax.
"""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register

COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan")


class Cost(DarknetLayer):
    ltype = "cost"

    def __init__(self, in_shape: Shape, kind: str = "sse", scale: float = 1.0, ratio: float = 0.0) -> None:
        super().__init__(in_shape, in_shape)
        self.kind, self.scale, self.ratio = kind, scale, ratio

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return x

    def describe(self) -> str:
        return f"cost{'':43s}{self.in_shape.size:4d}"


@register("cost", layer=Cost)
def build(sec: Section, ctx: BuildContext) -> Cost:
    kind = sec.str("type", "sse")
    if kind not in COST_TYPES:
        opt = sec.find("type")
        raise sec.error(f"type={kind}: expected one of {', '.join(COST_TYPES)}", opt.line if opt else None)
    return Cost(ctx.input, kind, sec.float("scale", 1.0), sec.float("ratio", 0.0))
