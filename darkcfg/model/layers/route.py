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
        # How a traced graph takes a group; in torch both are the same view. A slice by default: OpenVINO copies it
        # in ~0.1 ms on yolov4-tiny, where its Split kernel took 4 ms of 42 in fp32. One piece of a split into
        # `groups` parts with `as_split` (set for graphs to be quantized, infer/openvino.py `graph_form`): NNCF
        # then quantizes the producer's output once, where a slice got a quantizer of its own with layout reorders
        # around it (int8 yolov4-tiny: ~2 ms of its 10).
        self.as_split = False

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        parts = [self._group(outputs[idx]) for idx in self.sources]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _group(self, t: Tensor) -> Tensor:
        """This layer's group of the channels of t (B, C, H, W) -> (B, C/groups, H, W)."""
        if self.groups == 1:
            return t
        if self.as_split:
            return t.chunk(self.groups, 1)[self.group_id]
        c = t.shape[1] // self.groups
        return t.narrow(1, c * self.group_id, c)

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
