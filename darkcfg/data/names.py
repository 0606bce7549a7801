"""Class names files (`names=` of a .data file, `--names`): one name per line, as the reference reads them.

`read_names` is the one reader: lines as fgetl gives them (CR/LF stripped, inner blank lines kept as names, as
the reference keeps them), trailing blank lines dropped; `COCO_NAMES` is the shipped COCO list.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from darkcfg.errors import DarkcfgError

COCO_NAMES = Path(__file__).resolve().parents[1] / "assets" / "coco.names"


class NamesError(DarkcfgError):
    """A names file that is missing, unreadable or does not hold one name per class."""


def read_names(path: Union[str, Path], classes: Optional[int] = None) -> list[str]:
    """The names in `path`. With `classes`, the count must equal it (the reference warns in `detector test`
    and stops in `map`; a wrong names file mislabels every box, so it is an error)."""
    p = Path(path)
    if not p.is_file():
        raise NamesError(f"{p}: no such names file")
    try:
        text = p.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise NamesError(f"{p}: cannot read names file ({e.strerror or e})") from None
    names = [line.rstrip("\r\n") for line in text.splitlines()]
    while names and not names[-1].strip():
        names.pop()
    if classes is not None and len(names) != classes:
        raise NamesError(f"{p}: has {len(names)} names, expected {classes} (classes= of the cfg's last head)")
    return names
