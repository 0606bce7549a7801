"""Test-time pre-processing against the reference's own (preprocess.npz) and its definition."""
import numpy as np
import pytest
from oracle import IMAGES, REF, needs_shared

from darkcfg.data.images import ImageError, load_image
from darkcfg.infer.preprocess import letterbox_image, letterbox_size, resize_image


@needs_shared
@pytest.mark.parametrize("key", ["dog_416x416_resize", "dog_416x416_letterbox", "giraffe_512x320_letterbox",
                                 "giraffe_416x416_resize"])
def test_matches_reference_preprocessing(key):
    ref = np.load(REF / "preprocess.npz")[key]
    name, size, kind = key.split("_")
    w, h = (int(v) for v in size.split("x"))
    im = load_image(IMAGES / f"{name}.jpg")
    out = letterbox_image(im, w, h) if kind == "letterbox" else resize_image(im, w, h)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() <= 1e-5  # measured: 0.0 (bit-identical)


def _slow_resize(im, w, h):
    """image.c:resize_image written as its loops, in float32."""
    c, ih, iw = im.shape
    f = np.float32
    part = np.zeros((c, ih, w), f)
    ws = f(iw - 1) / f(w - 1)
    hs = f(ih - 1) / f(h - 1)
    for k in range(c):
        for r in range(ih):
            for col in range(w):
                if col == w - 1 or iw == 1:
                    part[k, r, col] = im[k, r, iw - 1]
                else:
                    sx = f(col) * ws
                    ix = int(sx)
                    dx = sx - f(ix)
                    part[k, r, col] = (f(1) - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
    out = np.zeros((c, h, w), f)
    for k in range(c):
        for r in range(h):
            sy = f(r) * hs
            iy = int(sy)
            dy = sy - f(iy)
            out[k, r] = (f(1) - dy) * part[k, iy]
            if r == h - 1 or ih == 1:
                continue
            out[k, r] += dy * part[k, iy + 1]
    return out


@pytest.mark.parametrize("src,dst", [((7, 5), (13, 3)), ((9, 9), (4, 6)), ((2, 11), (5, 5)), ((6, 4), (6, 9))])
def test_resize_equals_the_loops(src, dst):
    rng = np.random.default_rng(0)
    im = rng.random((3, src[1], src[0]), dtype=np.float32)
    np.testing.assert_array_equal(resize_image(im, *dst), _slow_resize(im, *dst))


def test_letterbox_geometry():
    assert letterbox_size(768, 576, 416, 416) == (416, 312)
    assert letterbox_size(500, 500, 512, 320) == (320, 320)
    assert letterbox_size(100, 300, 416, 416) == (138, 416)  # 100*416/300 = 138.67, integer division
    im = np.ones((3, 300, 100), np.float32)
    out = letterbox_image(im, 416, 416)
    assert out[:, :, :139].min() == 0.5 and out[:, :, 139:277].min() == 1.0 and out[:, :, 277:].max() == 0.5


def test_unreadable_image_is_one_line_error(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a jpeg")
    with pytest.raises(ImageError, match=r"notes.jpg: not an image OpenCV can decode \(10 bytes\)"):
        load_image(bad)
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path / "missing.png")


def _c_div(a: int, b: int) -> int:
    """C's integer division: truncation toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _c_letterbox(im, w, h):
    """image.c:letterbox_image and embed_image written as the C code reads, with `_slow_resize` for resize_image."""
    c, im_h, im_w = im.shape
    if float(np.float32(w) / np.float32(im_w)) < float(np.float32(h) / np.float32(im_h)):
        new_w, new_h = w, _c_div(im_h * w, im_w)
    else:
        new_h, new_w = h, _c_div(im_w * h, im_h)
    resized = _slow_resize(im, new_w, new_h)
    boxed = np.full((c, h, w), 0.5, np.float32)  # fill_image(boxed, .5)
    dx, dy = _c_div(w - new_w, 2), _c_div(h - new_h, 2)
    for k in range(c):  # embed_image(resized, boxed, dx, dy)
        for y in range(new_h):
            for x in range(new_w):
                boxed[k, dy + y, dx + x] = resized[k, y, x]
    return boxed, (dx, dy)


# (image w, h) -> (net w, h), each with an odd padding: (w - new_w) or (h - new_h) odd, so C's (pad)/2 truncates
@pytest.mark.parametrize("src,dst,offset", [((7, 3), (10, 9), (0, 2)),   # new 10x4: h padding 5
                                            ((3, 7), (9, 10), (2, 0)),   # new 4x10: w padding 5
                                            ((5, 2), (8, 8), (0, 2)),    # new 8x3: h padding 5
                                            ((4, 9), (8, 7), (2, 0)),    # new 3x7: w padding 5
                                            ((13, 6), (11, 12), (0, 3))])  # new 11x5: h padding 7
def test_letterbox_offset_for_odd_paddings_is_cs_integer_division(src, dst, offset):
    rng = np.random.default_rng(1)
    im = rng.random((3, src[1], src[0]), dtype=np.float32)
    want, got_offset = _c_letterbox(im, *dst)
    assert got_offset == offset  # the case is the one named above
    np.testing.assert_array_equal(letterbox_image(im, *dst), want)
