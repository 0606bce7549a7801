"""[sam] (sam_layer.c): out = act(prev * from), elementwise; both have the same shape."""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.activations import Activation
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Sam(DarknetLayer):
    ltype = "sam"

    def __init__(self, in_shape: Shape, source: int, activation: str, act_fn: Activation) -> None:
        super().__init__(in_shape, in_shape, (source,))
        self.activation, self.act = activation, act_fn

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return self.act(x * outputs[self.sources[0]])

    def describe(self) -> str:
        return f"scale Layer: {self.sources[0]}"


@register("sam")
def build(sec: Section, ctx: BuildContext) -> Sam:
    src = ctx.layer_refs("from")[0]
    act_name, act = ctx.activation("linear")
    if ctx.shapes[src] != ctx.input:
        raise sec.error(f"from={src} outputs {tuple(ctx.shapes[src])}, expected the previous layer's shape "
                        f"{tuple(ctx.input)}")
    return Sam(ctx.input, src, act_name, act)


