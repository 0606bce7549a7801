"""Image files as the reference reads them (image_opencv.cpp), and which files count as images.

Darknet images are float32 arrays (C, H, W), RGB, values in [0, 1]. `load_image`: `cv2.imread` (BGR ->
RGB), /255, as `load_image_cv` does; like the reference's OpenCV path, `IMREAD_COLOR` applies EXIF rotation.
`IMAGE_EXTENSIONS` is the one list of image file extensions: folders are read with it for detection,
evaluation and training alike (`list_images`).

Decompression bombs: a 600-byte JPEG can declare 15000x15000 pixels, and OpenCV would allocate them (its own
limit is 2^30 pixels). So every decode goes through `check_image_bytes` (`decode_bgr` calls it; callers that
decode with other flags call it themselves), which reads the width and height from the file's header
(`image_size`: JPEG, PNG, BMP, WebP, TIFF, PNM/PAM/PFM, JPEG 2000, GIF, Sun raster, Radiance HDR; no decoding)
and refuses, with a one-line `ImageError` naming the file, its size and the limit, an image above `max_pixels`
(`check_pixels`, the one pixel limit, also applied to video frames). A file whose size
cannot be read from its header (another format, or a truncated header) is refused too: OpenCV's other decoders
(OpenEXR, AVIF) would have to be run to learn it. The default limit, `MAX_PIXELS`, is 8K UHD (7680x4320, four
4K frames): a decoded 8-bit BGR image of 100 MB (the float32 RGB copy detection makes: 400 MB); every photo
and video frame up to 8K passes. A program (the command line's `--max-pixels`) may set `MAX_PIXELS`.
"""
from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from darkcfg.errors import DarkcfgError, DarkcfgWarning

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".jp2")

DEFAULT_MAX_PIXELS = 7680 * 4320  # 8K UHD = 4 x 3840x2160: 100 MB as uint8 BGR, 400 MB as float32 RGB
ENV_MAX_PIXELS = "DARKCFG_MAX_PIXELS"  # WxH or a number of pixels, for every command (serve also: --max-pixels)


def parse_pixels(text: str) -> int:
    """'7680x4320' or '33177600' -> pixels; ValueError for anything else (or not positive)."""
    parts = text.strip().lower().split("x")
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r}: expected WIDTHxHEIGHT (e.g. 7680x4320) or a number of pixels")
    pixels = int(parts[0]) * (int(parts[1]) if len(parts) == 2 else 1)
    if pixels <= 0:
        raise ValueError(f"{text!r}: expected a positive size")
    return pixels


def _env_max_pixels() -> int:
    text = os.environ.get(ENV_MAX_PIXELS)
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        return parse_pixels(text)
    except ValueError as e:
        warnings.warn(f"${ENV_MAX_PIXELS}={e}; using the default {DEFAULT_MAX_PIXELS} pixels (7680x4320)",
                      DarkcfgWarning, stacklevel=2)
        return DEFAULT_MAX_PIXELS


# what `max_pixels=None` means everywhere: $DARKCFG_MAX_PIXELS, else 8K UHD; `serve --max-pixels` may change it
MAX_PIXELS = _env_max_pixels()


def is_image_file(path: Union[str, Path]) -> bool:
    """Whether the file name has one of `IMAGE_EXTENSIONS` (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Union[str, Path]) -> list[str]:
    """The image files directly in `folder`, sorted by path."""
    return sorted(str(p) for p in Path(folder).iterdir() if p.is_file() and is_image_file(p))


class ImageError(DarkcfgError):
    """An image file that cannot be read or decoded."""


class PixelLimitError(ImageError):
    """An image (or video frame) with more pixels than the limit: refused before decoding."""


# ---- sizes from headers: each returns (width, height), or None when the header is not there or truncated ----

def _jpeg(d: bytes) -> Optional[tuple[int, int]]:
    """Walk the segments as libjpeg's read_markers does (bytes before a marker skipped as its next_marker
    skips them) to the first SOFn: precision (1), height (2), width (2). SOS or EOI first: no size."""
    i, n = 2, len(d)
    while i < n:
        if d[i] != 0xFF:  # garbage between segments: libjpeg warns and scans on to the next marker
            j = d.find(b"\xff", i)
            if j < 0:
                return None
            i = j
            continue
        while i < n and d[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        m = d[i]
        i += 1
        if m == 0 or m == 0x01 or 0xD0 <= m <= 0xD7:  # stuffed zero, TEM, RSTn: no length
            continue
        if m in (0xD9, 0xDA):  # EOI, SOS before any frame header
            return None
        if i + 2 > n:
            return None
        length = struct.unpack_from(">H", d, i)[0]
        if length < 2:
            return None
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):  # SOF0..SOF15 (not DHT, JPG, DAC)
            if i + 7 > n:
                return None
            h, w = struct.unpack_from(">HH", d, i + 3)
            return (w, h) if w and h else None  # height 0: set later by DNL, which libjpeg refuses
        i += length
    return None


def _png(d: bytes) -> Optional[tuple[int, int]]:
    if len(d) < 24 or d[12:16] != b"IHDR":  # IHDR is the first chunk
        return None
    w, h = struct.unpack_from(">II", d, 16)
    return w, h


def _bmp(d: bytes) -> Optional[tuple[int, int]]:
    if len(d) < 26:
        return None
    size = struct.unpack_from("<I", d, 14)[0]
    if size == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack_from("<HH", d, 18)
    else:
        w, h = struct.unpack_from("<ii", d, 18)
    return abs(w), abs(h)  # a negative height is a top-down bitmap


def _webp(d: bytes) -> Optional[tuple[int, int]]:
    if len(d) < 30:
        return None
    kind = d[12:16]
    if kind == b"VP8X":  # extended: the canvas, 24-bit (size - 1) each
        return (int.from_bytes(d[24:27], "little") + 1, int.from_bytes(d[27:30], "little") + 1)
    if kind == b"VP8L":  # lossless: signature 0x2f, then 14 bits each of (size - 1)
        if d[20] != 0x2F:
            return None
        bits = int.from_bytes(d[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and d[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14 bits each
        w, h = struct.unpack_from("<HH", d, 26)
        return w & 0x3FFF, h & 0x3FFF
    return None


def _tiff(d: bytes) -> Optional[tuple[int, int]]:
    """ImageWidth (256) and ImageLength (257) of the first directory, the one cv2 decodes (TIFF and BigTIFF)."""
    e = "<" if d[:2] == b"II" else ">"
    big = struct.unpack_from(e + "H", d, 2)[0] == 43
    try:
        off = struct.unpack_from(e + "Q", d, 8)[0] if big else struct.unpack_from(e + "I", d, 4)[0]
        count = struct.unpack_from(e + ("Q" if big else "H"), d, off)[0]
        pos, step = off + (8 if big else 2), (20 if big else 12)
        found: dict[int, int] = {}
        for _ in range(min(count, 4096)):
            tag, typ = struct.unpack_from(e + "HH", d, pos)
            if tag in (256, 257):
                value_at = pos + (12 if big else 8)
                fmt = {3: "H", 4: "I", 16: "Q"}.get(typ)
                if fmt is None:
                    return None
                found[tag] = struct.unpack_from(e + fmt, d, value_at)[0]
                if len(found) == 2:
                    return found[256], found[257]
            pos += step
    except struct.error:  # offsets past the end
        return None
    return None


_NUMBER = re.compile(rb"(?:\s|#[^\n]*\n?)*(\d+)")


def _pnm(d: bytes) -> Optional[tuple[int, int]]:
    """P1..P6 and PFM (PF, Pf): width and height after the magic, whitespace and # comments; PAM (P7): the WIDTH
    and HEIGHT lines."""
    head = d[:4096]
    if head[:2] == b"P7":
        w, h = re.search(rb"\nWIDTH\s+(\d+)", head), re.search(rb"\nHEIGHT\s+(\d+)", head)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    m1 = _NUMBER.match(head, 2)
    m2 = _NUMBER.match(head, m1.end()) if m1 else None
    return (int(m1.group(1)), int(m2.group(1))) if m1 and m2 else None


def _j2k_siz(d: bytes, at: int) -> Optional[tuple[int, int]]:
    """A JPEG 2000 codestream's SIZ marker segment: the image area is Xsiz - XOsiz by Ysiz - YOsiz."""
    if d[at:at + 4] != b"\xff\x4f\xff\x51" or at + 24 > len(d):
        return None
    xs, ys, xo, yo = struct.unpack_from(">IIII", d, at + 8)
    return (xs - xo, ys - yo) if xs > xo and ys > yo else None


def _jp2(d: bytes) -> Optional[tuple[int, int]]:
    """The size of the codestream box (jp2c), which OpenJPEG decodes (not the ihdr box, which could differ)."""
    i = 0
    while i + 8 <= len(d):
        length, kind = struct.unpack_from(">I4s", d, i)
        head = 8
        if length == 1:
            if i + 16 > len(d):
                return None
            length, head = struct.unpack_from(">Q", d, i + 8)[0], 16
        if kind == b"jp2c":
            return _j2k_siz(d, i + head)
        if length < head:  # 0: the box runs to the end of the file, and it is not the codestream
            return None
        i += length
    return None


def _gif(d: bytes) -> Optional[tuple[int, int]]:
    w, h = struct.unpack_from("<HH", d, 6) if len(d) >= 10 else (0, 0)
    return (w, h) if w and h else None


def _sun(d: bytes) -> Optional[tuple[int, int]]:
    return struct.unpack_from(">II", d, 4) if len(d) >= 12 else None


def _hdr(d: bytes) -> Optional[tuple[int, int]]:
    """Radiance: header lines, an empty line, then the resolution line ('-Y 480 +X 640': rows first)."""
    m = re.search(rb"\n\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)\n", d[:8192])
    if not m:
        return None
    a, b = int(m.group(3)), int(m.group(6))
    return (b, a) if m.group(2) == b"Y" else (a, b)


_HEADERS = (  # (name, test of the first bytes, size reader): what cv2.imdecode recognises, by its own signatures
    ("JPEG", lambda d: d[:2] == b"\xff\xd8", _jpeg),
    ("PNG", lambda d: d[:8] == b"\x89PNG\r\n\x1a\n", _png),
    ("BMP", lambda d: d[:2] == b"BM", _bmp),
    ("WebP", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp),
    ("TIFF", lambda d: d[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"), _tiff),
    ("PNM", lambda d: len(d) > 2 and d[:1] == b"P" and d[1:2] in b"1234567Ff" and d[2:3].isspace(), _pnm),
    ("JPEG 2000", lambda d: d[:12] == b"\0\0\0\x0cjP  \r\n\x87\n", _jp2),
    ("JPEG 2000", lambda d: d[:4] == b"\xff\x4f\xff\x51", lambda d: _j2k_siz(d, 0)),
    ("GIF", lambda d: d[:6] in (b"GIF87a", b"GIF89a"), _gif),
    ("Sun raster", lambda d: d[:4] == b"\x59\xa6\x6a\x95", _sun),
    ("Radiance HDR", lambda d: d[:10] == b"#?RADIANCE" or d[:6] == b"#?RGBE", _hdr),
    # decoded by OpenCV, but their size is deeper than darkcfg reads: refused
    ("OpenEXR", lambda d: d[:4] == b"\x76\x2f\x31\x01", lambda d: None),
    ("AVIF/HEIF", lambda d: d[4:8] == b"ftyp", lambda d: None),
)


def image_format(data: Union[bytes, bytearray]) -> Optional[str]:
    """The format an encoded image's first bytes name ("JPEG", "PNG", ...), or None."""
    return next((name for name, test, _ in _HEADERS if test(data)), None)


def image_size(data: Union[bytes, bytearray]) -> Optional[tuple[int, int]]:
    """(width, height) of an encoded image, read from its header without decoding it; None when the format is
    not one of those listed in the module docstring or the header is truncated or malformed."""
    for _, test, size in _HEADERS:
        if test(data):
            try:
                return size(data)
            except (struct.error, IndexError, ValueError):
                return None
    return None


def check_pixels(name: str, width: int, height: int, max_pixels: Optional[int] = None) -> None:
    """The pixel limit: a one-line `PixelLimitError` naming `name`, its size and the limit when width x height
    is above `max_pixels` (None: the module's `MAX_PIXELS`). For images (from their header) and video frames
    (from CAP_PROP_FRAME_WIDTH/HEIGHT), before decoding."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if width * height > limit:
        raise PixelLimitError(f"{name}: {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), above the "
                              f"limit of {limit} pixels ({limit / 1e6:.1f} megapixels; --max-pixels)")


def check_image_bytes(data: Union[bytes, bytearray], name: str = "image",
                      max_pixels: Optional[int] = None) -> tuple[int, int]:
    """What must hold before any cv2.imdecode of `data`: its (width, height) from the header, within
    `max_pixels` (None: `MAX_PIXELS`). `ImageError` naming `name` when it is not an image, its size cannot be read
    before decoding, or it is above the limit (`PixelLimitError`). For callers that decode with their own flags
    (grey, IMREAD_UNCHANGED, reduced); `decode_bgr` calls it."""
    size = image_size(data)
    if size is None:
        kind = image_format(data)
        if kind is None:
            raise ImageError(f"{name}: not an image OpenCV can decode ({len(data)} bytes)")
        if kind in ("OpenEXR", "AVIF/HEIF"):
            raise ImageError(f"{name}: {kind} image ({len(data)} bytes): its size is not read before decoding, so it "
                             "is refused; convert it to JPEG or PNG")
        raise ImageError(f"{name}: not an image OpenCV can decode ({len(data)} bytes); its {kind} header is "
                         "truncated or malformed")
    check_pixels(name, size[0], size[1], max_pixels)
    return size


def decodable(data: Union[bytes, bytearray, np.ndarray], name: str, max_pixels: Optional[int] = None) -> bool:
    """For loaders that skip an image they cannot read (training): False, with a one-line DarkcfgWarning naming
    `name`, when the header declares more than `max_pixels` (None: `MAX_PIXELS`); otherwise True (an unreadable
    header is left to the decoder, whose failure the loader already reports)."""
    try:
        check_image_bytes(data.tobytes() if isinstance(data, np.ndarray) else data, name, max_pixels)
    except PixelLimitError as e:
        warnings.warn(str(e), DarkcfgWarning, stacklevel=2)
        return False
    except ImageError:
        pass
    return True


def decode_bgr(data: Union[bytes, bytearray, memoryview], name: str = "image",
               max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode an encoded image as cv2.imdecode(IMREAD_COLOR) does -> (H, W, 3) uint8 BGR, after
    `check_image_bytes` (the size from the header against `max_pixels`, None: `MAX_PIXELS`). `ImageError` naming
    `name` when it is not an image, its size cannot be read before decoding, or it is above the limit
    (`PixelLimitError`)."""
    import cv2

    data = bytes(data) if isinstance(data, memoryview) else data
    check_image_bytes(data, name, max_pixels)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV's own checks (several lines of text): the same one line
        bgr = None
    if bgr is None:
        raise ImageError(f"{name}: not an image OpenCV can decode ({len(data)} bytes)")
    check_pixels(name, bgr.shape[1], bgr.shape[0], max_pixels)  # the header was the decoder's: a backstop
    return bgr


def bgr_to_image(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR (OpenCV) -> (3, H, W) float32 RGB in [0, 1] (image_opencv.cpp:mat_to_image)."""
    if bgr.ndim == 2:
        bgr = np.repeat(bgr[:, :, None], 3, axis=2)
    rgb = bgr[:, :, 2::-1]  # (H, W, 3)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


def read_bgr(path: Union[str, Path], max_pixels: Optional[int] = None) -> np.ndarray:
    """Read an image file as cv2.imread(IMREAD_COLOR) does -> (H, W, 3) uint8 BGR; `ImageError` naming the
    file when it is missing, not an image, or above `max_pixels` (None: `MAX_PIXELS`; see `decode_bgr`)."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such image file")
    return decode_bgr(p.read_bytes(), str(p), max_pixels)  # bytes: also non-ASCII paths, unlike cv2.imread


def load_image(path: Union[str, Path], max_pixels: Optional[int] = None) -> np.ndarray:
    """Read an image file -> (3, H, W) float32 RGB in [0, 1] (image_opencv.cpp:load_image_mat_cv)."""
    return bgr_to_image(read_bgr(path, max_pixels))
