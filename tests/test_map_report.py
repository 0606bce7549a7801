"""`darkcfg map --report DIR` on the reference's map set (yolov3-tiny, six images): the page's numbers equal
map's printout (TP / FP / FN per class and in all), the sizes' APs equal pycocotools' own summary with its
area ranges, the gallery's counts add up to the printed TP / FP / FN, and headless Chromium renders the page
with every picture loaded, no console error, and the boxes' colours visible."""
from __future__ import annotations

import contextlib
import io
import re
from html.parser import HTMLParser
from pathlib import Path

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


HOSTILE = ["<b>bold</b>", 'cat & "dog"', "it's <i>"]  # class names that are markup, an entity and quotes


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """write_report on a hand-built analysis: markup, &, quotes and apostrophes in the class names, the image file
    names, the printout and the title; images of 100x60 (enlarged x4), 128x96 (x3), 400x300 (as is) and
    1000x600 (shrunk to 480 wide)."""
    from darkcfg.eval.analysis import Analysis, ClassErrors, ImageErrors, SizeAP
    from darkcfg.eval.html_report import write_report
    from darkcfg.eval.metrics import ClassAP, MapResult

    d = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    images = []
    for k, (name, w, h) in enumerate([("<tiny> & 'small'.png", 100, 60), ('a<b>&"c\'.png', 128, 96),
                                      ("mid>.png", 400, 300), ("big & wide.png", 1000, 600)]):
        path = d / name
        cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        box = np.array([0.5, 0.5, 0.4, 0.4], np.float32)
        images.append(ImageErrors(str(path), w, h, tp=[(k % 3, box, 0.9)], fp=[((k + 1) % 3, box * 0.8, 0.4)],
                                  fn=[((k + 2) % 3, box * 1.1)] * (k + 1)))
    classes = [ClassErrors(c, n, 5, 2, 1, 3, 0.25 * c, 0.3, 0.5, 0.6, 0.4) for c, n in enumerate(HOSTILE)]
    analysis = Analysis(classes, images, [SizeAP(s, 0.1, 2) for s in ("small", "medium", "large")], 0.25, 0.5)
    curve = np.array([1.0, 0.5], np.float32)
    result = MapResult([ClassAP(c, 0.25 * c, 5, 2, 1, curve, curve[::-1].copy(), curve) for c in range(3)], 0.25, 0,
                       0.5, 0.25, 9, 15, 6, 3, 0.7, np.eye(4, dtype=np.int64))
    printout = [f"class_id = {c}, name = {n}, ap = 25.00%   \t (TP = 2, FP = 1) " for c, n in enumerate(HOSTILE)]
    printout += [" for conf_thresh = 0.25, precision = 0.67, recall = 0.40 <&> \"q\" 'a'"]
    title = "yolo <v3> & 'tiny' \"report\""
    page = write_report(d / "page", analysis, result, HOSTILE, printout, title)
    return page, analysis, printout, title


class _Page(HTMLParser):
    """The page as a browser's parser reads it: the tags, the text of each <pre>, <td>, <figcaption>, <title> and
    <h1>, and the attributes of each <img>."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: dict[str, list[str]] = {}
        self.imgs: list[dict] = []
        self._open: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        elif tag in ("pre", "td", "figcaption", "title", "h1"):
            self._open.append(tag)
            self.text.setdefault(tag, []).append("")

    def handle_endtag(self, tag):
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data):
        if self._open:
            self.text[self._open[-1]][-1] += data


@pytest.fixture(scope="module")
def hostile_page(hostile_report):
    page, *_ = hostile_report
    return _Page(page.read_text())


def test_names_and_the_printout_reach_the_page_as_text(hostile_report, hostile_page):
    """Parsed as a browser parses it, the page has only its own tags, and each data text reads back as it is."""
    _, analysis, printout, title = hostile_report
    p = hostile_page
    assert set(p.tags) <= {"html", "head", "meta", "title", "style", "script", "body", "h1", "h2", "pre", "table",
                           "tr", "th", "td", "p", "span", "img", "figure", "figcaption"}, set(p.tags)
    assert p.text["title"] == [title] and p.text["h1"] == [title]
    assert p.text["pre"] == ["\n".join(printout)]
    assert [n for n in HOSTILE if n in p.text["td"]] == HOSTILE  # each class name is a whole table cell
    shown = analysis.worst()
    gallery = [i for i in p.imgs if i["src"].startswith("gallery_")]
    assert [i["alt"] for i in gallery] == [Path(e.path).name for e in shown]
    assert [c.split(": TP ")[0] for c in p.text["figcaption"]] == [e.path for e in shown]


def test_gallery_pictures_are_shown_at_their_own_size(hostile_report, hostile_page):
    """Each gallery PNG is its image shrunk to 480 px or enlarged by a whole factor (to 320 px or more: 100 -> 400,
    128 -> 384), pixels as exact blocks, and the page shows it at exactly that size."""
    page, analysis, _, _ = hostile_report
    imgs = {i["src"]: i for i in hostile_page.imgs}
    for k, e in enumerate(analysis.worst()):
        png = cv2.imread(str(page.parent / f"gallery_{k:02d}.png"))
        h, w = png.shape[:2]
        assert (imgs[f"gallery_{k:02d}.png"]["width"], imgs[f"gallery_{k:02d}.png"]["height"]) == (str(w), str(h))
        if max(e.width, e.height) > 480:
            assert max(w, h) == 480
            continue
        scale = w // e.width
        assert (w, h) == (e.width * scale, e.height * scale) and max(w, h) >= 320
        assert scale == 1 or max(e.width, e.height) * (scale - 1) < 320  # the smallest such factor
        original = cv2.imread(e.path)
        mask = np.ones((h, w), bool)  # the pixels no box or label covers: the original's, each a scale x scale block
        mask[round(h * 0.1) - 20:round(h * 0.9) + 4, round(w * 0.1) - 4:round(w * 0.9) + 4] = False
        blocks = cv2.resize(original, (w, h), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(png[mask], blocks[mask])
        assert np.array_equal(blocks[::scale, ::scale], original)


def test_chromium_shows_gallery_pictures_unscaled(hostile_report, tmp_path):
    """Headless Chromium lays the page out: each gallery picture's displayed size equals its pixel size."""
    import subprocess

    from oracle import chromium

    exe = chromium()
    page, *_ = hostile_report
    probe = page.parent / "probe.html"
    probe.write_text(page.read_text().replace("</body>", "<script>window.addEventListener('load',function(){var s=[];"
                     "for(const i of document.images){if(i.src.includes('gallery_')){s.push(i.naturalWidth+'x'+"
                     "i.naturalHeight+'='+i.getBoundingClientRect().width+'x'+i.getBoundingClientRect().height);}}"
                     "document.body.setAttribute('data-sizes',s.join(' '));});</script></body>"))
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--window-size=1280,2000", "--dump-dom", probe.resolve().as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    sizes = re.search(r'data-sizes="([^"]*)"', dom).group(1).split()
    assert len(sizes) == 4 and all(s.split("=")[0] == s.split("=")[1] for s in sizes), sizes
