"""What every layer shares: its shape, the build context, and the module base class."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Optional

import torch
from torch import Tensor, nn

from darkcfg.model.activations import ACTIVATIONS, Activation
from darkcfg.model.cfg import Section

if TYPE_CHECKING:
    from darkcfg.model.netconfig import NetConfig


class Shape(NamedTuple):
    """A layer's output in Darknet terms: channels, height, width (out_c, out_h, out_w)."""

    c: int
    h: int
    w: int

    @property
    def size(self) -> int:
        """Darknet's l.outputs: c*h*w."""
        return self.c * self.h * self.w

    def __str__(self) -> str:
        return f"{self.w:4d} x{self.h:4d} x{self.c:4d}"


def building_on_meta() -> bool:
    """Whether new tensors go to the meta device: the build that only counts (`Darknet(..., meta=True)`, the memory
    budget's). There, a buffer computed from the shapes (an index permutation, a count of valid cells) only needs its
    shape and dtype, and computing it would run torch's meta implementations of arithmetic, whose first use costs
    a second or more of imports."""
    return torch.empty(0).is_meta


@dataclass
class Blob:
    """One float32 array of a layer in the .weights stream.

    `transposed` = (rows, cols) means the file stores the (rows, cols) matrix of `tensor` transposed,
    i.e. as (cols, rows) (connected layers of old files, conv `flipped=1`).
    `skip_load` leaves it out of reading but not of writing (conv/connected `dontloadscales`).
    """

    tensor: Tensor
    transposed: Optional[tuple[int, int]] = None
    skip_load: bool = False


@dataclass
class BuildContext:
    """What a builder may look at: its index, its input, the layers and shapes before it, [net]."""

    index: int
    input: Shape
    shapes: list[Shape]
    layers: list[DarknetLayer]
    net: NetConfig
    section: Section = field(repr=False, default=None)  # type: ignore[assignment]

    def resolve(self, key: str, values: list[int]) -> list[int]:
        """Darknet index resolution: negative = relative to this layer, else absolute; must be < index."""
        out = []
        opt = self.section.find(key)
        for v in values:
            idx = self.index + v if v < 0 else v
            if not 0 <= idx < self.index:
                raise self.section.error(
                    f"{key}={v} refers to layer {idx}; expected a layer index in 0..{self.index - 1}"
                    + (" (or -1..-" + str(self.index) + " relative)" if self.index else ""),
                    opt.line if opt else None,
                )
            out.append(idx)
        return out

    def layer_refs(self, key: str) -> list[int]:
        values = self.section.ints(key)
        if values is None:
            raise self.section.error(f"missing required option '{key}'")
        return self.resolve(key, values)

    def activation(self, default: str, key: str = "activation") -> tuple[str, Activation]:
        """The activation option; an unknown name becomes relu with a warning, as get_activation does."""
        name = self.section.str(key, default)
        if name not in ACTIVATIONS:
            opt = self.section.find(key)
            self.section.warn(f"unknown activation '{name}', using relu as the reference does",
                              opt.line if opt else None)
            name = "relu"
        return name, ACTIVATIONS[name]

    def require_image(self, what: str) -> None:
        if min(self.input) <= 0:
            raise self.section.error(f"layer before [{what}] must output an image, got c,h,w={tuple(self.input)}")

    def check_count(self, what: str, n: int, limit: int = 2**31 - 1) -> None:
        """Refuse absurd tensor sizes (a typo such as filters=100000000) before allocating them."""
        if n > limit:
            raise self.section.error(f"{what} would hold {n:,} values; expected at most {limit:,}")

    def positive(self, key: str, value: int) -> int:
        if value <= 0:
            raise self.section.error(f"{key}={value}: expected a positive value")
        return value


class DarknetLayer(nn.Module):
    """A built Darknet layer.

    `forward(x, outputs)`: x is the previous layer's output (B, C, H, W) (the network input for layer 0),
    `outputs` the list of all earlier outputs (entries not needed later may be None). Returns (B, C', H', W')
    in Darknet's layout, i.e. with the same flat memory order as the reference's `l.output`.
    """

    ltype: str = "?"
    is_head: bool = False  # a detection head (darkcfg.model.heads.DetectionHead)
    stateful: bool = False  # keeps state from one forward to the next (layers/_recurrent.py)
    untrainable: str = ""  # why darkcfg refuses to train a cfg with this layer ("" = it trains)

    def __init__(self, in_shape: Shape, out_shape: Shape, sources: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.in_shape = in_shape
        self.out_shape = out_shape
        self.sources = sources  # other layer indices read in forward (besides the previous one)
        self.index = -1
        self.dontload = False

    @property
    def bflops(self) -> float:
        return 0.0

    def describe(self) -> str:
        """The layer-table text after the index (like the reference's print at build time)."""
        return f"{self.ltype:<10s}{'':>28s}{self.in_shape} -> {self.out_shape}"

    def darknet_blobs(self, transpose: bool = False) -> list[Blob]:
        """Tensors stored for this layer in a .weights file, in the reference's order."""
        return []

    def reset_state(self) -> None:
        """Forget state carried between forwards (stateful layers only)."""
