"""`darkcfg map --report DIR` on the reference's map set (yolov3-tiny, six images): the page's numbers equal
map's printout (TP / FP / FN per class and in all), the sizes' APs equal pycocotools' own summary with its
area ranges, the gallery's counts add up to the printed TP / FP / FN, and headless Chromium renders the page
with every picture loaded, no console error, and the boxes' colours visible."""
from __future__ import annotations

import contextlib
import io
import re

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from oracle import REF_IMAGES, SHARED, map_set, needs_shared, render_page

from darkcfg.cli import main

WEIGHTS = SHARED / "darknet" / "weights" / "yolov3-tiny.weights"
CFG = SHARED / "darknet" / "cfg" / "yolov3-tiny.cfg"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    map_set(d)
    from darkcfg.eval.runner import run_map
    from darkcfg.model.loading import load_trained
    model = load_trained(str(CFG), str(WEIGHTS))
    run = run_map(d / "coco.data", model, report=d / "page", progress=False)
    r = CliRunner().invoke(main, ["map", str(d / "coco.data"), str(CFG), str(WEIGHTS)])
    assert r.exit_code == 0, r.output
    return d, run, r.stdout.splitlines()


@needs_shared
def test_the_reports_numbers_are_maps(report):
    d, run, printout = report
    a = run.analysis
    line = next(ln for ln in printout if "TP = " in ln and "FN = " in ln)
    tp, fp, fn = (int(v) for v in re.search(r"TP = (\d+), FP = (\d+), FN = (\d+)", line).groups())
    assert (sum(c.tp for c in a.classes), sum(c.fp for c in a.classes), sum(c.fn for c in a.classes)) == (tp, fp, fn)
    for c in a.classes:
        m = next(ln for ln in printout if ln.startswith(f"class_id = {c.class_id}, "))
        assert f"(TP = {c.tp}, FP = {c.fp})" in m
    page = (d / "page" / "index.html").read_text()
    for ln in printout:  # the reference's printout first, unchanged
        assert ln.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in page
    # the gallery: every image with an error, its counts adding up to the printed totals
    assert sum(len(e.tp) for e in a.images) == tp and sum(len(e.fp) for e in a.images) == fp
    assert sum(len(e.fn) for e in a.images) == fn
    shown = a.worst()
    assert sum(e.errors for e in shown) == fp + fn
    captions = re.findall(r"TP (\d+)</span>, <span class=fp>FP (\d+)</span>, <span class=fn>FN (\d+)", page)
    assert [tuple(map(int, c)) for c in captions] == [(len(e.tp), len(e.fp), len(e.fn)) for e in shown]


@needs_shared
def test_size_aps_equal_pycocotools_summary(report):
    """The same detections and truths at the network size, through COCOeval's own summarize (its default
    area ranges) at IoU .5."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from darkcfg.infer.preprocess import network_scale
    d, run, _ = report
    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1} for c in range(80)]}
    res = []
    for k, e in enumerate(run.analysis.images):
        sx, sy = network_scale(e.width, e.height, 416, 416, False)
        gt["images"].append({"id": k + 1})
        labels = np.loadtxt(d / f"{REF_IMAGES[k]}.txt", ndmin=2)
        for cid, cx, cy, w, h in labels:
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": k + 1, "iscrowd": 0,
                                      "category_id": int(cid) + 1, "area": w * sx * h * sy,
                                      "bbox": [(cx - w / 2) * sx, (cy - h / 2) * sy, w * sx, h * sy]})
    for k, (_, dets, _) in enumerate(_records(d)):
        sx, sy = network_scale(dets.width, dets.height, 416, 416, False)
        for i, c in zip(*np.nonzero(dets.probs > 0)):
            cx, cy, w, h = (float(v) for v in dets.boxes[i])
            res.append({"image_id": k + 1, "category_id": int(c) + 1, "score": float(dets.probs[i, c]),
                        "bbox": [(cx - w / 2) * sx, (cy - h / 2) * sy, w * sx, h * sy]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(res), "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    mine = {s.name: s.ap for s in run.analysis.sizes}
    np.testing.assert_allclose([mine["small"], mine["medium"], mine["large"]],
                               [max(v, 0.0) for v in ev.stats[3:6]], atol=1e-9)
    assert sum(s.truths for s in run.analysis.sizes) == len(gt["annotations"])


def _records(d):
    from darkcfg.data.names import read_names
    from darkcfg.eval.runner import compute_map
    from darkcfg.model.loading import load_trained
    record: list = []
    compute_map(load_trained(str(CFG), str(WEIGHTS)), [str(d / f"{n}.jpg") for n in REF_IMAGES],
                read_names(SHARED / "darknet" / "coco.names", 80), progress=False, record=record)
    return record


@needs_shared
def test_chromium_renders_the_page(report, tmp_path):
    d, run, _ = report
    shot = tmp_path / "page.png"
    dom, console = render_page(d / "page" / "index.html", shot)
    n = 2 + len(run.analysis.worst())  # PR curves, confusion matrix, gallery
    assert f'data-images="{n}"' in dom and 'data-broken="0"' in dom, dom[:300]
    assert "error" not in console.lower() and "uncaught" not in console.lower(), console
    img = cv2.imread(str(shot))
    assert img is not None and img.std() > 10
    b, g, r = (img[..., k].astype(int) for k in range(3))
    for name, mask in (("green (TP)", (g > 150) & (r < 80) & (b < 80)), ("red (FP)", (r > 200) & (g < 70) & (b < 70)),
                       ("orange (FN)", (r > 230) & (g > 120) & (g < 180) & (b < 40))):
        assert mask.sum() > 50, f"no {name} pixels in the screenshot"
    assert "<table>" in dom and "Images with the most errors" in dom
