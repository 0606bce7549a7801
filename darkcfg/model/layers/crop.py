"""[crop] (crop_layer.c), inference semantics: centre crop to crop_height x crop_width, then v*2-1
(unless noadjust). The random crop/flip/colour jitter of training are not applied here."""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Crop(DarknetLayer):
    ltype = "crop"

    def __init__(self, in_shape: Shape, crop_height: int, crop_width: int, noadjust: bool = False) -> None:
        super().__init__(in_shape, Shape(in_shape.c, crop_height, crop_width))
        self.noadjust = noadjust
        self._dh = (in_shape.h - crop_height) // 2
        self._dw = (in_shape.w - crop_width) // 2

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        _, h, w = self.out_shape
        y = x[..., self._dh: self._dh + h, self._dw: self._dw + w]
        return y if self.noadjust else y * 2 - 1

    def describe(self) -> str:
        i, o = self.in_shape, self.out_shape
        return f"Crop Layer: {i.h} x {i.w} -> {o.h} x {o.w} x {o.c} image"


@register("crop")
def build(sec: Section, ctx: BuildContext) -> Crop:
    ctx.require_image("crop")
    ch = ctx.positive("crop_height", sec.int("crop_height", 1))
    cw = ctx.positive("crop_width", sec.int("crop_width", 1))
    sec.int("flip", 0)
    for key, default in (("angle", 0), ("saturation", 1), ("exposure", 1), ("shift", 0)):
        sec.float(key, default)
    noadjust = bool(sec.int("noadjust", 0))
    if ch > ctx.input.h or cw > ctx.input.w:
        raise sec.error(f"crop {cw}x{ch} is larger than the input {ctx.input.w}x{ctx.input.h}")
    return Crop(ctx.input, ch, cw, noadjust)
