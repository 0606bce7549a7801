"""Test-time pre-processing exactly as the reference (image.c, image_opencv.cpp).

Images are float32 arrays (C, H, W), RGB, values in [0, 1], like Darknet's `image`.

- `load_image`: `cv2.imread` (BGR -> RGB), /255, as `load_image_cv` does. Like the reference's OpenCV
  path, `IMREAD_COLOR` applies EXIF rotation.
- `resize_image`: image.c:resize_image, a two-pass bilinear resize with align-corners scaling
  (in-1)/(out-1), computed in float32 in the reference's order. It is NOT cv2.resize.
- `letterbox_image`: image.c:letterbox_image, resize to the integer size of `letterbox_size`, embedded
  at integer offsets ((w-new_w)/2, (h-new_h)/2) in a canvas filled with 0.5.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from darkcfg.errors import DarkcfgError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".jp2")


class ImageError(DarkcfgError):
    """An image file that cannot be read or decoded."""


def bgr_to_image(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR (OpenCV) -> (3, H, W) float32 RGB in [0, 1] (image_opencv.cpp:mat_to_image)."""
    if bgr.ndim == 2:
        bgr = np.repeat(bgr[:, :, None], 3, axis=2)
    rgb = bgr[:, :, 2::-1]  # (H, W, 3)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def read_bgr(path: Union[str, Path]) -> np.ndarray:
    """Read an image file as cv2.imread(IMREAD_COLOR) does -> (H, W, 3) uint8 BGR; `ImageError` naming the
    file when it is missing or not an image."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such image file")
    data = np.fromfile(str(p), dtype=np.uint8)  # also works for non-ASCII paths, unlike cv2.imread
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageError(f"{p}: not an image OpenCV can decode ({data.size} bytes)")
    return bgr


def load_image(path: Union[str, Path]) -> np.ndarray:
    """Read an image file -> (3, H, W) float32 RGB in [0, 1] (image_opencv.cpp:load_image_mat_cv)."""
    return bgr_to_image(read_bgr(path))


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """image.c:resize_image. im (C, H, W) float32 -> (C, h, w) float32.

    First pass along x: part[:, r, c] = (1-dx)*im[:, r, ix] + dx*im[:, r, ix+1] with sx = c*(W-1)/(w-1),
    the last column copied. Second pass along y: out = (1-dy)*part[iy], then += dy*part[iy+1] except on the
    last row (which, as in the reference, keeps only the (1-dy) term).
    """
    c, ih, iw = im.shape
    if (iw, ih) == (w, h):
        return im.astype(np.float32, copy=True)
    im = im.astype(np.float32, copy=False)
    f32 = np.float32
    w_scale = f32(iw - 1) / f32(w - 1) if w > 1 else f32(0)
    h_scale = f32(ih - 1) / f32(h - 1) if h > 1 else f32(0)

    # pass 1: columns
    cols = np.arange(w)
    sx = cols.astype(f32) * w_scale  # (w,)
    ix = sx.astype(np.int64)
    dx = sx - ix.astype(f32)
    last = (cols == w - 1) | (iw == 1)
    ix = np.where(last, iw - 1, np.minimum(ix, iw - 1))
    ix1 = np.minimum(ix + 1, iw - 1)
    dx = np.where(last, f32(0), dx).astype(f32)
    part = (f32(1) - dx) * im[:, :, ix] + dx * im[:, :, ix1]  # (C, H, w)
    part[:, :, last] = im[:, :, ix[last]]

    # pass 2: rows
    rows = np.arange(h)
    sy = rows.astype(f32) * h_scale  # (h,)
    iy = np.minimum(sy.astype(np.int64), ih - 1)
    dy = (sy - iy.astype(f32)).astype(f32)
    out = (f32(1) - dy)[None, :, None] * part[:, iy, :]  # (C, h, w)
    add = (rows != h - 1) & (ih != 1)
    iy1 = np.minimum(iy + 1, ih - 1)
    out[:, add, :] += dy[add][None, :, None] * part[:, iy1[add], :]
    return out.astype(f32, copy=False)


def letterbox_size(w: int, h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """The (new_w, new_h) an image w x h is resized to inside net_w x net_h (integer division, as the reference)."""
    if float(np.float32(net_w) / np.float32(w)) < float(np.float32(net_h) / np.float32(h)):
        return net_w, (h * net_w) // w
    return (w * net_h) // h, net_h


def letterbox_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """image.c:letterbox_image. im (C, H, W) -> (C, h, w): aspect-preserving resize centred on 0.5 grey."""
    c, ih, iw = im.shape
    new_w, new_h = letterbox_size(iw, ih, w, h)
    resized = resize_image(im, new_w, new_h)
    boxed = np.full((c, h, w), 0.5, dtype=np.float32)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = resized
    return boxed


def prepare(im: np.ndarray, w: int, h: int, letterbox: bool) -> np.ndarray:
    """The network input for one image: letterbox_image or resize_image to (C, h, w)."""
    return letterbox_image(im, w, h) if letterbox else resize_image(im, w, h)
