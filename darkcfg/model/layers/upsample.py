"""[upsample] (upsample_layer.c): out = scale * nearest(in); a negative stride downsamples by summing."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Upsample(DarknetLayer):
    ltype = "upsample"

    def __init__(self, in_shape: Shape, stride: int = 2, scale: float = 1.0) -> None:
        c, h, w = in_shape
        s = abs(stride)
        out = Shape(c, h * s, w * s) if stride > 0 else Shape(c, h // s, w // s)
        super().__init__(in_shape, out)
        self.stride, self.scale = stride, scale

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        s = abs(self.stride)
        if self.stride > 0:
            y = x.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3) if s > 1 else x
        else:  # reference: out = scale * SUM over each s x s block (not the mean)
            oh, ow = self.out_shape.h, self.out_shape.w
            y = F.avg_pool2d(x[..., : oh * s, : ow * s], s, s, divisor_override=1)
        return y * self.scale if self.scale != 1 else y

    def describe(self) -> str:
        name = "upsample" if self.stride > 0 else "downsample"
        return f"{name:<10s}{'':14s}{abs(self.stride):2d}x  {self.in_shape} -> {self.out_shape}"


@register("upsample")
def build(sec: Section, ctx: BuildContext) -> Upsample:
    ctx.require_image("upsample")
    stride = sec.int("stride", 2)
    if stride == 0:
        raise sec.error("stride=0: expected a non-zero stride (negative downsamples)")
    if stride > 0:
        ctx.check_count("the output", ctx.input.size * stride * stride)
    layer = Upsample(ctx.input, stride, sec.float("scale", 1.0))
    if min(layer.out_shape) <= 0:
        raise sec.error(f"stride={stride} downsamples {tuple(ctx.input)} to nothing")
    return layer
