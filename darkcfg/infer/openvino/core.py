"""OpenVINO itself: its import (one line when it is missing) and compiling for the CPU without losing the calling
thread's signal stack (`kept_signal_stack`: a workaround for OpenVINO's CPU plugin on AMX machines)."""
from __future__ import annotations

import contextlib
import ctypes
import sys
from pathlib import Path
from typing import Iterator, Optional

from darkcfg.errors import DarkcfgError


def _import_openvino():  # noqa: ANN202 - the openvino module
    try:
        import openvino
    except ImportError:
        raise DarkcfgError("--runtime openvino needs the openvino package: pip install 'darkcfg[openvino]'") from None
    return openvino


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the block, then give the calling thread back the signal stack (sigaltstack) it had before.

    OpenVINO's CPU plugin, on CPUs with AMX (whose state makes signal frames large), gives the thread that creates
    it a signal stack of its own (mmap'd) and, when that plugin instance is destroyed, puts back the one it found
    and unmaps its own. Two instances destroyed out of order (two `Core`s freed by the garbage collector) therefore
    leave the thread on an unmapped signal stack, and the next signal handled there (SIGCHLD when a subprocess
    ends; Python's handlers run on the signal stack) kills the process with SIGSEGV: the test suite crashed that
    way in training tests run after the OpenVINO ones. Putting the previous stack back at once means every
    instance restores a live stack."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _StackT()
    if libc.sigaltstack(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


def compile_cpu(model, config: Optional[dict] = None):  # noqa: ANN001, ANN201 - openvino.Model or IR path, CompiledModel
    """`model` (an `openvino.Model` or an IR's .xml path) compiled for the CPU by a new `Core` with `config`,
    the calling thread's signal stack kept (`kept_signal_stack`)."""
    ov = _import_openvino()
    with kept_signal_stack():
        return ov.Core().compile_model(model if not isinstance(model, Path) else str(model), "CPU", config or {})
