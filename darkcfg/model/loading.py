"""Building a network and giving it weights: `darkcfg.load`, and the loader every command uses.

A model is named by a Darknet .cfg or by a darkcfg .pt checkpoint (which carries its cfg text and its
tensors). Weights come from a Darknet .weights file or a .pt; commands that run a trained network
(`detect`, `map`, `valid`, `export`) fall back to `weights/<cfg name>.weights` when none is given and the
model is not a .pt (`load_trained`).
"""
from __future__ import annotations

import site
import sysconfig
import warnings
from pathlib import Path
from typing import Optional, Union

import torch

from darkcfg.errors import DarkcfgWarning, WeightsError
from darkcfg.model.budget import MemorySize
from darkcfg.model.checkpoint import is_torch_file, load_checkpoint, load_checkpoint_into
from darkcfg.model.network import Darknet
from darkcfg.model.weights import load_weights


class WeightsWarning(DarkcfgWarning):
    """A weights file that fills only a prefix of the network (a backbone for training, or a short file)."""


PathLike = Union[str, Path]
Size = Union[None, int, tuple[int, int]]
CHECKPOINT_SUFFIXES = (".pt", ".pth")
REPO = Path(__file__).resolve().parents[2]


def shipped(kind: str, name: str) -> Path:
    """A file darkcfg ships in `cfg/` or `weights/`: from the checkout (an editable install), else from
    `<prefix>/share/darkcfg/` where `pip install` puts them (setup.cfg's data_files). The checkout's path
    when it is in neither (for the error message)."""
    places = [REPO, Path(sysconfig.get_paths()["data"]) / "share" / "darkcfg",
              Path(site.getuserbase()) / "share" / "darkcfg"]
    for base in places:
        if (base / kind / name).is_file():
            return base / kind / name
    return REPO / kind / name


def is_checkpoint(path: PathLike) -> bool:
    """Whether `path` is a darkcfg .pt checkpoint rather than a cfg or .weights file: a torch zip archive by
    its content, whatever its name; a file named .pt/.pth that is not one is still taken for a checkpoint,
    so that reading it says what is wrong with it."""
    return is_torch_file(path) or str(path).endswith(CHECKPOINT_SUFFIXES)


def _size(size: Size) -> Optional[tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    w, h = size
    return (int(w), int(h))


def load_weights_file(model: Darknet, weights: PathLike, partial: bool = False) -> None:
    """Load a Darknet .weights file (or a darkcfg .pt checkpoint) into `model`."""
    if is_checkpoint(weights):
        load_checkpoint_into(model, weights)
        return
    if not Path(weights).is_file():
        raise WeightsError(f"{weights}: no such weights file")
    report = load_weights(model, weights, partial=partial)
    if not report.complete:
        warnings.warn(f"{weights}: loaded {report.layers_loaded} of {report.layers_with_weights} layers with "
                      f"weights (layers 0..{report.upto - 1})", WeightsWarning, stacklevel=2)


def load(cfg: PathLike, weights: Optional[PathLike] = None, size: Size = None,
         device: Union[None, str, torch.device] = None, partial: bool = False,
         max_memory: MemorySize = None) -> Darknet:
    """Build a network from a Darknet .cfg (or a darkcfg .pt checkpoint) and optionally load .weights.

    Args:
        cfg: path of a .cfg file, or of a checkpoint written by `darkcfg convert` (cfg text inside).
        weights: a Darknet .weights file (or a .pt checkpoint) to load.
        size: input size override, an int (square) or (width, height); the cfg file is not changed.
        device: where to put the model ("cpu", "cuda", ...).
        partial: accept a weights file that ends inside a layer or has bytes left over.
        max_memory: the memory budget the network (weights + every layer's output for one image) must fit before
            anything is allocated: bytes or a size such as '32G', 'off' for none; default $DARKCFG_MAX_MEMORY, else
            3/4 of the machine's memory, at most 16 GiB (darkcfg.model.budget). A cfg over it is a one-line CfgError.
    Returns:
        the network in eval mode; `model(x)` takes x (B, C, H, W) with the [net] (or overridden) size.
    """
    sz = _size(size)
    model = load_checkpoint(cfg, sz, max_memory) if is_checkpoint(cfg) else \
        Darknet.from_file(cfg, sz, max_memory=max_memory)
    if weights is not None:
        load_weights_file(model, weights, partial)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def load_trained_weights(model: Darknet, cfg: PathLike, weights: Optional[PathLike] = None) -> None:
    """Give `model`, built from `cfg`, the weights a trained network runs with: `weights`; else, when `cfg`
    is a .pt, its own tensors (already there); else the default `weights/<cfg name>.weights`."""
    if weights is None and is_checkpoint(cfg):
        return
    load_weights_file(model, weights if weights is not None else default_weights(cfg))


def load_trained(cfg: PathLike, weights: Optional[PathLike] = None, size: Size = None,
                 device: Union[None, str, torch.device] = None, max_memory: MemorySize = None) -> Darknet:
    """`load` for running a trained network (`load_trained_weights`): what `detect`, `map`, `valid` and
    `export` load."""
    model = load(cfg, size=size, max_memory=max_memory)
    load_trained_weights(model, cfg, weights)
    return model.to(device) if device is not None else model


def default_weights(cfg: PathLike) -> Path:
    """`weights/<cfg name>.weights`, looked for in the current directory, beside the cfg's folder and in the
    darkcfg checkout; a one-line WeightsError listing where it looked when none exists."""
    name = Path(cfg).stem + ".weights"
    here = Path(cfg).resolve().parent
    candidates = [Path("weights") / name, here / "weights" / name, here.parent / "weights" / name,
                  shipped("weights", name)]
    for c in candidates:
        if c.is_file():
            return c
    raise WeightsError(f"{candidates[0]}: no such weights file (looked beside {cfg} and in {candidates[-1].parent}); "
                       f"give --weights, or fetch it with `darkcfg download {Path(cfg).stem}`")


def weights_summary(model: Darknet, weights: PathLike) -> str:
    """`info -w`'s line: how much of the network the loaded `weights` file covers, its version and `seen`."""
    h, n = model.header, model.loaded_upto
    last = max((i for i, m in enumerate(model.layers) if m.darknet_blobs()), default=-1)
    held = f"a prefix: layers 0..{n - 1} of {len(model.layers)}" if n is not None and n <= last else \
        f"all {len(model.layers)} layers"
    return f"weights: {weights} fits: {held}, version {h.major}.{h.minor}.{h.revision}, seen {h.seen:,} images"
