#!/usr/bin/env python3
"""Write a synthetic detection dataset in the reference's format, for tests and benchmarks.

    python scripts/make_shapes_dataset.py OUT [--train 200] [--valid 50] [--size 160] [--seed 0]
        [--cfg cfg/yolov4-tiny.cfg]

OUT/obj/NNNNN.jpg with NNNNN.txt beside (label lines `id cx cy w h`, relative), OUT/train.txt and
OUT/valid.txt (absolute paths), OUT/shapes.names, OUT/shapes.data (classes, train, valid, names,
backup=OUT/backup/) and, from --cfg, OUT/<cfg>-shapes.cfg with classes and the filters before each [yolo]
changed the way a Darknet user adapts a cfg to a dataset. Classes: circle, square, triangle, cross, ring.
Images have textured backgrounds (gradients, noise, lines, blotches), 1 to 5 shapes of 8 % to 55 % of the
image in random colours, which may overlap; sizes vary around --size.

    python scripts/make_shapes_dataset.py OUT --classify [--train 200] [--valid 50] [--size 160] [--classes 3]

writes a classification set instead, laid out as `darknet classifier train|valid` reads one: one shape per image,
its class name in the file name (OUT/train/circle_00012.jpg, OUT/valid/...), which is how the reference labels an
image (the first name of the labels file that occurs in its path, so OUT's own path may hold no class name),
OUT/train.txt and OUT/valid.txt (absolute paths), OUT/shapes.names, OUT/shapes.data (classes, train, valid,
labels and names: the names file, top=2, backup) and OUT/shapes-classifier.cfg, a small 64x64 classifier.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import cv2
import numpy as np

NAMES = ["circle", "square", "triangle", "cross", "ring"]


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w if rng.integers(2) else h)
    grad = c0[None, :] * (1 - t[:, None]) + c1[None, :] * t[:, None]
    img = np.broadcast_to(grad[None, :, :], (h, w, 3)) if len(t) == w else np.broadcast_to(grad[:, None, :], (h, w, 3))
    img = img.astype(np.float32) + rng.normal(0, rng.uniform(4, 20), (h, w, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 12))):  # texture: lines and soft blotches
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.integers(2):
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(5, w // 3)), int(rng.integers(5, h // 3)))
            overlay = img.copy()
            cv2.ellipse(overlay, c, axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
            img = cv2.addWeighted(overlay, 0.3, img, 0.7, 0)
    return img


def draw_shape(img: np.ndarray, cls: int, cx: float, cy: float, s: float, color: tuple) -> tuple:
    """Draw class `cls` centred at (cx, cy) with size s (pixels); return its box (x1, y1, x2, y2)."""
    r = s / 2
    if cls == 0:
        cv2.circle(img, (int(cx), int(cy)), int(r), color, -1, cv2.LINE_AA)
        return cx - r, cy - r, cx + r, cy + r
    if cls == 1:
        cv2.rectangle(img, (int(cx - r), int(cy - r)), (int(cx + r), int(cy + r)), color, -1)
        return cx - r, cy - r, cx + r, cy + r
    if cls == 2:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
        return cx - r, cy - r, cx + r, cy + r
    if cls == 3:
        t = max(2, int(s / 5))
        cv2.rectangle(img, (int(cx - r), int(cy - t / 2)), (int(cx + r), int(cy + t / 2)), color, -1)
        cv2.rectangle(img, (int(cx - t / 2), int(cy - r)), (int(cx + t / 2), int(cy + r)), color, -1)
        return cx - r, cy - r, cx + r, cy + r
    cv2.circle(img, (int(cx), int(cy)), int(r * 0.8), color, max(2, int(s / 7)), cv2.LINE_AA)
    rr = r * 0.8 + max(2, int(s / 7)) / 2
    return cx - rr, cy - rr, cx + rr, cy + rr


def make_image(rng: np.random.Generator, size: int, classes: int) -> tuple[np.ndarray, list[tuple]]:
    w = int(size * rng.uniform(0.8, 1.3))
    h = int(size * rng.uniform(0.8, 1.3))
    img = background(rng, w, h)
    labels = []
    for _ in range(int(rng.integers(1, 6))):
        cls = int(rng.integers(classes))
        s = float(rng.uniform(0.08, 0.55)) * min(w, h)
        cx, cy = rng.uniform(s / 2, w - s / 2), rng.uniform(s / 2, h - s / 2)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        x1, y1, x2, y2 = draw_shape(img, cls, cx, cy, s, color)
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        labels.append((cls, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
    return img, labels


def adapt_cfg(text: str, classes: int) -> str:
    """classes=N in every [yolo]/[region] and filters=(N+5)*anchors in the [convolutional] before each."""
    parts = re.split(r"(?m)^(?=\[)", text)
    for k, part in enumerate(parts):
        head = part.strip().split("\n", 1)[0].strip()
        if head in ("[yolo]", "[Gaussian_yolo]", "[region]"):
            if head == "[region]":  # num anchors, all of them at this head
                m = re.search(r"(?m)^\s*num\s*=\s*(\d+)", part)
                n = int(m.group(1)) if m else 1
            else:
                m = re.search(r"(?m)^\s*mask\s*=\s*([\d,\s]+)$", part)
                n = len([v for v in m.group(1).split(",") if v.strip()]) if m else 1
            parts[k] = re.sub(r"(?m)^(\s*classes\s*=\s*)\d+", rf"\g<1>{classes}", part)
            for j in range(k - 1, -1, -1):
                if parts[j].lstrip().startswith("[convolutional]"):
                    parts[j] = re.sub(r"(?m)^(\s*filters\s*=\s*)\d+", rf"\g<1>{(classes + 5) * n}", parts[j])
                    break
    return "".join(parts)


_CLASSIFIER_NET = """# A 64x64 classifier for the shapes classification set: five 3x3 convolutions, each but the last
# followed by a 2x2 max pool, so the last sees 78 pixels (the whole crop: a shape is up to 48 pixels wide), then
# one 1x1 output per class averaged over the 4x4 grid. Random crops of the short side scaled to 64..80 (the
# default 64..128 would often crop the shape out), flips and colour; the rate of a batch-normalised net of this
# size, dropped tenfold twice near the end.
[net]
batch=32
subdivisions=1
width=64
height=64
channels=3
momentum=0.9
decay=0.0005
min_crop=64
max_crop=80
flip=1
hue=.1
saturation=1.5
exposure=1.5
learning_rate=0.02
burn_in=50
policy=steps
steps=700,900
scales=.1,.1
max_batches=1000

"""
_CONV3 = """[convolutional]
batch_normalize=1
filters={}
size=3
stride=1
pad=1
activation=leaky
"""
_MAXPOOL = "\n[maxpool]\nsize=2\nstride=2\n\n"
_CLASSIFIER_HEAD = """
[convolutional]
filters={classes}
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
groups=1
"""
# the body: 3x3 convolutions of 16, 32, 64, 128 filters, each followed by a 2x2 maxpool, then one more of 128
CLASSIFIER_CFG = (_CLASSIFIER_NET + _MAXPOOL.join(_CONV3.format(f) for f in (16, 32, 64, 128)) + _MAXPOOL
                  + _CONV3.format(128) + _CLASSIFIER_HEAD)


def make_class_image(rng: np.random.Generator, size: int, classes: int) -> tuple[np.ndarray, int]:
    """One shape of a random class, 35 % to 75 % of the side, on a textured background. The image is square (its
    side varies around `size`): the reference's valid and predict look at the centred square crop only."""
    w = h = int(size * rng.uniform(0.8, 1.3))
    img = background(rng, w, h)
    cls = int(rng.integers(classes))
    s = float(rng.uniform(0.35, 0.75)) * min(w, h)
    cx, cy = rng.uniform(s / 2, w - s / 2), rng.uniform(s / 2, h - s / 2)
    draw_shape(img, cls, cx, cy, s, tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img, cls


def write_classification_set(out: Path, train: int, valid: int, size: int, classes: int, seed: int) -> Path:
    """The classification set described in the module docstring; returns OUT/shapes.data."""
    clash = [n for n in NAMES[:classes] if n in str(out)]
    if clash:
        raise SystemExit(f"{out}: the folder's path holds the class name '{clash[0]}'; the reference labels an image "
                         "by the first class name in its path, so choose a folder without one")
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("valid", valid)):
        (out / split).mkdir(parents=True, exist_ok=True)
        paths = []
        for k in range(count):
            img, cls = make_class_image(rng, size, classes)
            path = out / split / f"{NAMES[cls]}_{k:05d}.jpg"
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            paths.append(str(path))
        (out / f"{split}.txt").write_text("".join(p + "\n" for p in paths))
    (out / "shapes.names").write_text("".join(n + "\n" for n in NAMES[:classes]))
    (out / "shapes.data").write_text(
        f"classes = {classes}\ntrain = {out / 'train.txt'}\nvalid = {out / 'valid.txt'}\n"
        f"labels = {out / 'shapes.names'}\nnames = {out / 'shapes.names'}\ntop = {min(2, classes)}\n"
        f"backup = {out / 'backup'}/\n")
    (out / "shapes-classifier.cfg").write_text(CLASSIFIER_CFG.replace("{classes}", str(classes)))
    return out / "shapes.data"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--valid", type=int, default=50)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--classes", type=int, default=3, help=f"1..{len(NAMES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cfg", default=str(Path(__file__).resolve().parent.parent / "cfg" / "yolov4-tiny.cfg"))
    ap.add_argument("--classify", action="store_true", help="a classification set (one shape per image)")
    a = ap.parse_args(argv)
    if not 1 <= a.classes <= len(NAMES):
        ap.error(f"--classes {a.classes}: expected 1..{len(NAMES)}")
    out = Path(a.out).resolve()
    if a.classify:
        data = write_classification_set(out, a.train, a.valid, a.size, a.classes, a.seed)
        print(f"{out}: {a.train} train + {a.valid} valid images, {a.classes} classes; {data}")
        return 0
    (out / "obj").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    lists: dict[str, list[str]] = {"train": [], "valid": []}
    for split, count in (("train", a.train), ("valid", a.valid)):
        for k in range(count):
            img, labels = make_image(rng, a.size, a.classes)
            stem = out / "obj" / f"{split}_{k:05d}"
            cv2.imwrite(str(stem) + ".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            Path(str(stem) + ".txt").write_text(
                "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels))
            lists[split].append(str(stem) + ".jpg")
    for split, paths in lists.items():
        (out / f"{split}.txt").write_text("".join(p + "\n" for p in paths))
    (out / "shapes.names").write_text("".join(n + "\n" for n in NAMES[: a.classes]))
    (out / "shapes.data").write_text(
        f"classes = {a.classes}\ntrain = {out / 'train.txt'}\nvalid = {out / 'valid.txt'}\n"
        f"names = {out / 'shapes.names'}\nbackup = {out / 'backup'}/\n")
    cfg = Path(a.cfg)
    if cfg.is_file():
        (out / f"{cfg.stem}-shapes.cfg").write_text(adapt_cfg(cfg.read_text(), a.classes))
    print(f"{out}: {a.train} train + {a.valid} valid images, {a.classes} classes; {out / 'shapes.data'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
