"""[yolo] and [Gaussian_yolo] heads (yolo_layer.c, gaussian_yolo_layer.c, parser.c:parse_yolo).

Input and output are (B, n*(5+C), H, W) with channel a*(5+C)+e, e in {x, y, w, h, obj, cls0, ...}
(Gaussian: 9+C, e in {x, sx, y, sy, w, sw, h, sh, obj, cls...}). forward_yolo_layer applies the logistic to
x, y, obj and the classes (none with new_coords=1, whose conv already did), then x,y <- s*x - (s-1)/2 with
s = scale_x_y. The output is exactly the reference's l.output. Both are detection heads
(darkcfg.model.heads): `decode` turns entries into boxes as get_yolo_box / get_gaussian_yolo_box do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from darkcfg.model.cfg import Section
from darkcfg.model.heads import (
    NMS_KINDS,
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

IOU_LOSSES = ("mse", "giou", "diou", "ciou")  # anything else is plain IoU loss in the reference
IOU_KINDS = ("iou", "giou", "diou", "ciou")
# parse_yolo knows these nms_kind values; parse_gaussian_yolo also cornersnms (the reference maps any other
# value to default; here it is an error)
YOLO_NMS_KINDS = tuple(k for k in NMS_KINDS if k != "cornersnms")


@dataclass
class YoloParams:
    """Every option of a [yolo] section, with the reference's defaults."""

    classes: int = 20
    num: int = 1  # total anchors
    mask: list[int] = field(default_factory=list)
    anchors: list[float] = field(default_factory=list)  # 2*num values, input pixels
    max_boxes: int = 200
    show_details: int = 1
    max_delta: float = math.inf
    counters_per_class: Optional[list[int]] = None
    classes_multipliers: Optional[list[float]] = None
    label_smooth_eps: float = 0.0
    scale_x_y: float = 1.0
    objectness_smooth: int = 0
    new_coords: int = 0
    iou_normalizer: float = 0.75
    obj_normalizer: float = 1.0
    cls_normalizer: float = 1.0
    delta_normalizer: float = 1.0
    uc_normalizer: float = 1.0
    iou_loss: str = "mse"
    iou_thresh_kind: str = "iou"
    beta_nms: float = 0.6
    nms_kind: str = "default"
    yolo_point: str = "center"
    jitter: float = 0.2
    resize: float = 1.0
    focal_loss: int = 0
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    iou_thresh: float = 1.0
    random: float = 0.0
    embedding_layer: Optional[int] = None
    # the demo tracker's options (http_stream.cpp:set_track_id; parser.c's defaults)
    track_history_size: int = 5
    sim_thresh: float = 0.8
    dets_for_track: int = 1
    dets_for_show: int = 1
    track_ciou_norm: float = 0.01


class Yolo(DetectionHead):
    """[yolo]: per anchor x, y, w, h, obj, classes (the module docstring has the layout)."""

    ltype = "yolo"
    gaussian = False
    tunable = ("jitter", "iou_normalizer", "obj_normalizer", "cls_normalizer", "iou_thresh")
    xy_entries = (0, 1)  # where x and y sit among the entries

    def __init__(self, in_shape: Shape, params: YoloParams) -> None:
        super().__init__(in_shape, in_shape)
        self.params = params
        self.n = len(params.mask)
        self.classes = params.classes
        self.entries = (9 if self.gaussian else 5) + params.classes
        self.objectness_entry = self.entries - params.classes - 1
        self.nms_kind, self.beta_nms = params.nms_kind, params.beta_nms
        self.max_boxes, self.jitter, self.resize, self.random = params.max_boxes, params.jitter, params.resize, \
            params.random
        # the constants below are made from Python lists (no indexing on tensors: cheap on the meta device too)
        sig = self.sigmoid_entries()
        mask = torch.tensor([e in sig for e in range(self.entries)], dtype=torch.bool)
        self.register_buffer("sigmoid_mask", mask.view(1, 1, -1, 1, 1), persistent=False)
        self.any_sigmoid = bool(sig)  # a Python bool: no data-dependent branch when compiled
        # x, y <- s*x - (s-1)/2 (scal_add_cpu); identity on every other entry
        s = params.scale_x_y
        xy = set(self.xy_entries)
        scale = torch.tensor([s if e in xy else 1.0 for e in range(self.entries)], dtype=torch.float32)
        shift = torch.tensor([-(s - 1) / 2 if e in xy else 0.0 for e in range(self.entries)], dtype=torch.float32)
        self.register_buffer("xy_scale", scale.view(1, 1, -1, 1, 1), persistent=False)
        self.register_buffer("xy_shift", shift.view(1, 1, -1, 1, 1), persistent=False)
        # (n, 2) anchor w, h in input pixels of this layer's mask (not a parameter: not in .weights)
        pairs = [params.anchors[2 * m: 2 * m + 2] for m in params.mask]
        self.register_buffer("slot_anchors", torch.tensor(pairs, dtype=torch.float32).view(-1, 2), persistent=False)

    @classmethod
    def expected_input(cls, sec: Section, classes: int) -> InputSpec:
        """A [convolutional] with filters = (5 + classes) x the anchors in mask (9 + classes: Gaussian)."""
        num = sec.int("num", 1) or 1
        mask = sec.ints("mask") or list(range(num))
        return InputSpec(("convolutional", "conv"), "filters", ((9 if cls.gaussian else 5) + classes) * len(mask))

    @classmethod
    def section_problems(cls, sec: Section) -> list[SectionProblem]:
        bad = _mask_problem(sec, sec.int("num", 1) or 1, sec.ints("mask"))
        return ([bad] if bad else []) + cls.anchor_problems(sec)

    def sigmoid_entries(self) -> list[int]:
        """Entries forward_yolo_layer applies the logistic to (none with new_coords: its conv already did)."""
        return [] if self.params.new_coords else [0, 1] + list(range(4, self.entries))

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        b, _, h, w = x.shape
        y = x.reshape(b, self.n, self.entries, h, w)  # reshape: also for channels-last input
        if self.any_sigmoid:
            y = torch.where(self.sigmoid_mask, torch.sigmoid(y), y)
        if self.params.scale_x_y != 1:
            y = y * self.xy_scale + self.xy_shift
        return y.reshape(b, -1, h, w)

    def planes(self, out: Tensor) -> Tensor:
        b, _, h, w = out.shape
        return out.view(b, self.n, self.entries, h, w)

    def fused_with(self, conv: nn.Module) -> Optional[nn.Module]:
        """The [convolutional] `conv` before this head and the head as one layer (`FusedYoloConv`), or None where
        that does not apply: `conv` with batch-norm not folded, binary, grouped, dilated, anti-aliased, cropped,
        sharing weights, or with an activation of its own before this head's logistic."""
        from darkcfg.model.layers.convolutional import Convolutional

        plain = isinstance(conv, Convolutional) and conv.bn is None and not (conv.binary or conv.xnor) \
            and conv.groups == 1 and conv.dilation == 1 and not conv.antialiasing and conv._fix == (0, 0) \
            and not conv.share and conv.conv.out_channels == self.n * self.entries
        if not plain or (self.any_sigmoid and conv.activation != "linear"):
            return None
        return FusedYoloConv(conv, self)

    def decode(self, e: Tensor, at: CellIndex, net_w: int, net_h: int, exact: bool = False) -> Decoded:
        """yolo_layer.c:get_yolo_box and get_yolo_detections' probabilities (module docstring of heads):
        x = (col + tx)/lw, y = (row + ty)/lh; w = exp(tw)*anchor_w/net_w (new_coords: tw*tw*4*anchor_w/net_w),
        h likewise; probs = obj*cls."""
        a = self.slot_anchors[at.slot]  # (..., 2)
        xy = (at.xy + e[..., 0:2]) / e.new_tensor([at.w, at.h])  # float arithmetic, as the reference
        net = e.new_tensor([net_w, net_h])
        twh = e[..., 2:4]
        wh = twh * twh * 4 * a / net if self.params.new_coords else exp_scaled(twh, a, net, exact)
        obj = e[..., 4]
        return Decoded(xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1], obj, obj.unsqueeze(-1) * e[..., 5:])

    def describe(self) -> str:
        return self.ltype


class FusedYoloConv(nn.Module):
    """A [convolutional] and the [yolo] (or [Gaussian_yolo]) after it as one layer whose every operation is per
    output channel, for runtimes that fuse such operations into the convolution (OpenVINO: its CPU kernels apply
    them as the convolution writes its output; the head's own reshape, logistic and select ran as separate passes,
    about 1 ms of yolov4-tiny's 13 at the default precision). The output equals the two layers': (B, n*E, H, W) in
    the head's layout.

    The entries that take the logistic come from a convolution of their own (the weights of those output channels),
    followed by the logistic and, on x and y, scale_x_y's s*v - (s-1)/2; the others (w, h; the Gaussian head's
    too) from a second convolution; the two are interleaved back per anchor. With no logistic entries (new_coords:
    the conv's own activation did it) the layer is the convolution with its activation and the scale.
    Call: layer(x, outputs) as every Darknet layer; x (B, C, H', W').
    """

    def __init__(self, conv: nn.Module, head: Yolo) -> None:
        super().__init__()
        self.conv, self.n, self.entries = conv, head.n, head.entries
        sig = head.sigmoid_mask.view(-1)
        scale, shift = head.xy_scale.view(-1), head.xy_shift.view(-1)
        self.scaled = bool((scale != 1).any())
        self.any_sigmoid = head.any_sigmoid
        if not self.any_sigmoid:
            self.register_buffer("scale", scale.repeat(self.n).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("shift", shift.repeat(self.n).view(1, -1, 1, 1), persistent=False)
            return
        ch = torch.arange(self.n * self.entries).view(self.n, self.entries)
        w, b = conv.conv.weight.detach(), conv.conv.bias
        b = torch.zeros(len(w)) if b is None else b.detach()
        s_ch, l_ch = ch[:, sig].reshape(-1), ch[:, ~sig].reshape(-1)
        self.register_buffer("w_sig", w[s_ch].contiguous(), persistent=False)
        self.register_buffer("b_sig", b[s_ch].contiguous(), persistent=False)
        self.register_buffer("w_lin", w[l_ch].contiguous(), persistent=False)
        self.register_buffer("b_lin", b[l_ch].contiguous(), persistent=False)
        self.register_buffer("scale", scale[sig].repeat(self.n).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", shift[sig].repeat(self.n).view(1, -1, 1, 1), persistent=False)
        # runs of consecutive entries from one side: (True = logistic side, start there, length)
        self.runs: list[tuple[bool, int, int]] = []
        taken = {True: 0, False: 0}
        for e in range(self.entries):
            side = bool(sig[e])
            if self.runs and self.runs[-1][0] == side:
                self.runs[-1] = (side, self.runs[-1][1], self.runs[-1][2] + 1)
            else:
                self.runs.append((side, taken[side], 1))
            taken[side] += 1

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        if not self.any_sigmoid:
            y = self.conv(x, outputs)
            return y * self.scale + self.shift if self.scaled else y
        c = self.conv
        s = torch.sigmoid(F.conv2d(x, self.w_sig, self.b_sig, c.stride, c.conv.padding))
        if self.scaled:
            s = s * self.scale + self.shift
        lin = F.conv2d(x, self.w_lin, self.b_lin, c.stride, c.conv.padding)
        b, _, h, w = s.shape
        sides = {True: s.view(b, self.n, -1, h, w), False: lin.view(b, self.n, -1, h, w)}
        parts = [sides[side][:, :, start:start + k] for side, start, k in self.runs]
        return torch.cat(parts, 2).view(b, -1, h, w)


class GaussianYolo(Yolo):
    """[Gaussian_yolo]: per anchor x, sx, y, sy, w, sw, h, sh, obj, classes; the s* are uncertainties."""

    ltype = "Gaussian_yolo"
    gaussian = True
    xy_entries = (0, 2)

    def sigmoid_entries(self) -> list[int]:
        return [0, 1, 2, 3, 5, 7] + list(range(8, self.entries))  # mu x, sigma x, mu y, sigma y, sigma w, h, ...

    def decode(self, e: Tensor, at: CellIndex, net_w: int, net_h: int, exact: bool = False) -> Decoded:
        """gaussian_yolo_layer.c:get_gaussian_yolo_box (with yolo_point) and its probabilities
        obj*cls*(1 - mean of the four uncertainties)."""
        a = self.slot_anchors[at.slot]
        xy = (at.xy + e[..., 0:3:2]) / e.new_tensor([at.w, at.h])
        wh = exp_scaled(e[..., 4:7:2], a, e.new_tensor([net_w, net_h]), exact)
        x, y, w, h = xy[..., 0], xy[..., 1], wh[..., 0], wh[..., 1]
        if self.params.yolo_point == "left_top":
            x, y = x + w / 2, y + h / 2
        elif self.params.yolo_point == "right_bottom":
            x, y = x - w / 2, y - h / 2
        obj = e[..., 8]
        s = e[..., 1] + e[..., 3] + e[..., 5] + e[..., 7]
        p = obj.unsqueeze(-1) * e[..., 9:]
        if exact:  # float sum / 4.0 and (1.0 - uc) in double, as C promotes them
            uc = (s.double() / 4.0).to(e.dtype)
            p = (p.double() * (1.0 - uc.double()).unsqueeze(-1)).to(e.dtype)
        else:
            p = p * (1 - s / 4).unsqueeze(-1)
        return Decoded(x, y, w, h, obj, p)


def _mask_problem(sec: Section, num: int, mask: Optional[list[int]]) -> Optional[SectionProblem]:
    """A mask index outside 0..num-1 (the reference would read past its anchors)."""
    bad = [m for m in (mask or []) if not 0 <= m < num]
    if not bad:
        return None
    opt = sec.find("mask")
    return SectionProblem(opt.line if opt else sec.line, "cfg mask", f"mask={','.join(map(str, mask or []))}: "
                          f"index {bad[0]} out of range 0..{num - 1} (num={num})")


def parse_head_params(sec: Section, gaussian: bool = False) -> YoloParams:
    p = YoloParams()
    p.classes = sec.int("classes", 20)
    p.num = sec.int("num", 1)
    if p.classes < 1 or p.num < 1:
        raise sec.error(f"classes={p.classes}, num={p.num}: expected positive values")
    p.mask = sec.ints("mask", list(range(p.num)))
    p.max_boxes = sec.int("max", 200)
    bad = _mask_problem(sec, p.num, p.mask)
    if bad:
        raise sec.error(bad.message, bad.line)
    if not gaussian:
        p.show_details = sec.int("show_details", 1)
    p.max_delta = sec.float("max_delta", math.inf)
    cpc = sec.ints("counters_per_class")
    if cpc is not None:
        if len(cpc) != p.classes:
            raise sec.error(f"counters_per_class has {len(cpc)} values, expected classes={p.classes}")
        cpc = [max(1, c) for c in cpc]
        top = max(cpc)
        p.counters_per_class = cpc
        p.classes_multipliers = [min(top / c, p.max_delta) for c in cpc]
    p.label_smooth_eps = sec.float("label_smooth_eps", 0.0)
    p.scale_x_y = sec.float("scale_x_y", 1.0)
    p.objectness_smooth = sec.int("objectness_smooth", 0)
    if gaussian:
        p.uc_normalizer = sec.float("uc_normalizer", 1.0)
    else:
        p.new_coords = sec.int("new_coords", 0)
    p.iou_normalizer = sec.float("iou_normalizer", 0.75)
    p.obj_normalizer = sec.float("obj_normalizer", 1.0)
    p.cls_normalizer = sec.float("cls_normalizer", 1.0)
    p.delta_normalizer = sec.float("delta_normalizer", 1.0)
    p.iou_loss = sec.str("iou_loss", "mse")
    if p.iou_loss not in IOU_LOSSES:
        opt = sec.find("iou_loss")
        sec.warn(f"iou_loss={p.iou_loss} is not mse/giou/diou/ciou: plain IoU loss, as the reference",
                 opt.line if opt else None)
    p.iou_thresh_kind = sec.str("iou_thresh_kind", "iou")
    if p.iou_thresh_kind not in IOU_KINDS:
        raise sec.error(f"iou_thresh_kind={p.iou_thresh_kind}: expected one of {', '.join(IOU_KINDS)}")
    p.beta_nms = sec.float("beta_nms", 0.6)
    p.nms_kind = sec.str("nms_kind", "default")
    kinds = tuple(NMS_KINDS) if gaussian else YOLO_NMS_KINDS
    if p.nms_kind not in kinds:
        raise sec.error(f"nms_kind={p.nms_kind}: expected one of {', '.join(kinds)}")
    if gaussian:
        p.yolo_point = sec.str("yolo_point", "center")
    p.jitter = sec.float("jitter", 0.2)
    p.resize = sec.float("resize", 1.0)
    if not gaussian:
        p.focal_loss = sec.int("focal_loss", 0)
    p.ignore_thresh = sec.float("ignore_thresh", 0.5)
    p.truth_thresh = sec.float("truth_thresh", 1.0)
    p.iou_thresh = sec.float("iou_thresh", 1.0)
    p.random = sec.float("random", 0.0)
    if not gaussian:
        p.track_history_size = sec.int("track_history_size", 5)
        p.sim_thresh = sec.float("sim_thresh", 0.8)
        p.dets_for_track = sec.int("dets_for_track", 1)
        p.dets_for_show = sec.int("dets_for_show", 1)
        p.track_ciou_norm = sec.float("track_ciou_norm", 0.01)
    if sec.str("map") is not None:
        raise sec.error("option 'map' (class map file) is not supported by darkcfg")
    p.anchors = section_anchors(sec, p.num)
    return p


def _build(sec: Section, ctx: BuildContext, gaussian: bool) -> Yolo:
    p = parse_head_params(sec, gaussian)
    if not gaussian:
        emb = sec.int("embedding_layer")
        if emb is not None:
            p.embedding_layer = ctx.resolve("embedding_layer", [emb])[0]
    entries = (9 if gaussian else 5) + p.classes
    expected = len(p.mask) * entries
    if ctx.input.c != expected or min(ctx.input) <= 0:
        raise sec.error(
            f"the layer before has filters={ctx.input.c}, expected {expected} = "
            f"({'9' if gaussian else '5'}+classes={p.classes}) x {len(p.mask)} anchors in mask"
        )
    return (GaussianYolo if gaussian else Yolo)(ctx.input, p)


@register("yolo", layer=Yolo)
def build_yolo(sec: Section, ctx: BuildContext) -> Yolo:
    return _build(sec, ctx, gaussian=False)


@register("Gaussian_yolo", layer=GaussianYolo)
def build_gaussian_yolo(sec: Section, ctx: BuildContext) -> Yolo:
    return _build(sec, ctx, gaussian=True)
