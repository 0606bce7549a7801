"""What training writes to `backup` to survive a stop: `<base>_<name>.weights` (the reference's file, with `seen`)
and, beside it, `<base>_<name>.state.pt` (`state_path`), the sidecar that makes a resume exact: optimiser, EMA,
loss average, mAP history. A sidecar is tensors and plain data only (read with weights_only: never code), and is
used only when it belongs to the weights (same `seen`, same cfg text)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from darkcfg.errors import DarkcfgError
from darkcfg.files import atomic_write
from darkcfg.model.checkpoint import read_torch_file
from darkcfg.model.network import Darknet
from darkcfg.model.weights import save_weights


def state_path(weights: Path) -> Path:
    """The sidecar of a checkpoint: x_last.weights -> x_last.state.pt."""
    return weights.with_name(weights.stem + ".state.pt")


def save_checkpoint_files(model: Darknet, path: Path, seen: int, state: Optional[dict[str, Any]] = None) -> Path:
    """`model` as .weights at `path` with `seen`, and `state` (if any) as its sidecar; both written atomically."""
    model.header.seen = seen
    save_weights(model, path)
    if state is not None:
        atomic_write(state_path(path), lambda fh: torch.save(state, fh))
    return path


def read_sidecar(weights: Path, seen: int, cfg_text: str) -> Optional[dict[str, Any]]:
    """The sidecar of `weights` when it exists and belongs to it (None when there is none; a warning-worthy
    mismatch is returned as {} ); a DarkcfgError when it cannot be read."""
    sp = state_path(weights)
    if not sp.is_file():
        return None
    state = read_torch_file(sp, "training state")
    if not isinstance(state, dict):
        raise DarkcfgError(f"{sp}: not a darkcfg training state")
    if state.get("seen") != seen or state.get("cfg_text") != cfg_text:
        return {}
    return state
