"""[history] (conv_lstm_layer.c:forward_history_layer): the last `history_size` inputs stacked on channels.

Output (B, C * history_size, H, W): channels [0, C) hold this step's input, [C, 2C) the previous step's, and so
on (a shift register over the time steps of a sequence, carried to the next forward). With time_steps=1 (and
so at inference, which runs one step per forward) the reference does not shift: it copies the input into the
first C channels and leaves the rest 0; darkcfg does the same, per image (the reference's flat copy puts
image k's input into image 0's history slots when batch > 1).
"""
from __future__ import annotations

import torch
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, Shape
from darkcfg.model.layers._recurrent import Recurrent, State
from darkcfg.model.layers._registry import register


class History(Recurrent):
    ltype = "history"

    def __init__(self, in_shape: Shape, history_size: int = 4, steps: int = 1) -> None:
        c, h, w = in_shape
        super().__init__(in_shape, Shape(c * history_size, h, w), steps)
        self.history_size = history_size

    @property
    def subs(self) -> list:
        return []

    def zero_state(self, b: int, like: Tensor) -> State:
        return (like.new_zeros(b, *self.out_shape),)

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        steps = self.steps if self.training else 1
        if steps == 1:  # forward_history_layer's early return: no history at one step per forward
            return torch.cat([x, x.new_zeros(x.shape[0], self.out_shape.c - x.shape[1], *x.shape[2:])], 1)
        return super().forward(x, outputs)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (prev,) = state
        y = torch.cat([x, prev[:, : self.out_shape.c - x.shape[1]]], 1)
        return y, (y,)

    def describe(self) -> str:
        c, h, w = self.in_shape
        oc = self.out_shape.c
        return (f"HISTORY b = 1, s = {self.history_size:2d}, steps = {self.steps:2d}   {w:4d} x{h:4d} x{c:4d} -> "
                f"{w:4d} x{h:4d} x{oc:4d} ")


@register("history")
def build(sec: Section, ctx: BuildContext) -> History:
    ctx.require_image("history")
    size = ctx.positive("history_size", sec.int("history_size", 4))
    ctx.check_count("the output", ctx.input.size * size)
    return History(ctx.input, size, ctx.net.time_steps)
