"""Hardening, second round: no command writes over, moves or unlinks a file it reads (the `Sources` guard of
darkcfg.files, through symlinks and hard links), `data convert` stays inside `--images` and names each malformed
record in one line, `data check --fix` keeps its output in the new folder, `download` stops at the expected size,
and training says when it stops reading a label file.

Every refused command is checked the same way: exit status 1, one line, no traceback, and every file of the
user's folder hashed before and after."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import threading
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from darkcfg.cli import main
from darkcfg.data.dataset import DataWarning, read_labels
from darkcfg.errors import DarkcfgError
from darkcfg.files import SourceError, Sources, write_text

REPO = Path(__file__).resolve().parent.parent
CFG = REPO / "cfg" / "yolov3-tiny.cfg"
WEIGHTS = REPO / "weights" / "yolov3-tiny.weights"
needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def tree(root: Path) -> dict[str, str]:
    """Every file under root (symlinks as their target) -> SHA-256 of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "-> " + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(r, *words: str, progress: bool = False) -> None:
    """Exit status 1 and one line of output without a traceback, containing each of `words` (`progress`: after
    a progress bar's line)."""
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.output
    lines = r.output.strip().splitlines()[1 if progress else 0:]
    assert len(lines) == 1, r.output
    for w in words:
        assert w in lines[0], (w, lines[0])


def image(path: Path, seed: int, size: tuple[int, int] = (32, 24)) -> None:
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def coco_doc(n: int = 2) -> dict:
    images = [{"id": 10 + k, "file_name": f"im{k}.jpg", "width": 32, "height": 24} for k in range(n)]
    anns = [{"id": k + 1, "image_id": 10 + k, "category_id": 3, "bbox": [2.0, 3.0, 10.0, 8.0], "area": 80.0,
             "iscrowd": 0} for k in range(n)]
    return {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "thing"}]}


@pytest.fixture
def coco(tmp_path):
    """A COCO-style layout: ds/images/im0.jpg, im1.jpg and ds/annotations/instances.json."""
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "annotations").mkdir()
    for k in range(2):
        image(ds / "images" / f"im{k}.jpg", k)
    (ds / "annotations" / "instances.json").write_text(json.dumps(coco_doc()))
    return ds


def voc_xml(path: Path, file_name: str, objects: list, width: object = 32, height: object = 24) -> None:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    for name, box in objects:
        o = ET.SubElement(root, "object")
        ET.SubElement(o, "name").text = name
        bb = ET.SubElement(o, "bndbox")
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bb, k).text = str(v)
    ET.ElementTree(root).write(path)


# ---- 1. data convert never deletes or replaces the images it reads ----

def test_convert_coco_into_the_folder_that_holds_the_images_is_refused(coco):
    """--out-dir ds with --images ds/images: ds/images is both; the images were unlinked before the fix."""
    before = tree(coco)
    r = run("data", "convert", "coco", coco / "annotations" / "instances.json", "--images", coco / "images",
            "--out-dir", coco)
    refused(r, str(coco / "images"))
    assert tree(coco) == before


def test_convert_voc_into_the_folder_that_holds_the_images_is_refused(tmp_path):
    ds = tmp_path / "voc"
    (ds / "images").mkdir(parents=True)
    (ds / "Annotations").mkdir()
    image(ds / "images" / "p.jpg", 1)
    voc_xml(ds / "Annotations" / "p.xml", "p.jpg", [("cat", (2, 2, 20, 20))])
    before = tree(ds)
    refused(run("data", "convert", "voc", ds / "Annotations", "--images", ds / "images", "--out-dir", ds),
            str(ds / "images"))
    assert tree(ds) == before


@needs_symlinks
@pytest.mark.parametrize("how", ["out-images-is-a-link", "images-given-through-a-link"])
def test_convert_through_a_symlinked_images_folder_is_refused(coco, tmp_path, how):
    out = tmp_path / "out"
    out.mkdir()
    images = coco / "images"
    if how == "out-images-is-a-link":
        (out / "images").symlink_to(images, target_is_directory=True)
    else:  # --images names a link to out/images, which holds the real files
        shutil.move(str(images), out / "images")
        images.symlink_to(out / "images", target_is_directory=True)
    before, before_out = tree(coco), tree(out)
    r = run("data", "convert", "coco", coco / "annotations" / "instances.json", "--images", images, "-o", out)
    refused(r, "images")
    assert tree(coco) == before and tree(out) == before_out


def test_convert_refuses_a_destination_hard_linked_to_another_source(coco, tmp_path):
    """out/images/im0.jpg is a hard link to the source im1.jpg: refused; a hard link to its own source (a
    previous run) is the file already in place: nothing unlinked, nothing to do."""
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    os.link(coco / "images" / "im1.jpg", out / "images" / "im0.jpg")
    before = tree(coco)
    r = run("data", "convert", "coco", coco / "annotations" / "instances.json", "--images", coco / "images",
            "-o", out)
    refused(r, str(out / "images" / "im0.jpg"), str(coco / "images" / "im1.jpg"))
    assert tree(coco) == before and (out / "images" / "im0.jpg").samefile(coco / "images" / "im1.jpg")
    (out / "images" / "im0.jpg").unlink()
    os.link(coco / "images" / "im0.jpg", out / "images" / "im0.jpg")  # as a first run leaves it
    r = run("data", "convert", "coco", coco / "annotations" / "instances.json", "--images", coco / "images",
            "-o", out)
    assert r.exit_code == 0, r.output
    assert tree(coco) == before and (out / "images" / "im0.jpg").samefile(coco / "images" / "im0.jpg")
    assert (out / "images" / "im0.txt").read_text().startswith("0 ")


# ---- the guard itself ----

def test_sources_guard_sees_through_symlinks_hard_links_and_folders(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"a")
    (src / "other.txt").write_bytes(b"o")
    guard = Sources([src / "a.jpg"], folders=[src])
    for dest in (src / "a.jpg", src / "other.txt"):
        with pytest.raises(SourceError, match=str(src)):
            guard.check_dest(dest)
    os.link(src / "a.jpg", tmp_path / "hard.jpg")
    with pytest.raises(SourceError, match="a.jpg"):
        guard.check_dest(tmp_path / "hard.jpg")
    guard.check_dest(tmp_path / "new.jpg")
    guard.check_dest(src / "new.txt")  # a new file in a source folder replaces nothing
    if os.name != "nt":
        (tmp_path / "link").symlink_to(src, target_is_directory=True)
        with pytest.raises(SourceError):
            guard.check_dest(tmp_path / "link" / "a.jpg")
    with pytest.raises(SourceError):  # the atomic writers enforce it before writing
        write_text(src / "a.jpg", "gone", sources=guard)
    assert (src / "a.jpg").read_bytes() == b"a"
    assert sorted(p.name for p in src.iterdir()) == ["a.jpg", "other.txt"]  # no temporary left
    assert isinstance(SourceError("x"), DarkcfgError)


# ---- 6. detect --out-dir never replaces the images and videos it reads ----

def test_detect_into_the_image_folder_is_refused(tmp_path):
    d = tmp_path / "pics"
    d.mkdir()
    image(d / "a.jpg", 1, (64, 48))
    image(d / "b.png", 2, (64, 48))
    before = tree(d)
    r = run("detect", CFG, d, "-w", WEIGHTS, "--size", "64", "--out-dir", d, "-q")
    refused(r, str(d / "a.jpg"))
    assert tree(d) == before
    r = run("detect", CFG, d, "-w", WEIGHTS, "--size", "64", "--nosave", "-o", d / "b.png", "-q")  # JSON over it
    refused(r, str(d / "b.png"))
    assert tree(d) == before


def test_detect_into_the_video_folder_is_refused(tmp_path):
    d = tmp_path / "clips"
    d.mkdir()
    w = cv2.VideoWriter(str(d / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    if not w.isOpened():
        pytest.skip("this OpenCV cannot write mp4")
    for k in range(2):
        w.write(np.full((48, 64, 3), 40 * k, np.uint8))
    w.release()
    before = tree(d)
    refused(run("detect", CFG, d / "clip.mp4", "-w", WEIGHTS, "--size", "64", "--out-dir", d, "-q"),
            str(d / "clip.mp4"))
    assert tree(d) == before


# ---- 10. data check --fix ----

def _labelled(folder: Path) -> None:
    folder.mkdir(parents=True)
    for k in range(2):
        image(folder / f"x{k}.jpg", k)
        (folder / f"x{k}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (folder / "set.names").write_text("thing\n")


def test_fix_keeps_labels_beside_the_images_of_the_new_folder(tmp_path):
    """--fix under a JPEGImages path: the labels went to a sibling labels/ folder outside the new one."""
    src = tmp_path / "data"
    _labelled(src)
    fix = tmp_path / "VOC" / "JPEGImages" / "clean"
    before = tree(src)
    r = run("data", "check", src, "--fix", fix, "-q")
    assert r.exit_code == 0, r.output
    assert tree(src) == before
    assert not (tmp_path / "VOC" / "labels").exists()
    assert sorted(p.name for p in (fix / "train").iterdir()) == ["x0.jpg", "x0.txt", "x1.jpg", "x1.txt"]
    np.testing.assert_allclose(read_labels(fix / "train" / "x0.txt"), [[0, 0.5, 0.5, 0.2, 0.2]], atol=1e-6)


def test_fix_never_replaces_an_existing_fixed_cfg_and_writes_nothing_when_refused(tmp_path):
    src = tmp_path / "data"
    _labelled(src)
    cfg = src / "net.cfg"
    cfg.write_text(CFG.read_text())  # classes=80: fixing it for 1 class changes the text
    before = tree(src)
    refused(run("data", "check", src, cfg, "--fix", src, "-q"), str(src))  # the source folder: not new
    assert tree(src) == before  # and no net.fixed.cfg written before the refusal
    (src / "net.fixed.cfg").write_text("my own edits\n")
    r = run("data", "check", src, cfg, "--fix", tmp_path / "clean", "-q")
    assert r.exit_code == 1 and "Traceback" not in r.output  # 1: the cfg's classes=80 blocks training
    assert (src / "net.fixed.cfg").read_text() == "my own edits\n"
    assert "classes=1" in (src / "net.fixed-2.cfg").read_text()
    assert f"fixed cfg: {src / 'net.fixed-2.cfg'}" in r.output


# ---- darkcfg convert: DEST == SOURCE through a link, or the cfg ----

@needs_symlinks
def test_convert_refuses_its_sources_through_a_symlink(tmp_path):
    w = tmp_path / "w.weights"
    shutil.copy(WEIGHTS, w)
    cfg = tmp_path / "net.cfg"
    shutil.copy(CFG, cfg)
    (tmp_path / "link.weights").symlink_to(w)
    before = tree(tmp_path)
    refused(run("convert", w, tmp_path / "link.weights", "--cfg", cfg), str(w))
    refused(run("convert", w, cfg, "--cfg", cfg), str(cfg))  # the cfg it reads is a source too
    assert tree(tmp_path) == before


# ---- data convert yolo -o LIST ----

def test_convert_yolo_refuses_to_write_over_its_list_or_a_label(tmp_path):
    d = tmp_path / "set"
    _labelled(d)
    lst = d / "list.txt"
    lst.write_text(f"{d / 'x0.jpg'}\n{d / 'x1.jpg'}\n")
    before = tree(d)
    refused(run("data", "convert", "yolo", lst, "-n", d / "set.names", "-o", lst), str(lst))
    refused(run("data", "convert", "yolo", lst, "-n", d / "set.names", "-o", d / "x1.txt"), str(d / "x1.txt"))
    assert tree(d) == before
    (d / "ids.json").write_text("[1, 2]")  # 10: ids.json that is a list
    refused(run("data", "convert", "yolo", lst, "-n", d / "set.names", "-o", tmp_path / "gt.json"), "ids.json",
            "list")


# ---- 7. data convert reads only inside --images ----

@pytest.mark.parametrize("escape", ["../secret.key", "ABSOLUTE"])
def test_a_file_name_outside_images_is_refused(coco, tmp_path, escape):
    secret = coco / "secret.key"
    secret.write_text("PRIVATE KEY")
    doc = coco_doc()
    doc["images"][1]["file_name"] = str(secret) if escape == "ABSOLUTE" else escape
    (coco / "evil.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    r = run("data", "convert", "coco", coco / "evil.json", "--images", coco / "images", "-o", out)
    refused(r, "images[1]", "id 11", "outside")
    assert not any(p.read_bytes() == b"PRIVATE KEY" for p in out.rglob("*") if p.is_file())


def test_a_voc_filename_outside_images_is_refused(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "secret.key").write_text("PRIVATE KEY")
    voc_xml(tmp_path / "Annotations" / "p.xml", "../secret.key", [("cat", (2, 2, 20, 20))])
    r = run("data", "convert", "voc", tmp_path / "Annotations", "--images", tmp_path / "JPEGImages",
            "-o", tmp_path / "out")
    refused(r, "p.xml", "outside")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.key"))


# ---- 10. malformed records: one line each, naming the record ----

def _no_image_id(d):
    del d["annotations"][1]["image_id"]


def _no_file_name(d):
    del d["images"][0]["file_name"]


def _width_zero(d):
    d["images"][1]["width"] = 0


def _images_dict(d):
    d["images"] = {"0": d["images"][0]}


def _category_no_id(d):
    del d["categories"][0]["id"]


def _bbox_short(d):
    d["annotations"][0]["bbox"] = [1, 2, 3]


@pytest.mark.parametrize("spoil,where", [(_no_image_id, "annotations[1] (id 2)"), (_no_file_name, "images[0]"),
                                         (_width_zero, "images[1] (id 11)"), (_images_dict, "'images'"),
                                         (_category_no_id, "categories[0]"), (_bbox_short, "annotations[0]")])
def test_malformed_coco_records_are_one_line(coco, tmp_path, spoil, where):
    doc = coco_doc()
    spoil(doc)
    path = coco / "bad.json"
    path.write_text(json.dumps(doc))
    r = run("data", "convert", "coco", path, "--images", coco / "images", "-o", tmp_path / "out")
    refused(r, str(path), where)
    assert not (tmp_path / "out").exists()  # checked before anything is written


@pytest.mark.parametrize("width", [0, "nan", "wide"])
def test_a_voc_size_that_is_not_positive_is_one_line(tmp_path, width):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    image(tmp_path / "JPEGImages" / "p.jpg", 1)
    voc_xml(tmp_path / "Annotations" / "p.xml", "p.jpg", [("cat", (2, 2, 20, 20))], width=width)
    r = run("data", "convert", "voc", tmp_path / "Annotations", "--images", tmp_path / "JPEGImages",
            "-o", tmp_path / "out")
    refused(r, "p.xml", "width")


def test_nan_boxes_and_bad_class_names_are_skipped_and_counted(coco, tmp_path):
    doc = coco_doc()
    doc["categories"] += [{"id": 4, "name": ""}, {"id": 5, "name": "two\nlines"}]
    doc["annotations"][0]["bbox"] = [float("nan"), 1.0, 5.0, 5.0]
    doc["annotations"].append({"id": 9, "image_id": 11, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    path = coco / "nan.json"
    path.write_text(json.dumps(doc))  # json writes NaN, and Python's json reads it back
    out = tmp_path / "out"
    r = run("data", "convert", "coco", path, "--images", coco / "images", "-o", out)
    assert r.exit_code == 0, r.output
    assert "2 images, 1 boxes" in r.stdout
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped:")]
    assert any("annotation 1" in s and "not finite" in s for s in skipped), skipped
    assert any("category 4" in s and "empty" in s for s in skipped), skipped
    assert any("category 5" in s and "newline" in s for s in skipped), skipped
    assert any("annotation 9" in s for s in skipped), skipped
    assert (out / "coco.names").read_text() == "thing\n"
    assert np.isfinite(read_labels(out / "images" / "im0.txt")).all()


def test_voc_nan_and_bad_names_are_skipped(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    image(tmp_path / "JPEGImages" / "p.jpg", 1)
    voc_xml(tmp_path / "Annotations" / "p.xml", "p.jpg",
            [("cat", (2, 2, 20, 20)), ("cat", ("nan", 2, 20, 20)), ("", (2, 2, 9, 9)), ("a\nb", (2, 2, 9, 9))])
    r = run("data", "convert", "voc", tmp_path / "Annotations", "--images", tmp_path / "JPEGImages",
            "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "1 images, 1 boxes" in r.stdout and r.stderr.count("skipped:") == 3, r.output
    assert (tmp_path / "out" / "voc.names").read_text() == "cat\n"


@pytest.mark.parametrize("name", ["../../x", "sub/x", "..", "", "a\nb"])
def test_name_must_be_a_plain_file_name(coco, tmp_path, name):
    out = tmp_path / "deep" / "out"
    r = run("data", "convert", "coco", coco / "annotations" / "instances.json", "--images", coco / "images",
            "-o", out, "--name", name)
    refused(r, "--name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# ---- download stops at the expected size ----

class _Endless(http.server.BaseHTTPRequestHandler):
    """200 with no Content-Length (or a false one) and zeros until the client hangs up (at most `cap` bytes)."""

    cap = 0
    sent = 0
    length: object = None

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        if self.length is not None:
            self.send_header("Content-Length", str(self.length))
        self.end_headers()
        chunk = bytes(1 << 16)
        try:
            while type(self).sent < self.cap:
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("length", [None, "lies"])
def test_download_stops_at_the_expected_size(tmp_path, length):
    from darkcfg.model.download import RELEASES

    expected = max(RELEASES["yolov4-tiny"].sizes())
    _Endless.cap, _Endless.sent = 3 * expected, 0
    _Endless.length = None if length is None else 10 * expected
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        r = run("download", "yolov4-tiny", "-d", tmp_path, "--mirror", f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    refused(r, "yolov4-tiny.weights", f"{expected:,}", progress=length is None)
    assert "more than" in r.output
    assert _Endless.sent < 2 * expected  # it stopped reading (socket buffers let a few MB more go out)
    assert not list(tmp_path.iterdir())  # neither the file nor a .part of the wrong size is kept


# ---- training says when it stops reading a label file ----

def test_read_labels_says_where_it_stops_reading(tmp_path):
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n1 0.5 oops 0.1 0.1\n0 0.3 0.3 0.1 0.1\n")
    issues: list[str] = []
    rows = read_labels(label, issues=issues)
    assert len(rows) == 1 and len(issues) == 1
    assert issues[0].startswith(f"{label}:2: ") and "'oops'" in issues[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(read_labels(label)) == 1
    assert [w.category for w in caught] == [DataWarning] and f"{label}:2:" in str(caught[0].message)
    label.write_text("0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1\n")  # a last row of four fields
    issues = []
    assert len(read_labels(label, issues=issues)) == 1 and len(issues) == 1 and f"{label}:2:" in issues[0]
    label.write_text("0 0.5 0.5 0.2 0.2\n\n")
    issues = []
    assert len(read_labels(label, issues=issues)) == 1 and not issues
