"""Class names: a names file (one per line, as the reference's `names=`), or COCO's 80 for 80-class cfgs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from darkcfg.errors import DarkcfgError
from darkcfg.model.heads import last_head

COCO_NAMES = Path(__file__).resolve().parents[1] / "assets" / "coco.names"


def read_names(path: Union[str, Path], classes: Optional[int] = None) -> list[str]:
    """One name per line (CR/LF stripped, as fgetl). With `classes`, the count must equal it (the reference
    warns in `detector test` and stops in `map`; a wrong names file mislabels every box, so it is an error)."""
    p = Path(path)
    if not p.is_file():
        raise DarkcfgError(f"{p}: no such names file")
    names = [line.rstrip("\r\n") for line in p.read_text(encoding="utf-8-sig", errors="replace").splitlines()]
    while names and not names[-1].strip():
        names.pop()
    if classes is not None and len(names) != classes:
        raise DarkcfgError(f"{p}: has {len(names)} names, expected {classes} (classes= of the cfg's last head)")
    return names


def head_classes(model: torch.nn.Module) -> int:
    """classes= of the network's last detection head."""
    return last_head(model).classes


def default_names(model: torch.nn.Module) -> Optional[list[str]]:
    """COCO's names when the cfg has 80 classes, else None (ids are shown)."""
    return read_names(COCO_NAMES) if head_classes(model) == 80 else None


def names_for(model: torch.nn.Module, path: Optional[Union[str, Path]] = None) -> list[str]:
    """The class names a command uses: `path` (which must hold one per class), else COCO's for an 80-class
    network, else a one-line error asking for them."""
    classes = head_classes(model)
    if path is not None:
        return read_names(path, classes)
    if classes == 80:
        return read_names(COCO_NAMES)
    raise DarkcfgError(f"{model.cfg_file} has classes={classes}: give the class names with --names FILE "
                       "(or names= in the .data file)")
