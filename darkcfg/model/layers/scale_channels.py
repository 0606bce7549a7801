"""[scale_channels] (scale_channels_layer.c): out[b,c,y,x] = act(prev[b,c] * from[b,c,y,x]).

With scale_wh=1 the previous layer is (1, H, W) and scales every channel of `from` per pixel instead.
The output has `from`'s shape.
"""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.activations import Activation
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class ScaleChannels(DarknetLayer):
    ltype = "scale_channels"

    def __init__(self, in_shape: Shape, source: int, from_shape: Shape, scale_wh: bool,
                 activation: str, act_fn: Activation) -> None:
        super().__init__(in_shape, from_shape, (source,))
        self.scale_wh, self.activation, self.act = scale_wh, activation, act_fn

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return self.act(x * outputs[self.sources[0]])  # (B,C,1,1) or (B,1,H,W) broadcast

    def describe(self) -> str:
        return f"scale Layer: {self.sources[0]}"


@register("scale_channels")
def build(sec: Section, ctx: BuildContext) -> ScaleChannels:
    refs = ctx.layer_refs("from")
    src = refs[0]
    scale_wh = bool(sec.int("scale_wh", 0))
    act_name, act = ctx.activation("linear")
    fs = ctx.shapes[src]
    expected = Shape(1, fs.h, fs.w) if scale_wh else Shape(fs.c, 1, 1)
    if ctx.input != expected:
        raise sec.error(f"previous layer outputs {tuple(ctx.input)}, expected {tuple(expected)} to scale "
                        f"layer {src} {tuple(fs)}" + (" with scale_wh=1" if scale_wh else ""))
    return ScaleChannels(ctx.input, src, fs, scale_wh, act_name, act)
