"""Tiled detection of large images: the tiles of an image, their detections mapped back, and the seam merge.

A network sees its input at its [net] size; in a 4K frame resized to 416 x 416 a 15-pixel object is 2 pixels
and is never found. Tiled, the image is cut into overlapping tiles that each go through the network (the same
pre-processing, decode and NMS as a whole image), and their detections become one `DetectionArray` of the whole
image again, so printing, JSON, drawing, map and valid work unchanged.

Tiles (`Tiling`, `tile_plan`): `auto` (tiles of the network's size in image pixels: each tile is seen at its
native scale), a grid of rows x columns, or a tile size in pixels, with `overlap` (a fraction of the tile size,
default 0.2) between neighbours. Their geometry is `darkcfg.data.tile`'s (shared with `data tile`): along each
axis the tiles are spread evenly from one edge of the image to the other, the first at 0 and the last ending
at the image's edge (shifted inward, never padded), every two neighbours overlapping by at least
ceil(overlap x tile) pixels; an image no larger than a tile along an axis is one tile of its extent there.
`full`: the whole image is detected as well, resized as usual (one more network input), for objects larger
than a tile. A single tile is the whole image: the result is then exactly that of plain detection.

Back to one image (`merge_tiles`), each step in image pixels:
1. each tile's detections (after its own NMS) are mapped to the image: x = (tile.x0 + x_tile * tile.w) / W
   (float64, then float32; exact for a tile that is the whole image);
2. the seam merge. A box is *cut* on a side when that side lies within `seam_margin` (a fraction of the tile's
   size, default 0.1) of an inner edge of its tile (an edge that is not the image's border). Two boxes of
   different tiles (the full pass counts as a tile without inner edges) with the same best class are halves of
   one object when one of them is cut on a side the other's tile sees beyond, and their intersection over the
   smaller box, both clipped to the region the two tiles share, is above `seam_ios` (default 0.5): inside that
   region both tiles see the same pixels, so two views of one object coincide there, however much of it each
   tile holds. Halves are joined transitively (an object across three tiles is one group). A group becomes one
   box: each side from the surest member not cut on that side (the outermost when all are), class by class the
   largest probability of its members, and the largest objectness: one object seen twice is as sure as its
   surer view. Only detections whose best probability is above `merge_thresh` take part (default: the
   detector's threshold), so at a threshold T the boxes above T do not depend on the detections below it:
   `map --tiles` at --thresh T counts what `detect --tiles --thresh T` prints.
3. the cfg's NMS kind (nms_kind, beta_nms) across all tiles, at the detector's NMS threshold, which removes the
   duplicates of objects seen whole by two tiles (in their overlap) or by a tile and the full pass.
The merge runs before the cross-tile NMS: NMS first would let a cut half that is surer than the whole view
suppress it (a half can have IoU > 0.45 with the whole) and leave a partial box. Rows whose probabilities are
all 0 (suppressed) are left out of a tiled result.

Defaults, and why: overlap 0.2 (SAHI's default): at the native scale of `auto`, a tile of 416 overlaps its
neighbour by 84 pixels, so every object up to that size is whole in some tile and its cut views are merged
into it; seam_ios 0.5 (SAHI's match threshold, but applied only to cut boxes and only inside the shared
region, where two views of one object agree to a few pixels: distinct objects rarely cover half of each other
there); seam_margin 0.1: on the benchmark's images (scripts/bench_tiles.py, 128-pixel tiles) the box a tile
gives a cut object ends at the tile's edge for small objects (all within 0.02 of the tile), but for objects
larger than the tile it stops short, by 0.055 of the tile at the median and more than 0.1 for a third of them;
taken as whole, such a side wins the merged box and shrinks it (large-object AP50 45.6 at 0.05, 54.1 at 0.1,
58.2 at 0.15, small-object AP50 68.4, 68.5, 67.5), and a box wrongly taken as cut merges only with a box that
covers it in the shared region.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from darkcfg.data.tile import MAX_TILES, Tile, grid_tile, grid_tiles
from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.nms import nms_sort

F32, F64 = np.float32, np.float64
MAX_TILE_PIXELS = 64 * 416 * 416  # network input pixels in one forward of tiles (64 tiles of 416 x 416)
_SPEC = re.compile(r"^\s*(?:(auto)|(\d+)\s*[x*]\s*(\d+)|(\d+)(?:\s*[x*]\s*(\d+))?\s*px)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Tiling:
    """How images are tiled (module docstring).

    Args:
        grid: (rows, columns), or None.
        size: tile (width, height) in image pixels, or None; neither grid nor size: `auto`, tiles of the
            network's size.
        overlap: between neighbouring tiles, a fraction of the tile size in [0, 1).
        full: also detect on the whole image (for objects larger than a tile).
        seam_ios: a cut box joins its other half when their intersection over the smaller box, inside the
            region both tiles see, is above this (strict); 1 turns the seam merge off.
        seam_margin: a box side within this fraction of the tile's size from an inner tile edge is cut.
        merge_thresh: only detections whose best probability is above this are merged; None: the detector's
            threshold.
    """

    grid: Optional[tuple[int, int]] = None
    size: Optional[tuple[int, int]] = None
    overlap: float = 0.2
    full: bool = False
    seam_ios: float = 0.5
    seam_margin: float = 0.1
    merge_thresh: Optional[float] = None

    def __post_init__(self) -> None:
        if self.grid is not None and self.size is not None:
            raise DarkcfgError("tiles: give a grid or a tile size, not both")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise DarkcfgError(f"tiles: grid {self.grid}: expected (rows, columns), each at least 1")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise DarkcfgError(f"tiles: size {self.size}: expected (width, height) in pixels, each at least 1")
        if not 0 <= self.overlap < 1:
            raise DarkcfgError(f"tile overlap {self.overlap:g}: expected a fraction of the tile in [0, 1)")
        if not 0 <= self.seam_ios <= 1:
            raise DarkcfgError(f"seam IoS {self.seam_ios:g}: expected a value in [0, 1] (1: no seam merge)")
        if not 0 <= self.seam_margin < 0.5:
            raise DarkcfgError(f"seam margin {self.seam_margin:g}: expected a fraction of the tile in [0, 0.5)")

    @classmethod
    def parse(cls, spec: str, overlap: float = 0.2, full: bool = False, seam_ios: float = 0.5,
              seam_margin: float = 0.1, merge_thresh: Optional[float] = None) -> Tiling:
        """`auto`, `RxC` (a grid: rows x columns, e.g. 2x3) or a tile size in pixels (`640px`, `640x480px`),
        and the other fields -> a Tiling; a one-line DarkcfgError for anything else."""
        m = _SPEC.match(spec)
        if m is None:
            raise DarkcfgError(f"tiles '{spec}': expected auto, RxC (a grid of rows x columns, e.g. 2x3) or a tile "
                               "size in pixels (640px or 640x480px)")
        grid = (int(m.group(2)), int(m.group(3))) if m.group(2) else None
        size = (int(m.group(4)), int(m.group(5) or m.group(4))) if m.group(4) else None
        return cls(grid, size, overlap, full, seam_ios, seam_margin, merge_thresh)

    def with_merge_thresh(self, thresh: Optional[float]) -> Tiling:
        """The same tiling, merging seams among the detections above `thresh`."""
        return replace(self, merge_thresh=thresh)


def tile_plan(width: int, height: int, tiling: Tiling, net_w: int, net_h: int) -> list[Tile]:
    """The tiles of a width x height image (module docstring), row by row, plus the whole image last when
    `tiling.full` and there is more than one tile. A DarkcfgError when that would exceed MAX_TILES."""
    if tiling.grid is not None:
        rows, cols = min(tiling.grid[0], height), min(tiling.grid[1], width)  # at least one pixel per tile
        if rows * cols > MAX_TILES:
            raise DarkcfgError(f"tiles: a {rows}x{cols} grid is {rows * cols} tiles; the most is {MAX_TILES}")
        tw, th = grid_tile(width, cols, tiling.overlap), grid_tile(height, rows, tiling.overlap)
        xs = [(i * (width - tw)) // (cols - 1) for i in range(cols)] if cols > 1 else [0]
        ys = [(i * (height - th)) // (rows - 1) for i in range(rows)] if rows > 1 else [0]
        tiles = [Tile(x, y, x + tw, y + th) for y in dict.fromkeys(ys) for x in dict.fromkeys(xs)]
    else:
        tw, th = tiling.size if tiling.size is not None else (net_w, net_h)
        tiles = grid_tiles(width, height, tw, th, tiling.overlap)
    if tiling.full and len(tiles) > 1:
        tiles.append(Tile(0, 0, width, height))
    return tiles


def crop(image: np.ndarray, tile: Tile) -> np.ndarray:
    """A Darknet image (C, H, W) -> the tile's pixels (C, tile.h, tile.w), a view."""
    return image[:, tile.y0:tile.y1, tile.x0:tile.x1]


def to_image(boxes: np.ndarray, tile: Tile, width: int, height: int) -> np.ndarray:
    """boxes (N, 4) (cx, cy, w, h) relative to the tile -> (N, 4) relative to the width x height image,
    float32 (computed in float64: a tile that is the whole image gives back the same numbers)."""
    b = boxes.astype(F64)
    out = np.empty_like(b)
    out[:, 0] = (tile.x0 + b[:, 0] * tile.w) / width
    out[:, 1] = (tile.y0 + b[:, 1] * tile.h) / height
    out[:, 2] = b[:, 2] * tile.w / width
    out[:, 3] = b[:, 3] * tile.h / height
    return out.astype(F32)


def _xyxy(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) relative (cx, cy, w, h) -> (N, 4) float64 pixel corners (x0, y0, x1, y1)."""
    b = boxes.astype(F64)
    s = np.array([width, height, width, height], F64)
    return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1) * s


def cut_sides(xyxy: np.ndarray, rects: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """Which sides of each box are cut by an inner edge of its tile.

    Args:
        xyxy: (N, 4) pixel corners; rects: (N, 4) the (x0, y0, x1, y1) of each box's tile.
    Returns:
        (N, 4) bool: left, top, right, bottom.
    """
    mx = margin * (rects[:, 2] - rects[:, 0])  # (N,)
    my = margin * (rects[:, 3] - rects[:, 1])
    return np.stack([(rects[:, 0] > 0) & (xyxy[:, 0] <= rects[:, 0] + mx),
                     (rects[:, 1] > 0) & (xyxy[:, 1] <= rects[:, 1] + my),
                     (rects[:, 2] < width) & (xyxy[:, 2] >= rects[:, 2] - mx),
                     (rects[:, 3] < height) & (xyxy[:, 3] >= rects[:, 3] - my)], 1)


def seam_pairs(xyxy: np.ndarray, rects: np.ndarray, tile_of: np.ndarray, cut: np.ndarray, rows: np.ndarray,
               cols: np.ndarray, ios: float) -> np.ndarray:
    """Which (row, col) pairs are halves of one object (module docstring, step 2).

    Args:
        xyxy, rects, cut: (N, 4) boxes, their tiles and cut sides; tile_of: (N,) tile index.
        rows: (K,) indices of cut boxes; cols: (M,) indices of candidates.
    Returns:
        (K, M) bool.
    """
    ri, ci = rects[rows][:, None, :], rects[cols][None, :, :]  # (K, 1, 4), (1, M, 4)
    # a cut side of the row's box whose edge the column's tile sees beyond; the column's own cut sides likewise
    beyond = np.concatenate([ci[..., :2] < ri[..., :2], ci[..., 2:] > ri[..., 2:]], -1)  # (K, M, 4)
    seen = (cut[rows][:, None, :] & beyond).any(-1)
    back = np.concatenate([ri[..., :2] < ci[..., :2], ri[..., 2:] > ci[..., 2:]], -1)
    seen |= (cut[cols][None, :, :] & back).any(-1)
    ok = seen & (tile_of[rows][:, None] != tile_of[cols][None, :])  # (K, M)
    if not ok.any():
        return ok
    shared = np.concatenate([np.maximum(ri[..., :2], ci[..., :2]), np.minimum(ri[..., 2:], ci[..., 2:])], -1)
    lo, hi = shared[..., [0, 1, 0, 1]], shared[..., [2, 3, 2, 3]]
    a = np.clip(xyxy[rows][:, None, :], lo, hi)  # (K, M, 4) the row's box inside the shared region
    b = np.clip(xyxy[cols][None, :, :], lo, hi)  # (K, M, 4) the column's
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    smaller = np.minimum(area_a, area_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        over = np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1), 0.0)
    return ok & (over > ios)


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def seam_groups(xyxy: np.ndarray, rects: np.ndarray, tile_of: np.ndarray, best: np.ndarray, eligible: np.ndarray,
                cut: np.ndarray, ios: float, chunk: int = 256) -> np.ndarray:
    """Union-find over the seam pairs of boxes with the same best class: (N,) the group root of each box."""
    n = len(xyxy)
    parent = np.arange(n)
    for c in np.unique(best[eligible]):
        members = np.flatnonzero(eligible & (best == c))  # (M,)
        cutting = members[cut[members].any(1)]  # only pairs with a cut box can be halves
        for k in range(0, len(cutting), chunk):
            rows = cutting[k:k + chunk]
            pairs = seam_pairs(xyxy, rects, tile_of, cut, rows, members, ios)  # (K, M)
            for i, j in zip(*np.nonzero(pairs)):
                a, b = _find(parent, int(rows[i])), _find(parent, int(members[j]))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return np.array([_find(parent, i) for i in range(n)], dtype=np.int64)


def _merge_box(xyxy: np.ndarray, cut: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """One group's box (4,): each side from the surest member not cut on that side, else the outermost."""
    out = np.empty(4, F64)
    for s in range(4):
        free = np.flatnonzero(~cut[:, s])
        if len(free):
            out[s] = xyxy[free[np.argmax(sure[free])], s]
        else:
            out[s] = xyxy[:, s].min() if s < 2 else xyxy[:, s].max()
    for lo, hi in ((0, 2), (1, 3)):  # sides of different members that cross: the union on that axis
        if out[hi] <= out[lo]:
            out[lo], out[hi] = xyxy[:, lo].min(), xyxy[:, hi].max()
    return out


def merge_tiles(tiles: Sequence[Tile], arrays: Sequence[DetectionArray], width: int, height: int,
                tiling: Tiling, thresh: float, nms: float, nms_kind: str = "default",
                beta_nms: float = 0.6) -> DetectionArray:
    """Each tile's DetectionArray (boxes relative to the tile, after its NMS) -> one DetectionArray of the
    width x height image (module docstring). A single tile is the whole image: its array comes back as it is."""
    if len(tiles) != len(arrays):
        raise ValueError(f"{len(tiles)} tiles and {len(arrays)} detection arrays: expected one array per tile")
    if len(tiles) == 1:
        return arrays[0]
    classes = arrays[0].probs.shape[1]
    names = arrays[0].names
    parts = [(k, a, np.flatnonzero((a.probs > 0).any(1))) for k, a in enumerate(arrays)]
    boxes = np.concatenate([to_image(a.boxes[keep], tiles[k], width, height) for k, a, keep in parts]
                           + [np.zeros((0, 4), F32)])
    obj = np.concatenate([a.objectness[keep] for _, a, keep in parts] + [np.zeros(0, F32)])
    probs = np.concatenate([a.probs[keep] for _, a, keep in parts] + [np.zeros((0, classes), F32)])
    tile_of = np.concatenate([np.full(len(keep), k) for k, _, keep in parts] + [np.zeros(0, np.int64)])
    if not len(boxes):
        out = DetectionArray.empty(classes, width, height)
        out.names = names
        return out
    if tiling.seam_ios < 1:
        boxes, obj, probs = _seam_merge(boxes, obj, probs, tile_of, tiles, width, height, tiling, thresh)
    if nms:
        order, probs = nms_sort(boxes, obj, probs, nms, nms_kind, beta_nms)
        boxes, obj = boxes[order], obj[order]
    keep = np.flatnonzero((probs > 0).any(1))
    return DetectionArray(boxes[keep], obj[keep], probs[keep], width, height, names=names)


def _seam_merge(boxes: np.ndarray, obj: np.ndarray, probs: np.ndarray, tile_of: np.ndarray, tiles: Sequence[Tile],
                width: int, height: int, tiling: Tiling,
                thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 2 of the module docstring over (N, 4) boxes, (N,) objectness, (N, C) probs, (N,) tile index -> the
    merged rows (each group at the place of its first member)."""
    xyxy = _xyxy(boxes, width, height)  # (N, 4)
    rects = np.asarray(tiles, F64)[tile_of]  # (N, 4)
    cut = cut_sides(xyxy, rects, width, height, tiling.seam_margin)
    sure = probs.max(1)
    floor = thresh if tiling.merge_thresh is None else tiling.merge_thresh
    eligible = sure > F32(floor)
    root = seam_groups(xyxy, rects, tile_of, probs.argmax(1), eligible, cut, tiling.seam_ios)
    first = np.flatnonzero(root == np.arange(len(root)))  # each group's first member, in order
    if len(first) == len(root):
        return boxes, obj, probs
    boxes, obj, probs = boxes.copy(), obj.copy(), probs.copy()
    sizes = np.bincount(root, minlength=len(root))
    s = np.array([width, height, width, height], F64)
    for g in np.flatnonzero(sizes > 1):
        members = np.flatnonzero(root == g)
        x0, y0, x1, y1 = _merge_box(xyxy[members], cut[members], sure[members]) / s
        boxes[g] = np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], F64).astype(F32)
        probs[g] = probs[members].max(0)
        obj[g] = obj[members].max()
    return boxes[first], obj[first], probs[first]
