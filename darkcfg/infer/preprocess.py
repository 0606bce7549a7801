"""Test-time pre-processing exactly as the reference (image.c): a Darknet image (C, H, W) float32 in [0, 1]
to the network input.

- `resize_image`: image.c:resize_image, a two-pass bilinear resize with align-corners scaling
  (in-1)/(out-1), computed in float32 in the reference's order. It is NOT cv2.resize.
- `letterbox_image`: image.c:letterbox_image, resize to the integer size of `letterbox_size`, embedded
  at integer offsets ((w-new_w)/2, (h-new_h)/2) in a canvas filled with 0.5.
"""
from __future__ import annotations

import numpy as np


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


def network_scale(width: int, height: int, net_w: int, net_h: int, letterbox: bool) -> tuple[float, float]:
    """Pixels of the network input per unit of relative width and height of a width x height image: the network
    size, or with letterboxing the image scaled to fit it (box sizes as the network sees them)."""
    if letterbox:
        s = min(net_w / width, net_h / height)
        return width * s, height * s
    return float(net_w), float(net_h)


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
