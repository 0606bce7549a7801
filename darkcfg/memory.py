"""Keeping freed memory in the process on a CPU: glibc's defaults cost a large share of a training step.

glibc's malloc serves every block above its mmap threshold (128 KiB, adjusted up to 32 MiB) with a fresh
`mmap` and gives it back on free, and trims the heap top beyond 128 KiB. A network's activations and their
gradients are such blocks, allocated and freed at every forward and backward: each one comes back from the
kernel as new zeroed pages, one page fault per 4 KiB. Measured on this project's 2-core CPU, a yolov3-tiny
training step at 224 x 224, batch 16, spent ~3 s of system time in 10 steps that way, and took ~0.68 s; with
freed blocks kept for reuse, 0.9 s of system time and ~0.5 s per step (`scripts/bench_train.py --profile`
measures it).

`keep_freed_memory()` raises both thresholds (`mallopt`), so that the heap grows to the working set once and is
reused. The process keeps its peak, as PyTorch's own caching allocator does on a GPU. Elsewhere than on glibc it
does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LIMIT = 2**31 - 1  # mallopt takes an int
_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds for this process (and the processes it forks). Returns whether
    the setting took effect; calling it again does nothing."""
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _LIMIT) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _LIMIT) == 1
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
