"""Image files as the reference reads them (image_opencv.cpp), and which files count as images.

Darknet images are float32 arrays (C, H, W), RGB, values in [0, 1]. `load_image`: `cv2.imread` (BGR ->
RGB), /255, as `load_image_cv` does; like the reference's OpenCV path, `IMREAD_COLOR` applies EXIF rotation.
`IMAGE_EXTENSIONS` is the one list of image file extensions: folders are read with it for detection,
evaluation and training alike (`list_images`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from darkcfg.errors import DarkcfgError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".jp2")


def is_image_file(path: Union[str, Path]) -> bool:
    """Whether the file name has one of `IMAGE_EXTENSIONS` (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Union[str, Path]) -> list[str]:
    """The image files directly in `folder`, sorted by path."""
    return sorted(str(p) for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))


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
