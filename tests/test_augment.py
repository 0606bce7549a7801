"""Augmentation keeps boxes on their objects (drawn shapes, checked by pixel overlap after every transform),
labels are filtered as fill_truth_detection does, and mosaic + letter_box gives valid samples."""
from __future__ import annotations

import numpy as np
import pytest

from darkcfg.train.augment import AugmentConfig, augment_one, filter_truths, mosaic, transform_boxes
from darkcfg.train.batches import TrainDataset, TrainSampler, collate, multiscale_size


def _scene(rng: np.random.Generator, w: int = 200, h: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with 3 pure-colour rectangles (R, G, B) and their labels (class = colour channel)."""
    img = np.full((h, w, 3), 128, np.uint8)
    labels = []
    taken = np.zeros((h, w), bool)
    for c in range(3):
        for _ in range(100):  # objects do not overlap, so each box shows only its own colour
            bw, bh = int(rng.integers(25, 60)), int(rng.integers(25, 60))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            if not taken[y0:y0 + bh, x0:x0 + bw].any():
                break
        taken[y0:y0 + bh, x0:x0 + bw] = True
        color = [0, 0, 0]
        color[c] = 255
        img[y0:y0 + bh, x0:x0 + bw] = color
        labels.append([c, (x0 + bw / 2) / w, (y0 + bh / 2) / h, bw / w, bh / h])
    return img, np.asarray(labels, np.float32)


def _inside_fraction(img: np.ndarray, box: np.ndarray, channel: int) -> float:
    """Fraction of the box's pixels whose colour is dominated by `channel` (the object's colour)."""
    h, w = img.shape[:2]
    x1, x2 = int(round((box[1] - box[3] / 2) * w)), int(round((box[1] + box[3] / 2) * w))
    y1, y2 = int(round((box[2] - box[4] / 2) * h)), int(round((box[2] + box[4] / 2) * h))
    patch = img[max(0, y1 + 1):y2 - 1, max(0, x1 + 1):x2 - 1].astype(int)
    if patch.size == 0:
        return 1.0
    others = [k for k in range(3) if k != channel]
    dom = (patch[..., channel] > 150) & (patch[..., others[0]] < 110) & (patch[..., others[1]] < 110)
    return float(dom.mean())


CFG = AugmentConfig(width=128, height=96, classes=3, jitter=0.3, resize=1.5, flip=True, hue=0.0,
                    saturation=1.0, exposure=1.0)  # colour jitter off so colours identify objects


@pytest.mark.parametrize("letter_box", [False, True])
def test_boxes_stay_on_objects(letter_box: bool) -> None:
    rng = np.random.default_rng(0)
    cfg = AugmentConfig(**{**CFG.__dict__, "letter_box": letter_box})
    checked = 0
    for _ in range(60):
        img, labels = _scene(rng)
        out, boxes = augment_one(img, labels, cfg, rng, (cfg.width, cfg.height))
        assert out.shape == (96, 128, 3)
        boxes, bad = filter_truths(boxes, 3, 128, 96)
        assert bad == 0
        for b in boxes:
            if b[3] * 128 < 6 or b[4] * 96 < 6:
                continue  # a sliver at the border: too few pixels to judge
            assert _inside_fraction(out, b, int(b[0])) > 0.8, b
            checked += 1
    assert checked > 60


def test_mosaic_with_letter_box_gives_valid_samples() -> None:
    rng = np.random.default_rng(1)
    cfg = AugmentConfig(**{**CFG.__dict__, "letter_box": True, "mosaic": True})
    for _ in range(20):
        parts = [_scene(rng) for _ in range(4)]
        out, boxes = mosaic(parts, cfg, rng, (128, 96))
        assert out.shape == (96, 128, 3) and out.dtype == np.uint8
        boxes, _ = filter_truths(boxes, 3, 128, 96)
        assert len(boxes) > 0
        assert np.all((boxes[:, 1:3] > 0) & (boxes[:, 1:3] <= 1)) and np.all(boxes[:, 3:5] <= 1)
        for b in boxes:
            if b[3] * 128 >= 6 and b[4] * 96 >= 6:
                assert _inside_fraction(out, b, int(b[0])) > 0.8, b


def test_correct_boxes_and_fill_truth_rules() -> None:
    # identity transform, then a flip: x -> 1 - x
    lab = np.array([[1, 0.25, 0.5, 0.2, 0.4]], np.float32)
    np.testing.assert_allclose(transform_boxes(lab, 0, 0, 1, 1, False), lab, atol=1e-6)
    np.testing.assert_allclose(transform_boxes(lab, 0, 0, 1, 1, True)[0], [1, 0.75, 0.5, 0.2, 0.4], atol=1e-6)
    # a box half outside is clamped to the image
    out = transform_boxes(np.array([[0, 0.0, 0.5, 0.4, 0.2]], np.float32), 0, 0, 1, 1, False)[0]
    np.testing.assert_allclose(out, [0, 0.1, 0.5, 0.2, 0.2], atol=1e-6)
    rows = np.array([[5, .5, .5, .2, .2],  # class id >= classes: dropped and counted
                     [0, .5, .5, .001, .2],  # narrower than one network pixel: dropped
                     [1, 0.0, .5, .2, .2],  # centre at x = 0: dropped
                     [2, .5, .5, .3, .3]], np.float32)
    kept, bad = filter_truths(rows, 3, 100, 100)
    assert bad == 1 and kept.tolist() == [[2, .5, .5, pytest.approx(.3), pytest.approx(.3)]]


def test_multiscale_sizes() -> None:
    seen = {multiscale_size((416, 416), 1, 32, it, 10000, seed=0) for it in range(1, 2000, 10)}
    assert multiscale_size((416, 416), 1, 32, 1, 10000, 0) == (608, 608)  # first draw: the largest
    assert multiscale_size((416, 416), 1, 32, 9950, 10000, 0) == (608, 608)  # last 100 iterations
    assert all(w == h and w % 32 == 0 and 288 <= w <= 608 for w, h in seen) and len(seen) > 4
    assert multiscale_size((416, 416), 0, 32, 55, 10000, 0) == (416, 416)
    # the same size for the 10 iterations of a block
    assert len({multiscale_size((320, 320), 1, 32, it, 10000, 3) for it in range(21, 31)}) == 1


def test_dataset_is_deterministic_and_reports_bad_input(tmp_path) -> None:
    import cv2

    rng = np.random.default_rng(2)
    paths = []
    for k in range(4):
        img, labels = _scene(rng)
        p = tmp_path / f"im{k}.jpg"
        cv2.imwrite(str(p), img)
        rows = labels.tolist() + ([[7, .5, .5, .1, .1]] if k == 0 else []) + ([[0, 1.2, .5, .1, .1]] if k == 1 else [])
        if k != 2:  # image 2 has no label file: a background image
            (tmp_path / f"im{k}.txt").write_text("".join(f"{int(r[0])} {r[1]} {r[2]} {r[3]} {r[4]}\n" for r in rows))
        paths.append(str(p))
    paths.append(str(tmp_path / "missing.jpg"))
    ds = TrainDataset(paths, CFG)
    sampler = TrainSampler(len(paths), 5, (128, 96), 0, 32, 100, seed=7)
    items = next(iter(sampler))
    a = collate([ds[i] for i in items])
    b = collate([ds[i] for i in items])
    assert a["images"].shape == (5, 3, 96, 128)
    assert np.array_equal(a["images"].numpy(), b["images"].numpy())
    assert np.array_equal(a["truths"].numpy(), b["truths"].numpy())
    assert a["skipped"] == [str(tmp_path / "missing.jpg")]
    # the missing image (last) is replaced by the next readable one, im0: its bad row counts twice
    assert a["bad_class"] == 2 and a["out_of_range"] == 1 and a["missing_labels"] == 1
