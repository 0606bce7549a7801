"""[maxpool] / [max] and [local_avgpool] / [local_avg] (maxpool_layer.c): windowed pooling.

Output size (w + padding - size)/stride + 1; the window starts at -(padding/2). Cells outside the input
are -inf for max (the generic CPU and GPU paths; the AVX stride-1 fast path's border bug is not
reproduced) and are left out of the average for local_avgpool.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape, building_on_meta
from darkcfg.model.layers._registry import register


class MaxPool(DarknetLayer):
    ltype = "max"

    def __init__(self, in_shape: Shape, size: int, stride_x: int, stride_y: int, padding: int,
                 maxpool_depth: int = 0, out_channels: int = 1, average: bool = False) -> None:
        c, h, w = in_shape
        if maxpool_depth:
            out = Shape(out_channels, h, w)
        else:
            out = Shape(c, (h + padding - size) // stride_y + 1, (w + padding - size) // stride_x + 1)
        super().__init__(in_shape, out)
        self.size, self.stride, self.padding = size, (stride_y, stride_x), padding
        self.maxpool_depth, self.out_channels, self.average = maxpool_depth, out_channels, average
        if average:
            self.ltype = "avg"  # printed as the reference does for local_avgpool
        p = padding
        self._pad = (p // 2, p - p // 2, p // 2, p - p // 2)  # left, right, top, bottom
        if average and not maxpool_depth and building_on_meta():  # only its size counts there
            self.register_buffer("count", torch.empty(1, 1, out.h, out.w), persistent=False)
        elif average and not maxpool_depth:  # number of valid (non-padded) cells under each window
            ones = F.pad(torch.ones(1, 1, h, w), self._pad)
            count = F.avg_pool2d(ones, size, self.stride, divisor_override=1)[..., : out.h, : out.w]
            self.register_buffer("count", count.clamp(min=1), persistent=False)

    @property
    def bflops(self) -> float:
        o = self.out_shape
        return self.size * self.size * self.in_shape.c * o.h * o.w / 1e9

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        if self.maxpool_depth:
            b, c, h, w = x.shape
            oc = self.out_channels
            groups = -(-c // oc)
            if groups * oc != c:  # channels k = g, g+oc, ... ; missing ones never win
                x = F.pad(x, (0, 0, 0, 0, 0, groups * oc - c), value=float("-inf"))
            return x.reshape(b, groups, oc, h, w).amax(dim=1)
        oh, ow = self.out_shape.h, self.out_shape.w
        if self.average:
            s = F.avg_pool2d(F.pad(x, self._pad), self.size, self.stride, divisor_override=1)
            return s[..., :oh, :ow] / self.count
        return F.max_pool2d(self._max_pad(x), self.size, self.stride)

    def _max_pad(self, x: Tensor) -> Tensor:
        """x padded with -inf only as far as the windows reach: with the reference's default padding = size - 1 on
        an input the stride divides (2x2/2 on an even size) no window reaches the padding and x is pooled as it is;
        padding it anyway copied every pooled activation, forward and backward, about a tenth of a yolov3-tiny
        training step."""
        left, _, top, _ = self._pad
        (sy, sx), k = self.stride, self.size
        h, w = x.shape[-2:]
        oh, ow = (h + self.padding - k) // sy + 1, (w + self.padding - k) // sx + 1
        right, bottom = (ow - 1) * sx + k - left - w, (oh - 1) * sy + k - top - h
        if left == top == 0 and right <= 0 and bottom <= 0:
            return x
        return F.pad(x, (left, max(0, right), top, max(0, bottom)), value=float("-inf"))

    def describe(self) -> str:
        sy, sx = self.stride
        stride = f"{sx:2d}" if sx == sy else f"{sx}x{sy}"
        return (f"{self.ltype:<3s}{'':15s}{self.size:2d}x{self.size:2d}/{stride}   "
                f"{self.in_shape} -> {self.out_shape} {self.bflops:5.3f} BF")


def _window(sec: Section, ctx: BuildContext) -> tuple[int, int, int, int]:
    stride = ctx.positive("stride", sec.int("stride", 1))
    stride_x = ctx.positive("stride_x", sec.int("stride_x", stride))
    stride_y = ctx.positive("stride_y", sec.int("stride_y", stride))
    size = ctx.positive("size", sec.int("size", stride))
    padding = sec.int("padding", size - 1)
    if padding < 0:
        raise sec.error(f"padding={padding}: expected >= 0")
    return size, stride_x, stride_y, padding


def _check(sec: Section, layer: MaxPool) -> MaxPool:
    if min(layer.out_shape) <= 0:
        raise sec.error(f"size={layer.size} is larger than the padded input {tuple(layer.in_shape)}")
    return layer


@register("maxpool", "max")
def build_maxpool(sec: Section, ctx: BuildContext) -> MaxPool:
    ctx.require_image("maxpool")
    size, sx, sy, padding = _window(sec, ctx)
    depth = sec.int("maxpool_depth", 0)
    out_channels = ctx.positive("out_channels", sec.int("out_channels", 1))
    if sec.int("antialiasing", 0):
        raise sec.error("option 'antialiasing' is not supported by darkcfg for [maxpool]")
    sec.int("maxpool_zero_nonmax", 0)
    return _check(sec, MaxPool(ctx.input, size, sx, sy, padding, depth, out_channels))


@register("local_avgpool", "local_avg")
def build_local_avgpool(sec: Section, ctx: BuildContext) -> MaxPool:
    ctx.require_image("local_avgpool")
    size, sx, sy, padding = _window(sec, ctx)
    return _check(sec, MaxPool(ctx.input, size, sx, sy, padding, average=True))
