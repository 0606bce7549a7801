"""[crnn] (crnn_layer.c): a convolutional recurrent layer of three [convolutional] sub-layers.

Per step: h = input_layer(x) + self_layer(h_prev) (+ h_prev with `shortcut=1`), y = output_layer(h); each
sub-layer is a convolution with this section's size, stride, dilation, padding, groups, activation and batch
norm. The hidden state is `hidden` channels at the input's height and width, so the convolutions must keep
the size (stride 1, pad=1), as the reference asserts. Weights: input_layer, self_layer, output_layer.
"""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.activations import ACTIVATIONS
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, Shape
from darkcfg.model.layers._recurrent import State, ThreeLayerRecurrent
from darkcfg.model.layers._registry import register
from darkcfg.model.layers.convolutional import Convolutional, read_conv_options


class CRNN(ThreeLayerRecurrent):
    ltype = "crnn"

    def __init__(self, in_shape: Shape, hidden: int, outputs: int, steps: int = 1, size: int = 3, stride: int = 1,
                 dilation: int = 1, padding: int = 0, groups: int = 1, activation: str = "logistic",
                 batch_normalize: bool = False, shortcut: bool = False, xnor: bool = False) -> None:
        c, h, w = in_shape

        def conv(cin: int, n: int) -> Convolutional:
            return Convolutional(Shape(cin, h, w), n, size, stride, stride, padding, dilation, groups,
                                 batch_normalize, activation, ACTIVATIONS[activation], xnor=xnor)

        input_layer, self_layer, output_layer = conv(c, hidden), conv(hidden, hidden), conv(hidden, outputs)
        super().__init__(in_shape, output_layer.out_shape, steps)
        self.input_layer, self.self_layer, self.output_layer = input_layer, self_layer, output_layer
        self.hidden, self.shortcut = hidden, shortcut

    @property
    def bflops(self) -> float:
        return sum(s.bflops for s in self.subs)

    def zero_state(self, b: int, like: Tensor) -> State:
        return (like.new_zeros(b, self.hidden, self.in_shape.h, self.in_shape.w),)

    def describe(self) -> str:
        c, h, w = self.in_shape
        return self._table(f"CRNN Layer: {h} x {w} x {c} image, {self.out_shape.c} filters")


@register("crnn")
def build(sec: Section, ctx: BuildContext) -> CRNN:
    ctx.require_image("crnn")
    o = read_conv_options(sec, ctx, default_activation="logistic")
    outputs = ctx.positive("output", sec.int("output", 1))
    hidden = ctx.positive("hidden", sec.int("hidden", 1))
    shortcut = bool(sec.int("shortcut", 0))
    c, h, w = ctx.input
    if c % o.groups or hidden % o.groups or outputs % o.groups:
        raise sec.error(f"groups={o.groups} must divide the input channels ({c}), hidden ({hidden}) and output "
                        f"({outputs})")
    ctx.check_count("the weights", (c + hidden + hidden) * max(hidden, outputs) * o.size * o.size)
    layer = CRNN(ctx.input, hidden, outputs, ctx.net.time_steps, o.size, o.stride, o.dilation, o.padding,
                 o.groups, o.activation, o.batch_normalize, shortcut, o.xnor)
    got = layer.input_layer.out_shape
    if (got.h, got.w) != (h, w) or min(layer.out_shape) <= 0:
        raise sec.error(f"size={o.size}, stride={o.stride}, padding={o.padding} turn {w}x{h} into {got.w}x{got.h}; "
                        "the hidden state needs the input's size (stride=1, pad=1)")
    return layer
