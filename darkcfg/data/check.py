"""Checking a dataset the way `train` and `map` read it, and writing a cleaned copy (`darkcfg data check`).

Labels, line by line (not stopping at the first bad field as the reference's fscanf does): rows that are not
five numbers, NaN/inf, a class id that is negative or >= classes, a value outside [0, 1] (with a "looks like
pixels" hint when dividing by the image size would fit), a width or height <= 0, a row repeated in its file.
Images: missing, unreadable, without labels (counted, not a problem), the same content twice (SHA-1), the
same image in train and valid; the names file against `classes`. Each problem is one line, file:line first.
`write_clean` writes a cleaned copy into a new folder and never changes the user's files: every destination is
checked against what the check read (`dataset_sources`, darkcfg.files.Sources) before it is written, and the
label files go beside the images inside the new folder, whatever the path above it holds.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from darkcfg.data.dataset import DataConfig, DataError, image_list, label_file, open_data
from darkcfg.data.images import ImageError, PixelLimitError, check_image_bytes
from darkcfg.data.names import read_names
from darkcfg.errors import DarkcfgError
from darkcfg.files import Sources, link_or_copy, write_text
from darkcfg.progress import Progress

PathLike = Union[str, Path]


@dataclass
class Problem:
    """One finding: where (file:line or file), its kind (the summary groups by it), the message, and whether it
    blocks training (else it is a warning)."""

    where: str
    kind: str
    message: str
    blocking: bool = True

    def line(self) -> str:
        return f"{self.where}: {'error' if self.blocking else 'warning'}: {self.kind}: {self.message}"


@dataclass
class ImageEntry:
    """One listed image: its split, path, size (None: unreadable or missing), the label rows kept (class,
    x, y, w, h relative), the rows `write_clean` writes (`repaired`: pixel rows made relative), whether its
    label file exists, and its content's SHA-1."""

    split: str
    path: str
    size: Optional[tuple[int, int]] = None
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))
    repaired: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))  # for write_clean
    has_labels: bool = False
    digest: str = ""


@dataclass
class DatasetCheck:
    """What `check_dataset` found."""

    source: str
    classes: Optional[int]
    names: list[str]
    images: list[ImageEntry]
    problems: list[Problem]
    data_file: Optional[str] = None
    names_file: Optional[str] = None

    @property
    def blocking(self) -> bool:
        return any(p.blocking for p in self.problems)

    def boxes_per_class(self) -> Counter:
        return Counter(int(c) for e in self.images for c in e.rows[:, 0])

    def summary(self) -> str:
        """The table printed after the problem lines: images and labels per split, boxes per class, problems by
        kind."""
        out = ["", f"{'split':<10}{'images':>8}{'readable':>10}{'labelled':>10}{'no boxes':>11}{'boxes':>8}"]
        for split in sorted({e.split for e in self.images}):
            es = [e for e in self.images if e.split == split]
            empty = sum(e.size is not None and not len(e.rows) for e in es)
            out.append(f"{split:<10}{len(es):>8}{sum(e.size is not None for e in es):>10}"
                       f"{sum(e.has_labels for e in es):>10}{empty:>11}{sum(len(e.rows) for e in es):>8}")
        counts = self.boxes_per_class()
        n = self.classes if self.classes is not None else (max(counts) + 1 if counts else 0)
        out += ["", f"{'class':<6}{'name':<24}{'boxes':>8}"]
        for c in range(n):
            out.append(f"{c:<6}{(self.names[c] if c < len(self.names) else '?')[:23]:<24}{counts.get(c, 0):>8}")
        kinds = Counter((p.kind, p.blocking) for p in self.problems)
        out += ["", f"{'problem':<34}{'count':>7}  blocks training"]
        for (kind, blocking), k in sorted(kinds.items()):
            out.append(f"{kind:<34}{k:>7}  {'yes' if blocking else 'no'}")
        if not kinds:
            out.append("(none)")
        return "\n".join(out)


def check_label_file(path: str, classes: Optional[int], size: Optional[tuple[int, int]],
                     problems: list[Problem]) -> tuple[np.ndarray, np.ndarray]:
    """Every line of one label file -> (rows kept (N, 5), rows repaired for `write_clean` (M, 5): pixel rows
    turned relative, duplicates dropped), appending a Problem per bad line."""
    kept: list[list[float]] = []
    fixed: list[list[float]] = []
    seen: set[tuple[float, ...]] = set()
    try:
        lines = Path(path).read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as e:
        problems.append(Problem(path, "unreadable label file", str(e.strerror or e)))
        return np.zeros((0, 5), np.float32), np.zeros((0, 5), np.float32)
    for n, line in enumerate(lines, 1):
        where = f"{path}:{n}"
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            problems.append(Problem(where, "not 5 numbers", f"'{line.strip()[:60]}' has {len(fields)} fields"))
            continue
        try:
            vals = [float(t) for t in fields]
        except ValueError:
            problems.append(Problem(where, "not 5 numbers", f"'{line.strip()[:60]}' is not numeric"))
            continue
        if not all(math.isfinite(v) for v in vals):
            problems.append(Problem(where, "NaN or infinite", f"'{line.strip()[:60]}'"))
            continue
        cid_f, x, y, w, h = vals
        if cid_f != int(cid_f):
            problems.append(Problem(where, "not 5 numbers", f"class id {fields[0]} is not an integer"))
            continue
        cid = int(cid_f)
        if cid < 0 or (classes is not None and cid >= classes):
            limit = f"0..{classes - 1} (classes={classes})" if classes is not None else ">= 0"
            problems.append(Problem(where, "class id out of range", f"class id {cid}, expected {limit}"))
            continue
        if w <= 0 or h <= 0:
            problems.append(Problem(where, "empty box", f"w={w:g}, h={h:g}: expected > 0"))
            continue
        row = [float(cid), x, y, w, h]
        if not all(0 <= v <= 1 for v in (x, y, w, h)):
            hint = ""
            if size is not None and all(v >= 0 for v in (x, y, w, h)) and x / size[0] <= 1 and w / size[0] <= 1 \
                    and y / size[1] <= 1 and h / size[1] <= 1:
                hint = f"; looks like pixels (the image is {size[0]}x{size[1]}): expected fractions of the image size"
                fixed.append([float(cid), x / size[0], y / size[1], w / size[0], h / size[1]])
            problems.append(Problem(where, "outside [0, 1]", f"x={x:g} y={y:g} w={w:g} h={h:g}{hint}"))
            continue
        key = tuple(row)
        if key in seen:
            problems.append(Problem(where, "duplicate row", f"'{line.strip()[:60]}' repeats an earlier row",
                                    blocking=False))
            continue
        seen.add(key)
        kept.append(row)
        fixed.append(row)
    return np.asarray(kept, np.float32).reshape(-1, 5), np.asarray(fixed, np.float32).reshape(-1, 5)


def _lists(source: PathLike, classes: Optional[int],
           problems: list[Problem]) -> tuple[dict[str, list[str]], DataConfig]:
    """{split: image paths} of a .data file or a folder of images (`open_data`), and its DataConfig."""
    dc = open_data(source, classes)
    if dc.folder:
        return {"train": image_list(source)}, dc
    splits: dict[str, list[str]] = {}
    for split, lst in (("train", dc.train), ("valid", dc.valid)):
        if lst is None:
            continue
        if split == "valid" and dc.train and os.path.abspath(lst) == os.path.abspath(dc.train):
            problems.append(Problem(dc.file, "valid is the train list", f"valid = {lst}: map would measure the "
                                    "training images", blocking=False))
            continue
        try:
            splits[split] = image_list(lst)
        except DataError as e:
            problems.append(Problem(dc.file, "missing list", str(e)))
    return splits, dc


def check_dataset(source: PathLike, classes: Optional[int] = None, progress: bool = True) -> DatasetCheck:
    """Read a .data file (or a folder of images with labels beside them) as train and map do and report every
    problem. `classes` overrides the .data file's (a folder has none: then the names file's count, if any)."""
    problems: list[Problem] = []
    splits, dc = _lists(source, classes, problems)
    names_file, data_file = dc.names, None if dc.folder else dc.file
    names: list[str] = []
    if names_file:
        try:
            names = read_names(names_file)
        except DarkcfgError as e:
            why = str(e).split(": ", 1)[-1]
            problems.append(Problem(dc.file, "missing names file", f"names = {names_file}: {why}"))
    classes = dc.classes if dc.classes is not None else (len(names) or None)
    if names and classes is not None and len(names) != classes:
        problems.append(Problem(names_file or str(source), "names vs classes",
                                f"{len(names)} names, classes={classes}"))
    entries: list[ImageEntry] = []
    total = sum(len(v) for v in splits.values())
    done: dict[str, ImageEntry] = {}  # a path listed twice is read (and its problems reported) once
    with Progress(total, "check", unit="img", enabled=progress and total > 1) as bar:
        for split, paths in splits.items():
            for path in paths:
                if path in done:
                    first = done[path]
                    e = dataclasses.replace(first, split=split)
                else:
                    e = done[path] = _check_image(split, path, classes, problems)
                entries.append(e)
                bar.update(1)
    _duplicates(entries, problems)
    return DatasetCheck(str(source), classes, names, entries, problems, data_file, names_file)


def _check_image(split: str, path: str, classes: Optional[int], problems: list[Problem]) -> ImageEntry:
    e = ImageEntry(split, path)
    if not os.path.isfile(path):
        problems.append(Problem(path, "missing image", f"listed in {split} but no such file"))
        return e
    raw = Path(path).read_bytes()
    e.digest = hashlib.sha1(raw).hexdigest()
    try:
        check_image_bytes(raw, path)
    except PixelLimitError as err:
        problems.append(Problem(path, "image too large", str(err).removeprefix(f"{path}: ")))
        return e
    except ImageError:
        pass  # said below, as OpenCV's decode fails on it
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED) if raw else None
    if img is None:
        problems.append(Problem(path, "unreadable image", f"not an image OpenCV can decode ({len(raw)} bytes)"))
        return e
    e.size = (img.shape[1], img.shape[0])
    lp = label_file(path)
    e.has_labels = os.path.isfile(lp)
    if e.has_labels:
        e.rows, e.repaired = check_label_file(lp, classes, e.size, problems)
    return e


def _duplicates(entries: list[ImageEntry], problems: list[Problem]) -> None:
    first: dict[str, ImageEntry] = {}
    for e in entries:
        if not e.digest:
            continue
        if e.digest in first:
            f = first[e.digest]
            if f.split != e.split:
                same = "listed in both" if f.path == e.path else f"the same image as {f.path} ({f.split})"
                problems.append(Problem(e.path, "in train and valid", f"{same}: map would measure a training image",
                                        blocking=False))
            else:
                problems.append(Problem(e.path, "duplicate image", f"the same content as {f.path}", blocking=False))
        else:
            first[e.digest] = e


@dataclass
class CleanCopy:
    """What `write_clean` wrote: the new .data file, lists and the number of images and label rows."""

    data_file: Path
    images: int
    rows: int


def dataset_sources(check: DatasetCheck) -> Sources:
    """Every file the check read: the .data file, its lists and names file, each image and label file."""
    sources = Sources([f for f in (check.data_file, check.names_file) if f])
    if check.data_file:
        try:
            dc = open_data(check.data_file)
            for lst in (dc.train, dc.valid):
                if lst:
                    sources.add(lst)
        except DarkcfgError:
            pass
    for e in check.images:
        sources.add(e.path)
        sources.add(label_file(e.path))
    return sources


def check_new_folder(out: PathLike) -> Path:
    """`out` when it is a new or empty folder (for a cleaned copy), else a one-line DataError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file: give a new folder for the cleaned copy")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: folder exists and is not empty: give a new folder for the cleaned copy")
    return out


def write_clean(check: DatasetCheck, out: PathLike, classes: int, names: list[str],
                sources: Optional[Sources] = None) -> CleanCopy:
    """A cleaned copy of the dataset in the new folder `out`: every readable image hard-linked (else copied) with
    its repaired label file beside it (bad rows dropped, pixel rows made relative, duplicate rows removed),
    duplicate images and images of valid that are also in train left out, a names file, list files and a
    .data file. The user's files are not changed: `sources` (default: `dataset_sources(check)`) is what no
    destination may be, and every destination is checked before the first is written."""
    from darkcfg.data.annotations import label_line, labels_beside

    out = check_new_folder(out)
    sources = sources if sources is not None else dataset_sources(check)
    seen: dict[str, str] = {}
    taken: set[str] = set()
    planned: list[tuple[ImageEntry, Path, Path]] = []
    for e in check.images:
        if e.size is None or (e.digest in seen):
            continue
        seen[e.digest] = e.split
        src = Path(e.path)
        stem, k = src.stem, 1
        while f"{e.split}/{stem}" in taken:
            k += 1
            stem = f"{src.stem}_{k}"
        taken.add(f"{e.split}/{stem}")
        dest = out / e.split / f"{stem}{src.suffix}"
        planned.append((e, dest, labels_beside(dest)))
    names_file, data_file = out / "clean.names", out / "clean.data"
    lists_files = [out / f"{split}.txt" for split in dict.fromkeys(e.split for e, _, _ in planned)]
    for e, dest, label in planned:
        sources.check_dest(dest, allow=e.path)
        sources.check_dest(label)
    for f in [names_file, data_file, *lists_files]:
        sources.check_dest(f)
    lists: dict[str, list[str]] = {}
    rows = 0
    for e, dest, label in planned:
        link_or_copy(e.path, dest, sources)
        fixed = e.repaired[e.repaired[:, 0] < classes]
        write_text(label, "".join(label_line(int(r[0]), *map(float, r[1:])) for r in fixed), sources=sources)
        rows += len(fixed)
        lists.setdefault(e.split, []).append(str(dest.resolve()))
    out.mkdir(parents=True, exist_ok=True)
    write_text(names_file, "".join(f"{n}\n" for n in (names + [str(i) for i in range(len(names), classes)])[:classes]),
               sources=sources)
    text = f"classes = {classes}\n"
    for split, paths in lists.items():
        lst = out / f"{split}.txt"
        write_text(lst, "".join(p + "\n" for p in paths), sources=sources)
        text += f"{split} = {lst.resolve()}\n"
    text += f"names = {names_file.resolve()}\nbackup = {(out / 'backup').resolve()}/\n"
    write_text(data_file, text, sources=sources)
    return CleanCopy(data_file, sum(len(v) for v in lists.values()), rows)
