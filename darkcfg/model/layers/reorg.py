"""[reorg3d] (reorg_layer.c) and the YOLOv2 [reorg] (reorg_old_layer.c): space-to-depth rearrangements."""
from __future__ import annotations

import torch
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape, building_on_meta
from darkcfg.model.layers._registry import register


class Reorg3d(DarknetLayer):
    """out[k, j, i] = in[k % C, j*s + (k//C)//s, i*s + (k//C)%s]: channel (dy*s + dx)*C + c.

    reverse=1 is the inverse mapping (depth-to-space); the reference's reverse code is inconsistent, so
    this follows the intended meaning and is not checked against it.
    """

    ltype = "reorg"

    def __init__(self, in_shape: Shape, stride: int, reverse: bool = False) -> None:
        c, h, w = in_shape
        s = stride
        out = Shape(c // (s * s), h * s, w * s) if reverse else Shape(c * s * s, h // s, w // s)
        super().__init__(in_shape, out)
        self.stride, self.reverse = stride, reverse

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        b = x.shape[0]
        s = self.stride
        if self.reverse:
            c, h, w = self.out_shape
            # (B, dy, dx, C, H/s, W/s) -> (B, C, H/s, dy, W/s, dx)
            return x.reshape(b, s, s, c, h // s, w // s).permute(0, 3, 4, 1, 5, 2).reshape(b, c, h, w)
        c, h, w = self.in_shape
        # (B, C, H/s, dy, W/s, dx) -> (B, dy, dx, C, H/s, W/s)
        y = x[..., : h // s * s, : w // s * s].reshape(b, c, h // s, s, w // s, s)
        return y.permute(0, 3, 5, 1, 2, 4).reshape(b, *self.out_shape)

    def describe(self) -> str:
        return f"reorg{'':20s}/{self.stride:2d}  {self.in_shape} -> {self.out_shape}"


class ReorgOld(DarknetLayer):
    """The YOLOv2 passthrough: a flat permutation (see DARKNET_SEMANTICS.md section 1, reorg).

    With input (c, h, w) and c' = c/s^2: out_flat[k*h*w + j*w + i] =
    in_flat[((k % c')*h*s + j*s + (k//c')//s)*w*s + i*s + (k//c')%s], read back as (c*s^2, h/s, w/s).
    """

    ltype = "reorg_old"

    def __init__(self, in_shape: Shape, stride: int) -> None:
        c, h, w = in_shape
        s = stride
        super().__init__(in_shape, Shape(c * s * s, h // s, w // s))
        self.stride = stride
        if building_on_meta():  # only its size counts there
            self.register_buffer("perm", torch.empty(c * h * w, dtype=torch.long), persistent=False)
            return
        k = torch.arange(c).view(c, 1, 1)
        j = torch.arange(h).view(1, h, 1)
        i = torch.arange(w).view(1, 1, w)
        cp = c // (s * s)
        off = k // cp
        src = ((k % cp) * h * s + j * s + off // s) * w * s + i * s + off % s
        self.register_buffer("perm", src.reshape(-1), persistent=False)

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        b = x.shape[0]
        return x.reshape(b, -1)[:, self.perm].view(b, *self.out_shape)

    def describe(self) -> str:
        return f"reorg_old{'':14s}/{self.stride:2d}   {self.in_shape}   ->  {self.out_shape}"


def _stride(sec: Section, ctx: BuildContext, what: str) -> tuple[int, bool]:
    ctx.require_image(what)
    s = ctx.positive("stride", sec.int("stride", 1))
    reverse = bool(sec.int("reverse", 0))
    c, h, w = ctx.input
    if reverse:
        if c % (s * s):
            raise sec.error(f"reverse with stride={s} needs channels divisible by {s * s}, got {c}")
    elif h % s or w % s:
        raise sec.error(f"stride={s} must divide the input size {w}x{h}")
    return s, reverse


@register("reorg3d")
def build_reorg3d(sec: Section, ctx: BuildContext) -> Reorg3d:
    s, reverse = _stride(sec, ctx, "reorg3d")
    return Reorg3d(ctx.input, s, reverse)


@register("reorg")
def build_reorg_old(sec: Section, ctx: BuildContext) -> ReorgOld:
    s, reverse = _stride(sec, ctx, "reorg")
    if reverse:
        raise sec.error("reverse=1 of the old [reorg] is inconsistent in the reference; not supported")
    if ctx.input.c % (s * s):
        raise sec.error(f"stride={s} needs input channels divisible by {s * s}, got {ctx.input.c}")
    return ReorgOld(ctx.input, s)
