"""Tiles of large images: their geometry (shared by tiled detection, `darkcfg.infer.tiles`) and a tiled copy of
a dataset for training (`tile_dataset`, `darkcfg data tile`).

Geometry (`axis_starts`, `grid_tiles`): tiles of `tile` pixels along an axis of `length` pixels are spread
evenly from one edge to the other: the first starts at 0, the last ends at the image's edge (shifted inward,
never padded), and every two neighbours overlap by at least ceil(overlap x tile) pixels (at most tile - 1), in
as few tiles as that takes. An image no larger than a tile along an axis is one tile of the image's extent there.

`tile_dataset` cuts every image of a dataset's train and valid lists into such tiles and writes a new,
self-contained dataset the way `data convert` does: `images/` (each tile an image file of the source's format,
JPEG at quality 95; named <source stem>_<x>_<y>), its label file beside it, the lists `train.txt` (and
`valid.txt` when the .data has a different valid list), `<name>.names`, `<name>.data`, and `tiles.json`, the
mapping back: for each tile file, its source image, the source's size and the tile's place (x, y, width,
height in pixels). Boxes are clipped to each tile and kept when at least `min_visible` of the box's area is
inside it (a box mapped back from a tile is the source box clipped to the tile, to the 9 digits of the label
files); tiles without boxes (also those of images without labels) are kept at the ratio `empty`: every 1/empty-th
one in list order (0: none, 1: all). The sources are never written: every destination is checked against what is
read before anything is written, and each file is written atomically.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np

from darkcfg.data.annotations import check_name, label_line, labels_beside
from darkcfg.data.dataset import DataError, image_list, label_file, open_data, read_labels
from darkcfg.data.images import read_bgr
from darkcfg.data.names import read_names
from darkcfg.files import Sources, write_bytes, write_text
from darkcfg.progress import Progress

PathLike = Union[str, Path]
MAX_TILES = 4096  # tiles of one image: 1-pixel tiles of a 4K frame are refused, not run
TILES_FILE = "tiles.json"


class Tile(NamedTuple):
    """A tile of an image: pixels x0 <= x < x1, y0 <= y < y1."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0


def axis_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Starts of the tiles along one axis of `length` pixels, tiles of `tile` pixels (<= length) overlapping by
    at least ceil(overlap * tile): evenly spread, the first at 0, the last at length - tile."""
    if tile >= length:
        return [0]
    stride = tile - min(math.ceil(overlap * tile), tile - 1)  # the longest step that keeps the overlap
    n = -(-(length - tile) // stride) + 1
    return [(i * (length - tile)) // (n - 1) for i in range(n)]


def grid_tile(length: int, count: int, overlap: float) -> int:
    """The smallest tile length with which `count` tiles overlapping by >= ceil(overlap * tile) cover `length`."""
    if count <= 1:
        return length
    t = max(1, -(-length // count))
    while t < length and -(-(length - t) // (count - 1)) > t - min(math.ceil(overlap * t), t - 1):
        t += 1
    return min(t, length)


def grid_tiles(width: int, height: int, tile_w: int, tile_h: int, overlap: float) -> list[Tile]:
    """The tiles of tile_w x tile_h pixels (each clipped to the image) of a width x height image, row by row;
    a DataError when there would be more than MAX_TILES."""
    tw, th = min(tile_w, width), min(tile_h, height)
    xs, ys = axis_starts(width, tw, overlap), axis_starts(height, th, overlap)
    if len(xs) * len(ys) > MAX_TILES:
        raise DataError(f"tiles: a {width}x{height} image in {tw}x{th} tiles with overlap {overlap:g} makes "
                        f"{len(xs) * len(ys)} tiles; the most is {MAX_TILES}: choose larger tiles")
    return [Tile(x, y, x + tw, y + th) for y in ys for x in xs]


def clip_labels(rows: np.ndarray, width: int, height: int, tile: Tile, min_visible: float) -> np.ndarray:
    """Label rows (N, 5) (class, cx, cy, w, h relative to a width x height image) -> the rows of `tile`:
    (M, 5), boxes clipped to the tile, relative to it, for the boxes of which at least `min_visible` of the
    area is inside (and some is)."""
    b = rows[:, 1:].astype(np.float64) * [width, height, width, height]  # (N, 4) pixels
    x0, y0 = b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2
    x1, y1 = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    cx0, cy0 = np.maximum(x0, tile.x0), np.maximum(y0, tile.y0)
    cx1, cy1 = np.minimum(x1, tile.x1), np.minimum(y1, tile.y1)
    inside = np.clip(cx1 - cx0, 0, None) * np.clip(cy1 - cy0, 0, None)
    area = b[:, 2] * b[:, 3]
    keep = (inside > 0) & (inside >= min_visible * area)
    out = np.stack([rows[:, 0].astype(np.float64), ((cx0 + cx1) / 2 - tile.x0) / tile.w,
                    ((cy0 + cy1) / 2 - tile.y0) / tile.h, (cx1 - cx0) / tile.w, (cy1 - cy0) / tile.h], 1)
    return out[keep]


@dataclass
class TiledSet:
    """What `tile_dataset` wrote: source images, tiles (of which without boxes), boxes, box parts left out
    (less visible than min_visible), tiles without boxes left out, and the files (.data first)."""

    images: int = 0
    tiles: int = 0
    empty: int = 0
    boxes: int = 0
    dropped: int = 0
    empty_skipped: int = 0
    files: list[Path] = field(default_factory=list)


class _Planned(NamedTuple):
    source: str
    size: tuple[int, int]
    tile: Tile
    dest: Path
    rows: np.ndarray  # (M, 5) class, cx, cy, w, h relative to the tile


def tile_dataset(data: PathLike, out: PathLike, size: tuple[int, int], overlap: float = 0.2,
                 min_visible: float = 0.25, empty: float = 0.1, name: Optional[str] = None,
                 progress: bool = True) -> TiledSet:
    """A tiled copy of DATA (a .data file or a folder of images with labels) in `out` (module docstring):
    tiles of size (width, height) pixels overlapping by `overlap` (a fraction of the tile), boxes kept where
    at least `min_visible` of their area is in the tile, tiles without boxes kept at the ratio `empty`.
    `name`: base name of the .data and .names files (default: DATA's own name)."""
    tw, th = size
    if tw < 1 or th < 1:
        raise DataError(f"--size {tw}x{th}: expected a tile size in pixels, e.g. 416 or 640x480")
    if not 0 <= overlap < 1:
        raise DataError(f"--overlap {overlap:g}: expected a fraction of the tile in [0, 1)")
    if not 0 <= min_visible <= 1 or not 0 <= empty <= 1:
        raise DataError(f"--min-visible {min_visible:g}, --empty {empty:g}: expected fractions in [0, 1]")
    dc = open_data(data)
    name = check_name(name or Path(dc.file).stem or "tiles")
    names = read_names(dc.names) if dc.names and Path(dc.names).is_file() else None
    classes = dc.classes or (len(names) if names else None)
    splits = {"train": image_list(dc.train)} if dc.train else {}
    if dc.valid and dc.valid != dc.train:
        splits["valid"] = image_list(dc.valid)
    if not any(splits.values()):
        raise DataError(f"{dc.file}: no images in its train or valid list")
    out = Path(out)
    sources = Sources([p for p in (dc.file, dc.train, dc.valid, dc.names) if p and Path(p).is_file()])
    images = list(dict.fromkeys(p for paths in splits.values() for p in paths))
    for p in images:
        sources.add(p)
        sources.add(label_file(p))
    for folder in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in images):
        sources.add_folder(folder)  # the user's image folders: nothing is written among their files
    images_dir = out / "images"
    sources.check_folder(images_dir, "the output's images/ folder")
    for f in [*(out / f"{s}.txt" for s in splits), out / f"{name}.names", out / f"{name}.data", out / TILES_FILE]:
        sources.check_dest(f)  # before anything is written
    result = TiledSet()
    top_class = -1
    tiles_of: dict[str, list[str]] = {}
    mapping: dict[str, dict] = {}
    stems: set[str] = set()
    empty_seen = 0
    with Progress(len(images), "tile", unit="img", enabled=progress) as bar:
        for p in images:
            bgr = read_bgr(p)
            h, w = bgr.shape[:2]
            rows = read_labels(label_file(p), classes)
            top_class = max(top_class, int(rows[:, 0].max()) if len(rows) else -1)
            stem, k = Path(p).stem, 1
            while stem in stems:  # two sources with one name: keep both
                k += 1
                stem = f"{Path(p).stem}_{k}"
            stems.add(stem)
            ext = Path(p).suffix.lower() or ".png"
            planned = []
            for t in grid_tiles(w, h, tw, th, overlap):
                kept = clip_labels(rows, w, h, t, min_visible)
                result.dropped += len(clip_labels(rows, w, h, t, 0.0)) - len(kept)
                if not len(kept):
                    empty_seen += 1
                    if math.floor(empty_seen * empty) == math.floor((empty_seen - 1) * empty):
                        result.empty_skipped += 1
                        continue
                planned.append(_Planned(p, (w, h), t, images_dir / f"{stem}_{t.x0}_{t.y0}{ext}", kept))
            tiles_of[p] = _write(planned, bgr, sources, result, mapping)
            result.images += 1
            bar.update(1)
    return _finish(out, name, splits, tiles_of, names, classes or top_class + 1, mapping, sources, result)


def _write(planned: Sequence[_Planned], bgr: np.ndarray, sources: Sources, result: TiledSet,
           mapping: dict[str, dict]) -> list[str]:
    """Write one image's planned tiles (image file and label file, atomically): their paths."""
    import cv2

    written = []
    for tp in planned:
        label = labels_beside(tp.dest)
        sources.check_dest(tp.dest)
        sources.check_dest(label)
        t = tp.tile
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if tp.dest.suffix in (".jpg", ".jpeg") else []
        ok, buf = cv2.imencode(tp.dest.suffix, bgr[t.y0:t.y1, t.x0:t.x1], params)
        if not ok:
            raise DataError(f"{tp.dest}: OpenCV cannot write {tp.dest.suffix} images")
        write_bytes(tp.dest, buf.tobytes(), sources=sources)
        write_text(label, "".join(label_line(int(r[0]), *r[1:]) for r in tp.rows), sources=sources)
        mapping[tp.dest.name] = {"source": str(Path(tp.source).resolve()), "width": tp.size[0],
                                 "height": tp.size[1], "x": t.x0, "y": t.y0, "w": t.w, "h": t.h}
        written.append(str(tp.dest.resolve()))
        result.tiles += 1
        result.boxes += len(tp.rows)
        result.empty += not len(tp.rows)
    return written


def _finish(out: Path, name: str, splits: dict[str, list[str]], tiles_of: dict[str, list[str]],
            names: Optional[list[str]], classes: int, mapping: dict[str, dict], sources: Sources,
            result: TiledSet) -> TiledSet:
    """The lists, names, .data and tiles.json of a tiled set."""
    if names is None:
        names = [str(c) for c in range(max(1, classes))]
    lists = {}
    for split, paths in splits.items():
        lists[split] = out / f"{split}.txt"
        write_text(lists[split], "".join(t + "\n" for p in paths for t in tiles_of.get(p, [])), sources=sources)
    names_file, data_file = out / f"{name}.names", out / f"{name}.data"
    write_text(names_file, "".join(n + "\n" for n in names), sources=sources)
    train = lists.get("train", lists.get("valid"))
    assert train is not None
    write_text(data_file, f"classes = {len(names)}\ntrain = {train.resolve()}\n"
                          f"valid = {lists.get('valid', train).resolve()}\nnames = {names_file.resolve()}\n"
                          f"backup = {(out / 'backup').resolve()}/\n", sources=sources)
    tiles_file = out / TILES_FILE
    write_text(tiles_file, json.dumps(mapping, indent=1) + "\n", sources=sources)
    result.files = [data_file, names_file, *lists.values(), tiles_file]
    return result
