"""[gru] (gru_layer.c): a fully connected GRU of six linear [connected] sub-layers.

Per step, with state s (the previous output): z = σ(Uz x + Wz s), r = σ(Ur x + Wr s),
h = σ(Uh x + Wh (r s)) (logistic: the reference is built without USET, so not tanh), y = z s + (1 - z) h
(weighted_sum_cpu); the new state is y. Output (B, output, 1, 1). Weights: input_z, input_r, input_h,
state_z, state_r, state_h, each as [connected].

The reference's CPU build produces NaN for this layer and its backward is empty (it never trains it): the
forward follows the layer's code; training a [gru] is refused in one line.
"""
from __future__ import annotations

import torch
from torch import Tensor

from darkcfg.model.activations import ACTIVATIONS
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._recurrent import Recurrent, State
from darkcfg.model.layers._registry import register
from darkcfg.model.layers.connected import Connected


class GRU(Recurrent):
    ltype = "gru"
    untrainable = "the reference never trains [gru] (backward_gru_layer is empty)"

    def __init__(self, in_shape: Shape, outputs: int, steps: int = 1, batch_normalize: bool = False) -> None:
        super().__init__(in_shape, Shape(outputs, 1, 1), steps)
        lin = ACTIVATIONS["linear"]
        state = Shape(outputs, 1, 1)
        for g in "zrh":
            setattr(self, f"input_{g}", Connected(in_shape, outputs, "linear", lin, batch_normalize))
            setattr(self, f"state_{g}", Connected(state, outputs, "linear", lin, batch_normalize))

    @property
    def subs(self) -> list[DarknetLayer]:
        return [getattr(self, f"{p}_{g}") for p in ("input", "state") for g in "zrh"]

    @property
    def creation_order(self) -> list[DarknetLayer]:
        return [getattr(self, f"{p}_{g}") for g in "zrh" for p in ("input", "state")]

    def zero_state(self, b: int, like: Tensor) -> State:
        return (like.new_zeros(b, self.out_shape.c, 1, 1),)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (s,) = state
        z = torch.sigmoid(self.input_z(x, []) + self.state_z(s, []))
        r = torch.sigmoid(self.input_r(x, []) + self.state_r(s, []))
        h = torch.sigmoid(self.input_h(x, []) + self.state_h(r * s, []))
        y = z * s + (1 - z) * h
        return y, (y,)

    def describe(self) -> str:
        return self._table(f"GRU Layer: {self.in_shape.size} inputs, {self.out_shape.c} outputs", "\t\t")


@register("gru")
def build(sec: Section, ctx: BuildContext) -> GRU:
    outputs = ctx.positive("output", sec.int("output", 1))
    bn = bool(sec.int("batch_normalize", 0))
    ctx.check_count("the weights", 3 * (ctx.input.size + outputs) * outputs)
    return GRU(ctx.input, outputs, ctx.net.time_steps, bn)
