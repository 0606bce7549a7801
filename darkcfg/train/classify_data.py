"""Classifier training data as `darknet classifier train` loads it (data.c:load_data_augment, CLASSIFICATION_DATA).

Labels come from the image's path (data.c:fill_truth_smooth): class k is the truth when its name occurs in the
path (strstr); the truth vector is 1 - label_smooth_eps there and label_smooth_eps / (classes - 1) elsewhere. A
path that matches no name, or several, is what the reference reports as "Too many or too few labels": here it is
counted and named once. Each image (load_image_augment_paths) is read in colour, then:

1. random_augment_image: aspect a = rand_scale(aspect), a target short side r = rand_int(min_crop, max_crop),
   scale s = r / min(h, w*a), rotation by rand_uniform(-angle, angle) degrees and a shift (dx, dy) drawn within the
   margin the scaled image leaves, sampled by rotate_crop_image into a size x size crop (size = max(w, h)) with
   bilinear_interpolate (points outside the image are 0);
2. a horizontal flip with probability 1/2 when [net] flip=1;
3. random_distort_image: hue += rand_uniform(-hue, hue) (wrapped in [0, 1)), saturation and value scaled by
   rand_scale(saturation) and rand_scale(exposure) in the reference's float HSV (image.c rgb_to_hsv/hsv_to_rgb),
   then clamped to [0, 1];
4. resize_image to the network's width x height.
The draws come from a per-sample generator seeded from (--seed, iteration, slot), as detection training's do.
Mixup, blur and contrastive batches of the classifier loader are not supported (refused at start-up).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from darkcfg.data.dataset import DataError
from darkcfg.data.images import decodable
from darkcfg.infer.preprocess import resize_image
from darkcfg.train.augment import rand_scale
from darkcfg.train.batches import Item


@dataclass
class ClassifyAugment:
    """The [net] keys load_data_augment reads: network size, crop range, angle, aspect, flip, colour, smoothing."""

    width: int
    height: int
    min_crop: int
    max_crop: int
    angle: float = 0.0
    aspect: float = 1.0
    flip: bool = True
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    label_smooth_eps: float = 0.0

    @classmethod
    def from_net(cls, net: object) -> ClassifyAugment:
        return cls(net.width, net.height, net.min_crop, net.max_crop, net.angle, net.aspect,  # type: ignore[attr-defined]
                   bool(net.flip), net.hue, net.saturation, net.exposure, net.label_smooth_eps)  # type: ignore[attr-defined]


def fill_truth(path: str, labels: Sequence[str], smooth: float = 0.0) -> tuple[np.ndarray, int]:
    """data.c:fill_truth_smooth -> (truth (K,) float32, how many class names occur in `path`)."""
    k = len(labels)
    hit = np.array([bool(name) and name in path for name in labels])
    truth = np.where(hit, np.float32(1 - smooth), np.float32(smooth / (k - 1) if k > 1 else 0)).astype(np.float32)
    return truth, int(hit.sum())


def rotate_crop(im: np.ndarray, rad: float, s: float, w: int, h: int, dx: float, dy: float,
                aspect: float) -> np.ndarray:
    """image.c:rotate_crop_image. im (C, H, W) float32 -> (C, h, w): each output pixel (x, y) samples the image at
    the rotated, scaled and shifted point around the image centre, bilinearly, with 0 outside the image."""
    c, ih, iw = im.shape
    x = np.arange(w, dtype=np.float64)[None, :]
    y = np.arange(h, dtype=np.float64)[:, None]
    u = (x - w / 2.0) / s * aspect + dx / s * aspect  # (1, w)
    v = (y - h / 2.0) / s + dy / s  # (h, 1)
    rx = (math.cos(rad) * u - math.sin(rad) * v + iw / 2.0).astype(np.float32)  # (h, w)
    ry = (math.sin(rad) * u + math.cos(rad) * v + ih / 2.0).astype(np.float32)
    ix, iy = np.floor(rx).astype(np.int64), np.floor(ry).astype(np.int64)
    fx, fy = rx - ix, ry - iy
    out = np.zeros((c, h, w), np.float32)
    for ox, oy, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, fy * (1 - fx)), (1, 0, (1 - fy) * fx), (1, 1, fy * fx)):
        px, py = ix + ox, iy + oy
        inside = (px >= 0) & (px < iw) & (py >= 0) & (py < ih)
        vals = np.zeros((c, h, w), np.float32)
        vals[:, inside] = im[:, py[inside], px[inside]]
        out += wt.astype(np.float32) * vals
    return out


def random_augment(im: np.ndarray, angle: float, aspect: float, low: int, high: int, size: int,
                   rng: np.random.Generator) -> np.ndarray:
    """image.c:random_augment_image: im (C, H, W) -> (C, size, size) (module docstring, step 1)."""
    a = rand_scale(rng, aspect)
    r = int(rng.integers(min(low, high), max(low, high) + 1))
    _, ih, iw = im.shape
    short = ih if ih < iw * a else int(iw * a)  # an int in the reference (int min = ...)
    s = r / short
    rad = float(rng.uniform(-angle, angle)) * 2.0 * math.pi / 360.0
    mx = max(0.0, (iw * s / a - size) / 2.0)
    my = max(0.0, (ih * s - size) / 2.0)
    dx, dy = float(rng.uniform(-mx, mx)), float(rng.uniform(-my, my))
    return rotate_crop(im, rad, s, size, size, dx, dy, a)


def rgb_to_hsv(im: np.ndarray) -> np.ndarray:
    """image.c:rgb_to_hsv on (3, H, W): h in [0, 1) (sixths of the colour circle), s, v."""
    r, g, b = im
    mx, mn = im.max(0), im.min(0)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1)
    h = np.where(r == mx, (g - b) / safe, np.where(g == mx, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = np.where(h < 0, h + 6, h) / 6
    s = np.where(mx > 0, delta / np.where(mx > 0, mx, 1), 0)
    h = np.where(mx > 0, h, 0)
    return np.stack([h, s, mx]).astype(np.float32)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """image.c:hsv_to_rgb on (3, H, W)."""
    h, s, v = hsv[0] * 6, hsv[1], hsv[2]
    i = np.floor(h)
    f = h - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = np.where(s == 0, -1, i)
    cases = [(0, (v, t, p)), (1, (q, v, p)), (2, (p, v, t)), (3, (p, q, v)), (4, (t, p, v))]
    rgb = [np.where(s == 0, v, np.select([i == k for k, _ in cases], [c[n] for _, c in cases],
                                         (v, p, q)[n])) for n in range(3)]
    return np.stack(rgb).astype(np.float32)


def distort(im: np.ndarray, dhue: float, dsat: float, dexp: float) -> np.ndarray:
    """image.c:distort_image on (C, H, W) in [0, 1] (module docstring, step 3); one channel: value only."""
    if im.shape[0] < 3:
        return np.clip(im * np.float32(dexp), 0, 1)
    hsv = rgb_to_hsv(im)
    hsv[1] *= np.float32(dsat)
    hsv[2] *= np.float32(dexp)
    hue = hsv[0] + np.float32(dhue)
    hsv[0] = np.where(hue > 1, hue - 1, np.where(hue < 0, hue + 1, hue))
    return np.clip(hsv_to_rgb(hsv), 0, 1)


@dataclass
class ClassifySample:
    image: torch.Tensor  # (C, h, w) float32 in [0, 1], RGB
    truth: np.ndarray  # (K,) float32
    skipped: list[str] = field(default_factory=list)
    label_issues: list[str] = field(default_factory=list)  # paths whose name matched no class or several


class ClassifyDataset(torch.utils.data.Dataset):
    """Loads and augments classifier training images; `dataset[Item(...)]` -> ClassifySample."""

    def __init__(self, paths: list[str], labels: Sequence[str], cfg: ClassifyAugment, augment: bool = True,
                 channels: int = 3) -> None:
        if not paths:
            raise ValueError("no training images")
        self.paths, self.labels, self.cfg, self.augment, self.channels = paths, list(labels), cfg, augment, channels

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int, skipped: list[str]) -> tuple[str, np.ndarray]:
        for k in range(len(self.paths)):  # an unreadable image is replaced by the next readable one
            path = self.paths[(index + k) % len(self.paths)]
            data = np.fromfile(path, np.uint8) if os.path.isfile(path) else None
            img = cv2.imdecode(data, cv2.IMREAD_COLOR if self.channels != 1 else cv2.IMREAD_GRAYSCALE) \
                if data is not None and data.size and decodable(data, path) else None
            if img is None:
                skipped.append(path)
                continue
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img[:, :, None]
            return path, np.ascontiguousarray(img.transpose(2, 0, 1), np.float32) / np.float32(255)
        raise DataError(f"none of the {len(self.paths)} training images can be read (the first: {self.paths[0]})")

    def __getitem__(self, item: Item) -> ClassifySample:  # type: ignore[override]
        rng = np.random.default_rng(item.seed)
        skipped: list[str] = []
        path, im = self._read(item.index, skipped)
        c = self.cfg
        if self.augment:
            size = max(item.width, item.height)
            im = random_augment(im, c.angle, c.aspect, c.min_crop, c.max_crop, size, rng)
            if c.flip and rng.integers(2):
                im = np.ascontiguousarray(im[:, :, ::-1])
            im = distort(im, float(rng.uniform(-c.hue, c.hue)), rand_scale(rng, c.saturation),
                         rand_scale(rng, c.exposure))
        im = resize_image(im, item.width, item.height)
        truth, count = fill_truth(path, self.labels, c.label_smooth_eps)
        issues = [] if count == 1 else [f"{path}: {'no' if count == 0 else count} class names occur in the path "
                                        "(the reference's 'Too many or too few labels')"]
        return ClassifySample(torch.from_numpy(im), truth, skipped, issues)


def collate_classify(samples: list[ClassifySample]) -> dict:
    """A batch: images (B, C, h, w), truths (B, K)."""
    return {"images": torch.stack([s.image for s in samples]),
            "truths": torch.from_numpy(np.stack([s.truth for s in samples])),
            "skipped": [p for s in samples for p in s.skipped], "bad_class": 0, "out_of_range": 0,
            "missing_labels": sum(1 for s in samples if s.label_issues),
            "label_issues": [m for s in samples for m in s.label_issues]}


def labels_for(names: Optional[Sequence[str]], classes: int, data_file: str) -> list[str]:
    """The class names training matches paths against: the .data file's labels= (or names=), one per class."""
    if not names:
        raise DataError(f"{data_file}: a classifier needs labels= (or names=): the class names its image paths "
                        "contain")
    if len(names) != classes:
        raise DataError(f"{data_file}: {len(names)} class names, but the cfg's last layer has {classes} outputs")
    return list(names)
