"""[route] (route_layer.c): concatenate, per input, the channel slice [group_id*C/groups, (group_id+1)*C/groups)."""
from __future__ import annotations

import torch
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register


class Route(DarknetLayer):
    ltype = "route"

    def __init__(self, in_shape: Shape, sources: tuple[int, ...], shapes: list[Shape],
                 groups: int = 1, group_id: int = 0) -> None:
        first = shapes[0]
        out_c = sum(s.c for s in shapes) // groups
        super().__init__(in_shape, Shape(out_c, first.h, first.w), sources)
        self.groups, self.group_id = groups, group_id  # per input: channels [group_id*C/groups, (group_id+1)*C/groups)

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        # a group is taken as one piece of a split into `groups` equal parts, not as a slice: the same view, but
        # a converted graph then has a Split, through which NNCF quantizes the producer's output once (int8
        # yolov4-tiny: a slice got a quantizer of its own, with layout reorders around it, ~1 ms of its 10)
        parts = [outputs[idx] if self.groups == 1 else outputs[idx].chunk(self.groups, 1)[self.group_id]
                 for idx in self.sources]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def describe(self) -> str:
        src = " ".join(str(s) for s in self.sources)
        grp = f"{self.group_id}/{self.groups}" if self.groups > 1 else "   "
        return f"route  {src:<22s}{grp:>8s} ->  {self.out_shape}"


@register("route")
def build(sec: Section, ctx: BuildContext) -> Route:
    sources = ctx.layer_refs("layers")
    groups = ctx.positive("groups", sec.int("groups", 1))
    group_id = sec.int("group_id", 0)
    if not 0 <= group_id < groups:
        raise sec.error(f"group_id={group_id}: expected 0..{groups - 1} for groups={groups}")
    sec.int("stream", -1)
    sec.int("wait_stream", -1)
    shapes = [ctx.shapes[i] for i in sources]
    for i, s in zip(sources, shapes):
        if (s.h, s.w) != (shapes[0].h, shapes[0].w):
            raise sec.error(f"input layers have different sizes: layer {sources[0]} is {shapes[0].w}x{shapes[0].h},"
                            f" layer {i} is {s.w}x{s.h}; expected equal width and height")
        if s.c % groups:
            raise sec.error(f"groups={groups} does not divide the {s.c} channels of layer {i}")
    return Route(ctx.input, tuple(sources), shapes, groups, group_id)
