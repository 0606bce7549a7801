"""[lstm] (lstm_layer.c): a fully connected LSTM of eight linear [connected] sub-layers.

Per step, with W* on the previous output h and U* on the input x:
f = σ(Wf h + Uf x), i = σ(Wi h + Ui x), g = tanh(Wg h + Ug x), o = σ(Wo h + Uo x); c = f c + i g;
h = o tanh(c). Output h (B, output, 1, 1). Weights: wf, wi, wg, wo, uf, ui, ug, uo, each as [connected].
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

GATES = ("f", "i", "g", "o")


class LSTM(Recurrent):
    ltype = "lstm"

    def __init__(self, in_shape: Shape, outputs: int, steps: int = 1, batch_normalize: bool = False) -> None:
        super().__init__(in_shape, Shape(outputs, 1, 1), steps)
        lin = ACTIVATIONS["linear"]
        for g in GATES:
            setattr(self, "u" + g, Connected(in_shape, outputs, "linear", lin, batch_normalize))
        for g in GATES:
            setattr(self, "w" + g, Connected(Shape(outputs, 1, 1), outputs, "linear", lin, batch_normalize))

    @property
    def subs(self) -> list[DarknetLayer]:
        return [getattr(self, p + g) for p in "wu" for g in GATES]

    @property
    def creation_order(self) -> list[DarknetLayer]:
        return [getattr(self, p + g) for p in "uw" for g in GATES]

    def zero_state(self, b: int, like: Tensor) -> State:
        z = like.new_zeros(b, self.out_shape.c, 1, 1)
        return z, z

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        pre = {g: getattr(self, "w" + g)(h, []) + getattr(self, "u" + g)(x, []) for g in GATES}
        f, i, o = torch.sigmoid(pre["f"]), torch.sigmoid(pre["i"]), torch.sigmoid(pre["o"])
        c = f * c + i * torch.tanh(pre["g"])
        h = o * torch.tanh(c)
        return h, (h, c)

    def describe(self) -> str:
        return self._table(f"LSTM Layer: {self.in_shape.size} inputs, {self.out_shape.c} outputs", "\t\t")


@register("lstm")
def build(sec: Section, ctx: BuildContext) -> LSTM:
    outputs = ctx.positive("output", sec.int("output", 1))
    bn = bool(sec.int("batch_normalize", 0))
    ctx.check_count("the weights", 4 * (ctx.input.size + outputs) * outputs)
    return LSTM(ctx.input, outputs, ctx.net.time_steps, bn)
