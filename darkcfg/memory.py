"""Keep freed memory in the process for reuse: the allocator setting of inference and training on a CPU.

PyTorch's CPU allocator is plain malloc. glibc serves every block over its mmap threshold (at most 32 MiB)
with a fresh mmap and gives it back to the kernel on free, so each large activation of every forward pays
one page fault per 4 KiB page, first touch, all over again: yolov4-tiny at 416 takes ~86,000 faults per
batch-8 forward, and that, not the arithmetic, made batch 8 slower per image than batch 1. With mmap off
and trimming off, freed blocks stay in malloc's heap and the next forward reuses them without faults.

Training pays the same way: a yolov3-tiny training step at 224 x 224, batch 16, spent 2.6-3.4 s of system time
per 10 steps page-faulting its activations and gradients, and took ~0.68 s; with this setting ~0.9 s and ~0.5 s
(the trainer applies it on a CPU; `scripts/bench_train.py --profile`).

The setting is process-wide (mallopt). It changes when memory returns to the kernel, and the peak only a
little (a freed block serves only requests it fits): yolov4-p5 at 896 peaked 608 MB above the imports over
7 forwards with it, 570 MB without. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # malloc.h
_M_MMAP_MAX = -4
_applied: bool | None = None


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Turn off glibc's mmap for large blocks and heap trimming (once per process).

    Returns True when the setting is in effect, False where the C library is not glibc.
    """
    global _applied
    if _applied is None:
        _applied = False
        mallopt = getattr(_libc(), "mallopt", None)
        if mallopt is None:
            log.debug("no mallopt in this C library: freed memory goes back to the system as usual")
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def release_free_memory() -> bool:
    """Give the free parts of malloc's heap back to the system now (glibc's malloc_trim): after a one-off
    burst such as preparing a model, whose replaced weights `keep_freed_memory` would otherwise keep.

    Returns False where there is no malloc_trim.
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
