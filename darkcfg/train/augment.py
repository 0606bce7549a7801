"""Training-time augmentation from the cfg (data.c:load_data_detection, OpenCV build; image_opencv.cpp).

One sample: crop a jittered (and `resize`-zoomed, letter-boxed when asked) rectangle of the image, the part
outside the image filled with the image's mean colour, resize it to the network size (INTER_LINEAR), flip,
shift hue/saturation/exposure in uint8 HSV, optionally blur and add noise; transform the labels the same
way (correct_boxes + fill_truth_detection: clamp to [0,1], drop ids >= classes, boxes under one pixel and
centres outside (0,1]). Mosaic puts four such samples into the quadrants around a random cut point.

Where darkcfg departs from the C code it says so in a comment: mosaic is drawn per sample (the reference
draws it once per loader chunk, about half of them) and may be combined with letter_box (the reference
refuses that pair, which yolov4-csp.cfg and yolov4-p5.cfg set).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from darkcfg.model.heads import last_head
from darkcfg.model.network import Darknet


@dataclass
class AugmentConfig:
    """What load_data_detection reads: [net] keys and jitter/resize/max boxes of the last head."""

    width: int
    height: int
    classes: int
    jitter: float = 0.2
    resize: float = 1.0
    letter_box: bool = False
    flip: bool = True
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    blur: int = 0
    gaussian_noise: int = 0
    mosaic: bool = False
    max_boxes: int = 200
    channels: int = 3

    @classmethod
    def from_model(cls, model: Darknet) -> AugmentConfig:
        net = model.net
        last = last_head(model)
        return cls(width=net.width, height=net.height, classes=last.classes, jitter=last.jitter,
                   resize=last.resize, letter_box=bool(net.letter_box), flip=bool(net.flip), hue=net.hue,
                   saturation=net.saturation, exposure=net.exposure, blur=net.blur,
                   gaussian_noise=net.gaussian_noise, mosaic=net.mixup in (3, 4), max_boxes=last.max_boxes,
                   channels=net.channels)

    def off(self) -> AugmentConfig:
        """The same sizes with every random transform disabled (plain resize)."""
        return AugmentConfig(self.width, self.height, self.classes, 0.0, 1.0, self.letter_box, False,
                             0.0, 1.0, 1.0, 0, 0, False, self.max_boxes, self.channels)


def rand_scale(rng: np.random.Generator, s: float) -> float:
    """utils.c:rand_scale: U(1, s) or its reciprocal, 50/50."""
    scale = rng.uniform(min(1.0, s), max(1.0, s))
    return scale if rng.integers(2) else 1.0 / scale


def _precalc(lo: float, hi: float, r: float) -> float:
    """rand_precalc_random: lo + r*(hi - lo) with the bounds swapped if needed."""
    if hi < lo:
        lo, hi = hi, lo
    return r * (hi - lo) + lo


def crop_params(ow: int, oh: int, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(pleft, ptop, swidth, sheight) of the crop, in source pixels (may extend past the image)."""
    dw, dh = int(ow * cfg.jitter), int(oh * cfg.jitter)
    r1, r2, r3, r4 = rng.random(4)
    pleft = int(_precalc(-dw, dw, r1))
    pright = int(_precalc(-dw, dw, r2))
    ptop = int(_precalc(-dh, dh, r3))
    pbot = int(_precalc(-dh, dh, r4))
    r = cfg.resize
    if r < 1:  # only zoom out
        min_rdw, min_rdh = ow * (1 - 1 / r) / 2, oh * (1 - 1 / r) / 2
        pleft = int(pleft + _precalc(min_rdw, 0, r1))
        pright = int(pright + _precalc(min_rdw, 0, r2))
        ptop = int(ptop + _precalc(min_rdh, 0, r1))
        pbot = int(pbot + _precalc(min_rdh, 0, r2))
    elif r > 1:
        min_rdw, min_rdh = ow * (1 - 1 / r) / 2, oh * (1 - 1 / r) / 2
        max_rdw, max_rdh = ow * (1 - r) / 2, oh * (1 - r) / 2
        pleft = int(pleft + _precalc(min_rdw, max_rdw, r1))
        pright = int(pright + _precalc(min_rdw, max_rdw, r2))
        ptop = int(ptop + _precalc(min_rdh, max_rdh, r1))
        pbot = int(pbot + _precalc(min_rdh, max_rdh, r2))
    if cfg.letter_box:  # pad the crop to the network's aspect ratio
        img_ar, net_ar = ow / oh, cfg.width / cfg.height
        if img_ar / net_ar > 1:
            delta_h = (ow / net_ar - oh) / 2
            ptop, pbot = int(ptop - delta_h), int(pbot - delta_h)
        else:
            delta_w = (oh * net_ar - ow) / 2
            pleft, pright = int(pleft - delta_w), int(pright - delta_w)
    swidth, sheight = ow - pleft - pright, oh - ptop - pbot
    if swidth < 1 or sheight < 1:  # an extreme draw: fall back to the whole image
        return 0, 0, ow, oh
    return pleft, ptop, swidth, sheight


def crop_resize(img: np.ndarray, pleft: int, ptop: int, sw: int, sh: int, w: int, h: int) -> np.ndarray:
    """The crop rectangle of `img` (H, W, C uint8), outside filled with the image's mean colour, resized
    to w x h with INTER_LINEAR."""
    ih, iw = img.shape[:2]
    c = img.shape[2]
    # the exact per-channel mean (a float64 sum of integers); cv2.mean is ~20x numpy's mean on uint8
    mean = np.array(cv2.mean(img)[:c]) if c <= 4 else img.reshape(-1, c).mean(0)
    canvas = np.empty((sh, sw, c), np.uint8)
    canvas[:] = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    x0, y0 = max(0, pleft), max(0, ptop)
    x1, y1 = min(iw, pleft + sw), min(ih, ptop + sh)
    if x1 > x0 and y1 > y0:
        canvas[y0 - ptop:y1 - ptop, x0 - pleft:x1 - pleft] = img[y0:y1, x0:x1]
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_LINEAR)


def distort_hsv(img: np.ndarray, dhue: float, dsat: float, dexp: float) -> np.ndarray:
    """image_data_augmentation's colour step on an RGB uint8 image: in OpenCV's HSV (H in 0..179),
    S *= dsat, V *= dexp, H += 179*dhue, each saturated to 0..255 like cv::Mat arithmetic."""
    if (dsat == 1 and dexp == 1 and dhue == 0) or img.shape[2] < 3:
        return img
    # each channel's new value depends on its old value only: one 256-entry table per channel, computed in
    # float32 as the per-pixel arithmetic was (and ~4x faster than it)
    v = np.arange(256, dtype=np.float32)
    lut = np.stack([v + 179 * dhue, v * dsat, v * dexp], 1)
    lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8).reshape(1, 256, 3)
    return cv2.cvtColor(cv2.LUT(cv2.cvtColor(img, cv2.COLOR_RGB2HSV), lut), cv2.COLOR_HSV2RGB)


def transform_boxes(labels: np.ndarray, dx: float, dy: float, sx: float, sy: float, flip: bool) -> np.ndarray:
    """data.c:correct_boxes on (N, 5) rows (id, x, y, w, h): corners * s - d, flip, clamp to [0, 1]."""
    if not len(labels):
        return labels.astype(np.float32)
    cid, x, y, w, h = (labels[:, k].astype(np.float64) for k in range(5))
    left, right = (x - w / 2) * sx - dx, (x + w / 2) * sx - dx
    top, bottom = (y - h / 2) * sy - dy, (y + h / 2) * sy - dy
    if flip:
        left, right = 1 - right, 1 - left
    left, right, top, bottom = (np.clip(v, 0, 1) for v in (left, right, top, bottom))
    out = np.stack([cid, (left + right) / 2, (top + bottom) / 2, np.clip(right - left, 0, 1),
                    np.clip(bottom - top, 0, 1)], 1)
    return out.astype(np.float32)


def filter_truths(labels: np.ndarray, classes: int, net_w: int, net_h: int) -> tuple[np.ndarray, int]:
    """fill_truth_detection's checks: drop id >= classes (counted as bad), boxes narrower or lower than one
    network pixel, centres outside (0, 1]; clamp w, h to 1. Returns (rows, number of bad class ids)."""
    if not len(labels):
        return labels.reshape(0, 5).astype(np.float32), 0
    cid, x, y, w, h = (labels[:, k] for k in range(5))
    bad_class = (cid >= classes) | (cid < 0)
    keep = ~bad_class & (w >= 1.0 / net_w) & (h >= 1.0 / net_h) & (x > 0) & (x <= 1) & (y > 0) & (y <= 1)
    out = labels[keep].copy()
    out[:, 3:5] = np.minimum(out[:, 3:5], 1)
    return out.astype(np.float32), int(bad_class.sum())


def augment_one(img: np.ndarray, labels: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One augmented sample: img (H, W, C) RGB uint8 -> (h, w, C) uint8; labels (N, 5) -> transformed (not
    yet filtered) rows."""
    w, h = size
    oh, ow = img.shape[:2]
    pleft, ptop, sw, sh = crop_params(ow, oh, cfg, rng)
    flip = bool(cfg.flip and rng.integers(2))
    dhue = rng.uniform(-cfg.hue, cfg.hue) if cfg.hue else 0.0
    dsat = rand_scale(rng, cfg.saturation)
    dexp = rand_scale(rng, cfg.exposure)
    out = crop_resize(img, pleft, ptop, sw, sh, w, h)
    if flip:
        out = out[:, ::-1]
    out = np.ascontiguousarray(distort_hsv(np.ascontiguousarray(out), dhue, dsat, dexp))
    if cfg.blur and rng.integers(2):  # blur: a Gaussian blur on half of the samples
        k = 2 * max(1, int(cfg.blur)) + 1 if cfg.blur > 1 else 5
        out = cv2.GaussianBlur(out, (k, k), 0)
    if cfg.gaussian_noise:  # zero-mean noise with std gaussian_noise (intended; the C's uint8 randn clips at 0)
        noise = rng.normal(0, min(127, cfg.gaussian_noise), out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    sx, sy = sw / ow, sh / oh
    boxes = transform_boxes(labels, (pleft / ow) / sx, (ptop / oh) / sy, 1 / sx, 1 / sy, flip)
    return out, boxes


def _clip_to(boxes: np.ndarray, x0: float, y0: float, x1: float, y1: float, min_w: float, min_h: float) -> np.ndarray:
    """blend_truth_mosaic: keep the part of each box inside [x0, x1] x [y0, y1]; drop slivers."""
    if not len(boxes):
        return boxes
    left = np.clip(boxes[:, 1] - boxes[:, 3] / 2, x0, x1)
    right = np.clip(boxes[:, 1] + boxes[:, 3] / 2, x0, x1)
    top = np.clip(boxes[:, 2] - boxes[:, 4] / 2, y0, y1)
    bottom = np.clip(boxes[:, 2] + boxes[:, 4] / 2, y0, y1)
    out = np.stack([boxes[:, 0], (left + right) / 2, (top + bottom) / 2, right - left, bottom - top], 1)
    return out[(out[:, 3] >= min_w) & (out[:, 4] >= min_h)].astype(np.float32)


def mosaic(samples: list[tuple[np.ndarray, np.ndarray]], cfg: AugmentConfig, rng: np.random.Generator,
           size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Four (image, labels) pairs -> one: each augmented to the full size, the quadrants around a cut
    point in [0.2, 0.8] of the size taken from images 0 (top left), 1 (top right), 2, 3."""
    w, h = size
    cut_x = int(rng.uniform(0.2, 0.8) * w)
    cut_y = int(rng.uniform(0.2, 0.8) * h)
    out = np.empty((h, w, cfg.channels), np.uint8)
    rects = [(0, 0, cut_x, cut_y), (cut_x, 0, w, cut_y), (0, cut_y, cut_x, h), (cut_x, cut_y, w, h)]
    boxes = []
    for (img, labels), (x0, y0, x1, y1) in zip(samples, rects):
        a, b = augment_one(img, labels, cfg, rng, size)
        out[y0:y1, x0:x1] = a[y0:y1, x0:x1]
        boxes.append(_clip_to(b, x0 / w, y0 / h, x1 / w, y1 / h, 2.0 / w, 2.0 / h))
    return out, np.concatenate(boxes).reshape(-1, 5)
