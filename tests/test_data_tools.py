"""`darkcfg data check` on a hand-built dataset with each problem planted once (each named with its file:line
and nothing else; `--fix` output passes the check and trains), and conversions COCO/VOC <-> Darknet labels
against the originals and pycocotools' reading of the result."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from darkcfg.cli import main
from darkcfg.data.annotations import coco_to_yolo, voc_to_yolo, yolo_to_coco
from darkcfg.data.check import check_dataset
from darkcfg.data.dataset import label_path, read_labels
from darkcfg.train.preflight import run_check

CFG = """[net]
batch=2
subdivisions=1
width=64
height=64
channels=3
learning_rate=0.001
max_batches=10
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
size=1
filters=21
activation=linear
[yolo]
mask=0,1,2
anchors=6,6,13,19,25,25
classes=2
num=3
"""


def image(path, seed, size=(48, 40)):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture()
def planted(tmp_path):
    """A dataset with one of each problem; returns (data file, cfg file, {kind: expected where})."""
    d = tmp_path / "set"
    d.mkdir()
    for k, name in enumerate("abcef"):
        image(d / f"{name}.jpg", k)
    (d / "a.txt").write_text("0 0.5 0.5 0.2 0.3\n1 0.25 0.25 0.1 0.1\n")
    (d / "b.txt").write_text("\n".join([
        "2 0.5 0.5 0.4 0.4",         # 1 fine
        "1 0.5 oops 0.1 0.1",        # 2 not numeric
        "0 nan 0.5 0.1 0.1",         # 3 NaN
        "5 0.5 0.5 0.1 0.1",         # 4 class id out of range (classes=3)
        "0 24 20 9.6 8",             # 5 pixels (image 48x40)
        "1 0.5 0.5 0 0.2",           # 6 empty box
        "2 0.5 0.5 0.4 0.4",         # 7 duplicate of line 1
        "0 0.3 0.3 0.001 0.001",     # 8 tiny box
        "1 0.2 0.2 0.1",             # 9 four fields
    ]) + "\n")
    (d / "c.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # unreadable
    (d / "c.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    # e.jpg: no label file (counted, not a problem)
    shutil.copy(d / "a.jpg", d / "f.jpg")  # duplicate content of a
    (d / "f.txt").write_text("0 0.5 0.5 0.2 0.3\n")
    image(d / "v.jpg", 9)
    (d / "v.txt").write_text("1 0.5 0.5 0.3 0.3\n")
    shutil.copy(d / "a.jpg", d / "w.jpg")  # in train and valid
    (d / "w.txt").write_text("0 0.5 0.5 0.2 0.3\n")
    train = [d / n for n in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg")]  # d.jpg: missing
    (tmp_path / "train.txt").write_text("".join(f"{p}\n" for p in train))
    (tmp_path / "valid.txt").write_text(f"{d / 'v.jpg'}\n{d / 'w.jpg'}\n")
    (tmp_path / "obj.names").write_text("red\ngreen\nblue\nextra\n")  # 4 names, classes=3
    data = tmp_path / "obj.data"
    data.write_text(f"classes = 3\ntrain = {tmp_path / 'train.txt'}\nvalid = {tmp_path / 'valid.txt'}\n"
                    f"names = {tmp_path / 'obj.names'}\nbackup = {tmp_path / 'backup'}/\n")
    cfg = tmp_path / "obj.cfg"
    cfg.write_text(CFG)
    b = label_path(str(d / "b.jpg"))
    expected = {
        ("not 5 numbers", f"{b}:2"), ("NaN or infinite", f"{b}:3"), ("class id out of range", f"{b}:4"),
        ("outside [0, 1]", f"{b}:5"), ("empty box", f"{b}:6"), ("duplicate row", f"{b}:7"),
        ("not 5 numbers", f"{b}:9"), ("unreadable image", str(d / "c.jpg")), ("missing image", str(d / "d.jpg")),
        ("duplicate image", str(d / "f.jpg")), ("in train and valid", str(d / "w.jpg")),
        ("names vs classes", str(tmp_path / "obj.names")),
        ("cfg classes", f"{cfg}:26"), ("cfg filters", f"{cfg}:21"), ("box much smaller than a cell", b),
    }
    return data, cfg, expected


def test_the_check_names_every_planted_problem_and_nothing_else(planted):
    data, cfg, expected = planted
    run = run_check(data, cfg, progress=False)
    found = {(p.kind, p.where) for p in run.problems}
    assert found == expected, (found - expected, expected - found)
    assert run.blocking
    pixel = next(p for p in run.problems if p.kind == "outside [0, 1]")
    assert "looks like pixels (the image is 48x40)" in pixel.message
    check = run.dataset
    assert sum(e.size is not None and not e.has_labels for e in check.images) == 1  # e.jpg counted
    table = check.summary()
    assert "train" in table and "valid" in table and "class id out of range" in table


def test_cli_exit_status_and_one_line_per_problem(planted):
    data, cfg, expected = planted
    r = CliRunner().invoke(main, ["data", "check", str(data), str(cfg), "-q"])
    assert r.exit_code == 1 and "problem(s) block training" in r.output
    r = CliRunner().invoke(main, ["data", "check", str(data), str(cfg)])
    lines = [ln for ln in r.output.splitlines() if ": error: " in ln or ": warning: " in ln]
    assert len(lines) == len(expected) and "Traceback" not in r.output


def test_fix_writes_a_copy_that_passes_and_trains(planted, tmp_path):
    from darkcfg.train.trainer import Trainer, TrainOptions
    data, cfg, _ = planted
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    run = run_check(data, cfg, fix=tmp_path / "clean", progress=False)
    assert all(p.read_bytes() == b for p, b in before.items())  # nothing of the user's changed
    fixed = run.fixed_cfg
    assert fixed == cfg.with_name("obj.fixed.cfg")
    assert "classes=3" in fixed.read_text() and "filters=24" in fixed.read_text()
    again = run_check(run.clean.data_file, fixed, progress=False)
    assert not again.blocking, [p.line() for p in again.problems]
    assert {p.kind for p in again.problems} <= {"box much smaller than a cell", "anchors fit"}
    pixel_row = [e for e in again.dataset.images if e.path.endswith("b.jpg")][0].rows
    assert any(np.allclose(r[1:], [0.5, 0.5, 0.2, 0.2]) for r in pixel_row)  # the pixel row made relative
    r = Trainer(TrainOptions(data=str(run.clean.data_file), cfg=str(fixed), max_batches=2, workers=0,
                             progress=False)).run()
    assert r.iteration == 2


def test_a_mask_past_num_is_a_cfg_problem_that_is_not_fixed(planted, tmp_path):
    data, cfg, _ = planted
    bad = tmp_path / "mask.cfg"
    bad.write_text(CFG.replace("mask=0,1,2", "mask=0,1,3").replace("classes=2", "classes=3")
                   .replace("filters=21", "filters=24"))
    run = run_check(data, bad, progress=False)
    assert [p.where for p in run.problems if p.kind == "cfg mask"] == [f"{bad}:24"]


def test_a_folder_is_checked_like_a_data_file(tmp_path):
    image(tmp_path / "x.jpg", 1)
    (tmp_path / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "set.names").write_text("only\n")
    check = check_dataset(tmp_path, progress=False)
    assert check.classes == 1 and not check.problems and len(check.images) == 1


def test_coco_to_yolo_and_back(tmp_path):
    from pycocotools.coco import COCO
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k, (w, h) in enumerate([(64, 48), (50, 70)]):
        image(imgs / f"im{k}.jpg", k, (w, h))
        images.append({"id": 100 + k, "file_name": f"im{k}.jpg", "width": w, "height": h})
        for _ in range(3):
            x, y = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
            bw, bh = rng.uniform(2, w / 2), rng.uniform(2, h / 2)
            anns.append({"id": len(anns) + 1, "image_id": 100 + k, "category_id": int(rng.choice([3, 7])),
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    r = coco_to_yolo(tmp_path / "gt.json", imgs, tmp_path / "yolo")
    assert r.images == 2 and r.boxes == 6
    assert (tmp_path / "yolo" / "coco.names").read_text() == "a\nb\n"  # by category id: 3, 7
    for im in images:
        rows = read_labels(tmp_path / "yolo" / "images" / f"{im['file_name'][:-4]}.txt")
        mine = [a for a in anns if a["image_id"] == im["id"]]
        for row, a in zip(rows, mine):
            x, y, bw, bh = a["bbox"]
            w, h = im["width"], im["height"]
            assert int(row[0]) == {3: 0, 7: 1}[a["category_id"]]
            np.testing.assert_allclose(row[1:], [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h], atol=1e-6)
    yolo_to_coco(tmp_path / "yolo" / "coco.txt", ["a", "b"], tmp_path / "back.json")
    coco = COCO(str(tmp_path / "back.json"))
    assert sorted(coco.getImgIds()) == [100, 101] and sorted(coco.getCatIds()) == [3, 7]
    for a in anns:
        got = [b for b in coco.loadAnns(coco.getAnnIds(imgIds=[a["image_id"]]))
               if np.allclose(b["bbox"], a["bbox"], atol=1e-4)]
        assert len(got) == 1 and got[0]["category_id"] == a["category_id"]
        np.testing.assert_allclose(got[0]["bbox"], a["bbox"], rtol=1e-6, atol=1e-5)


def test_voc_to_yolo_and_to_coco(tmp_path):
    from pycocotools.coco import COCO
    ann, jpeg = tmp_path / "Annotations", tmp_path / "JPEGImages"
    ann.mkdir()
    jpeg.mkdir()
    objects = {"p1": [("cat", 10, 12, 40, 30, 0), ("dog", 5, 5, 20, 44, 0), ("dog", 1, 1, 8, 8, 1)],
               "p2": [("cat", 3, 4, 60, 33, 0)]}
    for stem, objs in objects.items():
        image(jpeg / f"{stem}.jpg", 3, (64, 48))
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = f"{stem}.jpg"
        size = ET.SubElement(root, "size")
        for k, v in (("width", 64), ("height", 48), ("depth", 3)):
            ET.SubElement(size, k).text = str(v)
        for name, x0, y0, x1, y1, diff in objs:
            o = ET.SubElement(root, "object")
            ET.SubElement(o, "name").text = name
            ET.SubElement(o, "difficult").text = str(diff)
            bb = ET.SubElement(o, "bndbox")
            for k, v in zip(("xmin", "ymin", "xmax", "ymax"), (x0, y0, x1, y1)):
                ET.SubElement(bb, k).text = str(v)
        ET.ElementTree(root).write(ann / f"{stem}.xml")
    r = voc_to_yolo(ann, jpeg, tmp_path / "yolo")
    assert r.images == 2 and r.boxes == 3 and len(r.skipped) == 1  # the difficult dog
    rows = read_labels(tmp_path / "yolo" / "images" / "p1.txt")
    np.testing.assert_allclose(rows[0], [0, ((10 + 40) / 2 - 1) / 64, ((12 + 30) / 2 - 1) / 48, 30 / 64, 18 / 48],
                               atol=1e-6)  # voc_label.py's convert
    yolo_to_coco(tmp_path / "yolo" / "voc.txt", ["cat", "dog"], tmp_path / "voc.json")
    coco = COCO(str(tmp_path / "voc.json"))
    boxes = sorted(tuple(round(v, 4) for v in a["bbox"]) for a in coco.loadAnns(coco.getAnnIds()))
    expect = sorted((x0 - 1.0, y0 - 1.0, float(x1 - x0), float(y1 - y0)) for objs in objects.values()
                    for _, x0, y0, x1, y1, d in objs if not d)
    np.testing.assert_allclose(boxes, expect, atol=1e-4)
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert cats == {1: "cat", 2: "dog"}


def test_convert_cli_and_bad_input_are_one_line(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "imgs").mkdir()
    r = CliRunner().invoke(main, ["data", "convert", "coco", str(tmp_path / "bad.json"), "--images",
                                  str(tmp_path / "imgs"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 1 and "not a COCO instances file" in r.output and "Traceback" not in r.output


def test_a_class_id_equal_to_classes_is_out_of_range(tmp_path):
    """Ids run 0..classes-1 (the reference's classes=3 means ids 0, 1, 2): id 3 of 3 is out of range, id 2 is not;
    the label file's check and `data check` on a folder with --classes both say so, naming the line."""
    from darkcfg.data.check import check_label_file

    image(tmp_path / "x.jpg", 1)
    label = tmp_path / "x.txt"
    label.write_text("2 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.1 0.1\n-1 0.4 0.4 0.1 0.1\n0 0.3 0.3 0.2 0.2\n")
    problems: list = []
    kept, _ = check_label_file(str(label), 3, (48, 40), problems)
    assert [(p.kind, p.where) for p in problems] == [("class id out of range", f"{label}:2"),
                                                     ("class id out of range", f"{label}:3")]
    assert "class id 3, expected 0..2 (classes=3)" in problems[0].message
    assert sorted(kept[:, 0].tolist()) == [0.0, 2.0]
    check = check_dataset(tmp_path, classes=3, progress=False)
    assert [(p.kind, p.where) for p in check.problems] == [("class id out of range", f"{label}:2"),
                                                           ("class id out of range", f"{label}:3")]
