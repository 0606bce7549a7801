"""[connected] / [conn] (connected_layer.c): y = act(BN(x W^T) or x W^T + b), W stored [out][in].

In the weights file the BN block (scales, mean, variance) comes after the weights; files whose major or
minor version is > 1000 store W transposed ([in][out]).
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


class Connected(DarknetLayer):
    ltype = "connected"

    def __init__(self, in_shape: Shape, outputs: int, activation: str = "logistic",
                 act_fn: Optional[Activation] = None, batch_normalize: bool = False) -> None:
        super().__init__(in_shape, Shape(outputs, 1, 1))
        n_in = in_shape.size
        self.activation, self.act = activation, act_fn
        self.weight = nn.Parameter(torch.empty(outputs, n_in).uniform_(-1, 1).mul_(math.sqrt(2.0 / n_in)))
        self.bias = nn.Parameter(torch.zeros(outputs))
        # BN rolling update .95/.05 in the reference
        self.bn = nn.BatchNorm1d(outputs, eps=1e-5, momentum=0.05, affine=False) if batch_normalize else None
        self.scales = nn.Parameter(torch.ones(outputs)) if batch_normalize else None
        self.dontloadscales = False

    @property
    def bflops(self) -> float:
        return 2.0 * self.in_shape.size * self.out_shape.c / 1e9

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        b = x.shape[0]
        if self.bn is not None:  # normalise, scale, then the bias (forward_connected_layer)
            y = self.bn(F.linear(x.reshape(b, -1), self.weight)) * self.scales + self.bias
        else:
            y = F.linear(x.reshape(b, -1), self.weight, self.bias)
        return self.act(y).view(b, -1, 1, 1)

    def describe(self) -> str:
        return f"connected{'':28s}{self.in_shape.size:4d}  ->  {self.out_shape.c:4d}"

    def darknet_blobs(self, transpose: bool = False) -> list[Blob]:
        rows, cols = self.weight.shape
        blobs = [Blob(self.bias), Blob(self.weight, transposed=(rows, cols) if transpose else None)]
        if self.bn is not None:
            skip = self.dontloadscales
            blobs += [Blob(self.scales, skip_load=skip), Blob(self.bn.running_mean, skip_load=skip),
                      Blob(self.bn.running_var, skip_load=skip)]
        return blobs


@register("connected", "conn")
def build(sec: Section, ctx: BuildContext) -> Connected:
    outputs = ctx.positive("output", sec.int("output", 1))
    act_name, act = ctx.activation("logistic")
    bn = bool(sec.int("batch_normalize", 0))
    if ctx.input.size <= 0:
        raise sec.error(f"input has no elements: {tuple(ctx.input)}")
    ctx.check_count("the weights", ctx.input.size * outputs)
    return Connected(ctx.input, outputs, act_name, act, bn)
