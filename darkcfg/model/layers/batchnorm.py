"""[batchnorm] (batchnorm_layer.c): per-channel scale*(x-mean)/sqrt(var+1e-5)+bias.
Weights: biases[c], scales[c], rolling_mean[c], rolling_variance[c]."""
from __future__ import annotations

from torch import Tensor, nn

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import Blob, BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class BatchNorm(DarknetLayer):
    ltype = "batchnorm"

    def __init__(self, in_shape: Shape) -> None:
        super().__init__(in_shape, in_shape)
        self.bn = nn.BatchNorm2d(in_shape.c, eps=1e-5, momentum=0.01)

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        return self.bn(x)

    def describe(self) -> str:
        c, h, w = self.in_shape
        return f"Batch Normalization Layer: {w} x {h} x {c} image"

    def darknet_blobs(self, transpose: bool = False) -> list[Blob]:
        return [Blob(self.bn.bias), Blob(self.bn.weight), Blob(self.bn.running_mean), Blob(self.bn.running_var)]


@register("batchnorm")
def build(sec: Section, ctx: BuildContext) -> BatchNorm:
    ctx.require_image("batchnorm")
    return BatchNorm(ctx.input)
