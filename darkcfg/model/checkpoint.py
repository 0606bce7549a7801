"""PyTorch checkpoints that carry their cfg: `.weights` <-> `.pt`, loadable with no cfg file at hand."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Union

import torch

from darkcfg.errors import DarkcfgError, WeightsError
from darkcfg.files import atomic_write
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


def read_checkpoint(path: Union[str, Path]) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such checkpoint file") from None
    except Exception as e:
        raise WeightsError(f"{path}: not a darkcfg checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a darkcfg checkpoint (expected format {FORMAT})")
    return payload


def load_checkpoint(path: Union[str, Path], size: Optional[tuple[int, int]] = None) -> Darknet:
    """Rebuild the network from the cfg text stored in the checkpoint and load its tensors."""
    payload = read_checkpoint(path)
    model = Darknet(payload["cfg_text"], f"{path}:cfg", size or tuple(payload["size"]), warn_unused=False)
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
