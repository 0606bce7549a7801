#!/usr/bin/env python3
"""Write tracking sequences of moving shapes with MOTChallenge ground truth, for tests and benchmarks.

    python scripts/make_track_video.py OUT [--sequences 3] [--frames 150] [--size 320x240] [--fps 30]
        [--objects 7] [--classes 3] [--seed 0] [--format images|video|both]

Per sequence, MOTChallenge's layout: OUT/<seq>/img1/000001.jpg ... (images), OUT/<seq>/<seq>.mp4 (video, mp4v),
OUT/<seq>/gt/gt.txt and OUT/<seq>/seqinfo.ini; OUT/seqmaps.txt lists the sequences. The shapes are those of
scripts/make_shapes_dataset.py (its drawing functions, classes circle, square, triangle, ... and textured
backgrounds), so a detector trained on that set (scripts/bench_train.py) detects them. Each sequence has:
- objects crossing the whole frame left to right and right to left, behind a vertical bar in the middle (an
  occluder drawn over them: hidden for a while, then back);
- a pair whose paths cross at the same time (one passes over the other);
- objects entering from the top or bottom edge and leaving by the opposite one, and one wandering in the frame
  from the first frame;
- entries and exits at staggered times; a little camera noise on every frame.
The same --seed gives the same files.

Ground truth (gt/gt.txt): `frame,id,x,y,w,h,1,class,visibility` with class = shape class + 1 (MOT numbers classes
from 1) and visibility the fraction of the shape's pixels seen (not behind the bar, another shape or the image's
edge); one row per object and frame where any of it is seen, its box the shape's whole box clipped to the image
(while partly hidden, the whole shape's box, as MOT17 boxes occluded people). Rows where nothing is seen are
left out, so an object hidden behind the bar has a gap in its frames.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_shapes_dataset import NAMES, background, draw_shape  # noqa: E402

from darkcfg.data.mot import seqinfo_text  # noqa: E402
from darkcfg.files import AtomicFile, write_bytes, write_text  # noqa: E402


@dataclass
class Mover:
    """One object: class, size (pixels), colour, depth (larger: drawn later, in front), first frame (1-based),
    position at that frame and velocity (pixels a frame), a sideways wobble (amplitude, period in frames)."""

    cls: int
    size: float
    color: tuple
    depth: float
    start: int
    x0: float
    y0: float
    vx: float
    vy: float
    wobble: float = 0.0
    period: float = 60.0

    def center(self, frame: int) -> tuple[float, float]:
        t = frame - self.start
        speed = max(1e-6, float(np.hypot(self.vx, self.vy)))
        side = self.wobble * np.sin(2 * np.pi * t / self.period)  # across the direction of motion
        return self.x0 + self.vx * t - side * self.vy / speed, self.y0 + self.vy * t + side * self.vx / speed


@dataclass
class Scene:
    """One sequence's fixed parts: frame size, background (H, W, 3) uint8, the bar's columns [bar0, bar1), its
    colour and the movers (index = ground-truth id - 1)."""

    width: int
    height: int
    frames: int
    background: np.ndarray
    bar: tuple[int, int]
    bar_color: tuple
    movers: list[Mover]


def make_scene(rng: np.random.Generator, width: int, height: int, frames: int, objects: int, classes: int) -> Scene:
    """Movers with the kinds of motion the module docstring lists, at random times, sizes, colours and classes."""
    m = min(width, height)
    bar_w = int(0.3 * m)
    bar0 = int(width * rng.uniform(0.45, 0.55)) - bar_w // 2
    movers: list[Mover] = []

    def new(start: int, x0: float, y0: float, vx: float, vy: float, size: float, wobble: float = 0.0) -> Mover:
        return Mover(int(rng.integers(classes)), size, tuple(int(v) for v in rng.integers(30, 256, 3)),
                     float(rng.uniform()), start, x0, y0, vx, vy, wobble, float(rng.uniform(40, 90)))

    def size() -> float:
        return float(rng.uniform(0.14, 0.24)) * m

    kinds = ["bar", "bar", "pair", "vertical", "wander", "bar", "vertical"]
    k = 0
    while len(movers) < objects:
        kind = kinds[k % len(kinds)]
        k += 1
        s = size()
        if kind == "bar":  # across the frame, behind the bar
            speed = float(rng.uniform(1.5, 3.5)) * (1 if len(movers) % 2 == 0 else -1)
            y = float(rng.uniform(0.2, 0.8)) * height
            span = (width + s) / abs(speed)
            start = int(rng.integers(1, max(2, frames - int(span * 0.6))))
            x0 = -s / 2 + 1 if speed > 0 else width + s / 2 - 1
            movers.append(new(start, x0, y, speed, float(rng.uniform(-0.3, 0.3)), s, float(rng.uniform(0, 6))))
        elif kind == "pair" and objects - len(movers) >= 2:  # two paths through one point at one time
            side = bar0 / 2 if rng.integers(2) else (bar0 + bar_w + width) / 2
            px, py = side, float(rng.uniform(0.35, 0.65)) * height
            tc = int(rng.integers(frames // 3, max(frames // 3 + 1, 2 * frames // 3)))
            heading = float(rng.uniform(0, 2 * np.pi))
            for turn in (0.0, float(rng.uniform(np.pi / 3, 2 * np.pi / 3))):
                speed = float(rng.uniform(1.2, 2.5))
                vx, vy = speed * np.cos(heading + turn), speed * np.sin(heading + turn)
                back = min(tc - 1, int(rng.integers(25, 60)))
                movers.append(new(tc - back, px - vx * back, py - vy * back, vx, vy, size()))
        elif kind == "vertical":  # enters at the top or bottom, leaves by the other
            down = bool(rng.integers(2))
            speed = float(rng.uniform(1.2, 2.5)) * (1 if down else -1)
            x = float(rng.choice([rng.uniform(0.1, 0.35), rng.uniform(0.65, 0.9)])) * width
            y0 = -s / 2 + 1 if down else height + s / 2 - 1
            start = int(rng.integers(1, max(2, frames // 2)))
            movers.append(new(start, x, y0, float(rng.uniform(-0.4, 0.4)), speed, s, float(rng.uniform(0, 5))))
        else:  # wanders in its half of the frame from the first frame
            left = bool(rng.integers(2))
            x = float(rng.uniform(0.1, 0.3) if left else rng.uniform(0.7, 0.9)) * width
            movers.append(new(1, x, float(rng.uniform(0.25, 0.75)) * height, float(rng.uniform(-0.3, 0.3)),
                              float(rng.uniform(-0.4, 0.4)), s, float(rng.uniform(4, 12))))
    bar_color = tuple(int(v) for v in rng.integers(40, 200, 3))
    return Scene(width, height, frames, background(rng, width, height), (bar0, bar0 + bar_w), bar_color, movers)


def _draw_bar(img: np.ndarray, scene: Scene) -> None:
    b0, b1 = scene.bar
    cv2.rectangle(img, (b0, 0), (b1 - 1, scene.height - 1), scene.bar_color, -1)
    dark = tuple(max(0, c - 50) for c in scene.bar_color)
    for y in range(0, scene.height, 12):  # stripes: a textured occluder, not a shape
        cv2.line(img, (b0, y), (b1 - 1, y + 6), dark, 2)


def render(scene: Scene, frame: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple]]:
    """Frame `frame` (1-based): the image (H, W, 3) uint8 BGR and its ground-truth rows
    (frame, id, x, y, w, h, 1, class + 1, visibility), ids 1-based in mover order."""
    w, h = scene.width, scene.height
    pad = int(max(mv.size for mv in scene.movers)) + 4
    img = scene.background.astype(np.int16) + rng.normal(0, 3, (h, w, 3)).astype(np.int16)
    img = np.clip(img, 0, 255).astype(np.uint8)
    order = sorted(range(len(scene.movers)), key=lambda i: scene.movers[i].depth)
    seen = np.zeros((h + 2 * pad, w + 2 * pad), bool)  # pixels covered by what is drawn in front, padded canvas
    seen[:, :pad] = seen[:, pad + w:] = True  # outside the image: nothing is seen there
    seen[:pad, :] = seen[pad + h:, :] = True
    seen[pad:pad + h, pad + scene.bar[0]:pad + scene.bar[1]] = True
    rows: dict[int, tuple] = {}
    boxes = {}
    for i in order:
        mv = scene.movers[i]
        if frame < mv.start:
            continue
        cx, cy = mv.center(frame)
        if not (-mv.size < cx < w + mv.size and -mv.size < cy < h + mv.size):
            continue
        boxes[i] = draw_shape(img, mv.cls, cx, cy, mv.size, mv.color)
    masks = {}
    for i in boxes:
        mv = scene.movers[i]
        cx, cy = mv.center(frame)
        mask = np.zeros_like(seen, np.uint8)
        draw_shape(mask, mv.cls, cx + pad, cy + pad, mv.size, (1,))
        masks[i] = mask.astype(bool)
    for i in sorted(boxes, key=lambda j: -scene.movers[j].depth):  # front to back
        full = int(masks[i].sum())
        vis = int((masks[i] & ~seen).sum()) / max(1, full)
        seen |= masks[i]
        x1, y1, x2, y2 = boxes[i]
        x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
        if vis > 0 and x2 > x1 and y2 > y1:
            rows[i] = (frame, i + 1, x1, y1, x2 - x1, y2 - y1, 1, scene.movers[i].cls + 1, vis)
    _draw_bar(img, scene)
    return img, [rows[i] for i in sorted(rows)]


def gt_text(rows: list[tuple]) -> str:
    """Ground-truth rows (see `render`) -> gt.txt's text."""
    return "".join(f"{f},{i},{x:.2f},{y:.2f},{bw:.2f},{bh:.2f},{c},{k},{v:.3f}\n"
                   for f, i, x, y, bw, bh, c, k, v in rows)


def sequence(seed: int, width: int = 320, height: int = 240, frames: int = 150, objects: int = 7, classes: int = 3
             ) -> tuple[Scene, list[np.ndarray], list[tuple]]:
    """One sequence from `seed`: its scene, frames (BGR images) and ground-truth rows (see `render`)."""
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, width, height, frames, objects, classes)
    images, rows = [], []
    for t in range(1, frames + 1):
        img, r = render(scene, t, rng)
        images.append(img)
        rows += r
    return scene, images, rows


def write_sequence(out: Path, name: str, seed: int, width: int, height: int, frames: int, objects: int,
                   classes: int, fps: float, fmt: str) -> int:
    """OUT/<name>/... as the module docstring lays it out; returns the number of ground-truth rows."""
    scene, images, rows = sequence(seed, width, height, frames, objects, classes)
    d = out / name
    if fmt in ("images", "both"):
        for t, img in enumerate(images, 1):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            write_bytes(d / "img1" / f"{t:06d}.jpg", buf.tobytes())
    if fmt in ("video", "both"):
        with AtomicFile(d / f"{name}.mp4", suffix=".mp4", own_handle=False) as f:
            vw = cv2.VideoWriter(str(f.temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not vw.isOpened():
                raise SystemExit(f"{d / (name + '.mp4')}: OpenCV cannot write mp4v video here; use --format images")
            for img in images:
                vw.write(img)
            vw.release()
    write_text(d / "gt" / "gt.txt", gt_text(rows))
    write_text(d / "seqinfo.ini", seqinfo_text(name, frames, width, height, fps))
    return len(rows)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--sequences", type=int, default=3)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", default="320x240", help="WxH")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--objects", type=int, default=7, help="objects per sequence")
    ap.add_argument("--classes", type=int, default=3, help=f"1..{len(NAMES)} (the detector's classes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=("images", "video", "both"), default="both")
    a = ap.parse_args(argv)
    try:
        width, height = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size {a.size}: expected WxH, e.g. 320x240")
    if not 1 <= a.classes <= len(NAMES):
        ap.error(f"--classes {a.classes}: expected 1..{len(NAMES)}")
    out = Path(a.out)
    names = []
    for k in range(a.sequences):
        name = f"shapes-{k + 1:02d}"
        n = write_sequence(out, name, a.seed * 1000 + k, width, height, a.frames, a.objects, a.classes, a.fps,
                           a.format)
        names.append(name)
        print(f"{out / name}: {a.frames} frames, {a.objects} objects, {n} ground-truth boxes")
    write_text(out / "seqmaps.txt", "name\n" + "".join(n + "\n" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
