"""What a detection head is: the one place the rest of darkcfg asks about heads.

A head is a layer whose output holds boxes ([yolo], [Gaussian_yolo], [region]). It subclasses
`DetectionHead` and declares everything the other stages need, so none of them tests layer types:

- that it is a head (`is_head`), which makes it an output of `Darknet.forward` and a place for a loss;
- `classes`, `nms_kind`, `beta_nms` (NMS reads the last head's, as the reference), `undo_letterbox`
  (whether its boxes are mapped back through a letterbox: correct_yolo_boxes' `letter`);
- what training reads of the last head: `max_boxes` (truths per image), `jitter`, `resize`, `random`;
- its output as planes (`planes`: (B, n, E, H, W), a view) and which entry selects a candidate box
  (`objectness_entry`; None: every cell and anchor is a detection, as [region]'s);
- `decode`: entries -> boxes relative to the network input, objectness and class probabilities, in torch.
  Detection (infer/decode.py), the losses (train/losses/) and export (export/graph.py) all call it;
- and, before anything is built (a cfg whose filters do not match cannot be built), what its section asks of
  the layer before it for a class count (`expected_input`) and what is wrong with the section itself
  (`section_problems`: masks, anchors): `darkcfg.model.cfgcheck` asks the head classes through the layer
  registry. `section_anchors` is the one reading of `anchors=` (with the reference's fill).

`NMS_KINDS` is the one list of `nms_kind` values: a head accepts a subset, and NMS implements all of them.
Adding a head type: its layer file in `layers/` (subclassing `DetectionHead`), its loss file in
`darkcfg/train/losses/` (or none: training it is then refused in one line), and its tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Optional, Union

import torch
from torch import Tensor

from darkcfg.errors import DarkcfgError
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import DarknetLayer

# nms_kind value -> the criterion box.c suppresses with (box.c:do_nms_sort / diounms_sort)
NMS_KINDS: dict[str, str] = {
    "default": "iou",  # do_nms_sort: box_iou
    "greedynms": "diou",  # diounms_sort: box_diou, its exponent fixed at .6
    "diounms": "diou_beta",  # diounms_sort: box_diounms with beta_nms
    "cornersnms": "iou",  # diounms_sort's CORNERS_NMS ([Gaussian_yolo]): box_iou; its box merging is commented out
}


class InputSpec(NamedTuple):
    """What a head section needs of the layer before it: one of the section types `layers`, whose option `key`
    holds `value` (e.g. a [convolutional] with filters=255)."""

    layers: tuple[str, ...]
    key: str
    value: int


class SectionProblem(NamedTuple):
    """Something wrong with a head's section: its line, a kind, the message, whether building would stop."""

    line: int
    kind: str
    message: str
    blocking: bool = True


def _anchor_shortfall(sec: Section, num: int) -> Optional[SectionProblem]:
    opt = sec.find("anchors")
    if opt is None:
        return None
    count = len(sec.floats("anchors") or [])
    if count >= 2 * num:
        return None
    return SectionProblem(opt.line, "cfg anchors", f"anchors has {count} values, expected 2*num = {2 * num}; the "
                          "rest are 0.5, as the reference fills them", blocking=False)


def section_anchors(sec: Section, num: int) -> list[float]:
    """`anchors=` of a head section as the reference reads it: 2*num values, those missing filled with .5 (its
    default bias), with a warning naming the line when some are."""
    short = _anchor_shortfall(sec, num)
    if short is not None:
        sec.warn(short.message, short.line)
    return ((sec.floats("anchors", []) or []) + [0.5] * (2 * num))[: 2 * num]


class CellIndex(NamedTuple):
    """Where entries sit on a head's grid: column, row and anchor slot (tensors broadcastable to the entries'
    leading shape), and the grid's width and height."""

    col: Tensor
    row: Tensor
    slot: Tensor
    w: int
    h: int

    @property
    def xy(self) -> Tensor:
        """(..., 2) column and row as one tensor."""
        return torch.stack(torch.broadcast_tensors(self.col, self.row), -1)

    @classmethod
    def grid(cls, n: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> CellIndex:
        """Every cell and anchor in (B, H, W, n) order: col (1, 1, W, 1), row (1, H, 1, 1), slot (n,)."""
        return cls(torch.arange(w, device=device, dtype=dtype).view(1, 1, w, 1),
                   torch.arange(h, device=device, dtype=dtype).view(1, h, 1, 1),
                   torch.arange(n, device=device), w, h)


@dataclass
class Decoded:
    """A head's boxes: x, y (centre), w, h relative to the network input, objectness (Darknet's
    `dets.objectness`) and probs (..., classes), Darknet's `prob` before the threshold. All of the entries'
    leading shape."""

    x: Tensor
    y: Tensor
    w: Tensor
    h: Tensor
    objectness: Tensor
    probs: Tensor


def exp_scaled(t: Tensor, anchor: Tensor, size: Union[int, Tensor], exact: bool) -> Tensor:
    """exp(t) * anchor / size, elementwise (t and anchor (..., 2) give w and h at once with size a (2,)
    tensor). exact: as C computes `exp(x) * biases[..] / w` (in double, then rounded to float)."""
    if exact:
        return (torch.exp(t.double()) * anchor / size).to(t.dtype)  # float anchor, int size: promoted to double
    return torch.exp(t) * anchor / size


class DetectionHead(DarknetLayer):
    """Base class of detection heads; see the module docstring. Subclasses set `n` (anchors per cell),
    `entries` (values per anchor) and `classes`, register their (n, 2) anchors as the non-persistent buffer
    `slot_anchors`, and implement `planes` and `decode`."""

    is_head = True
    default_classes: ClassVar[int] = 20  # classes= when the section has none
    tunable: ClassVar[tuple[str, ...]] = ()  # training options of the section `darkcfg evolve` may search
    n: int
    entries: int
    classes: int
    objectness_entry: Optional[int] = None
    nms_kind: str = "default"
    beta_nms: float = 0.6
    undo_letterbox: bool = True
    max_boxes: int = 200
    jitter: float = 0.2
    resize: float = 1.0
    random: float = 0.0

    @classmethod
    def expected_input(cls, sec: Section, classes: int) -> InputSpec:
        """What this head's section needs of the layer before it when it has `classes` classes."""
        raise NotImplementedError

    @classmethod
    def section_problems(cls, sec: Section) -> list[SectionProblem]:
        """What is wrong with the section on its own (not against its neighbours): none by default."""
        return []

    @classmethod
    def anchor_problems(cls, sec: Section) -> list[SectionProblem]:
        """For heads with anchors: too few `anchors=` values for `num` (a warning: the reference fills them)."""
        short = _anchor_shortfall(sec, sec.int("num", 1) or 1)
        return [short] if short is not None else []

    @property
    def anchors(self) -> Tensor:
        """(n, 2) anchor width, height of each slot, in the head's own units (pixels for [yolo], grid cells
        for [region])."""
        return self.slot_anchors

    def anchor_sizes(self, net_w: int, net_h: int) -> Optional[Tensor]:
        """(n, 2) anchor width, height of each slot in network-input pixels (None: the head has no anchors)."""
        return self.slot_anchors

    def planes(self, out: Tensor) -> Tensor:
        """The head's output (B, ...) as a view (B, n, E, H, W): anchor slot, entry, row, column."""
        raise NotImplementedError

    def decode(self, e: Tensor, at: CellIndex, net_w: int, net_h: int, exact: bool = False) -> Decoded:
        """Entries e (..., E) of this head's output at cells `at` -> boxes and scores.

        exact: follow the reference's C arithmetic (double where it promotes) for results equal to its own;
        otherwise stay in e's dtype (training, export).
        """
        raise NotImplementedError

    def decode_grid(self, out: Tensor, net_w: int, net_h: int, exact: bool = False) -> Decoded:
        """Every cell and anchor of an output (B, ...) -> `Decoded` of shape (B, H, W, n) (cell-major,
        anchor-minor: the reference's order of detections)."""
        e = self.planes(out).permute(0, 3, 4, 1, 2)  # (B, H, W, n, E)
        return self.decode(e, CellIndex.grid(self.n, e.shape[1], e.shape[2], e.device, e.dtype), net_w, net_h,
                           exact)


def head_layers(model: torch.nn.Module) -> list[DetectionHead]:
    """The detection heads of `model` (a Darknet or anything with its `layers`/`output_layers`), in network
    order; a one-line error when the network's outputs are not heads (a classifier, say)."""
    heads = [model.layers[i] for i in model.output_layers]
    bad = [m for m in heads if not getattr(m, "is_head", False)]
    if bad or not heads:
        where = f"layer {bad[0].index} ({bad[0].ltype}) is not a detection head" if bad else "no layers"
        raise DarkcfgError(f"{model.cfg_file}: {where}: it is a classifier: use darkcfg classify (detection needs "
                           "a cfg ending in [yolo], [Gaussian_yolo] or [region] layers)")
    return heads  # type: ignore[return-value]


def last_head(model: torch.nn.Module) -> DetectionHead:
    """The network's last head: its classes and NMS settings are the network's (as the reference reads them)."""
    return head_layers(model)[-1]
