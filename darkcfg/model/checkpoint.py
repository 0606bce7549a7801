"""PyTorch checkpoints that carry their cfg: `.weights` <-> `.pt`, loadable with no cfg file at hand.

Every torch file darkcfg reads (checkpoints, training sidecars) goes through `read_torch_file`, which never
unpickles code: `torch.load(weights_only=True)` accepts tensors and plain data only, and a file that would
need anything else is refused in one line naming the file.
"""
from __future__ import annotations

import dataclasses
import pickle
import re
import zipfile
from pathlib import Path
from typing import Optional, Union

import torch

from darkcfg.errors import DarkcfgError, WeightsError
from darkcfg.files import atomic_write
from darkcfg.model.budget import MemorySize
from darkcfg.model.network import Darknet
from darkcfg.model.weights import WeightsHeader

FORMAT = "darkcfg-checkpoint-1"


def save_checkpoint(model: Darknet, path: Union[str, Path], extra: Optional[dict] = None) -> None:
    """Write {cfg text, header, state_dict, ...} with torch.save, atomically."""
    payload = {
        "format": FORMAT,
        "cfg_text": model.cfg_text,
        "cfg_file": model.cfg_file,
        "size": (model.net.width, model.net.height),
        "header": dataclasses.asdict(model.header),
        "upto": model.loaded_upto,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    atomic_write(path, lambda fh: torch.save(payload, fh))


# what a checkpoint must hold, and of which type
REQUIRED = {"cfg_text": str, "size": (list, tuple), "header": dict, "state_dict": dict}


def is_torch_file(path: Union[str, Path]) -> bool:
    """Whether `path` is a torch.save zip archive (a .pt), judged by its content, not its name."""
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def read_torch_file(path: Union[str, Path], what: str = "checkpoint") -> object:
    """torch.load with tensors and plain data only, on the CPU; one-line WeightsError for a missing,
    unreadable or code-carrying file (never torch's advice to allow code, which a user must not follow)."""
    if not Path(path).is_file():
        raise WeightsError(f"{path}: no such {what} file")
    if not is_torch_file(path):
        raise WeightsError(f"{path}: not a darkcfg {what} (not a torch zip archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises allowing code: never pass that on; keep only what it found
        found = re.search(r"Unsupported global[^.]*?(?=\. |\.$|$)", str(e), re.M)
        if found:
            raise WeightsError(f"{path}: refused: loading this {what} would run code from the file "
                               f"({found.group(0)[:120]})") from None
        raise WeightsError(f"{path}: not a darkcfg {what} (its data cannot be read as tensors and plain "
                           "data)") from None
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise WeightsError(f"{path}: not a darkcfg {what} ({type(e).__name__}: {first})") from None


def read_checkpoint(path: Union[str, Path]) -> dict:
    """A checkpoint's payload, checked: the format field and every key `load_checkpoint` needs."""
    payload = read_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a darkcfg checkpoint (expected format {FORMAT})")
    for key, kind in REQUIRED.items():
        if not isinstance(payload.get(key), kind):
            got = "missing" if key not in payload else f"a {type(payload[key]).__name__}"
            raise WeightsError(f"{path}: damaged darkcfg checkpoint: '{key}' is {got}")
    try:
        WeightsHeader(**payload["header"])
    except TypeError as e:
        raise WeightsError(f"{path}: damaged darkcfg checkpoint: header: {e}") from None
    return payload


def load_checkpoint(path: Union[str, Path], size: Optional[tuple[int, int]] = None,
                    max_memory: MemorySize = None) -> Darknet:
    """Rebuild the network from the cfg text stored in the checkpoint and load its tensors; the cfg must fit the
    memory budget (`max_memory`, as `Darknet`'s)."""
    payload = read_checkpoint(path)
    model = Darknet(payload["cfg_text"], f"{path}:cfg", size or tuple(payload["size"]), warn_unused=False,
                    max_memory=max_memory)
    return load_checkpoint_into(model, path, payload)


def load_checkpoint_into(model: Darknet, path: Union[str, Path], payload: Optional[dict] = None) -> Darknet:
    """Load a checkpoint's tensors, header and `upto` into an already built `model` (in place)."""
    payload = payload if payload is not None else read_checkpoint(path)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise DarkcfgError(f"{path}: tensors do not fit the cfg: {str(e).splitlines()[0]}") from None
    model.header = WeightsHeader(**payload["header"])
    model.loaded_upto = payload.get("upto")
    return model
