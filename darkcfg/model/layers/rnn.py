"""[rnn] (rnn_layer.c): a fully connected recurrent layer of three [connected] sub-layers.

Per step: h = input_layer(x) + self_layer(h_prev) (+ h_prev with `shortcut=1`), y = output_layer(h). Each
sub-layer applies `activation` (self_layer: logistic with `logistic=1`, loggy with `logistic=2`) and its
own batch norm. Output (B, output, 1, 1). Weights: input_layer, self_layer, output_layer, each as [connected].
"""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.activations import ACTIVATIONS
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, Shape
from darkcfg.model.layers._recurrent import State, ThreeLayerRecurrent
from darkcfg.model.layers._registry import register
from darkcfg.model.layers.connected import Connected


class RNN(ThreeLayerRecurrent):
    ltype = "rnn"

    def __init__(self, in_shape: Shape, hidden: int, outputs: int, steps: int = 1, activation: str = "logistic",
                 batch_normalize: bool = False, logistic: int = 0, shortcut: bool = False) -> None:
        super().__init__(in_shape, Shape(outputs, 1, 1), steps)
        act = ACTIVATIONS[activation]
        self_act = {2: "loggy", 1: "logistic"}.get(logistic, activation)
        self.hidden, self.shortcut = hidden, shortcut
        self.input_layer = Connected(in_shape, hidden, activation, act, batch_normalize)
        self.self_layer = Connected(Shape(hidden, 1, 1), hidden, self_act, ACTIVATIONS[self_act], batch_normalize)
        self.output_layer = Connected(Shape(hidden, 1, 1), outputs, activation, act, batch_normalize)

    def zero_state(self, b: int, like: Tensor) -> State:
        return (like.new_zeros(b, self.hidden, 1, 1),)

    def describe(self) -> str:
        return self._table(f"RNN Layer: {self.in_shape.size} inputs, {self.out_shape.c} outputs", "\t\t")


@register("rnn")
def build(sec: Section, ctx: BuildContext) -> RNN:
    outputs = ctx.positive("output", sec.int("output", 1))
    hidden = ctx.positive("hidden", sec.int("hidden", 1))
    act_name, _ = ctx.activation("logistic")
    bn = bool(sec.int("batch_normalize", 0))
    logistic = sec.int("logistic", 0)
    shortcut = bool(sec.int("shortcut", 0))
    ctx.check_count("the weights", (ctx.input.size + hidden + outputs) * hidden)
    return RNN(ctx.input, hidden, outputs, ctx.net.time_steps, act_name, bn, logistic, shortcut)
