"""[conv_lstm] (conv_lstm_layer.c): a convolutional LSTM of up to eleven [convolutional] sub-layers.

Every sub-layer is a convolution with this section's size, stride, dilation, padding, groups, `activation`
(default linear) and batch norm; U* read the input x, W* the previous output h, V* (`peephole=1`) the cell c.
Per step, with act = `lstm_activation` (default tanh):
f = σ(Wf h + Uf x + Vf c), i = σ(Wi h + Ui x + Vi c), g = act(Wg h + Ug x), c = f c + i g,
o = σ(Wo h + Uo x + Vo c_new), h = o act(c); then c is clipped to ±`state_constrain` (default 32 *
time_steps). Output h (B, output, H, W). NaN/inf in c or h become 0 (the reference writes 1/index there).

`bottleneck=1` (the reference's GPU path; its CPU path crashes): one convolution Wf reads [h, x] (2*output
channels, so the input must have `output` channels), act(Wf [h, x]) feeds every U*, and the gates have no W*
terms; with `shortcut=1` the first half of act(Wf [h, x]) (in C, H, W order) is added to the output, and in
training the gradient through h is scaled by `time_normalizer`. The reference concatenates the whole batch's h
before the whole batch's x; darkcfg concatenates per image, which is the same at batch 1 and what is meant.

Weights: vf, vi, vo (peephole), wf (wi, wg, wo unless bottleneck), uf, ui, ug, uo; each as [convolutional].
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from darkcfg.model.activations import ACTIVATIONS
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._recurrent import Recurrent, State
from darkcfg.model.layers._registry import register
from darkcfg.model.layers.convolutional import Convolutional, read_conv_options

GATES = ("f", "i", "g", "o")


class ConvLSTM(Recurrent):
    ltype = "conv_lstm"

    def __init__(self, in_shape: Shape, outputs: int, steps: int = 1, size: int = 3, stride: int = 1,
                 dilation: int = 1, padding: int = 0, groups: int = 1, activation: str = "linear",
                 batch_normalize: bool = False, peephole: bool = False, xnor: bool = False, bottleneck: bool = False,
                 shortcut: bool = False, state_constrain: Optional[int] = None, lstm_activation: str = "tanh",
                 time_normalizer: float = 1.0) -> None:
        c, h, w = in_shape

        def conv(cin: int) -> Convolutional:
            return Convolutional(Shape(cin, h, w), outputs, size, stride, stride, padding, dilation, groups,
                                 batch_normalize, activation, ACTIVATIONS[activation], xnor=xnor)

        u = {g: conv(c) for g in GATES}
        super().__init__(in_shape, u["o"].out_shape, steps)
        for g in GATES:
            setattr(self, "u" + g, u[g])
        self.w_gates = ("f",) if bottleneck else GATES
        for g in self.w_gates:
            setattr(self, "w" + g, conv(2 * outputs if bottleneck else outputs))
        self.v_gates = ("f", "i", "o") if peephole else ()
        for g in self.v_gates:
            setattr(self, "v" + g, conv(outputs))
        self.peephole, self.bottleneck, self.shortcut = peephole, bottleneck, shortcut
        self.state_constrain = 32 * steps if state_constrain is None else state_constrain
        self.lstm_activation = lstm_activation
        self.lstm_act = ACTIVATIONS[lstm_activation]
        self.time_normalizer = time_normalizer

    @property
    def subs(self) -> list[DarknetLayer]:
        return ([getattr(self, "v" + g) for g in self.v_gates] + [getattr(self, "w" + g) for g in self.w_gates]
                + [getattr(self, "u" + g) for g in GATES])

    @property
    def creation_order(self) -> list[DarknetLayer]:
        return ([getattr(self, "u" + g) for g in GATES] + [getattr(self, "w" + g) for g in self.w_gates]
                + [getattr(self, "v" + g) for g in self.v_gates])

    @property
    def bflops(self) -> float:
        per_value = 12 if self.peephole else 9  # make_conv_lstm_layer's element-wise count
        return sum(s.bflops for s in self.subs) + per_value * self.out_shape.size / 1e9

    def zero_state(self, b: int, like: Tensor) -> State:
        z = like.new_zeros(b, *self.out_shape)
        return z, z

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        pre = {g: 0.0 for g in GATES}
        if self.peephole:
            pre["f"], pre["i"] = self.vf(c, []), self.vi(c, [])
        if self.bottleneck:
            if self.training and h.requires_grad and self.time_normalizer != 1.0:
                h = h.clone()
                h.register_hook(lambda grad: grad * self.time_normalizer)
            mixed = self.lstm_act(self.wf(torch.cat([h, x], 1), []))
            u_in = mixed
        else:
            for g in GATES:
                pre[g] = pre[g] + getattr(self, "w" + g)(h, [])
            u_in = x
        for g in GATES:
            pre[g] = pre[g] + getattr(self, "u" + g)(u_in, [])
        f, i = torch.sigmoid(pre["f"]), torch.sigmoid(pre["i"])
        c = f * c + i * self.lstm_act(pre["g"])
        if self.peephole:
            pre["o"] = pre["o"] + self.vo(c, [])
        h = torch.sigmoid(pre["o"]) * self.lstm_act(c)
        if self.state_constrain:
            c = c.clamp(-self.state_constrain, self.state_constrain)
        c, h = torch.nan_to_num(c, 0.0, 0.0, 0.0), torch.nan_to_num(h, 0.0, 0.0, 0.0)
        y = h
        if self.shortcut and self.bottleneck:  # "partial residual connection": the first half of the values
            flat, half = mixed.flatten(1), self.out_shape.size // 2
            y = (h.flatten(1) + torch.cat([flat[:, :half], torch.zeros_like(flat[:, half:])], 1)).view_as(h)
        return y, (h, c)

    def describe(self) -> str:
        c, h, w = self.in_shape
        return self._table(f"CONV_LSTM Layer: {h} x {w} x {c} image, {self.out_shape.c} filters")


@register("conv_lstm")
def build(sec: Section, ctx: BuildContext) -> ConvLSTM:
    ctx.require_image("conv_lstm")
    o = read_conv_options(sec, ctx, default_activation="linear")
    outputs = ctx.positive("output", sec.int("output", 1))
    peephole = bool(sec.int("peephole", 0))
    bottleneck = bool(sec.int("bottleneck", 0))
    state_constrain = sec.int("state_constrain", ctx.net.time_steps * 32)
    shortcut = bool(sec.int("shortcut", 0))
    lstm_name, _ = ctx.activation("tanh", "lstm_activation")
    time_normalizer = sec.float("time_normalizer", 1.0)
    c, h, w = ctx.input
    if c % o.groups or outputs % o.groups:
        raise sec.error(f"groups={o.groups} must divide the input channels ({c}) and output ({outputs})")
    if bottleneck and c != outputs:
        raise sec.error(f"bottleneck=1 concatenates the state and the input: the input needs output={outputs} "
                        f"channels, got {c}")
    ctx.check_count("the weights", (c + 3 * outputs) * outputs * 4 * o.size * o.size)
    layer = ConvLSTM(ctx.input, outputs, ctx.net.time_steps, o.size, o.stride, o.dilation, o.padding, o.groups,
                     o.activation, o.batch_normalize, peephole, o.xnor, bottleneck, shortcut, state_constrain,
                     lstm_name, time_normalizer)
    got = layer.out_shape
    if (got.h, got.w) != (h, w):
        raise sec.error(f"size={o.size}, stride={o.stride}, padding={o.padding} turn {w}x{h} into {got.w}x{got.h}; "
                        "the state needs the input's size (stride=1, pad=1)")
    return layer
