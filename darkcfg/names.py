"""Class names: a names file (one per line, as the reference's `names=`), or COCO's 80 for 80-class cfgs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from darkcfg.errors import DarkcfgError

COCO_NAMES = Path(__file__).resolve().parent / "data" / "coco.names"


def read_names(path: Union[str, Path], classes: Optional[int] = None) -> list[str]:
    """One name per line (CR/LF stripped, as fgetl). With `classes`, the count must equal it (the reference
    warns in `detector test` and stops in `map`; a wrong names file mislabels every box, so it is an error)."""
    p = Path(path)
    if not p.is_file():
        raise DarkcfgError(f"{p}: no such names file")
    names = [line.rstrip("\r\n") for line in p.read_text(errors="replace").splitlines()]
    while names and not names[-1].strip():
        names.pop()
    if classes is not None and len(names) != classes:
        raise DarkcfgError(f"{p}: has {len(names)} names, expected {classes} (classes= of the cfg's last head)")
    return names


def head_classes(model: torch.nn.Module) -> int:
    """classes= of the network's last detection head."""
    return int(model.layers[model.output_layers[-1]].params.classes)


def default_names(model: torch.nn.Module) -> Optional[list[str]]:
    """COCO's names when the cfg has 80 classes, else None (ids are shown)."""
    return read_names(COCO_NAMES) if head_classes(model) == 80 else None
