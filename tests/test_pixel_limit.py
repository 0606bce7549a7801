"""The pixel limit (darkcfg.data.images.MAX_PIXELS, `--max-pixels`) holds wherever darkcfg decodes a local image,
read from the header before any decoding: `data check` reports the image, the training loaders (detector and
classifier) skip it with one warning line, the anchor check reads sizes from headers only. A 600-byte JPEG that
declares 15000x15000 pixels would take ~675 MB as BGR and 2.7 GB as float32 once decoded."""
import struct
import warnings

import cv2
import numpy as np
import pytest

from darkcfg.data import images
from darkcfg.data.check import check_dataset
from darkcfg.errors import DarkcfgWarning


def jpeg_declaring(width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@pytest.fixture
def dataset(tmp_path):
    """Two images with labels: good.jpg (64x48) and bomb.jpg (declares 15000x15000)."""
    cv2.imwrite(str(tmp_path / "good.jpg"), np.full((48, 64, 3), 120, np.uint8))
    (tmp_path / "bomb.jpg").write_bytes(jpeg_declaring(15000, 15000))
    for stem in ("good", "bomb"):
        (tmp_path / f"{stem}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    return tmp_path


@pytest.fixture
def no_decode(monkeypatch):
    """cv2.imdecode that fails the test when given the bomb (it must be refused from its header)."""
    real = cv2.imdecode

    def guarded(buf, flags):
        if len(buf) < 1000 and images.image_size(bytes(buf)) == (15000, 15000):
            raise AssertionError("the bomb was handed to the decoder")
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", guarded)


def test_data_check_reports_the_image_above_the_limit(dataset, no_decode):
    check = check_dataset(dataset, classes=1, progress=False)
    too_large = [p for p in check.problems if p.kind == "image too large"]
    assert [p.where for p in too_large] == [str(dataset / "bomb.jpg")]
    assert "15000x15000 pixels" in too_large[0].message and str(images.MAX_PIXELS) in too_large[0].message
    assert not [p for p in check.problems if p.where.startswith(str(dataset / "good"))]


def test_detector_training_skips_the_image_with_one_warning(dataset, no_decode):
    from darkcfg.train.augment import AugmentConfig
    from darkcfg.train.batches import TrainDataset

    ds = TrainDataset([str(dataset / "bomb.jpg"), str(dataset / "good.jpg")],
                      AugmentConfig(width=32, height=32, classes=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img, labels, missing = ds._read(0, skipped := [], [])
    assert img.shape == (48, 64, 3) and len(labels) == 1 and skipped == [str(dataset / "bomb.jpg")]
    said = [str(w.message) for w in caught if issubclass(w.category, DarkcfgWarning)]
    assert len(said) == 1 and "bomb.jpg: 15000x15000 pixels" in said[0] and "\n" not in said[0]


def test_classifier_training_skips_the_image(dataset, no_decode):
    from darkcfg.train.classify_data import ClassifyAugment, ClassifyDataset

    ds = ClassifyDataset([str(dataset / "bomb.jpg"), str(dataset / "good.jpg")], ["good", "bomb"],
                         ClassifyAugment(width=32, height=32, min_crop=32, max_crop=32))
    with pytest.warns(DarkcfgWarning, match="bomb.jpg: 15000x15000 pixels"):
        path, im = ds._read(0, skipped := [])
    assert path.endswith("good.jpg") and im.shape == (3, 48, 64) and skipped == [str(dataset / "bomb.jpg")]


def test_anchor_check_reads_sizes_from_the_headers(dataset, no_decode):
    from darkcfg.train.anchors import training_box_sizes

    wh = training_box_sizes([str(dataset / "good.jpg"), str(dataset / "bomb.jpg")], 416, 416, letterbox=True)
    # letterboxed into 416x416: 64x48 scales by 6.5, 15000x15000 by 416/15000; each box is a quarter of its image
    np.testing.assert_allclose(wh, [[104, 78], [104, 104]], rtol=1e-6)


def test_the_limit_comes_from_the_environment_for_every_command(dataset):
    """$DARKCFG_MAX_PIXELS sets the limit in a new process (WxH or pixels); a bad value is one warning line."""
    import subprocess
    import sys

    code = "from darkcfg.data import images; print(images.MAX_PIXELS)"
    run = [sys.executable, "-W", "always", "-c", code]
    env = {"PATH": "/usr/bin:/bin"}
    assert subprocess.run(run, capture_output=True, text=True, env={**env, "DARKCFG_MAX_PIXELS": "640x480"}
                          ).stdout.strip() == "307200"
    bad = subprocess.run(run, capture_output=True, text=True, env={**env, "DARKCFG_MAX_PIXELS": "huge"})
    assert bad.stdout.strip() == str(images.DEFAULT_MAX_PIXELS) and "DARKCFG_MAX_PIXELS='huge'" in bad.stderr
    check = subprocess.run([sys.executable, "-m", "darkcfg", "data", "check", str(dataset)], capture_output=True,
                           text=True, env={**env, "DARKCFG_MAX_PIXELS": "64x47"})
    assert "good.jpg: error: image too large: 64x48 pixels" in check.stdout + check.stderr
