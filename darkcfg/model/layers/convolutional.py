"""[convolutional] / [conv] (parser.c:parse_convolutional, convolutional_layer.c).

Binary convolutions (`binary=1`, `xnor=1`) follow the reference's binarisation (binarize_weights,
binarize_cpu): each filter's weights become sign(w) * mean|w| over that filter (w > 0 -> +mean, else -mean);
`xnor=1` also turns the input into +1 (x > 0) / -1 (zero padding stays 0, as in the float path) and forces
groups=1. Training keeps the real weights and passes gradients straight through (the input's clipped to
|x| < 1, the reference's hardtan gradient). The reference's generic CPU build crashes on xnor cfgs and only
binarises `binary=1` weights on the GPU; darkcfg follows the GPU path. `bin_output` only selects the
reference's bit-packed kernels and changes nothing here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from darkcfg.model.activations import Activation
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import Blob, BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register

_UNSUPPORTED = ("sway", "rotate", "stretch", "stretch_sway", "coordconv", "assisted_excitation")


class Convolutional(DarknetLayer):
    """y = act(BN(conv(x)) ) or act(conv(x) + bias); weights [n][c/groups][k][k] as torch.

    BN (eval) is scale*(x-mean)/sqrt(var+1e-5)+bias with the rolling statistics; training normalises with
    the biased batch variance and momentum .01, as the reference's cuDNN path.
    """

    ltype = "conv"

    def __init__(
        self,
        in_shape: Shape,
        filters: int,
        size: int,
        stride_x: int = 1,
        stride_y: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        batch_normalize: bool = False,
        activation: str = "logistic",
        act_fn: Optional[Activation] = None,
        antialiasing: int = 0,
        flipped: bool = False,
        binary: bool = False,
        xnor: bool = False,
        bin_output: bool = False,
    ) -> None:
        if xnor:
            groups = 1  # make_convolutional_layer: "disable groups for XNOR-net"
        c, h, w = in_shape
        sy, sx = (1, 1) if antialiasing else (stride_y, stride_x)
        conv_h = (h + 2 * padding - size) // sy + 1  # the reference ignores dilation here
        conv_w = (w + 2 * padding - size) // sx + 1
        out_h, out_w = conv_h, conv_w
        if antialiasing:
            blur_size, blur_pad = (2, 0) if antialiasing == 2 else (3, 1)
            out_h = (conv_h + 2 * blur_pad - blur_size) // stride_y + 1
            out_w = (conv_w + 2 * blur_pad - blur_size) // stride_x + 1
        super().__init__(in_shape, Shape(filters, out_h, out_w))
        self.filters, self.size, self.groups, self.dilation = filters, size, groups, dilation
        self.stride = (sy, sx)
        self.orig_stride = (stride_y, stride_x)
        self.padding = padding
        self.batch_normalize = batch_normalize
        self.activation = activation
        self.act = act_fn
        self.antialiasing = antialiasing
        self.flipped = flipped
        self.binary, self.xnor, self.bin_output = binary, xnor, bin_output
        self.dontloadscales = False
        self.share: list[Convolutional] = []  # share_index: weights of another layer (not our own)
        self.conv = nn.Conv2d(c, filters, size, self.stride, padding * dilation, dilation, groups,
                              bias=not batch_normalize)
        # torch's output size with dilation can differ from the reference's formula: pad/crop to match
        t_h = (h + 2 * padding * dilation - dilation * (size - 1) - 1) // sy + 1
        t_w = (w + 2 * padding * dilation - dilation * (size - 1) - 1) // sx + 1
        self._fix = (conv_h - t_h, conv_w - t_w)
        # reference init: sqrt(2/(size*size*c/groups)) * U(-1,1), biases 0
        scale = math.sqrt(2.0 / (size * size * c / groups))
        with torch.no_grad():
            self.conv.weight.uniform_(-scale, scale)
            if self.conv.bias is not None:
                self.conv.bias.zero_()
        self.bn = nn.BatchNorm2d(filters, eps=1e-5, momentum=0.01) if batch_normalize else None
        if self.bn is not None:
            with torch.no_grad():
                self.bn.running_var.zero_()  # the reference initialises rolling_variance to 0
        if antialiasing:
            if antialiasing == 2:
                k = torch.full((2, 2), 0.25)
            else:
                v = (1.0, 2.0, 1.0)  # outer(v, v) / 16, made in Python: cheap on the meta device too
                k = torch.tensor([[a * b / 16 for b in v] for a in v])
            blur = torch.empty(filters, 1, *k.shape).copy_(k)  # k per filter (copy_: cheap on the meta device too)
            self.register_buffer("blur", blur, persistent=False)

    @property
    def nweights(self) -> int:
        return (self.in_shape.c // self.groups) * self.filters * self.size * self.size

    @property
    def bflops(self) -> float:
        flops = 2.0 * self.nweights * self.out_shape.h * self.out_shape.w / 1e9
        return flops / 32 if self.xnor else flops

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        conv = self.share[0].conv if self.share else self.conv
        weight = conv.weight
        if self.binary or self.xnor:
            weight = binarize_weights(weight)
        if self.xnor:
            x = binarize_input(x)
        fh, fw = self._fix
        if fh > 0 or fw > 0:
            x = F.pad(x, (0, max(fw, 0) * self.stride[1], 0, max(fh, 0) * self.stride[0]))
        # padding and dilation are this layer's own, also when the weights are another's (share_index)
        y = F.conv2d(x, weight, conv.bias, self.stride, self.conv.padding, self.dilation, self.groups)
        if fh < 0 or fw < 0:
            y = y[..., : y.shape[-2] + min(fh, 0) or None, : y.shape[-1] + min(fw, 0) or None]
        if self.bn is not None:
            y = (self.share[0].bn if self.share else self.bn)(y)
        y = self.act(y)
        if self.antialiasing:
            pad = 0 if self.antialiasing == 2 else 1
            y = F.conv2d(y, self.blur, None, self.orig_stride, pad, groups=self.filters)
        return y

    def describe(self) -> str:
        """make_convolutional_layer's print."""
        grp = f"/{self.groups:4d} " if self.groups > 1 else " " * 6
        sy, sx = self.orig_stride
        if sx != sy:
            geometry = f"{self.size:2d}x{self.size:2d}/{sx:2d}x{sy:2d} "
        elif self.dilation > 1:
            geometry = f"{self.size:2d} x{self.size:2d}/{sx:2d}({self.dilation:1d})"
        else:
            geometry = f"{self.size:2d} x{self.size:2d}/{sx:2d}   "
        kind = ("convXB" if self.bin_output else "convX ") if self.xnor else "convS " if self.share else "conv  "
        return f"{kind}{self.filters:5d}{grp}{geometry}{self.in_shape} -> {self.out_shape} {self.bflops:5.3f} BF"

    def darknet_blobs(self, transpose: bool = False) -> list[Blob]:
        if self.share:
            return []
        skip = self.dontloadscales
        blobs = []
        if self.bn is not None:
            blobs += [Blob(self.bn.bias), Blob(self.bn.weight, skip_load=skip),
                      Blob(self.bn.running_mean, skip_load=skip), Blob(self.bn.running_var, skip_load=skip)]
        else:
            blobs.append(Blob(self.conv.bias))
        rows = self.filters
        cols = self.nweights // rows
        blobs.append(Blob(self.conv.weight, transposed=(rows, cols) if self.flipped else None))
        return blobs


def binarize_weights(w: Tensor) -> Tensor:
    """binarize_weights: per filter (dim 0), sign(w) * mean|w| (w > 0 -> +mean, else -mean); the gradient goes
    to the real weights unchanged (straight through)."""
    mean = w.abs().flatten(1).mean(1).view(-1, *([1] * (w.dim() - 1)))
    b = torch.where(w > 0, mean, -mean)
    return w + (b - w).detach()


def binarize_input(x: Tensor) -> Tensor:
    """binarize_cpu: +1 where x > 0, else -1; the gradient passes where |x| < 1 (hardtan's), as the GPU backward."""
    b = torch.where(x > 0, 1.0, -1.0).to(x.dtype)
    clipped = x * ((x > -1) & (x < 1))
    return clipped + (b - clipped).detach()


@dataclass
class ConvOptions:
    """The convolution options of the recurrent convolutional sections (parse_crnn, parse_conv_lstm)."""

    size: int
    stride: int
    dilation: int
    padding: int
    groups: int
    activation: str
    batch_normalize: bool
    xnor: bool


def read_conv_options(sec: Section, ctx: BuildContext, default_activation: str) -> ConvOptions:
    """size=3, stride=1, dilation=1, pad/padding, groups=1, activation, batch_normalize, xnor, as parse_crnn and
    parse_conv_lstm read them."""
    size = ctx.positive("size", sec.int("size", 3))
    stride = ctx.positive("stride", sec.int("stride", 1))
    dilation = ctx.positive("dilation", sec.int("dilation", 1))
    pad, padding = sec.int("pad", 0), sec.int("padding", 0)
    if pad:
        padding = size // 2
    if padding < 0:
        raise sec.error(f"padding={padding}: expected >= 0")
    groups = ctx.positive("groups", sec.int("groups", 1))
    act_name, _ = ctx.activation(default_activation)
    bn = bool(sec.int("batch_normalize", 0))
    xnor = bool(sec.int("xnor", 0))
    return ConvOptions(size, stride, dilation, padding, 1 if xnor else groups, act_name, bn, xnor)


@register("convolutional", "conv")
def build(sec: Section, ctx: BuildContext) -> Convolutional:
    ctx.require_image("convolutional")
    filters = ctx.positive("filters", sec.int("filters", 1))
    groups = ctx.positive("groups", sec.int("groups", 1))
    size = ctx.positive("size", sec.int("size", 1))
    stride_x = sec.int("stride_x", -1)
    stride_y = sec.int("stride_y", -1)
    if stride_x < 1 or stride_y < 1:
        stride = ctx.positive("stride", sec.int("stride", 1))
        stride_x = stride if stride_x < 1 else stride_x
        stride_y = stride if stride_y < 1 else stride_y
    else:
        sec.int("stride", 1)
    dilation = ctx.positive("dilation", sec.int("dilation", 1))
    antialiasing = sec.int("antialiasing", 0)
    if size == 1:
        dilation = 1
    pad = sec.int("pad", 0)
    padding = sec.int("padding", 0)
    if pad:
        padding = size // 2
    act_name, act = ctx.activation("logistic")
    share_index = sec.int("share_index", -1000000000)
    batch_normalize = sec.int("batch_normalize", 0)
    if sec.int("cbn", 0):
        batch_normalize = 2
    for key in _UNSUPPORTED:
        if sec.float(key, 0):
            raise sec.error(f"option '{key}' is not supported by darkcfg")
    binary, xnor = bool(sec.int("binary", 0)), bool(sec.int("xnor", 0))
    bin_output = bool(sec.int("bin_output", 0))
    if xnor:
        groups = 1  # make_convolutional_layer
    flipped = sec.int("flipped", 0)
    for key in ("dot", "angle", "reverse"):
        sec.float(key, 0)
    for key in ("grad_centr", "stream", "wait_stream"):
        sec.int(key, 0)
    c = ctx.input.c
    if c % groups or filters % groups:
        raise sec.error(f"groups={groups} must divide both input channels ({c}) and filters ({filters})")
    if padding < 0:
        raise sec.error(f"padding={padding}: expected >= 0")
    ctx.check_count("the weights", (c // groups) * filters * size * size)
    ctx.check_count("the output", filters * ctx.input.h * ctx.input.w)
    layer = Convolutional(ctx.input, filters, size, stride_x, stride_y, padding, dilation, groups,
                          bool(batch_normalize), act_name, act, antialiasing, bool(flipped), binary, xnor,
                          bin_output)
    if min(layer.out_shape) <= 0:
        raise sec.error(f"size={size} with padding={padding} is larger than the input {tuple(ctx.input)}")
    if share_index != -1000000000:
        idx = ctx.resolve("share_index", [share_index])[0]
        other = ctx.layers[idx]
        if not isinstance(other, Convolutional) or other.conv.weight.shape != layer.conv.weight.shape or (
            (other.bn is None) != (layer.bn is None)
        ):
            raise sec.error(f"share_index={share_index}: layer {idx} is not a convolution of the same shape")
        layer.share = [other]
    return layer
