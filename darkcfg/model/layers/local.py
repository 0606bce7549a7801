"""[local] (local_layer.c): a locally connected layer, a convolution with its own filters at every output location
(YOLOv1's full models).

out[b, f, y, x] = act(bias[f, y, x] + sum over c, ky, kx of W[y*out_w + x, f, c, ky, kx] *
in[b, c, y*stride + ky - pad, x*stride + kx - pad]); `pad` is a flag used as the padding amount (im2col_cpu),
and the output size is (h - size)/stride + 1 without it, (h - 1)/stride + 1 with it. Weights in the file:
biases (filters x out_h x out_w), then per location its (filters, c*size*size) matrix.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from darkcfg.model.activations import Activation
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import Blob, BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Local(DarknetLayer):
    ltype = "local"

    def __init__(self, in_shape: Shape, filters: int, size: int, stride: int, pad: int, activation: str,
                 act_fn: Optional[Activation]) -> None:
        c, h, w = in_shape
        out_h = (h - (1 if pad else size)) // stride + 1
        out_w = (w - (1 if pad else size)) // stride + 1
        super().__init__(in_shape, Shape(filters, out_h, out_w))
        self.filters, self.size, self.stride, self.pad = filters, size, stride, pad
        self.activation, self.act = activation, act_fn
        k = c * size * size
        scale = math.sqrt(2.0 / k)
        self.weight = nn.Parameter(torch.empty(out_h * out_w, filters, k).uniform_(-scale, scale))
        self.bias = nn.Parameter(torch.zeros(filters, out_h, out_w))

    @property
    def bflops(self) -> float:
        return 0.0  # the reference counts none for [local]

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        cols = F.unfold(x, self.size, padding=self.pad, stride=self.stride)  # (B, c*k*k, L)
        y = torch.einsum("brl,lfr->bfl", cols, self.weight)
        return self.act(y.view(x.shape[0], *self.out_shape) + self.bias)

    def describe(self) -> str:
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        return f"Local Layer: {h} x {w} x {c} image, {oc} filters -> {oh} x {ow} x {oc} image"

    def darknet_blobs(self, transpose: bool = False) -> list[Blob]:
        return [Blob(self.bias), Blob(self.weight)]


@register("local")
def build(sec: Section, ctx: BuildContext) -> Local:
    ctx.require_image("local")
    filters = ctx.positive("filters", sec.int("filters", 1))
    size = ctx.positive("size", sec.int("size", 1))
    stride = ctx.positive("stride", sec.int("stride", 1))
    pad = sec.int("pad", 0)
    act_name, act = ctx.activation("logistic")
    c, h, w = ctx.input
    if pad < 0:
        raise sec.error(f"pad={pad}: expected >= 0")
    layer = Local(ctx.input, filters, size, stride, pad, act_name, act)
    oh, ow = layer.out_shape.h, layer.out_shape.w
    cols_h, cols_w = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
    if min(oh, ow) <= 0 or (cols_h, cols_w) != (oh, ow):
        raise sec.error(f"size={size}, stride={stride}, pad={pad} on {w}x{h}: the output is {ow}x{oh} but the patches "
                        f"cover {cols_w}x{cols_h} (the reference's local_out_* and im2col disagree)")
    ctx.check_count("the weights", oh * ow * filters * c * size * size)
    return layer
