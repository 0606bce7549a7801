"""[region] (region_layer.c, YOLOv2).

The reference's forward flattens the input (B, n*(coords+1+C), H, W) to cell-major order and applies the
logistic to the objectness (entry `coords`) and, with softmax=1, a softmax over the classes; x, y, w, h stay
raw (the logistic on x, y is applied when boxes are decoded). The output here is (B, H, W, n*(coords+1+C)):
the same flat memory as the reference's l.output.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from darkcfg.cfg import Section
from darkcfg.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.layers._registry import register


@dataclass
class RegionParams:
    coords: int = 4
    classes: int = 20
    num: int = 1
    max_boxes: int = 200
    log: int = 0
    sqrt: int = 0
    softmax: int = 0
    focal_loss: int = 0
    jitter: float = 0.2
    resize: float = 1.0
    rescore: int = 0
    thresh: float = 0.5
    classfix: int = 0
    absolute: int = 0
    random: float = 0.0
    coord_scale: float = 1.0
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    mask_scale: float = 1.0
    class_scale: float = 1.0
    bias_match: int = 0
    anchors: list[float] = field(default_factory=list)  # grid units


class Region(DarknetLayer):
    ltype = "detection"  # the reference prints [region] as "detection"

    def __init__(self, in_shape: Shape, params: RegionParams) -> None:
        super().__init__(in_shape, in_shape)
        self.params = params
        self.n = params.num
        self.entries = params.coords + 1 + params.classes

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        b, _, h, w = x.shape
        p = self.params
        y = x.reshape(b, self.n, self.entries, h, w).permute(0, 3, 4, 1, 2)  # (B, H, W, n, entries)
        parts = [y[..., : p.coords], torch.sigmoid(y[..., p.coords: p.coords + 1])]
        cls = y[..., p.coords + 1:]
        parts.append(cls.softmax(dim=-1) if p.softmax else cls)
        return torch.cat(parts, dim=-1).reshape(b, h, w, -1)

    def describe(self) -> str:
        return "detection"


@register("region")
def build(sec: Section, ctx: BuildContext) -> Region:
    p = RegionParams()
    p.coords = sec.int("coords", 4)
    p.classes = sec.int("classes", 20)
    p.num = sec.int("num", 1)
    if p.coords < 4 or p.classes < 1 or p.num < 1:
        raise sec.error(f"coords={p.coords}, classes={p.classes}, num={p.num}: expected coords>=4 and positive counts")
    p.max_boxes = sec.int("max", 200)
    p.log = sec.int("log", 0)
    p.sqrt = sec.int("sqrt", 0)
    p.softmax = sec.int("softmax", 0)
    p.focal_loss = sec.int("focal_loss", 0)
    p.jitter = sec.float("jitter", 0.2)
    p.resize = sec.float("resize", 1.0)
    p.rescore = sec.int("rescore", 0)
    p.thresh = sec.float("thresh", 0.5)
    p.classfix = sec.int("classfix", 0)
    p.absolute = sec.int("absolute", 0)
    p.random = sec.float("random", 0.0)
    p.coord_scale = sec.float("coord_scale", 1.0)
    p.object_scale = sec.float("object_scale", 1.0)
    p.noobject_scale = sec.float("noobject_scale", 1.0)
    p.mask_scale = sec.float("mask_scale", 1.0)
    p.class_scale = sec.float("class_scale", 1.0)
    p.bias_match = sec.int("bias_match", 0)
    for key in ("tree", "map"):
        if sec.str(key) is not None:
            raise sec.error(f"option '{key}' is not supported by darkcfg")
    anchors = sec.floats("anchors", [])
    if anchors and len(anchors) < 2 * p.num:
        raise sec.error(f"anchors has {len(anchors)} values, expected 2*num = {2 * p.num}")
    p.anchors = (anchors + [0.5] * (2 * p.num))[: 2 * p.num]
    expected = p.num * (p.coords + 1 + p.classes)
    if ctx.input.c != expected or min(ctx.input) <= 0:
        raise sec.error(f"the layer before has filters={ctx.input.c}, expected {expected} = "
                        f"num={p.num} x (coords={p.coords} + 1 + classes={p.classes})")
    return Region(ctx.input, p)
