"""COCO metrics against a direct pycocotools call; `darkcfg valid` formats; `map` round trip and bad input."""
import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from oracle import IMAGES, REF, REF_IMAGES, needs_shared
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import darkcfg
from darkcfg.cli import main
from darkcfg.data.images import load_image
from darkcfg.eval.coco import CocoCollector
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.detector import Detector

REPO = Path(__file__).resolve().parent.parent
CFG = REPO / "cfg" / "yolov3-tiny.cfg"
WEIGHTS = REPO / "weights" / "yolov3-tiny.weights"
SAMPLE = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"


def _direct(gt, results):
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = gt
        g.createIndex()
        ev = COCOeval(g, g.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats)


def test_collector_equals_direct_pycocotools():
    rng = np.random.default_rng(0)
    col = CocoCollector(["a", "b"])
    gt_images, gt_anns, res = [], [], []
    for k in range(4):
        w, h = 200 + 10 * k, 100 + 5 * k
        t = np.array([[k % 2, .3, .4, .2, .3], [1, .7, .6, .3, .2]], np.float32)
        boxes = (t[:, 1:] + rng.normal(0, 0.02, (2, 4))).astype(np.float32)
        probs = np.zeros((2, 2), np.float32)
        probs[0, k % 2], probs[1, 1], probs[1, 0] = .9, .6, .2
        col.add(f"im{k}.jpg", DetectionArray(boxes, np.ones(2, np.float32), probs, w, h), t)
        # the same, written out by hand in COCO's own terms: pixel [x, y, w, h], category = class + 1
        gt_images.append({"id": k + 1, "width": w, "height": h})
        for c, cx, cy, bw, bh in t.astype(float):
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": k + 1, "category_id": int(c) + 1, "iscrowd": 0,
                            "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], "area": bw * w * bh * h})
        for i in range(2):
            cx, cy, bw, bh = boxes[i].astype(float)
            for c in np.flatnonzero(probs[i]):
                res.append({"image_id": k + 1, "category_id": int(c) + 1, "score": float(probs[i, c]),
                            "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]})
    gt = {"images": gt_images, "annotations": gt_anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    np.testing.assert_array_equal(col.evaluate(), _direct(gt, res))
    assert col.evaluate()[1] > 0.5


@pytest.fixture
def dataset(tmp_path):
    """Two images with labels equal to yolov3-tiny's own detections on them (thresh .25)."""
    model = darkcfg.load(CFG, WEIGHTS)
    im = cv2.imread(str(SAMPLE))
    paths = []
    for k, img in enumerate([im, im[:, ::-1].copy()]):
        p = tmp_path / f"img_{k + 1}.jpg"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
        lines = [f"{d.class_id} {d.relative[0]} {d.relative[1]} {d.relative[2]} {d.relative[3]}"
                 for d in model.detect(str(p))]
        p.with_suffix(".txt").write_text("\n".join(lines) + "\n")
        paths.append(str(p))
    (tmp_path / "valid.txt").write_text("\n".join(paths) + "\n")
    (tmp_path / "obj.data").write_text(f"valid = {tmp_path / 'valid.txt'}\nresults = {tmp_path / 'res'}\n")
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@needs_shared
def test_map_round_trip(tmp_path):
    """`map --coco` on the reference's own map set (../shared/reference/map: six images, labels that are not
    darkcfg's detections): the mAP line is the reference's, and the 12 COCO numbers are pycocotools' on a
    ground truth and results this test converts itself (labels -> pixel boxes, every (detection, class)
    with prob > 0 at map's thresh .005 / nms .45)."""
    for n in REF_IMAGES:
        (tmp_path / f"{n}.jpg").symlink_to(IMAGES / f"{n}.jpg")
        (tmp_path / f"{n}.txt").write_bytes((REF / "map" / "labels" / f"{n}.txt").read_bytes())
    (tmp_path / "valid.txt").write_text("".join(f"{tmp_path / n}.jpg\n" for n in REF_IMAGES))
    (tmp_path / "obj.data").write_text(f"valid = {tmp_path / 'valid.txt'}\n")
    r = run("map", tmp_path / "obj.data", CFG, WEIGHTS, "--coco")
    assert r.exit_code == 0, r.output
    ref_map = next(s for s in (REF / "map" / "yolov3-tiny_points0.txt").read_text().splitlines() if "mean" in s)
    assert ref_map in r.stdout.splitlines()
    printed = [s.rsplit("=", 1)[1].strip() for s in r.stdout.splitlines() if s.startswith(" Average")]
    gt = {"images": [], "annotations": [], "categories": [{"id": k + 1, "name": str(k)} for k in range(80)]}
    results = []
    det = Detector(darkcfg.load(CFG, WEIGHTS), thresh=0.005, nms=0.45)
    for k, n in enumerate(REF_IMAGES, 1):
        h, w = cv2.imread(str(tmp_path / f"{n}.jpg")).shape[:2]
        gt["images"].append({"id": k, "width": w, "height": h, "file_name": f"{n}.jpg"})
        for line in (tmp_path / f"{n}.txt").read_text().split("\n"):
            if line.split():
                c, cx, cy, bw, bh = (float(np.float32(v)) for v in line.split())  # fscanf("%f") into a float
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": k, "category_id": int(c) + 1,
                                          "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h],
                                          "area": bw * w * bh * h, "iscrowd": 0})
        d = det.detect_arrays([load_image(tmp_path / f"{n}.jpg")])[0]
        for i, c in zip(*np.nonzero(d.probs > 0)):
            cx, cy, bw, bh = (float(v) for v in d.boxes[i])
            results.append({"image_id": k, "category_id": int(c) + 1, "score": float(d.probs[i, c]),
                            "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]})
    assert len(printed) == 12 and float(printed[1]) > 0
    assert printed == [f"{v:0.3f}" for v in _direct(gt, results)]


def test_valid_coco_and_voc(dataset):
    r = run("valid", dataset / "obj.data", CFG, WEIGHTS, "--eval", "coco")
    assert r.exit_code == 0, r.output
    res = json.loads((dataset / "res" / "coco_results.json").read_text())
    assert {d["image_id"] for d in res} == {1, 2}  # get_coco_image_id: the number after the last '_'
    tie = max((d for d in res if d["category_id"] == 32), key=lambda d: d["score"])  # COCO id 32 is "tie"
    assert abs(tie["score"] - 0.86) < 0.02 and all(v >= 0 for v in tie["bbox"])
    assert min(d["score"] for d in res) > 0.001
    r = run("valid", dataset / "obj.data", CFG, WEIGHTS, "--eval", "voc")
    assert r.exit_code == 0
    lines = (dataset / "res" / "comp4_det_test_tie.txt").read_text().splitlines()
    name, p, x1, y1, x2, y2 = lines[0].split()
    assert name in ("img_1", "img_2") and 1 <= float(x1) < float(x2) <= 512 and 1 <= float(y1) < float(y2) <= 600


def test_map_bad_input(dataset, tmp_path):
    valid = dataset / "valid.txt"
    cases = []
    valid.write_text(valid.read_text() + f"{dataset / 'missing.jpg'}\n")
    cases.append(("missing.jpg does not exist", None))
    for expect, _ in cases:
        r = run("map", dataset / "obj.data", CFG, WEIGHTS)
        assert r.exit_code == 1 and expect in r.output and "Traceback" not in r.output
    valid.write_text("")
    r = run("map", dataset / "obj.data", CFG, WEIGHTS)
    assert r.exit_code == 1 and "the list is empty" in r.output
    valid.write_text(str(dataset / "img_1.jpg") + "\n")
    (dataset / "img_1.txt").write_text("80 0.5 0.5 0.1 0.1\n")
    r = run("map", dataset / "obj.data", CFG, WEIGHTS)
    assert r.exit_code == 1 and "img_1.txt:1: class id 80, expected 0..79" in r.output
    names = tmp_path / "two.names"
    names.write_text("a\nb\n")
    r = run("map", dataset / "obj.data", CFG, WEIGHTS, "-n", names)
    assert r.exit_code == 1 and "two.names: has 2 names, expected 80" in r.output


def test_coco_gt_file_and_plots(dataset, tmp_path):
    """A COCO instances file describing the same labels gives the same numbers as the labels do."""
    images, anns = [], []
    for k, p in enumerate(sorted(dataset.glob("img_*.jpg"))):
        h, w = cv2.imread(str(p)).shape[:2]
        images.append({"id": 100 + k, "file_name": f"val/{p.name}", "width": w, "height": h})
        for line in p.with_suffix(".txt").read_text().splitlines():
            c, cx, cy, bw, bh = (float(v) for v in line.split())
            anns.append({"id": len(anns) + 1, "image_id": 100 + k, "category_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                         13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32][int(c)],
                         "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], "area": bw * w * bh * h,
                         "iscrowd": 0})
    cats = [{"id": i, "name": str(i)} for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20,
                                                21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
                                                41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58,
                                                59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79,
                                                80, 81, 82, 84, 85, 86, 87, 88, 89, 90)]
    gt = tmp_path / "instances_val.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    a = run("map", dataset / "obj.data", CFG, WEIGHTS, "--coco")
    b = run("map", dataset / "obj.data", CFG, WEIGHTS, "--coco-gt", gt, "--plots", tmp_path / "plots")
    assert a.exit_code == b.exit_code == 0, b.output
    tail = [line for line in a.stdout.splitlines() if "@[ IoU" in line]
    assert len(tail) == 12 and tail == [line for line in b.stdout.splitlines() if "@[ IoU" in line]
    for name in ("pr_curves.png", "confusion_matrix.png"):
        img = cv2.imread(str(tmp_path / "plots" / name))
        assert img is not None and img.shape[0] > 200 and img.min() < 100


def test_valid_takes_a_checkpoint_and_a_size(dataset, tmp_path):
    """`valid DATA model.pt --size 320`, as `detect` and `map` take them."""
    pt = tmp_path / "m.pt"
    assert run("convert", WEIGHTS, pt, "--cfg", CFG).exit_code == 0
    r = run("valid", dataset / "obj.data", pt, "--size", "320", "--eval", "coco", "--out-dir", tmp_path / "res")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "res" / "coco_results.json").read_text())
