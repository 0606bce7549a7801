"""Conversions between weights files: .weights <-> .pt checkpoints, and prefixes (`darknet partial`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from darkcfg.errors import DarkcfgError
from darkcfg.files import Sources
from darkcfg.model.checkpoint import load_checkpoint, save_checkpoint
from darkcfg.model.loading import is_checkpoint
from darkcfg.model.network import Darknet
from darkcfg.model.weights import LoadReport, WeightsHeader, load_weights, save_weights

PathLike = Union[str, Path]


def convert(source: PathLike, dest: PathLike, cfg: Optional[PathLike] = None) -> str:
    """A .pt checkpoint -> Darknet .weights (byte-identical to the file it was made from), or a .weights
    file with its `cfg` -> a .pt checkpoint carrying the cfg text. The direction comes from the source's
    content (a torch zip archive or not), whatever its name; writing over the source or the cfg (also through
    a symlink or a hard link) is refused before anything is read (`darkcfg.files.Sources`).
    Returns the direction, "pt->weights" or "weights->pt"."""
    if not Path(source).is_file():
        raise DarkcfgError(f"{source}: no such file")
    Sources([source] + ([cfg] if cfg is not None else [])).check_dest(dest)
    if is_checkpoint(source):
        model = load_checkpoint(source)
        save_weights(model, dest, upto=model.loaded_upto)
        return "pt->weights"
    if cfg is None:
        raise DarkcfgError(f"{source}: converting a .weights file needs its cfg (--cfg CFG)")
    model = Darknet.from_file(cfg)
    load_weights(model, source)
    save_checkpoint(model, dest)
    return "weights->pt"


def save_prefix(cfg: PathLike, weights_in: PathLike, weights_out: PathLike, n: int) -> LoadReport:
    """The first `n` layers of `weights_in` as `weights_out` with seen=0 (`darknet partial`), e.g. a
    pre-trained backbone such as yolov4-tiny.conv.29. Writing over `weights_in` or `cfg` is refused."""
    Sources([cfg, weights_in]).check_dest(weights_out)
    model = Darknet.from_file(cfg)
    if not 0 < n <= len(model.layers):
        raise DarkcfgError(f"N={n}: expected 1..{len(model.layers)} (layers in {cfg})")
    report = load_weights(model, weights_in, upto=n)
    save_weights(model, weights_out, upto=n, header=WeightsHeader())
    return report
