"""The class names a network's detections carry: a names file with one name per class of its last head, else
COCO's for an 80-class network (files are read by `darkcfg.data.names`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from darkcfg.data.names import COCO_NAMES, read_names
from darkcfg.errors import DarkcfgError
from darkcfg.model.heads import last_head


def default_names(model: torch.nn.Module) -> Optional[list[str]]:
    """COCO's names when the cfg has 80 classes, else None (ids are shown)."""
    return read_names(COCO_NAMES) if last_head(model).classes == 80 else None


def names_for(model: torch.nn.Module, path: Optional[Union[str, Path]] = None) -> list[str]:
    """The class names a command uses: `path` (which must hold one per class), else COCO's for an 80-class
    network, else a one-line error asking for them."""
    classes = last_head(model).classes
    if path is not None:
        return read_names(path, classes)
    if classes == 80:
        return read_names(COCO_NAMES)
    raise DarkcfgError(f"{model.cfg_file} has classes={classes}: give the class names with --names FILE "
                       "(or names= in the .data file)")
