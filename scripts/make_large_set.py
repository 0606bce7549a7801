#!/usr/bin/env python3
"""Write a set of large images with many small shapes, in the reference's format, for tiled detection.

    python scripts/make_large_set.py OUT [--images 12] [--sizes 1920x1080 2560x1440 3840x2160] [--small 60 160]
        [--small-px 10 30] [--large 2 4] [--seam-tile 128] [--overlap 0.2] [--seam-share 0.3] [--classes 3]
        [--seed 0]

The shapes and backgrounds are those of scripts/make_shapes_dataset.py (its classes: circle, square, triangle,
...; a model trained on that set detects them): each image, of one of --sizes, holds --small shapes of
--small-px pixels (the objects a 416 or 128 network input loses when the whole frame is resized into it), of
which --seam-share are centred on an inner edge of the tiles that `darkcfg detect --tiles <seam-tile>px
--tile-overlap <overlap>` (and `--tiles auto` at that network size) cuts the image into, so that one tile sees
them cut; and --large shapes of 8 % to 20 % of the shorter side, larger than a tile. Shapes do not overlap.

OUT/images/large_NNN.jpg with NNN.txt beside (`id cx cy w h`, relative), OUT/large.txt (absolute paths),
OUT/large.names, OUT/large.data (classes, train = valid = the list, names, backup): what `darkcfg map` and
`detect` read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_shapes_dataset import NAMES, background, draw_shape  # noqa: E402

from darkcfg.data.tile import grid_tiles  # noqa: E402


def seam_lines(width: int, height: int, tile: int, overlap: float) -> tuple[list[int], list[int]]:
    """The x of every vertical and the y of every horizontal inner tile edge."""
    tiles = grid_tiles(width, height, tile, tile, overlap)
    xs = sorted({t.x0 for t in tiles if t.x0 > 0} | {t.x1 for t in tiles if t.x1 < width})
    ys = sorted({t.y0 for t in tiles if t.y0 > 0} | {t.y1 for t in tiles if t.y1 < height})
    return xs, ys


def free(boxes: list[tuple[float, float, float, float]], box: tuple[float, float, float, float],
         gap: float) -> bool:
    x0, y0, x1, y1 = box
    return all(x1 + gap <= b[0] or b[2] + gap <= x0 or y1 + gap <= b[1] or b[3] + gap <= y0 for b in boxes)


def make_image(rng: np.random.Generator, w: int, h: int, a: argparse.Namespace) -> tuple[np.ndarray, list[tuple]]:
    img = background(rng, w, h)
    for _ in range(int(rng.integers(20, 60)) * (w * h) // (1920 * 1080)):  # clutter at the small scale too
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (p1[0] + int(rng.integers(-80, 80)), p1[1] + int(rng.integers(-80, 80)))
        cv2.line(img, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
    xs, ys = seam_lines(w, h, a.seam_tile, a.overlap)
    placed: list[tuple[float, float, float, float]] = []
    labels = []

    def place(s: float, on_seam: bool) -> None:
        for _ in range(200):
            cx, cy = rng.uniform(s / 2 + 1, w - s / 2 - 1), rng.uniform(s / 2 + 1, h - s / 2 - 1)
            if on_seam and (xs or ys):
                if xs and (not ys or rng.integers(2)):
                    cx = float(xs[int(rng.integers(len(xs)))]) + rng.uniform(-s / 4, s / 4)
                else:
                    cy = float(ys[int(rng.integers(len(ys)))]) + rng.uniform(-s / 4, s / 4)
            box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
            if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h or not free(placed, box, max(4.0, s / 4)):
                continue
            cls = int(rng.integers(a.classes))
            x1, y1, x2, y2 = draw_shape(img, cls, cx, cy, s, tuple(int(v) for v in rng.integers(0, 256, 3)))
            x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
            placed.append(box)
            labels.append((cls, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
            return

    for _ in range(int(rng.integers(a.large[0], a.large[1] + 1))):
        place(float(rng.uniform(0.08, 0.2)) * min(w, h), False)
    for _ in range(int(rng.integers(a.small[0], a.small[1] + 1))):
        place(float(rng.uniform(*a.small_px)), bool(rng.random() < a.seam_share))
    return img, labels


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--sizes", nargs="+", default=["1920x1080", "2560x1440", "3840x2160"])
    ap.add_argument("--small", type=int, nargs=2, default=[60, 160], help="small shapes per image: min max")
    ap.add_argument("--small-px", type=float, nargs=2, default=[10.0, 30.0], help="their size in pixels: min max")
    ap.add_argument("--large", type=int, nargs=2, default=[2, 4], help="large shapes per image: min max")
    ap.add_argument("--seam-tile", type=int, default=128, help="the tile size whose seams some shapes cross")
    ap.add_argument("--overlap", type=float, default=0.2, help="the tiles' overlap (as --tile-overlap)")
    ap.add_argument("--seam-share", type=float, default=0.3, help="share of the small shapes centred on a seam")
    ap.add_argument("--classes", type=int, default=3, help=f"1..{len(NAMES)}")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if not 1 <= a.classes <= len(NAMES):
        ap.error(f"--classes {a.classes}: expected 1..{len(NAMES)}")
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes]
    except ValueError:
        ap.error(f"--sizes {' '.join(a.sizes)}: expected WxH, e.g. 1920x1080")
    out = Path(a.out).resolve()
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    paths, boxes = [], 0
    for k in range(a.images):
        w, h = sizes[k % len(sizes)]
        img, labels = make_image(rng, w, h, a)
        stem = out / "images" / f"large_{k:03d}"
        cv2.imwrite(str(stem) + ".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        Path(str(stem) + ".txt").write_text(
            "".join(f"{c} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, x, y, bw, bh in labels))
        paths.append(str(stem) + ".jpg")
        boxes += len(labels)
    (out / "large.txt").write_text("".join(p + "\n" for p in paths))
    (out / "large.names").write_text("".join(n + "\n" for n in NAMES[: a.classes]))
    (out / "large.data").write_text(
        f"classes = {a.classes}\ntrain = {out / 'large.txt'}\nvalid = {out / 'large.txt'}\n"
        f"names = {out / 'large.names'}\nbackup = {out / 'backup'}/\n")
    print(f"{out}: {a.images} images ({', '.join(a.sizes)}), {boxes} shapes, {a.classes} classes; {out / 'large.data'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
