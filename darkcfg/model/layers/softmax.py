"""[softmax] / [soft] (softmax_layer.c): softmax(x / temperature) over each of `groups` flat slices,
or across channels per pixel with `spatial=1`. Output shape = input shape."""
from __future__ import annotations

from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Softmax(DarknetLayer):
    ltype = "softmax"

    def __init__(self, in_shape: Shape, groups: int = 1, temperature: float = 1.0, spatial: bool = False,
                 noloss: bool = False) -> None:
        super().__init__(in_shape, in_shape)
        self.groups, self.temperature, self.spatial = groups, temperature, spatial
        self.has_loss = not noloss  # training: the classifier's loss (darkcfg.train.losses.softmax)

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        x = x / self.temperature if self.temperature != 1 else x
        if self.spatial:
            return x.softmax(dim=1)
        b = x.shape[0]
        return x.reshape(b, self.groups, -1).softmax(dim=-1).reshape(b, *self.out_shape)

    def describe(self) -> str:
        return f"softmax{'':40s}{self.in_shape.size:4d}"


@register("softmax", "soft", layer=Softmax)
def build(sec: Section, ctx: BuildContext) -> Softmax:
    groups = ctx.positive("groups", sec.int("groups", 1))
    temperature = sec.float("temperature", 1.0)
    if sec.str("tree") is not None:
        raise sec.error("option 'tree' (hierarchical softmax) is not supported by darkcfg")
    spatial = bool(sec.float("spatial", 0))
    noloss = bool(sec.int("noloss", 0))
    if ctx.input.size % groups:
        raise sec.error(f"groups={groups} does not divide the {ctx.input.size} inputs")
    if temperature == 0:
        raise sec.error("temperature=0: expected a non-zero temperature")
    return Softmax(ctx.input, groups, temperature, spatial, noloss)
