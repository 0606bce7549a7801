"""[detection] (detection_layer.c): the YOLOv1 head.

Input and output are flat (B, side*side*(classes + n*(1 + coords))): first `classes` values per cell (softmax
per cell with `softmax=1`), then `n` objectness values per cell, then `n` boxes of `coords` values per cell,
all raw (the layer before applies the activation). A box is x, y (offsets in its cell), w, h (relative to the
image; squared first with `sqrt=1`); its objectness is the confidence and class j's probability is
objectness * class_j (get_detection_detections). Boxes are not mapped back through a letterbox (the
reference does not correct them); the reference scales them to pixels and never back, so its JSON's
relative values are pixels: darkcfg decodes to relative boxes like every other head.
"""
from __future__ import annotations

import torch
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.heads import CellIndex, Decoded, DetectionHead, InputSpec
from darkcfg.model.layers._base import BuildContext, Shape
from darkcfg.model.layers._registry import register


class Detection(DetectionHead):
    ltype = "detection"
    objectness_entry = 4
    undo_letterbox = False  # get_detection_detections: no correction
    default_classes = 1

    def __init__(self, in_shape: Shape, classes: int = 1, n: int = 1, side: int = 7, coords: int = 4,
                 rescore: bool = False, softmax: bool = False, sqrt: bool = False, forced: bool = False,
                 coord_scale: float = 1.0, object_scale: float = 1.0, noobject_scale: float = 1.0,
                 class_scale: float = 1.0) -> None:
        super().__init__(in_shape, in_shape)
        self.classes, self.n, self.side, self.coords = classes, n, side, coords
        self.entries = 4 + 1 + classes
        self.rescore, self.softmax, self.sqrt, self.forced = rescore, softmax, sqrt, forced
        self.coord_scale, self.object_scale = coord_scale, object_scale
        self.noobject_scale, self.class_scale = noobject_scale, class_scale
        self.register_buffer("slot_anchors", torch.zeros(n, 2), persistent=False)  # YOLOv1 has no anchors

    @classmethod
    def expected_input(cls, sec: Section, classes: int) -> InputSpec:
        """A [connected] with output = side*side*((1 + coords)*num + classes)."""
        side, num, coords = sec.int("side", 7) or 7, sec.int("num", 1) or 1, sec.int("coords", 1) or 0
        return InputSpec(("connected", "conn"), "output", side * side * ((1 + coords) * num + classes))

    def anchor_sizes(self, net_w: int, net_h: int) -> None:
        return None  # YOLOv1 predicts sizes directly

    def split(self, flat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, inputs) -> classes (B, S*S, C), objectness (B, S*S, n), boxes (B, S*S, n, coords): views."""
        b, cells = flat.shape[0], self.side * self.side
        c, n = self.classes, self.n
        cls = flat[:, : cells * c].view(b, cells, c)
        obj = flat[:, cells * c: cells * (c + n)].view(b, cells, n)
        box = flat[:, cells * (c + n):].view(b, cells, n, self.coords)
        return cls, obj, box

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        if not self.softmax:
            return x
        flat = x.reshape(x.shape[0], -1)
        cells = self.side * self.side * self.classes
        cls = flat[:, :cells].view(x.shape[0], -1, self.classes).softmax(-1)
        return torch.cat([cls.reshape(x.shape[0], -1), flat[:, cells:]], 1).view_as(x)

    def planes(self, out: Tensor) -> Tensor:
        """(B, n, 5 + C, S, S): x, y, w, h, objectness, classes of each slot (a copy: the classes are per cell)."""
        cls, obj, box = self.split(out.reshape(out.shape[0], -1))
        b, cells, n = obj.shape
        e = torch.cat([box[..., :4], obj.unsqueeze(-1), cls.unsqueeze(2).expand(b, cells, n, self.classes)], -1)
        return e.view(b, self.side, self.side, n, self.entries).permute(0, 3, 4, 1, 2)

    def decode(self, e: Tensor, at: CellIndex, net_w: int, net_h: int, exact: bool = False) -> Decoded:
        side = float(self.side)
        x = (e[..., 0] + at.col) / side
        y = (e[..., 1] + at.row) / side
        w, h = (e[..., 2] * e[..., 2], e[..., 3] * e[..., 3]) if self.sqrt else (e[..., 2], e[..., 3])
        scale = e[..., 4]
        return Decoded(x, y, w, h, scale, scale.unsqueeze(-1) * e[..., 5:])

    def describe(self) -> str:
        return "Detection Layer"


@register("detection", layer=Detection)
def build(sec: Section, ctx: BuildContext) -> Detection:
    coords = sec.int("coords", 1)
    classes = ctx.positive("classes", sec.int("classes", 1))
    rescore = bool(sec.int("rescore", 0))
    n = ctx.positive("num", sec.int("num", 1))
    side = ctx.positive("side", sec.int("side", 7))
    softmax, sqrt = bool(sec.int("softmax", 0)), bool(sec.int("sqrt", 0))
    max_boxes = sec.int("max", 200)
    coord_scale = sec.float("coord_scale", 1.0)
    forced = bool(sec.int("forced", 0))
    object_scale, noobject_scale = sec.float("object_scale", 1.0), sec.float("noobject_scale", 1.0)
    class_scale = sec.float("class_scale", 1.0)
    jitter, resize, random = sec.float("jitter", 0.2), sec.float("resize", 1.0), sec.float("random", 0.0)
    if sec.int("reorg", 0):
        raise sec.error("option 'reorg' is not supported by darkcfg")
    if coords != 4:
        opt = sec.find("coords")
        raise sec.error(f"coords={coords}: the reference decodes [detection] boxes as 4 values; expected coords=4",
                        opt.line if opt else None)
    expected = side * side * ((1 + coords) * n + classes)
    if ctx.input.size != expected:
        raise sec.error(f"the layer before outputs {ctx.input.size} values, expected side*side*((1+coords)*num+classes)"
                        f" = {side}*{side}*((1+{coords})*{n}+{classes}) = {expected}")
    layer = Detection(ctx.input, classes, n, side, coords, rescore, softmax, sqrt, forced, coord_scale,
                      object_scale, noobject_scale, class_scale)
    layer.max_boxes, layer.jitter, layer.resize, layer.random = max_boxes, jitter, resize, random
    return layer
