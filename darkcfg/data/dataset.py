"""Darknet's data files: the `.data` file, list files, label paths and label files (data.c, option_list.c).

Every command that takes a dataset (`train`, `map`, `valid`, `calc-anchors`, `data check`, int8 calibration)
reads it through here, so they all accept the same things and find the same labels:

- `open_data`: a `.data` file, or a folder of images (train and valid are then the folder, names its only
  `.names` file). `.data`: `key = value` lines (`#` comments), read like the cfg (all whitespace removed).
  Keys: classes, train, valid (default: train), names, labels and top (classifiers), backup, eval, results,
  difficult, saveweights, savelast.
- `image_list`: a list file (one image path per line, CR/LF stripped as fgetl; a relative path that does not
  exist from the working directory, as the reference reads it, is taken from the list's folder) or a folder.
- `label_path`: replace_image_to_label, where the reference reads and `-save_labels` writes a label file:
  `/images/{train,val}{2014,2017}/` and `/JPEGImages/` become `/labels/...` (a plain `/images/` does not),
  and the image extension becomes `.txt`. `label_file`: the file darkcfg reads, that one, else the `.txt`
  beside the image when only that exists (a layout the reference would read as unlabelled).
- `read_labels`: read_boxes: `fscanf("%d %f %f %f %f")` until the first failure; a missing file is no
  boxes (the reference prints a note and carries on). Where it stops before the end of the file (a field that
  is not a number, a last row of fewer than five fields), that is said once for the file, as file:line, by
  the same route as skipped rows. A row whose x, y, w or h is not a number in [0, 1]
  (NaN, infinite, negative, above 1) or whose size is 0 is reported as file:line and skipped (the
  reference's fill_truth_detection prints "Wrong annotation ... file:" for such rows when training and
  skips them; `map` and `calc_anchors` would count them).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from darkcfg.data.images import list_images
from darkcfg.errors import DarkcfgError, DarkcfgWarning

PathLike = Union[str, Path]


class DataError(DarkcfgError):
    """A .data file, list file or label file that cannot be used."""


class DataWarning(DarkcfgWarning):
    """A label row that is skipped: the message names file:line and why."""


@dataclass
class DataConfig:
    """The keys of a .data file that darkcfg reads (paths as written, relative to the working directory); for a
    folder of images (`folder`), train and valid are the folder."""

    file: str
    classes: Optional[int] = None
    train: Optional[str] = None
    valid: Optional[str] = None
    names: Optional[str] = None
    labels: Optional[str] = None  # a classifier's class names (the reference's labels=; names= when absent)
    top: Optional[int] = None  # a classifier's top-k (predict and valid; the reference's default differs by verb)
    backup: str = "backup/"
    eval: str = "voc"
    results: str = "results"
    difficult: Optional[str] = None
    saveweights: Optional[int] = None
    savelast: int = 100
    folder: bool = False

    def valid_list(self) -> str:
        """The validation list (`valid`, else `train`, as the reference)."""
        v = self.valid or self.train
        if v is None:
            raise DataError(f"{self.file}: no 'valid' (or 'train') list given")
        return v


def read_data_cfg(path: PathLike) -> DataConfig:
    """Parse a .data file; a DataError names the file and line of anything unreadable."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such .data file")
    opts: dict[str, str] = {}
    for n, raw in enumerate(p.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            raise DataError(f"{p}:{n}: '{raw.strip()}': expected key = value")
        key, value = line.split("=", 1)
        opts[key] = value
    cfg = DataConfig(str(p))
    for key in ("train", "valid", "names", "labels", "backup", "eval", "results", "difficult"):
        if key in opts:
            setattr(cfg, key, opts[key])
    for key in ("classes", "saveweights", "savelast", "top"):
        if key in opts:
            try:
                setattr(cfg, key, int(opts[key]))
            except ValueError:
                raise DataError(f"{p}: {key}={opts[key]}: expected an integer") from None
    return cfg


def open_data(source: PathLike, classes: Optional[int] = None) -> DataConfig:
    """A .data file, or a folder of images with their labels (module docstring); `classes` overrides the file's
    (for a folder without one: the names file's count, if it has a names file). A DataError names the path when
    it is neither."""
    p = Path(source)
    if p.is_dir():
        names = sorted(str(q) for q in p.glob("*.names"))
        dc = DataConfig(file=str(p), train=str(p), valid=str(p), names=names[0] if len(names) == 1 else None,
                        folder=True)
    elif p.is_file():
        dc = read_data_cfg(p)
    else:
        raise DataError(f"{p}: no such .data file or folder of images")
    if classes is not None:
        dc.classes = classes
    return dc


def image_list(source: PathLike) -> list[str]:
    """The images a list file names (module docstring) or the image files directly in a folder, in order."""
    p = Path(source)
    if p.is_dir():
        return list_images(p)
    out = []
    for line in read_list(p):
        if not os.path.isabs(line) and not os.path.exists(line) and (p.parent / line).exists():
            line = str(p.parent / line)
        out.append(line)
    return out


def read_list(path: PathLike) -> list[str]:
    """One path per line, as written; blank lines are skipped."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such list file")
    return [line.strip() for line in p.read_text(encoding="utf-8-sig", errors="replace").splitlines() if line.strip()]


def label_file(image_path: str) -> str:
    """The label file darkcfg reads for an image: `label_path`'s, else the .txt beside the image when only that
    one exists (the reference's path when neither does, for messages)."""
    p = label_path(image_path)
    if os.path.isfile(p):
        return p
    beside = os.path.splitext(image_path)[0] + ".txt"
    return beside if os.path.isfile(beside) else p


def label_path(image_path: str) -> str:
    """data.c:replace_image_to_label: where the reference reads, and `-save_labels` writes, an image's labels."""
    s = image_path
    for part in ("train2014", "val2014", "train2017", "val2017"):
        s = s.replace(f"/images/{part}/", f"/labels/{part}/").replace(f"\\images\\{part}\\", f"\\labels\\{part}\\")
    s = s.replace("/JPEGImages/", "/labels/").replace("\\JPEGImages\\", "\\labels\\")
    return os.path.splitext(s)[0] + ".txt"  # the reference knows a fixed list of extensions; any is fine here


def _bad_row(x: float, y: float, w: float, h: float) -> Optional[str]:
    """Why a label row cannot be a box (None when it can)."""
    for name, v in (("x", x), ("y", y), ("w", w), ("h", h)):
        if not math.isfinite(v) or not 0 <= v <= 1:
            return f"{name}={v:g} is not in [0, 1]"
    if w == 0 or h == 0:
        return "empty box (w or h is 0)"
    return None


def read_labels(path: PathLike, classes: Optional[int] = None, issues: Optional[list[str]] = None) -> np.ndarray:
    """data.c:read_boxes -> (N, 5) float32 rows (id, x, y, w, h); a missing file gives (0, 5).

    With `classes`, an id outside 0..classes-1 is a DataError naming the file and line (the reference would
    index past its arrays). Rows that are not boxes (module docstring) are skipped and reported as
    "file:line: ..." lines: appended to `issues` when given, else as a `DataWarning` each; so is, once, the place
    where reading stops before the end (a field that is not a number, an incomplete last row: the rest of the
    file is not read, as the reference's fscanf loop).
    """
    p = Path(path)
    if not p.is_file():
        return np.zeros((0, 5), np.float32)
    rows = []
    lines = p.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    tokens = [(n, t) for n, line in enumerate(lines, 1) for t in line.split()]

    def say(message: str) -> None:
        if issues is not None:
            issues.append(message)
        else:
            warnings.warn(message, DataWarning, stacklevel=3)

    k = 0
    while k < len(tokens):
        chunk = tokens[k:k + 5]
        k += 5
        bad = next((t for j, t in enumerate(chunk) if not _parses(t[1], integer=j == 0)), None)
        if bad is not None or len(chunk) < 5:
            n, t = bad if bad is not None else chunk[-1]
            why = (f"'{t[:40]}' is not {'an integer class id' if bad == chunk[0] else 'a number'}" if bad is not None
                   else f"an incomplete last row ({len(chunk)} of 5 fields)")
            say(f"{p}:{n}: label file read up to here: {why}; the rest is not read (as the reference's fscanf)")
            break  # fscanf stops at the first field it cannot read
        cid = int(chunk[0][1])
        vals = [float(t) for _, t in chunk[1:]]
        if classes is not None and not 0 <= cid < classes:
            raise DataError(f"{p}:{chunk[0][0]}: class id {cid}, expected 0..{classes - 1} (classes={classes})")
        why = _bad_row(*vals)
        if why is not None:
            say(f"{p}:{chunk[0][0]}: label row skipped: {why}")
            continue
        rows.append([cid, *vals])
    return np.asarray(rows, np.float32).reshape(-1, 5)


def _parses(token: str, integer: bool) -> bool:
    try:
        int(token) if integer else float(token)
    except ValueError:
        return False
    return True
