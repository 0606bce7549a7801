"""Dataset conversions: COCO instances JSON -> Darknet (YOLO) labels, Pascal VOC XML -> the same, and YOLO labels
-> a COCO instances JSON (what `darkcfg map --coco-gt` reads).

A YOLO dataset written here is self-contained in its output folder: `images/` (the images, hard-linked where
the file system allows, else copied; the sources are never changed) with one label file beside each
(`class x y w h`, relative centre and size, 9 significant digits), `<name>.names`, the list file `<name>.txt`,
a `<name>.data` naming them, and `ids.json`, the explicit mapping back: class index -> the source's category
id (COCO) or name (VOC), and image file -> its COCO image id. YOLO -> COCO reads `ids.json` when it is there,
so COCO -> YOLO -> COCO keeps the image and category ids; without it images are numbered from 1 in list order
and class k becomes category k + 1.

Box conventions: COCO `bbox` is [x, y, w, h] in pixels from the top-left corner; VOC `bndbox` is 1-based
pixel corners, converted as the reference's scripts/voc_label.py does (centre = (min + max) / 2 - 1, size =
max - min, divided by the image size); objects marked `difficult` are left out as there.

What is refused and what is skipped. Every input is read and checked, and every destination checked against
what the conversion reads (`darkcfg.files.Sources`), before anything is written. A one-line DataError naming
the file and the record (`images[3] (id 7)`, `annotations[0]`, the .xml file) for: a malformed record (a key
missing, a value of the wrong type, an image size that is not a positive number, a bbox that is not four
numbers, a repeated id), a file name that leaves `--images` (absolute, or with a `..` part: an annotation file
names images inside their folder, never a file elsewhere such as a private key), a `--name` that is not a
plain file name, an output whose `images/` is (or is inside) the images folder, and a destination that is a
file the conversion reads (also through a symlink or a hard link). Skipped and counted in `Converted.skipped`,
as COCO's and voc_label.py's conversions leave them out: crowd annotations, boxes without area or with a
non-finite value (NaN, inf), objects of unknown classes, `difficult` objects, annotations of an image id that
is not in `images`, categories and objects whose name is empty or has a line break (a names file holds one
name a line), and images not found in `--images`.
"""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Optional, Union

import numpy as np

from darkcfg.data.dataset import DataError, image_list, label_file, label_path, read_labels
from darkcfg.data.images import read_bgr
from darkcfg.files import Sources, link_or_copy, write_text

PathLike = Union[str, Path]
IDS_FILE = "ids.json"


@dataclass
class Converted:
    """What a conversion wrote: images, boxes, objects left out (with why), and the files."""

    images: int = 0
    boxes: int = 0
    skipped: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def label_line(cid: int, x: float, y: float, w: float, h: float) -> str:
    """One Darknet label row: `class x y w h` (relative centre and size, 9 significant digits)."""
    return f"{cid} {x:.9g} {y:.9g} {w:.9g} {h:.9g}\n"


def labels_beside(image: PathLike) -> Path:
    """Where a dataset written by darkcfg keeps an image's labels: the .txt beside it, inside the new folder
    whatever the path above it holds (`label_path` would send an image under `/JPEGImages/` to a sibling
    `labels/` folder). A DataError when `label_path`'s file exists elsewhere: readers would take that one."""
    beside = Path(os.path.splitext(os.fspath(image))[0] + ".txt")
    other = Path(label_path(os.fspath(image)))
    if other != beside and other.exists():
        raise DataError(f"{other}: exists, and readers would take it for {image} instead of {beside}: choose an "
                        "output folder whose path has no /JPEGImages/ or /images/train2017/ (or similar) in it")
    return beside


def check_name(name: str) -> str:
    """`name` when it is a plain file name (the base name of the .data, .names and list files), else a
    DataError: no folder part, not '.' or '..', no line break."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or any(c in name for c in "\r\n\0")
            or os.path.basename(name) != name):
        raise DataError(f"--name {name!r}: expected a plain file name (no folder, no '..'), e.g. coco")
    return name


def bad_class_name(name: str) -> Optional[str]:
    """Why a class name cannot go into a names file (None when it can)."""
    if not name.strip():
        return "empty name"
    if "\n" in name or "\r" in name:
        return "name has a newline"
    return None


def _link(src: Path, dest: Path, sources: Optional[Sources] = None) -> None:
    """dest: a hard link to src where possible (no copy of the pixels), else a copy; never unlinks a dest that
    is src itself (`darkcfg.files.link_or_copy`)."""
    link_or_copy(src, dest, sources)


class _YoloWriter:
    """Writes the output folder of a conversion to YOLO: `add` plans each image, `finish` checks every
    destination against `sources` and only then writes."""

    def __init__(self, out: PathLike, name: str, sources: Sources) -> None:
        self.out, self.name = Path(out), check_name(name)
        self.images_dir = self.out / "images"
        self.sources = sources
        sources.check_folder(self.images_dir, "the output's images/ folder")
        self.planned: list[tuple[Path, Path, list[tuple[int, float, float, float, float]], Optional[int]]] = []
        self.result = Converted()
        self._stems: set[str] = set()

    def add(self, src: Path, rows: list[tuple[int, float, float, float, float]], image_id: Optional[int]) -> None:
        self.sources.add(src)
        stem, k = src.stem, 1
        while stem in self._stems:  # two sources with one name: keep both
            k += 1
            stem = f"{src.stem}_{k}"
        self._stems.add(stem)
        self.planned.append((src, self.images_dir / f"{stem}{src.suffix}", rows, image_id))

    def finish(self, names: list[str], categories: list[Union[int, str]]) -> Converted:
        names_file, list_file, data_file = (self.out / f"{self.name}{ext}" for ext in (".names", ".txt", ".data"))
        ids_file = self.out / IDS_FILE
        labels = [labels_beside(dest) for _, dest, _, _ in self.planned]
        for (src, dest, _, _), label in zip(self.planned, labels):  # everything checked before anything is written
            self.sources.check_dest(dest, allow=src)
            self.sources.check_dest(label)
        for f in (names_file, list_file, data_file, ids_file):
            self.sources.check_dest(f)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        listed, image_ids = [], {}
        for (src, dest, rows, image_id), label in zip(self.planned, labels):
            _link(src, dest, self.sources)
            write_text(label, "".join(label_line(*r) for r in rows), sources=self.sources)
            listed.append(str(dest.resolve()))
            if image_id is not None:
                image_ids[dest.name] = image_id
            self.result.images += 1
            self.result.boxes += len(rows)
        write_text(names_file, "".join(n + "\n" for n in names), sources=self.sources)
        write_text(list_file, "".join(p + "\n" for p in listed), sources=self.sources)
        write_text(data_file, f"classes = {len(names)}\ntrain = {list_file.resolve()}\nvalid = {list_file.resolve()}\n"
                              f"names = {names_file.resolve()}\nbackup = {(self.out / 'backup').resolve()}/\n",
                   sources=self.sources)
        ids = {"categories": categories, "images": image_ids}
        write_text(ids_file, json.dumps(ids, indent=1) + "\n", sources=self.sources)
        self.result.files = [data_file, names_file, list_file, ids_file]
        return self.result


def inside_images(file_name: str, images_dir: PathLike, where: str) -> str:
    """`file_name` from an annotation when it names a file inside the images folder (relative, no `..` part),
    else a DataError naming the record `where`."""
    posix = PurePosixPath(file_name.replace("\\", "/"))
    if (os.path.isabs(file_name) or posix.is_absolute() or PureWindowsPath(file_name).drive or ".." in posix.parts
            or not file_name.strip()):
        raise DataError(f"{where}: file name '{file_name}' is outside --images {images_dir}: expected a path "
                        "relative to that folder, without '..'")
    return file_name


def _find_image(images_dir: Path, file_name: str) -> Optional[Path]:
    for cand in (images_dir / file_name, images_dir / Path(file_name).name):
        if cand.is_file():
            return cand
    return None


def _kind(v: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Records:
    """The records of one COCO file, each checked with the place it came from (`file: key[k] (id N)`)."""

    def __init__(self, path: Path, doc: dict, key: str, required: bool) -> None:
        self.path, self.key = path, key
        value = doc.get(key)
        if value is None and not required:
            value = []
        if value is None:
            raise DataError(f"{path}: not a COCO instances file: no '{key}'")
        if not isinstance(value, list):
            raise DataError(f"{path}: '{key}' is {_kind(value)}, expected a list")
        self.items = value

    def where(self, k: int) -> str:
        rec = self.items[k]
        rid = rec.get("id") if isinstance(rec, dict) else None
        return f"{self.path}: {self.key}[{k}]" + (f" (id {rid})" if isinstance(rid, (int, str)) else "")

    def record(self, k: int) -> dict:
        rec = self.items[k]
        if not isinstance(rec, dict):
            raise DataError(f"{self.where(k)}: is {_kind(rec)}, expected an object")
        return rec

    def get(self, k: int, key: str, check: Any, expected: str) -> Any:
        rec = self.record(k)
        if key not in rec:
            raise DataError(f"{self.where(k)}: no '{key}' (expected {expected})")
        v = rec[key]
        if not check(v):
            raise DataError(f"{self.where(k)}: '{key}' is {json.dumps(v)[:40]}, expected {expected}")
        return v


def _is_id(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_size(v: object) -> bool:
    return _is_number(v) and math.isfinite(v) and v > 0  # type: ignore[arg-type]


def _is_bbox(v: object) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(_is_number(x) for x in v)


def coco_to_yolo(instances: PathLike, images_dir: PathLike, out: PathLike, name: str = "coco") -> Converted:
    """A COCO instances JSON + its image folder -> a YOLO dataset in `out` (module docstring: what is refused,
    what is skipped and counted). Class k is the k-th category by id (of those with a usable name); crowd
    annotations and boxes without area or with a non-finite value are left out (as COCO's own training
    conversions do), each counted in `skipped`."""
    path = Path(instances)
    check_name(name)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a COCO instances file ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a COCO instances file: the JSON is {_kind(doc)}, expected an object")
    cat_recs, img_recs = _Records(path, doc, "categories", True), _Records(path, doc, "images", True)
    ann_recs = _Records(path, doc, "annotations", False)
    skipped: list[str] = []
    cats: list[tuple[int, str]] = []
    seen_cats: set[int] = set()
    for k in range(len(cat_recs.items)):
        cid = cat_recs.get(k, "id", _is_id, "an integer id")
        cname = cat_recs.get(k, "name", lambda v: isinstance(v, str), "a string")
        if cid in seen_cats:
            raise DataError(f"{cat_recs.where(k)}: id {cid} is repeated")
        seen_cats.add(cid)
        why = bad_class_name(cname)
        if why is not None:
            skipped.append(f"category {cid}: {why}; its annotations are left out")
            continue
        cats.append((cid, cname))
    cats.sort()
    cls = {cid: k for k, (cid, _) in enumerate(cats)}
    images: list[tuple[int, str, float, float]] = []
    for k in range(len(img_recs.items)):
        iid = img_recs.get(k, "id", _is_id, "an integer id")
        fname = img_recs.get(k, "file_name", lambda v: isinstance(v, str) and v.strip(), "a file name")
        iw = img_recs.get(k, "width", _is_size, "a positive number of pixels")
        ih = img_recs.get(k, "height", _is_size, "a positive number of pixels")
        inside_images(fname, images_dir, img_recs.where(k))
        images.append((iid, fname, float(iw), float(ih)))
    ids = [i for i, _, _, _ in images]
    if len(set(ids)) != len(ids):
        k = next(k for k, i in enumerate(ids) if ids.index(i) != k)
        raise DataError(f"{img_recs.where(k)}: id {ids[k]} is repeated")
    sizes = {i: (w, h) for i, _, w, h in images}
    by_image: dict[int, list[tuple[int, float, float, float, float]]] = {}
    for k in range(len(ann_recs.items)):
        aid = ann_recs.record(k).get("id")
        image_id = ann_recs.get(k, "image_id", _is_id, "an integer image id")
        category = ann_recs.get(k, "category_id", _is_id, "an integer category id")
        x, y, bw, bh = (float(v) for v in ann_recs.get(k, "bbox", _is_bbox, "[x, y, width, height]"))
        if image_id not in sizes:
            skipped.append(f"annotation {aid}: image_id {image_id} is not in images")
        elif not all(math.isfinite(v) for v in (x, y, bw, bh)):
            skipped.append(f"annotation {aid}: bbox {[x, y, bw, bh]} is not finite")
        elif ann_recs.items[k].get("iscrowd", 0) or bw <= 0 or bh <= 0 or category not in cls:
            skipped.append(f"annotation {aid}: crowd, empty or of an unknown or skipped category ({category})")
        else:
            iw, ih = sizes[image_id]
            by_image.setdefault(image_id, []).append(
                (cls[category], (x + bw / 2) / iw, (y + bh / 2) / ih, bw / iw, bh / ih))
    sources = Sources([path], folders=[images_dir])
    w = _YoloWriter(out, name, sources)
    w.result.skipped = skipped
    for iid, fname, _, _ in images:
        src = _find_image(Path(images_dir), fname)
        if src is None:
            skipped.append(f"{fname}: image not found in {images_dir}")
            continue
        w.add(src, by_image.get(iid, []), iid)
    return w.finish([n for _, n in cats], [c for c, _ in cats])


def _voc_size(root: ET.Element, p: Path, key: str) -> int:
    text = root.findtext(f"size/{key}")
    if text is None:
        raise DataError(f"{p}: no <size><{key}>: expected the image {key} in pixels")
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or int(v) <= 0:
        raise DataError(f"{p}: <size> {key} '{text.strip()}': expected a positive number of pixels")
    return int(v)


def read_voc(xml_path: PathLike) -> tuple[str, int, int, list[tuple[str, float, float, float, float, bool]]]:
    """One VOC annotation -> (image file name, width, height, objects (name, xmin, ymin, xmax, ymax, difficult)).
    A DataError naming the file when it is not XML, its size is not positive or an object has no readable
    bndbox; a coordinate may be NaN (the caller skips it)."""
    p = Path(xml_path)
    try:
        root = ET.parse(p).getroot()
    except (OSError, ET.ParseError) as e:
        raise DataError(f"{p}: not a Pascal VOC annotation ({type(e).__name__}: {e})") from None
    width, height = _voc_size(root, p, "width"), _voc_size(root, p, "height")
    objects = []
    for n, obj in enumerate(root.iter("object")):
        bb = obj.find("bndbox")
        try:
            vals = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr,arg-type]
        except (AttributeError, TypeError, ValueError):
            raise DataError(f"{p}: object {n} ('{obj.findtext('name', '').strip()}'): expected <bndbox> with numbers "
                            "xmin, ymin, xmax, ymax") from None
        objects.append((obj.findtext("name", "").strip(), *vals, obj.findtext("difficult", "0").strip() == "1"))
    return (root.findtext("filename") or p.stem + ".jpg").strip(), width, height, objects  # type: ignore[return-value]


def voc_to_yolo(annotations: PathLike, images_dir: PathLike, out: PathLike, names: Optional[list[str]] = None,
                name: str = "voc", names_file: Optional[PathLike] = None) -> Converted:
    """A folder of VOC XML files + its image folder -> a YOLO dataset in `out` (module docstring: what is
    refused, what is skipped and counted). Classes: `names` in that order (objects of other classes are left
    out, as voc_label.py), else every usable name found, sorted. `names_file`: where `names` came from (never
    written over)."""
    check_name(name)
    xmls = sorted(Path(annotations).glob("*.xml"))
    if not xmls:
        raise DataError(f"{annotations}: no .xml annotation files")
    parsed = [(x, read_voc(x)) for x in xmls]
    for x, (file_name, _, _, _) in parsed:
        inside_images(file_name, images_dir, str(x))
    if names is None:
        names = sorted({o[0] for _, (_, _, _, objs) in parsed for o in objs if bad_class_name(o[0]) is None})
    index = {n: k for k, n in enumerate(names)}
    sources = Sources(xmls + ([names_file] if names_file is not None else []), folders=[images_dir])
    w = _YoloWriter(out, name, sources)
    for x, (file_name, iw, ih, objs) in parsed:
        src = _find_image(Path(images_dir), file_name) or _find_image(Path(images_dir), x.stem + ".jpg")
        if src is None:
            w.result.skipped.append(f"{x}: image {file_name} not found in {images_dir}")
            continue
        rows = []
        for oname, x0, y0, x1, y1, difficult in objs:
            why = bad_class_name(oname)
            if why is not None:
                w.result.skipped.append(f"{x}: object {oname!r} ({why})")
            elif not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
                w.result.skipped.append(f"{x}: object '{oname}' (bndbox {[x0, y0, x1, y1]} is not finite)")
            elif oname not in index or difficult:
                w.result.skipped.append(f"{x}: object '{oname}'" + (" (difficult)" if difficult else " (not in names)"))
            elif x1 <= x0 or y1 <= y0:
                w.result.skipped.append(f"{x}: object '{oname}' (empty bndbox {[x0, y0, x1, y1]})")
            else:
                rows.append((index[oname], ((x0 + x1) / 2 - 1) / iw, ((y0 + y1) / 2 - 1) / ih, (x1 - x0) / iw,
                             (y1 - y0) / ih))
        w.add(src, rows, None)
    return w.finish(list(names), list(names))


def _read_ids(ids_path: Path) -> dict:
    """An ids.json: {"categories": [id or name, ...], "images": {file name: image id}}; a one-line DataError
    naming the file otherwise."""
    try:
        mapping = json.loads(ids_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{ids_path}: not an ids.json ({type(e).__name__}: {e})") from None
    expected = "expected an object with 'categories' (a list) and 'images' (file name -> image id)"
    if not isinstance(mapping, dict):
        raise DataError(f"{ids_path}: is {_kind(mapping)}, {expected}")
    cats, images = mapping.get("categories", []), mapping.get("images", {})
    if not isinstance(cats, list) or not isinstance(images, dict):
        raise DataError(f"{ids_path}: 'categories' is {_kind(cats)} and 'images' {_kind(images)}, {expected}")
    for file_name, image_id in images.items():
        if not _is_id(image_id):
            raise DataError(f"{ids_path}: images['{file_name}'] is {json.dumps(image_id)[:40]}, expected an integer "
                            "image id")
    return mapping


def yolo_to_coco(list_file: PathLike, names: list[str], out: PathLike, ids: Optional[PathLike] = None,
                 names_file: Optional[PathLike] = None) -> Converted:
    """A YOLO list file or folder of images (labels by `label_file`) -> a COCO instances JSON at `out`. `ids`: an
    ids.json (default: the one beside the list file, when there) mapping classes to category ids and files to image
    ids. `out` may be none of what is read: the list file, an image, a label file, the ids.json, `names_file`
    (a one-line SourceError before anything is read further)."""
    paths = image_list(list_file)
    ids_path = Path(ids) if ids else Path(list_file).parent / IDS_FILE
    sources = Sources([list_file] + ([names_file] if names_file is not None else []))
    for p in paths:
        sources.add(p)
        sources.add(label_file(p))
    if ids_path.is_file():
        sources.add(ids_path)
    sources.check_dest(out)
    mapping = _read_ids(ids_path) if ids_path.is_file() else {}
    cat_ids = mapping.get("categories", [])
    cat_ids = [c if _is_id(c) else k + 1 for k, c in enumerate(cat_ids)] or list(range(1, len(names) + 1))
    if len(cat_ids) < len(names):
        raise DataError(f"{ids_path}: {len(cat_ids)} categories for {len(names)} class names")
    image_ids: dict[str, int] = mapping.get("images", {})
    result = Converted()
    images, annotations = [], []
    used = set(image_ids.values())
    next_id = 1
    for p in paths:
        file_name = Path(p).name
        image_id = image_ids.get(file_name)
        if image_id is None:
            while next_id in used:
                next_id += 1
            image_id = next_id
            used.add(image_id)
        h, w = read_bgr(p).shape[:2]  # the size turns relative boxes into COCO's pixels
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for cid, cx, cy, bw, bh in read_labels(label_file(p), len(names)).astype(np.float64):
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": cat_ids[int(cid)], "bbox": box, "area": box[2] * box[3],
                                "iscrowd": 0})
        result.images += 1
    result.boxes = len(annotations)
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": cat_ids[k], "name": n} for k, n in enumerate(names)]}
    write_text(out, json.dumps(doc) + "\n", sources=sources)
    result.files = [Path(out)]
    return result
