"""Tiled detection (darkcfg.infer.tiles, Detector(tiles=...), detect/map/valid --tiles) and `data tile`.

Geometry: every pixel covered, the overlap asked, no padding; merging, on made-up detections: an object across
a seam is one box, a large object seen by tiles and the full pass is one box, the vectorised seam test equals a
slow pure-Python one, and the boxes above a threshold do not depend on the detections below it; with the shipped
yolov3-tiny: one tile equal to the image is plain detection exactly, tiles go through the batcher, `map --tiles`
counts what `detect --tiles` prints; `data tile`: boxes mapped back are the originals clipped, to 1e-6.
"""
import hashlib
import itertools
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import darkcfg
from darkcfg.cli import main
from darkcfg.data.dataset import label_file, open_data, read_labels
from darkcfg.data.tile import MAX_TILES, Tile, axis_starts, grid_tiles
from darkcfg.errors import DarkcfgError
from darkcfg.infer import detector as detector_module
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.detector import Detector
from darkcfg.infer.names import default_names
from darkcfg.infer.sources import Frame, Source
from darkcfg.infer.tiles import Tiling, cut_sides, merge_tiles, seam_pairs, tile_plan, to_image

REPO = Path(__file__).resolve().parent.parent
CFG = REPO / "cfg" / "yolov3-tiny.cfg"
WEIGHTS = REPO / "weights" / "yolov3-tiny.weights"
SAMPLE = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"
F32 = np.float32


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- geometry -------------------------------------------------------------------------------------------------

def _overlap_px(size, overlap):
    return min(math.ceil(overlap * size), size - 1)  # what a tile of `size` pixels can overlap by


def _check_cover(tiles, width, height, overlap):
    cover = np.zeros((height, width), np.int32)
    for t in tiles:
        assert 0 <= t.x0 < t.x1 <= width and 0 <= t.y0 < t.y1 <= height, (t, width, height)  # inside: no padding
        cover[t.y0:t.y1, t.x0:t.x1] += 1
    assert cover.min() >= 1, "a pixel no tile covers"
    for axis in (0, 1):  # neighbours along each axis overlap by at least ceil(overlap * tile)
        starts = sorted({t[axis] for t in tiles})
        size = tiles[0][axis + 2] - tiles[0][axis]
        assert starts[0] == 0 and starts[-1] + size == (width, height)[axis]  # the last one ends at the edge
        for a, b in zip(starts, starts[1:]):
            assert a + size - b >= _overlap_px(size, overlap)


@pytest.mark.parametrize("overlap", [0.0, 0.2, 0.5, 0.9])
def test_tiles_cover_every_pixel_with_the_overlap_asked_and_no_padding(overlap):
    for length, tile in itertools.product((1, 2, 37, 416, 417, 1000, 3840), (1, 2, 3, 64, 416, 1000)):
        size = min(tile, length)
        starts = axis_starts(length, size, overlap)
        assert starts[0] == 0 and starts[-1] == length - size and starts == sorted(set(starts))
        steps = np.diff(starts)
        assert (size - steps >= _overlap_px(size, overlap)).all()
        n = len(starts)  # as few tiles as that takes: with one fewer, some step would be too long
        assert n <= 2 or -(-(length - size) // (n - 2)) > size - _overlap_px(size, overlap)
    for width, height, tile in itertools.product((1, 37, 417, 1000), (5, 300, 833), (24, 64, 416)):
        count = len(axis_starts(width, min(tile, width), overlap))
        count *= len(axis_starts(height, min(tile, height), overlap))
        if count > MAX_TILES:
            with pytest.raises(DarkcfgError, match="choose larger tiles"):
                grid_tiles(width, height, tile, tile, overlap)
            continue
        tiles = grid_tiles(width, height, tile, tile, overlap)
        assert all(t.w == min(tile, width) and t.h == min(tile, height) for t in tiles)  # shifted inward, same size
        _check_cover(tiles, width, height, overlap)


@pytest.mark.parametrize("grid", [(1, 1), (2, 3), (3, 2), (4, 4)])
@pytest.mark.parametrize("overlap", [0.0, 0.25])
def test_a_grid_is_rows_by_columns_of_equal_tiles(grid, overlap):
    tiles = tile_plan(1000, 700, Tiling(grid=grid, overlap=overlap), 416, 416)
    assert len(tiles) == grid[0] * grid[1]
    assert len({(t.w, t.h) for t in tiles}) == 1
    _check_cover(tiles, 1000, 700, overlap)


def test_auto_tiles_are_the_network_size_and_the_full_pass_comes_last():
    tiles = tile_plan(1920, 1080, Tiling(full=True), 416, 416)
    assert tiles[-1] == Tile(0, 0, 1920, 1080)
    assert {(t.w, t.h) for t in tiles[:-1]} == {(416, 416)}
    _check_cover(tiles[:-1], 1920, 1080, 0.2)
    assert tile_plan(416, 300, Tiling(full=True), 416, 416) == [Tile(0, 0, 416, 300)]  # one tile: no full pass


def test_tile_specs_and_their_errors():
    assert Tiling.parse("auto") == Tiling()
    assert Tiling.parse("2x3").grid == (2, 3)
    assert Tiling.parse("640px").size == (640, 640)
    assert Tiling.parse("640x480PX", 0.3, True).size == (640, 480)
    for bad in ("3", "axb", "2x", "0x3", "-1px", ""):
        with pytest.raises(DarkcfgError, match="tiles") as e:
            Tiling.parse(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(DarkcfgError, match=f"the most is {MAX_TILES}"):
        tile_plan(3840, 2160, Tiling(size=(8, 8)), 416, 416)


# -- mapping and merging, on made-up detections --------------------------------------------------------------

def _array(boxes_px, probs, tile, classes=2):
    """A tile's DetectionArray from pixel corners in the tile (x0, y0, x1, y1) and (N, classes) probs."""
    b = np.asarray(boxes_px, np.float64).reshape(-1, 4)
    rel = np.stack([(b[:, 0] + b[:, 2]) / 2 / tile.w, (b[:, 1] + b[:, 3]) / 2 / tile.h,
                    (b[:, 2] - b[:, 0]) / tile.w, (b[:, 3] - b[:, 1]) / tile.h], 1).astype(F32)
    p = np.asarray(probs, F32).reshape(-1, classes)
    return DetectionArray(rel, p.max(1), p, tile.w, tile.h)


def _pixels(d):
    return [(round(x0), round(y0), round(x1), round(y1)) for x0, y0, x1, y1 in (t.box for t in d.to_list(0.005))]


def test_a_tile_that_is_the_image_maps_exactly():
    rng = np.random.default_rng(0)
    boxes = rng.random((200, 4)).astype(F32)
    assert np.array_equal(to_image(boxes, Tile(0, 0, 1917, 1079), 1917, 1079), boxes)
    one = _array([[10, 10, 50, 60]], [[0.9, 0]], Tile(0, 0, 300, 200))
    assert merge_tiles([Tile(0, 0, 300, 200)], [one], 300, 200, Tiling(), 0.25, 0.45) is one


SEAM = (Tile(0, 0, 100, 100), Tile(80, 0, 180, 100))  # a 180 x 100 image, tiles overlapping by 20 pixels


def test_an_object_across_a_seam_gives_one_box():
    """Object x 85..125: tile A sees 85..100 (cut at its inner edge 100), tile B all of it. Their IoU is 0.375,
    under NMS's 0.45: without the seam merge they stay two boxes."""
    a = _array([[85, 40, 100, 60]], [[0.9, 0]], SEAM[0])
    b = _array([[5, 40, 45, 60]], [[0.6, 0]], SEAM[1])  # 85..125 in the image
    merged = merge_tiles(SEAM, [a, b], 180, 100, Tiling(), 0.25, 0.45)
    assert _pixels(merged) == [(85, 40, 125, 60)]
    assert merged.probs[0, 0] == F32(0.9)  # the surer view's probability
    off = merge_tiles(SEAM, [a, b], 180, 100, Tiling(seam_ios=1), 0.25, 0.45)
    assert len(off.to_list(0.25)) == 2
    # not merged: another class, or two objects side by side at the seam
    other = _array([[5, 40, 45, 60]], [[0, 0.6]], SEAM[1])
    assert len(merge_tiles(SEAM, [a, other], 180, 100, Tiling(), 0.25, 0.45).to_list(0.25)) == 2
    apart = _array([[22, 40, 45, 60]], [[0.6, 0]], SEAM[1])  # 102..125: beside A's half, not covering it
    assert len(merge_tiles(SEAM, [a, apart], 180, 100, Tiling(), 0.25, 0.45).to_list(0.25)) == 2


def test_a_large_object_seen_by_four_tiles_and_the_full_pass_gives_one_box():
    tiles = tile_plan(200, 200, Tiling(grid=(2, 2), overlap=0.2, full=True), 0, 0)
    assert len(tiles) == 5 and tiles[-1] == Tile(0, 0, 200, 200)
    obj = np.array([40.0, 30.0, 170.0, 180.0])  # covers all four tiles
    arrays = []
    for k, t in enumerate(tiles):
        part = [max(obj[0], t.x0) - t.x0, max(obj[1], t.y0) - t.y0, min(obj[2], t.x1) - t.x0,
                min(obj[3], t.y1) - t.y0]
        arrays.append(_array([part], [[0.5 + 0.1 * k, 0]], t))
    merged = merge_tiles(tiles, arrays, 200, 200, Tiling(grid=(2, 2), full=True), 0.25, 0.45)
    assert _pixels(merged) == [tuple(int(v) for v in obj)]
    assert merged.probs[0, 0] == F32(0.9)


def _slow_seam_pair(xyxy, rects, tile_of, cut, i, j, ios):
    """The pair rule of the module docstring, one pair at a time in plain Python."""
    if tile_of[i] == tile_of[j]:
        return False

    def sees_beyond(a, b):  # a cut side of box a whose edge b's tile sees beyond
        ra, rb = rects[a], rects[b]
        return any(cut[a][s] and (rb[s] < ra[s] if s < 2 else rb[s] > ra[s]) for s in range(4))

    if not (sees_beyond(i, j) or sees_beyond(j, i)):
        return False
    s = [max(rects[i][0], rects[j][0]), max(rects[i][1], rects[j][1]), min(rects[i][2], rects[j][2]),
         min(rects[i][3], rects[j][3])]

    def clip(b):
        return [min(max(b[0], s[0]), s[2]), min(max(b[1], s[1]), s[3]), min(max(b[2], s[0]), s[2]),
                min(max(b[3], s[1]), s[3])]

    a, b = clip(xyxy[i]), clip(xyxy[j])
    area = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return area > 0 and inter / area > ios


@pytest.mark.parametrize("seed", range(4))
def test_the_seam_test_equals_a_slow_reference(seed):
    rng = np.random.default_rng(seed)
    tiles = np.asarray(tile_plan(300, 240, Tiling(size=(100, 100), overlap=0.3, full=bool(seed % 2)), 0, 0), float)
    n = 80
    tile_of = rng.integers(len(tiles), size=n)
    rects = tiles[tile_of]
    x0 = rects[:, 0] + rng.random(n) * (rects[:, 2] - rects[:, 0] - 5)  # boxes near or at their tile's edges
    y0 = rects[:, 1] + rng.random(n) * (rects[:, 3] - rects[:, 1] - 5)
    x1 = np.minimum(x0 + 5 + rng.random(n) * 40, rects[:, 2] - rng.choice([0, 0, 3, 20], n))
    y1 = np.minimum(y0 + 5 + rng.random(n) * 40, rects[:, 3] - rng.choice([0, 0, 3, 20], n))
    xyxy = np.stack([x0, y0, np.maximum(x1, x0 + 1), np.maximum(y1, y0 + 1)], 1)
    cut = cut_sides(xyxy, rects, 300, 240, 0.05)
    got = seam_pairs(xyxy, rects, tile_of, cut, np.arange(n), np.arange(n), 0.5)
    want = np.array([[_slow_seam_pair(xyxy, rects, tile_of, cut, i, j, 0.5) for j in range(n)] for i in range(n)])
    assert got.any() and np.array_equal(got, want)


def test_the_boxes_above_a_threshold_do_not_depend_on_the_detections_below_it():
    """map decodes at .005 and counts at --thresh: a weak box that would extend a sure one must not take part."""
    a = _array([[85, 40, 100, 60], [10, 10, 30, 30]], [[0.9, 0], [0, 0.6]], SEAM[0])
    weak = _array([[5, 40, 45, 60], [60, 60, 70, 70]], [[0.1, 0], [0.1, 0]], SEAM[1])  # below .25
    low = merge_tiles(SEAM, [a, weak], 180, 100, Tiling(merge_thresh=0.25), 0.005, 0.45)
    high = merge_tiles(SEAM, [a, weak.take(np.zeros(0, np.int64))], 180, 100, Tiling(), 0.25, 0.45)
    assert [(d.class_id, d.box) for d in low.to_list(0.25)] == [(d.class_id, d.box) for d in high.to_list(0.25)]
    assert len(low.to_list(0.005)) == 4  # all of them are still there, unmerged


# -- the detector, with the shipped yolov3-tiny ---------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return darkcfg.load(CFG, WEIGHTS, size=(160, 160))


@pytest.fixture(scope="module")
def sample():
    return cv2.imread(str(SAMPLE))  # 512 x 600


def _same(a, b):
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.probs, b.probs)
            and np.array_equal(a.objectness, b.objectness))


def test_one_tile_equal_to_the_image_is_plain_detection_exactly(model, sample):
    names = default_names(model)
    for bgr, tiles in ((sample[100:260, 200:360], "auto"), (sample, "1x1"), (sample[:160, :150], Tiling(full=True))):
        plain = Detector(model, names, 0.1).detect_arrays([Detector(model).to_image(bgr)])[0]
        tiled = Detector(model, names, 0.1, tiles=tiles).detect_arrays([Detector(model).to_image(bgr)])[0]
        assert len(plain.to_list(0.1)) and _same(plain, tiled), tiles
    assert model.detect(sample, tiles="1x1") == model.detect(sample)


def test_the_tiles_of_an_image_go_through_the_batcher(model, sample, monkeypatch):
    calls = []
    det = Detector(model, default_names(model), 0.25, tiles="auto")
    original = det.run_batch
    monkeypatch.setattr(det, "run_batch", lambda xs, sizes: calls.append(len(xs)) or original(xs, sizes))
    bgr = sample[200:460, 120:400]
    im = det.to_image(bgr)
    n = len(det.plan(im.shape[2], im.shape[1]))
    assert n == 2 * 2  # 280 x 260 in 160-pixel tiles
    one = det.detect_arrays([im])[0]
    assert calls == [n]  # one forward for all of them
    assert one.width == 280 and one.height == 260 and len(one.to_list(0.25))
    calls.clear()
    det.batch = 2
    det.detect_arrays([im, im[:, ::-1]])
    assert calls == [2 * n]  # two images' tiles together
    calls.clear()
    monkeypatch.setattr(detector_module, "MAX_TILE_PIXELS", 3 * 160 * 160)  # at most 3 inputs per forward
    det.batch = 1
    frames = [Frame(Source("a.jpg"), None, lambda: bgr), Frame(Source("b.jpg"), None, lambda: bgr[::-1])]
    streamed = [r.detections for r in det.stream(frames)]
    assert _same(streamed[0], one) and len(streamed[1].to_list(0.25))
    assert calls == [2, 2] * 2  # equal forwards


def test_a_recurrent_network_is_not_tiled():
    class Stateful(torch.nn.Module):
        stateful = True

    m = Stateful()
    m.net = type("Net", (), {"letter_box": 0})()
    m.cfg_file = "rnn.cfg"
    monkey = pytest.MonkeyPatch()
    monkey.setattr(detector_module, "last_head", lambda model: type("H", (), {"classes": 1, "nms_kind": "default",
                                                                                "beta_nms": 0.6})())
    try:
        with pytest.raises(DarkcfgError, match="recurrent"):
            Detector(m, tiles="auto")
    finally:
        monkey.undo()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, sample):
    """Two images (the sample and a 2x larger copy) with labels beside them, and a .data file."""
    d = tmp_path_factory.mktemp("tileset")
    cv2.imwrite(str(d / "a.jpg"), sample)
    cv2.imwrite(str(d / "b.png"), cv2.resize(sample, (1024, 1212)))
    (d / "a.txt").write_text("0 0.5 0.5 0.4 0.6\n27 0.43 0.75 0.15 0.2\n")
    (d / "b.txt").write_text("0 0.5 0.5 0.4 0.6\n27 0.43 0.75 0.15 0.2\n")
    (d / "list.txt").write_text(f"{d / 'a.jpg'}\n{d / 'b.png'}\n")
    (d / "set.data").write_text(f"classes = 80\ntrain = {d / 'list.txt'}\nvalid = {d / 'list.txt'}\n")
    return d


def test_map_tiles_counts_what_detect_tiles_prints(dataset):
    args = ("--tiles", "2x2", "--tiles-full", "--size", "160", "--thresh", "0.2")
    shown = run("detect", CFG, dataset / "list.txt", "-w", WEIGHTS, "--nosave", *args)
    assert shown.exit_code == 0, shown.output
    printed = [line for line in shown.stdout.splitlines() if re.match(r"^[\w ]+: \d+%", line)]
    measured = run("map", dataset / "set.data", CFG, WEIGHTS, *args)
    assert measured.exit_code == 0, measured.output
    tp, fp = map(int, re.search(r"conf_thresh = 0.20, TP = (\d+), FP = (\d+)", measured.stdout).groups())
    assert len(printed) > 2 and tp + fp == len(printed)
    valid = run("valid", dataset / "set.data", CFG, WEIGHTS, "--tiles", "2x2", "--size", "160", "--eval", "coco",
                "--out-dir", dataset / "results")
    assert valid.exit_code == 0, valid.output
    assert len(json.loads((dataset / "results" / "coco_results.json").read_text())) > len(printed)


def test_tile_options_are_checked_in_one_line():
    for args, message in ((("--tiles", "3"), "expected auto, RxC"), (("--tiles-full",), "go with --tiles"),
                          (("--tiles", "auto", "--tile-overlap", "1"), "--tile-overlap")):
        r = run("detect", CFG, SAMPLE, "-w", WEIGHTS, "--nosave", *args)
        assert r.exit_code == 2 and message in r.output, r.output


# -- data tile ------------------------------------------------------------------------------------------------

def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_data_tile_boxes_mapped_back_are_the_originals_clipped(dataset, tmp_path):
    before = _digest(dataset)
    out = tmp_path / "tiled"
    r = run("data", "tile", dataset / "set.data", "--size", "200x150", "--overlap", "0.25", "--min-visible", "0",
            "--empty", "1", "-o", out)
    assert r.exit_code == 0, r.output
    assert _digest(dataset) == before  # the sources are untouched
    mapping = json.loads((out / "tiles.json").read_text())
    dc = open_data(out / "set.data")
    listed = [Path(p) for p in (out / "train.txt").read_text().split()]
    assert dc.classes == 80 and len(listed) == len(mapping) and all(p.is_file() for p in listed)
    seen = 0
    for src in (dataset / "a.jpg", dataset / "b.png"):
        truth = read_labels(label_file(str(src)), 80)
        h, w = cv2.imread(str(src)).shape[:2]
        tiles = grid_tiles(w, h, 200, 150, 0.25)
        mine = {k: v for k, v in mapping.items() if v["source"] == str(src.resolve())}
        assert len(mine) == len(tiles)  # --empty 1: every tile, empty or not
        for file, m in mine.items():
            t = Tile(m["x"], m["y"], m["x"] + m["w"], m["y"] + m["h"])
            assert t in tiles and cv2.imread(str(out / "images" / file)).shape[:2] == (t.h, t.w)
            rows = read_labels(out / "images" / (Path(file).stem + ".txt"), 80).astype(np.float64)
            back = np.stack([(t.x0 + rows[:, 1] * t.w) / w, (t.y0 + rows[:, 2] * t.h) / h,
                             rows[:, 3] * t.w / w, rows[:, 4] * t.h / h], 1)
            want = []
            for c, cx, cy, bw, bh in truth.astype(np.float64):  # the original clipped to the tile
                x0, y0 = max(cx - bw / 2, t.x0 / w), max(cy - bh / 2, t.y0 / h)
                x1, y1 = min(cx + bw / 2, t.x1 / w), min(cy + bh / 2, t.y1 / h)
                if x1 > x0 and y1 > y0:
                    want.append([c, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
            want = np.asarray(want).reshape(-1, 5)
            assert np.array_equal(rows[:, 0], want[:, 0])
            np.testing.assert_allclose(back, want[:, 1:], atol=1e-6)
            seen += len(rows)
    assert seen > 4
    few = run("data", "tile", dataset / "set.data", "--size", "200x150", "--min-visible", "0.75", "--empty", "0",
              "-o", tmp_path / "few")
    assert few.exit_code == 0, few.output
    assert "left out" in few.output
    kept = [read_labels(p, 80) for p in (tmp_path / "few" / "images").glob("*.txt")]
    assert kept and all(len(k) for k in kept)  # --empty 0: no tile without boxes
    inside = run("data", "tile", dataset / "set.data", "--size", "200", "-o", dataset / "sub")
    assert inside.exit_code == 1 and "source folder" in inside.output and not (dataset / "sub" / "images").exists()


# -- serve, videos and live streams ---------------------------------------------------------------------------

def test_serve_with_tiles_answers_what_detect_tiles_finds(tmp_path, sample):
    """A live server on 127.0.0.1 port 0 built as `darkcfg serve --tiles 2x2 --tiles-full --size 160` builds it;
    two images sent together (one batch of both images' tiles) answer the objects `detect --tiles --json`
    writes for them."""
    import http.client
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from darkcfg.cli.detect import tiling_from
    from darkcfg.infer.runtime import load_detector
    from darkcfg.infer.serve import make_server

    paths = [tmp_path / "a.jpg", tmp_path / "b.png"]
    cv2.imwrite(str(paths[0]), sample[:400])
    cv2.imwrite(str(paths[1]), cv2.resize(sample, (450, 520)))
    args = ("--tiles", "2x2", "--tiles-full", "--size", "160", "--thresh", "0.05")
    r = run("detect", CFG, *paths, "-w", WEIGHTS, "--nosave", "--json", tmp_path / "r.json", "-q", *args)
    assert r.exit_code == 0, r.output
    expected = {e["filename"]: e["objects"] for e in json.loads((tmp_path / "r.json").read_text())}
    det = load_detector(CFG, WEIGHTS, size=(160, 160), thresh=0.05, batch=2,
                        tiles=tiling_from("2x2", 0.2, True, 0.5))
    srv = make_server(det, "127.0.0.1", 0, batch=2, batch_wait=0.5)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    def ask(p):
        c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=60)
        c.request("POST", "/detect", body=p.read_bytes(), headers={"Content-Type": "image/jpeg"})
        resp = c.getresponse()
        answer = (resp.status, json.loads(resp.read()))
        c.close()
        return answer

    try:
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(ask, paths))
    finally:
        srv.shutdown()
        srv.server_close()
    for p, (status, entry) in zip(paths, answers):
        assert status == 200, entry
        assert entry[0]["objects"] == expected[str(p)]
    assert sum(map(len, expected.values())) > 4 and expected[str(paths[0])] != expected[str(paths[1])]
    assert max(srv.batcher.batches) == 2  # both images' tiles in one run


def test_tiles_on_a_video_and_a_live_stream_equal_tiles_on_its_frames(tmp_path):
    """A 3-frame video (MJPG .avi) through `detect --tiles`: each frame's objects are those of `detect --tiles` on
    the frame written as a PNG (decoded by OpenCV from the same video), and differ from untiled detection; the
    same JPEG frames from a live MJPEG stream (the reference's demo path, reading the newest frame) give what
    the same frames as an .mjpeg file give."""
    from streams import FrameServer, frames

    from darkcfg.infer.run import run_detection
    from darkcfg.infer.sources import LiveOptions

    jpegs = frames(3, (420, 330))
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (420, 330))
    for b in jpegs:
        w.write(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR))
    w.release()
    cap = cv2.VideoCapture(str(video))
    pngs = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        pngs.append(tmp_path / f"frame{len(pngs)}.png")
        cv2.imwrite(str(pngs[-1]), frame)
    assert len(pngs) == 3
    args = ("-w", WEIGHTS, "--nosave", "-q", "--size", "160", "--thresh", "0.2")
    results = {}
    for key, sources, tiles in (("video", [video], ("--tiles", "2x2")), ("frames", pngs, ("--tiles", "2x2")),
                                ("untiled", pngs, ())):
        r = run("detect", CFG, *sources, *args, *tiles, "--json", tmp_path / f"{key}.json")
        assert r.exit_code == 0, r.output
        results[key] = [e["objects"] for e in json.loads((tmp_path / f"{key}.json").read_text())]
    assert len(results["video"]) == 3 and all(results["video"])
    assert results["video"] == results["frames"]
    assert results["video"] != results["untiled"]

    det = Detector(darkcfg.load(CFG, WEIGHTS, size=(160, 160)), thresh=0.2, tiles="2x2")
    srv = FrameServer(jpegs, fps=10).start()
    try:
        live = run_detection(det, [srv.url], None, json_path=tmp_path / "live.json", quiet=True, progress=False,
                             live=LiveOptions(keep_all=True, retries=0, max_frames=3))
    finally:
        srv.stop()
    assert live.done == 3 and live.failed == 0
    (tmp_path / "same.mjpeg").write_bytes(b"".join(jpegs))
    run_detection(det, [str(tmp_path / "same.mjpeg")], None, json_path=tmp_path / "file.json", quiet=True,
                  progress=False)
    from_live = [e["objects"] for e in json.loads((tmp_path / "live.json").read_text())]
    from_file = [e["objects"] for e in json.loads((tmp_path / "file.json").read_text())]
    assert from_live == from_file and all(from_live)
