"""How much memory a network takes, and the budget a cfg must fit before anything big is allocated.

A cfg of a few lines can ask for more memory than the machine has (fifty `[convolutional]` layers with
`filters=4096` hold 30 GB of weights), and each layer alone may be within the per-layer limit
(`BuildContext.check_count`). So `Darknet` first builds the cfg on PyTorch's meta device (`Darknet(...,
meta=True)`: the same builders, every tensor with its shape and dtype but no storage; 5-10 % of a real build's
time), counts what that network holds (`estimate`), and refuses, in one line naming the layer where the running
total crosses the budget, a cfg that would not fit (`check`); only then does it build for real. Builders keep
that cheap by doing no out-of-place arithmetic on tensors (torch's meta kernels for it are Python, and their
first use imports torch._dynamo and sympy, 1-2 s): in-place initialisation, constants made from Python lists,
and buffers computed from shapes left uncomputed there (`building_on_meta`); tests/test_memory_budget.py checks
every section type in a fresh process.

What is counted, in bytes:
- weights: every parameter and buffer of each layer (batch-norm statistics and the layers' small constant
  buffers included), exactly as the real build will allocate them;
- activations: each layer's output for ONE image (batch 1) at the network's input size, float32. That is what
  `forward_all` keeps, and an upper bound of what inference keeps at once (`Darknet.forward` frees an output after
  its last reader). A batch of B images takes about B times the activations; training keeps more (gradients,
  optimiser state), so the budget is a floor that catches cfgs that cannot run at all, not a promise that they
  train.

The budget (`resolve`): the `max_memory` argument of `Darknet` / `darkcfg.load`, else the environment variable
DARKCFG_MAX_MEMORY, else `default_budget()`: 3/4 of the machine's memory (the smaller of physical memory and a
cgroup limit), at most 16 GiB. The largest network of the Darknet zoo here, yolov4-p5 at 896 x 896, needs
1.9 GiB (0.27 GiB weights + 1.6 GiB outputs); 16 GiB is eight times that, so no real cfg meets the default on a
machine with 4 GB or more, while a cfg asking for tens of GB is refused in a fraction of a second instead of
taking a shared machine's memory until the kernel kills the process. Sizes are written like `32G`, `512M`, `1.5T`
(powers of 1024) or as a plain number of bytes; `off` (or 0) turns the check off.
"""
from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Optional, Union

from darkcfg.errors import DarkcfgError

if TYPE_CHECKING:
    from darkcfg.model.network import Darknet

ENV = "DARKCFG_MAX_MEMORY"
GiB = 1024 ** 3
DEFAULT_CAP = 16 * GiB  # the most the default allows, whatever the machine (module docstring)
DEFAULT_FRACTION = 0.75  # of the machine's memory
ACTIVATION_BYTES = 4  # float32 outputs

_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": GiB, "t": 1024 ** 4}
_OFF = ("off", "none", "unlimited", "0")


class Budget(NamedTuple):
    """A memory budget: `limit` in bytes (None: no check) and where it came from, for the error message."""

    limit: Optional[int]
    source: str


MemorySize = Union[None, int, str, Budget]  # what `max_memory` accepts: bytes, '32G', 'off' (or a Budget)


def parse_size(text: str, what: str = ENV) -> Optional[int]:
    """'32G' -> 34359738368 bytes ('512M', '1.5T', '16GiB', '16gb', plain bytes); 'off', 'none', 'unlimited' or 0
    -> None (no limit). `what` names the setting in the one-line DarkcfgError for anything else."""
    s = str(text).strip().lower()
    if s in _OFF:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", s)
    if m is None:
        raise DarkcfgError(f"{what}={text!r}: expected a size such as 16G, 512M or 1.5T (powers of 1024), a number "
                           "of bytes, or 'off'")
    n = int(float(m.group(1)) * _UNITS[m.group(2)])
    return n if n > 0 else None


def format_size(n: float) -> str:
    """Bytes as the shortest of GiB/MiB/KiB with one decimal: 1.9 GiB, 45.0 MiB."""
    for unit, scale in (("GiB", GiB), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


@functools.cache
def machine_memory() -> Optional[int]:
    """The memory this process can have: physical memory (sysconf), or a smaller cgroup limit (a container's,
    v2 or v1). None where neither can be read."""
    found = []
    try:
        found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                value = fh.read().strip()
        except OSError:
            continue
        if value.isdigit() and 0 < int(value) < 2 ** 60:  # "max" or v1's huge number: no limit
            found.append(int(value))
    found = [n for n in found if n > 0]
    return min(found) if found else None


def default_budget() -> Budget:
    """3/4 of `machine_memory()`, at most 16 GiB (16 GiB where the machine's memory cannot be read)."""
    mem = machine_memory()
    if mem is None:
        return Budget(DEFAULT_CAP, "the default, 16 GiB")
    limit = min(DEFAULT_CAP, int(mem * DEFAULT_FRACTION))
    return Budget(limit, f"the default: 3/4 of this machine's {format_size(mem)}, at most 16 GiB")


def resolve(max_memory: MemorySize = None) -> Budget:
    """The budget in force: `max_memory` (bytes, or a size string; 'off' or 0: none), else $DARKCFG_MAX_MEMORY,
    else `default_budget()`."""
    if isinstance(max_memory, Budget):
        return max_memory
    if max_memory is not None:
        if isinstance(max_memory, bool) or not isinstance(max_memory, (int, str)):
            raise DarkcfgError(f"max_memory={max_memory!r}: expected a number of bytes or a size such as '32G'")
        limit = parse_size(str(max_memory), "max_memory")
        return Budget(limit, f"max_memory={max_memory!r}")
    env = os.environ.get(ENV, "").strip()
    if env:
        return Budget(parse_size(env), f"{ENV}={env}")
    return default_budget()


@dataclass(frozen=True)
class LayerMemory:
    """What one layer holds: `weights` (its parameters and buffers) and `activations` (its output for `batch`
    images), in bytes."""

    index: int
    ltype: str
    weights: int
    activations: int


@dataclass(frozen=True)
class MemoryEstimate:
    """A network's memory, layer by layer (`estimate`); totals in bytes."""

    layers: tuple[LayerMemory, ...]
    batch: int = 1

    @property
    def weights(self) -> int:
        return sum(m.weights for m in self.layers)

    @property
    def activations(self) -> int:
        return sum(m.activations for m in self.layers)

    @property
    def total(self) -> int:
        return self.weights + self.activations

    def crossing(self, limit: int) -> Optional[int]:
        """The first layer index at which the running total (weights + activations of it and every layer before
        it) exceeds `limit` bytes; None when the whole network fits."""
        running = 0
        for i, m in enumerate(self.layers):
            running += m.weights + m.activations
            if running > limit:
                return i
        return None


def estimate(model: Darknet, batch: int = 1) -> MemoryEstimate:
    """The memory of `model` (typically built with `meta=True`, which allocates nothing): per layer, the bytes of
    its parameters and buffers, and of its output for `batch` images at the model's input size (float32)."""
    layers = []
    for i, layer in enumerate(model.layers):
        seen: set[int] = set()
        weights = 0
        for t in list(layer.parameters()) + list(layer.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                weights += t.numel() * t.element_size()
        out = model.shapes[i].size * ACTIVATION_BYTES * batch
        layers.append(LayerMemory(i, layer.ltype, weights, out))
    return MemoryEstimate(tuple(layers), batch)


def check(model: Darknet, budget: Budget) -> MemoryEstimate:
    """`estimate(model)`, or a one-line CfgError naming the cfg file and line of the layer where the running total
    crosses `budget`, both totals, the budget and how to raise it."""
    est = estimate(model)
    if budget.limit is None:
        return est
    i = est.crossing(budget.limit)
    if i is None:
        return est
    upto = est.layers[: i + 1]
    w, a = sum(m.weights for m in upto), sum(m.activations for m in upto)
    shape = model.input_shape
    need = f"{max(1, math.ceil(est.total * 1.1 / GiB))}G"
    raise model.sections[i].error(
        f"the network needs {format_size(w + a)} up to this layer (weights {format_size(w)} + layer outputs "
        f"{format_size(a)} for one {shape.w}x{shape.h}x{shape.c} input) and {format_size(est.total)} in all, "
        f"over the memory budget of {format_size(budget.limit)} ({budget.source}); to allow it, set {ENV}={need} "
        f"(in Python: max_memory='{need}')")
