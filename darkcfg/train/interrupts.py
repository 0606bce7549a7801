"""How a training run stops without losing or corrupting anything: an update happens whole (`SigintBlocked` holds
Ctrl-C back while the weights change), an iteration stopped before its update is undone exactly (`Snapshot`: `seen`
and the batch-norm statistics it changed), and an error is told in one line (`one_line`, also for errors a
DataLoader worker re-raises with its traceback in the message)."""
from __future__ import annotations

import signal
import threading

import torch
from torch import nn

from darkcfg.errors import DarkcfgError


def one_line(e: BaseException) -> str:
    """An exception as one line: a DataLoader worker's re-raised error is reduced to the original's message."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    last = lines[-1]
    if len(lines) > 1 and ": " in last:  # "darkcfg.data.dataset.DataError: message" at a traceback's end
        head, rest = last.split(": ", 1)
        if head.replace(".", "").replace("_", "").isalnum():
            return rest
    return last if isinstance(e, DarkcfgError) or len(lines) > 1 else f"{type(e).__name__}: {last}"


class _SigintBlocked:
    """SIGINT held back (POSIX signal mask) while the weights are being updated: a Ctrl-C then lands after the
    update, never half-way through it. Elsewhere than POSIX's main thread, a no-op."""

    def __enter__(self) -> None:
        self.on = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
        if self.on:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def __exit__(self, *exc: object) -> None:
        if self.on:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class SigintBlocked:
    """SIGINT held back (POSIX signal mask) while the weights are being updated: a Ctrl-C then lands after the
    update, never half-way through it. Elsewhere than POSIX's main thread, a no-op."""

    def __enter__(self) -> None:
        self.on = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
        if self.on:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def __exit__(self, *exc: object) -> None:
        if self.on:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def state_buffers(model: nn.Module) -> list[torch.Tensor]:
    """The persistent buffers (batch-norm statistics): what a forward changes besides the weights."""
    return [b for m in model.modules() for k, b in m._buffers.items()
            if b is not None and k not in m._non_persistent_buffers_set]


class Snapshot:
    """What an iteration changes before its update: `seen` and the persistent buffers; with it, a failed or
    interrupted iteration is undone exactly (a few MB at most, copied once per iteration)."""

    def __init__(self, model: nn.Module, seen: int) -> None:
        self.model, self.seen = model, seen
        self.buffers = [b.detach().clone() for b in state_buffers(model)]

    def restore(self) -> int:
        """Put the buffers back; returns the `seen` to go on from."""
        with torch.no_grad():
            for b, saved in zip(state_buffers(self.model), self.buffers):
                b.copy_(saved)
        return self.seen
