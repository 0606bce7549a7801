"""[activation] (activation_layer.c): out = act(in), same shape."""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.activations import Activation
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class ActivationLayer(DarknetLayer):
    ltype = "activation"

    def __init__(self, in_shape: Shape, activation: str, act_fn: Activation) -> None:
        super().__init__(in_shape, in_shape)
        self.activation, self.act = activation, act_fn

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return self.act(x)

    def describe(self) -> str:
        return f"Activation Layer: {self.in_shape.size} inputs ({self.activation})"


@register("activation")
def build(sec: Section, ctx: BuildContext) -> ActivationLayer:
    name, fn = ctx.activation("linear")
    return ActivationLayer(ctx.input, name, fn)
