"""Label rows that are not boxes (NaN, infinite, negative, above 1, empty) are named file:line and skipped
by every reader: `calc-anchors`, `map` and training."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from darkcfg.train.augment import AugmentConfig
from darkcfg.train.batches import Item, TrainDataset

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"
ROWS = ["0 0.5 0.4 0.3 0.6", "0 0.5 0.5 inf 0.1", "0 nan 0.5 0.1 0.1", "0 0.5 0.5 -0.2 0.1", "0 1.5 0.5 0.1 0.1",
        "0 0.5 0.5 0.0 0.1", "0 0.3 0.3 0.2 0.2"]
BAD_LINES = (2, 3, 4, 5, 6)


def _dataset(tmp_path: Path) -> Path:
    shutil.copy(SAMPLE, tmp_path / "a.jpg")
    (tmp_path / "a.txt").write_text("\n".join(ROWS) + "\n")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.jpg'}\n")
    (tmp_path / "obj.names").write_text("".join(f"c{k}\n" for k in range(80)))
    data = tmp_path / "obj.data"
    data.write_text(f"classes = 80\ntrain = {tmp_path / 'list.txt'}\nvalid = {tmp_path / 'list.txt'}\n"
                    f"names = {tmp_path / 'obj.names'}\n")
    return data


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "darkcfg", *map(str, args)], capture_output=True, text=True)


def _named(text: str, label: Path) -> bool:
    return all(f"{label}:{n}: label row skipped" in text for n in BAD_LINES) and f"{label}:1:" not in text


def test_calc_anchors_skips_and_names_bad_rows(tmp_path):
    data = _dataset(tmp_path)
    r = _cli("calc-anchors", data, "--num", "2", "--width", "416", "--height", "416", "-o", tmp_path / "anchors.txt")
    assert r.returncode == 0, r.stderr
    assert _named(r.stderr, tmp_path / "a.txt"), r.stderr
    assert "2 boxes" in r.stdout and "inf" not in (tmp_path / "anchors.txt").read_text()


def test_map_skips_and_names_bad_rows(tmp_path):
    data = _dataset(tmp_path)
    r = _cli("map", data, REPO / "cfg" / "yolov3-tiny.cfg")
    assert r.returncode == 0, r.stderr
    assert _named(r.stderr, tmp_path / "a.txt"), r.stderr
    assert "unique_truth_count = 2 " in r.stdout


def test_training_skips_and_names_bad_rows(tmp_path):
    _dataset(tmp_path)
    cfg = AugmentConfig(width=64, height=64, classes=1)
    sample = TrainDataset([str(tmp_path / "a.jpg")], cfg, augment=False)[Item(0, 64, 64, 0)]
    label = tmp_path / "a.txt"
    assert sample.out_of_range == len(BAD_LINES) and _named("\n".join(sample.label_issues), label)
    assert len(sample.truths) == 2 and np.isfinite(sample.truths).all()
