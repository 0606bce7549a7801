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
"""
from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from darkcfg.data.dataset import DataError, image_list, label_file, label_path, read_labels
from darkcfg.data.images import read_bgr
from darkcfg.files import write_text

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
    return f"{cid} {x:.9g} {y:.9g} {w:.9g} {h:.9g}\n"


def _link(src: Path, dest: Path) -> None:
    """dest: a hard link to src where possible (no copy of the pixels), else a copy."""
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


class _YoloWriter:
    """Writes the output folder of a conversion to YOLO."""

    def __init__(self, out: PathLike, name: str) -> None:
        self.out, self.name = Path(out), name
        self.images_dir = self.out / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.list: list[str] = []
        self.image_ids: dict[str, int] = {}
        self.result = Converted()
        self._stems: set[str] = set()

    def add(self, src: Path, rows: list[tuple[int, float, float, float, float]], image_id: Optional[int]) -> None:
        stem, k = src.stem, 1
        while stem in self._stems:  # two sources with one name: keep both
            k += 1
            stem = f"{src.stem}_{k}"
        self._stems.add(stem)
        dest = self.images_dir / f"{stem}{src.suffix}"
        _link(src, dest)
        write_text(label_path(str(dest)), "".join(label_line(*r) for r in rows))
        self.list.append(str(dest.resolve()))
        if image_id is not None:
            self.image_ids[dest.name] = image_id
        self.result.images += 1
        self.result.boxes += len(rows)

    def finish(self, names: list[str], categories: list[Union[int, str]]) -> Converted:
        names_file, list_file, data_file = (self.out / f"{self.name}{ext}" for ext in (".names", ".txt", ".data"))
        write_text(names_file, "".join(n + "\n" for n in names))
        write_text(list_file, "".join(p + "\n" for p in self.list))
        write_text(data_file, f"classes = {len(names)}\ntrain = {list_file.resolve()}\nvalid = {list_file.resolve()}\n"
                              f"names = {names_file.resolve()}\nbackup = {(self.out / 'backup').resolve()}/\n")
        ids = {"categories": categories, "images": self.image_ids}
        write_text(self.out / IDS_FILE, json.dumps(ids, indent=1) + "\n")
        self.result.files = [data_file, names_file, list_file, self.out / IDS_FILE]
        return self.result


def _find_image(images_dir: Path, file_name: str) -> Optional[Path]:
    for cand in (images_dir / file_name, images_dir / Path(file_name).name):
        if cand.is_file():
            return cand
    return None


def coco_to_yolo(instances: PathLike, images_dir: PathLike, out: PathLike, name: str = "coco") -> Converted:
    """A COCO instances JSON + its image folder -> a YOLO dataset in `out` (module docstring). Class k is the
    k-th category by id; crowd annotations and boxes without area are left out (as COCO's own training
    conversions do), each counted in `skipped`."""
    path = Path(instances)
    try:
        gt = json.loads(path.read_text(encoding="utf-8"))
        cats = sorted(gt["categories"], key=lambda c: c["id"])
        images, anns = gt["images"], gt.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a COCO instances file ({type(e).__name__}: {e})") from None
    cls = {c["id"]: k for k, c in enumerate(cats)}
    by_image: dict[int, list[dict]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    w = _YoloWriter(out, name)
    for im in images:
        src = _find_image(Path(images_dir), im["file_name"])
        if src is None:
            w.result.skipped.append(f"{im['file_name']}: image not found in {images_dir}")
            continue
        iw, ih = float(im["width"]), float(im["height"])
        rows = []
        for a in by_image.get(im["id"], []):
            x, y, bw, bh = (float(v) for v in a["bbox"])
            if a.get("iscrowd", 0) or bw <= 0 or bh <= 0 or a["category_id"] not in cls:
                w.result.skipped.append(f"{im['file_name']}: annotation {a.get('id')}: crowd, empty or of an "
                                        "unknown category")
                continue
            rows.append((cls[a["category_id"]], (x + bw / 2) / iw, (y + bh / 2) / ih, bw / iw, bh / ih))
        w.add(src, rows, int(im["id"]))
    return w.finish([c["name"] for c in cats], [c["id"] for c in cats])


def read_voc(xml_path: PathLike) -> tuple[str, int, int, list[tuple[str, float, float, float, float, bool]]]:
    """One VOC annotation -> (image file name, width, height, objects (name, xmin, ymin, xmax, ymax, difficult))."""
    p = Path(xml_path)
    try:
        root = ET.parse(p).getroot()
        size = root.find("size")
        width, height = int(float(size.findtext("width"))), int(float(size.findtext("height")))  # type: ignore[union-attr,arg-type]
        objects = []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            vals = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr,arg-type]
            objects.append((obj.findtext("name", "").strip(), *vals, obj.findtext("difficult", "0").strip() == "1"))
        return root.findtext("filename", p.stem + ".jpg").strip(), width, height, objects
    except (OSError, ET.ParseError, AttributeError, TypeError, ValueError) as e:
        raise DataError(f"{p}: not a Pascal VOC annotation ({type(e).__name__}: {e})") from None


def voc_to_yolo(annotations: PathLike, images_dir: PathLike, out: PathLike, names: Optional[list[str]] = None,
                name: str = "voc") -> Converted:
    """A folder of VOC XML files + its image folder -> a YOLO dataset in `out`. Classes: `names` in that order
    (objects of other classes are left out, as voc_label.py), else every name found, sorted."""
    xmls = sorted(Path(annotations).glob("*.xml"))
    if not xmls:
        raise DataError(f"{annotations}: no .xml annotation files")
    parsed = [(x, read_voc(x)) for x in xmls]
    if names is None:
        names = sorted({o[0] for _, (_, _, _, objs) in parsed for o in objs})
    index = {n: k for k, n in enumerate(names)}
    w = _YoloWriter(out, name)
    for x, (file_name, iw, ih, objs) in parsed:
        src = _find_image(Path(images_dir), file_name) or _find_image(Path(images_dir), x.stem + ".jpg")
        if src is None:
            w.result.skipped.append(f"{x}: image {file_name} not found in {images_dir}")
            continue
        rows = []
        for oname, x0, y0, x1, y1, difficult in objs:
            if oname not in index or difficult:
                w.result.skipped.append(f"{x}: object '{oname}'" + (" (difficult)" if difficult else " (not in names)"))
                continue
            rows.append((index[oname], ((x0 + x1) / 2 - 1) / iw, ((y0 + y1) / 2 - 1) / ih, (x1 - x0) / iw,
                         (y1 - y0) / ih))
        w.add(src, rows, None)
    return w.finish(list(names), list(names))


def yolo_to_coco(list_file: PathLike, names: list[str], out: PathLike, ids: Optional[PathLike] = None) -> Converted:
    """A YOLO list file or folder of images (labels by `label_file`) -> a COCO instances JSON at `out`. `ids`: an
    ids.json (default: the one beside the list file, when there) mapping classes to category ids and files to image
    ids."""
    paths = image_list(list_file)
    ids_path = Path(ids) if ids else Path(list_file).parent / IDS_FILE
    mapping = json.loads(ids_path.read_text(encoding="utf-8")) if ids_path.is_file() else {}
    cat_ids = mapping.get("categories", [])
    cat_ids = [c if isinstance(c, int) else k + 1 for k, c in enumerate(cat_ids)] or list(range(1, len(names) + 1))
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
    write_text(out, json.dumps(doc) + "\n")
    result.files = [Path(out)]
    return result
