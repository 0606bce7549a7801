"""[region] (region_layer.c, YOLOv2).

The reference's forward flattens the input (B, n*(coords+1+C), H, W) to cell-major order and applies the
logistic to the objectness (entry `coords`) and, with softmax=1, a softmax over the classes; x, y, w, h stay
raw (the logistic on x, y is applied when boxes are decoded). The output here is (B, H, W, n*(coords+1+C)):
the same flat memory as the reference's l.output.

Decoding (region_layer.c:get_region_box / get_region_detections): every cell and anchor is a detection with
objectness 1; bx = (col + logistic(x))/lw, bw = exp(tw)*anchor_w/lw (anchors in grid units); prob_j =
obj*cls_j (classfix=-1: obj below .5 counts as 0).

YOLO9000's word tree (`tree=` file, tree.c:read_tree; optional `map=` file): the classes are the tree's nodes,
one `name parent` line each; the softmax runs over each run of consecutive nodes with the same parent
(softmax_tree), and a node's probability is its own times its ancestors' (hierarchy_predictions). With `map`,
class j of the detections (j < lines of the map file) is obj x that probability of node map[j]; without it each
box gets one class, found by descending the tree from the root group while obj x the path's probability stays
above `tree_thresh` (.5, hierarchy_top_prediction), with probability obj. The files are looked for as given
(the reference opens them relative to the working directory), then beside the cfg and in its parent folder
(darknet's layout: cfg/ and data/); the tree itself is `darkcfg.model.wordtree`. Training with a tree is not
supported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.heads import (
    CellIndex,
    Decoded,
    DetectionHead,
    InputSpec,
    SectionProblem,
    exp_scaled,
    section_anchors,
)
from darkcfg.model.layers._base import BuildContext, Shape
from darkcfg.model.layers._registry import register
from darkcfg.model.wordtree import WordTree, find_beside_cfg, read_section_tree


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
    tree: Optional[WordTree] = None
    map: Optional[list[int]] = None


TREE_THRESH = 0.5  # darknet detector test's hier_thresh


class Region(DetectionHead):
    ltype = "region"  # describe() prints "detection", as the reference
    objectness_entry = None  # every cell and anchor is a detection
    # The reference calls correct_region_boxes with letter=0 even when the image was letterboxed, which
    # misplaces YOLOv2 boxes; the intended mapping back through the letterbox is applied here.
    undo_letterbox = True

    def __init__(self, in_shape: Shape, params: RegionParams) -> None:
        super().__init__(in_shape, in_shape)
        self.params = params
        self.n = params.num
        self.classes = params.classes
        self.entries = params.coords + 1 + params.classes
        self.max_boxes, self.jitter, self.resize, self.random = params.max_boxes, params.jitter, params.resize, \
            params.random
        self.register_buffer("slot_anchors", torch.tensor(params.anchors, dtype=torch.float32).view(-1, 2),
                             persistent=False)

    @classmethod
    def expected_input(cls, sec: Section, classes: int) -> InputSpec:
        """A [convolutional] with filters = num x (coords + 1 + classes)."""
        return InputSpec(("convolutional", "conv"), "filters",
                         (sec.int("num", 1) or 1) * ((sec.int("coords", 4) or 4) + 1 + classes))

    @classmethod
    def section_problems(cls, sec: Section) -> list[SectionProblem]:
        return cls.anchor_problems(sec)

    def anchor_sizes(self, net_w: int, net_h: int) -> Tensor:
        """The anchors (grid cells) in network-input pixels."""
        return self.slot_anchors * self.slot_anchors.new_tensor([net_w / self.in_shape.w, net_h / self.in_shape.h])

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        b, _, h, w = x.shape
        p = self.params
        y = x.reshape(b, self.n, self.entries, h, w).permute(0, 3, 4, 1, 2)  # (B, H, W, n, entries)
        parts = [y[..., : p.coords], torch.sigmoid(y[..., p.coords: p.coords + 1])]
        cls = y[..., p.coords + 1:]
        if p.tree is not None:
            parts.append(p.tree.softmax(cls))
        else:
            parts.append(cls.softmax(dim=-1) if p.softmax else cls)
        return torch.cat(parts, dim=-1).reshape(b, h, w, -1)

    def planes(self, out: Tensor) -> Tensor:
        b, h, w, _ = out.shape
        return out.view(b, h, w, self.n, self.entries).permute(0, 3, 4, 1, 2)

    def decode(self, e: Tensor, at: CellIndex, net_w: int, net_h: int, exact: bool = False) -> Decoded:
        p = self.params
        a = self.slot_anchors[at.slot]
        grid = e.new_tensor([at.w, at.h])
        # activations.h:logistic_activate computes in double and returns float
        sig = torch.sigmoid(e[..., 0:2].double()).to(e.dtype) if exact else torch.sigmoid(e[..., 0:2])
        xy = (at.xy + sig) / grid
        wh = exp_scaled(e[..., 2:4], a, grid, exact)  # anchors in grid cells
        x, y, w, h = xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1]
        scale = e[..., p.coords]
        if p.classfix == -1:
            scale = torch.where(scale < 0.5, torch.zeros_like(scale), scale)
        cls = e[..., p.coords + 1:]
        if p.tree is not None:
            cls = self._tree_probs(cls)
        return Decoded(x, y, w, h, torch.ones_like(scale), scale.unsqueeze(-1) * cls)

    def _tree_probs(self, cls: Tensor) -> Tensor:
        """Class probabilities before the objectness factor under a word tree (module docstring)."""
        p = self.params
        assert p.tree is not None
        h = p.tree.hierarchy(cls)
        out = torch.zeros_like(cls)
        if p.map is not None:
            out[..., : len(p.map)] = h[..., p.map]
            return out
        flat = cls.reshape(-1, cls.shape[-1])
        top = p.tree.top(flat, TREE_THRESH)
        out.reshape(-1, cls.shape[-1])[torch.arange(len(top)), top] = 1.0
        return out

    def describe(self) -> str:
        return "detection"


@register("region", layer=Region)
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
    if sec.str("tree") is not None:
        p.tree = read_section_tree(sec, p.classes, f"classes={p.classes}")
    if sec.str("map") is not None:
        path = find_beside_cfg(sec, "map")
        p.map = [int(v) for v in path.read_text().split()]
        bad = [v for v in p.map if not 0 <= v < p.classes]
        if bad:
            raise sec.error(f"map={sec.str('map')}: class {bad[0]} is not in 0..{p.classes - 1}")
    p.anchors = section_anchors(sec, p.num)
    expected = p.num * (p.coords + 1 + p.classes)
    if ctx.input.c != expected or min(ctx.input) <= 0:
        raise sec.error(f"the layer before has filters={ctx.input.c}, expected {expected} = "
                        f"num={p.num} x (coords={p.coords} + 1 + classes={p.classes})")
    layer = Region(ctx.input, p)
    if p.tree is not None:
        layer.untrainable = "training with a word tree (tree=) is not supported"
    return layer
