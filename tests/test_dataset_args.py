"""Every command that takes a dataset takes a .data file or a folder of images, the same way, and finds the same
labels for the same images (darkcfg.data.dataset: open_data, image_list, label_file): here the labels lie only
beside the images, under a JPEGImages/ folder, where the reference's path rule (JPEGImages/ -> labels/) finds
none and `train` always found them."""
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CFG = REPO / "cfg" / "yolov3-tiny.cfg"
SAMPLE = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"
ROWS = {"a": ["0 0.5 0.4 0.3 0.6", "2 0.3 0.3 0.2 0.2"], "b": ["1 0.6 0.6 0.4 0.3"]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ds")
    images = root / "JPEGImages"
    images.mkdir()
    im = cv2.imread(str(SAMPLE))
    for k, (stem, rows) in enumerate(ROWS.items()):
        cv2.imwrite(str(images / f"{stem}.jpg"), cv2.resize(np.roll(im, 40 * k, axis=1), (96, 128)))
        (images / f"{stem}.txt").write_text("\n".join(rows) + "\n")
    (images / "obj.names").write_text("".join(f"c{k}\n" for k in range(80)))
    (root / "list.txt").write_text("".join(f"{images / s}.jpg\n" for s in ROWS))
    data = root / "obj.data"
    data.write_text(f"classes = 80\ntrain = {root / 'list.txt'}\nvalid = {root / 'list.txt'}\n"
                    f"names = {images / 'obj.names'}\nbackup = {root / 'backup'}\n")
    assert not (root / "labels").exists()
    return data, images


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "darkcfg", *map(str, args)], capture_output=True, text=True, cwd=cwd)


BOXES = sum(len(r) for r in ROWS.values())


@pytest.mark.parametrize("which", ["data", "folder"])
def test_map_valid_calc_anchors_and_check_find_the_labels_beside_the_images(dataset, which, tmp_path):
    source = dataset[0] if which == "data" else dataset[1]
    r = _cli("map", source, CFG, "--size", "64")
    assert r.returncode == 0, r.stderr
    assert f"unique_truth_count = {BOXES} " in r.stdout, r.stdout
    r = _cli("valid", source, CFG, "--size", "64", "--out-dir", tmp_path / "res")
    assert r.returncode == 0 and "2 images" in r.stdout, r.stderr
    r = _cli("calc-anchors", source, "--num", "2", "--width", "64", "--height", "64", "-o", tmp_path / "a.txt")
    assert r.returncode == 0, r.stderr
    assert f"read labels from 2 images, {BOXES} boxes" in r.stdout, r.stdout
    r = _cli("data", "check", source, "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    train_row = next(line for line in r.stdout.splitlines() if line.startswith("train"))
    assert re.split(r"\s+", train_row)[1:] == ["2", "2", "2", "0", str(BOXES)], train_row


@pytest.mark.parametrize("which", ["data", "folder"])
def test_train_finds_the_same_labels(dataset, which, tmp_path):
    source = dataset[0] if which == "data" else dataset[1]
    r = _cli("train", source, CFG, "--size", "64", "--max-batches", "1", "--batch", "2", "--subdivisions", "1",
             "--workers", "0", "--no-augment", "--backup", tmp_path / "b", "--classes", "80")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no label file" not in r.stderr and "done: iteration 1" in r.stdout, r.stderr[-2000:]
