"""[lrn] / [normalization] (normalization_layer.c): x / (kappa + alpha * sum over `size` channels of x^2)^beta.
The reference does not divide alpha by size (torch's LocalResponseNorm does)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class LRN(DarknetLayer):
    ltype = "norm"

    def __init__(self, in_shape: Shape, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                 kappa: float = 1.0) -> None:
        super().__init__(in_shape, in_shape)
        self.size, self.alpha, self.beta, self.kappa = size, alpha, beta, kappa

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return F.local_response_norm(x, self.size, self.alpha * self.size, self.beta, self.kappa)

    def describe(self) -> str:
        c, h, w = self.in_shape
        return f"Local Response Normalization Layer: {w} x {h} x {c} image, {self.size} size"


@register("lrn", "normalization")
def build(sec: Section, ctx: BuildContext) -> LRN:
    ctx.require_image("lrn")
    alpha = sec.float("alpha", 0.0001)
    beta = sec.float("beta", 0.75)
    kappa = sec.float("kappa", 1.0)
    size = ctx.positive("size", sec.int("size", 5))
    return LRN(ctx.input, size, alpha, beta, kappa)
