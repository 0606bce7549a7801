"""Tracking through `darkcfg detect --track`, the Python API (`model.track`), the outputs (JSON file and port, --mot,
the printout, the drawing, --count-line) and `darkcfg serve` (`/detect?stream=NAME&track=1`).

Real detections come from the shipped yolov3-tiny on frames made by sliding ../shared/images/dog.jpg across a
grey canvas (dog, bicycle and truck move right together); exact counts come from a stand-in detector whose boxes
follow paths drawn by hand, so that every crossing is known in advance.
"""
from __future__ import annotations

import http.client
import json
import re
import threading
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from oracle import IMAGES, REPO, needs_shared
from streams import FrameServer, free_port, read_json_port

import darkcfg
from darkcfg.cli import main
from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.detector import Detector, Result
from darkcfg.infer.draw import draw_detections, track_color
from darkcfg.infer.printout import json_object, text_lines
from darkcfg.infer.run import LiveOutputs, TrackOptions, plan_sequences, run_detection
from darkcfg.infer.serve import RequestError, StreamTable, make_server
from darkcfg.infer.sources import LiveOptions

CFG, WEIGHTS = REPO / "cfg" / "yolov3-tiny.cfg", REPO / "weights" / "yolov3-tiny.weights"
FRAMES = 10


def _slide(image, n=FRAMES, backwards=False):
    """n JPEG frames (bytes) of `image` at half size sliding right across a canvas half as wide again (left with
    `backwards`)."""
    im = cv2.imread(str(image))
    im = cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2))
    h, w = im.shape[:2]
    out = []
    for f in range(n):
        canvas = np.full((h + 16, w * 3 // 2, 3), 90, np.uint8)
        x = (w // 2) * f // (n - 1)
        canvas[8:8 + h, x:x + w] = im
        ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        out.append(buf.tobytes())
    return out[::-1] if backwards else out


@pytest.fixture(scope="module")
def model():
    return darkcfg.load(CFG, WEIGHTS)


@pytest.fixture(scope="module")
def dog_jpegs():
    if not (IMAGES / "dog.jpg").exists():
        pytest.skip("needs ../shared/images")
    return _slide(IMAGES / "dog.jpg")


def _objects(items):
    """(class_id, track_id or 0, relative box) of each object -> sorted by class, id and box."""
    return sorted(items, key=lambda o: (o[0], o[1], tuple(round(v, 3) for v in o[2])))


def _api_ids(model, source, **kw):
    """model.track -> per frame the (class_id, track_id or 0, relative box) of every Detection (`_objects`)."""
    return [_objects([(d.class_id, d.track_id or 0, d.relative) for d in dets])
            for _, _, dets in model.track(str(source), **kw)]


def _json_ids(entries):
    return [_objects([(o["class_id"], o["track_id"], tuple(o["relative_coordinates"][k] for k in
                                                           ("center_x", "center_y", "width", "height")))
                      for o in e["objects"]]) for e in entries]


def assert_same(got, expected):
    """Per frame the same classes and ids, and boxes within the JSON's 6 decimals."""
    assert len(got) == len(expected)
    for f, (a, b) in enumerate(zip(got, expected)):
        assert [o[:2] for o in a] == [o[:2] for o in b], f"frame {f}"
        assert np.allclose([o[2] for o in a], [o[2] for o in b], atol=1e-6, rtol=0) if a else not b, f"frame {f}"


# ---- the JSON port, the --mot file, the -out file and the Python API agree ----------------------------------------

@needs_shared
def test_json_port_mot_and_api_carry_the_same_ids(model, dog_jpegs, tmp_path):
    """The same JPEG frames as a live MJPEG stream (detect --track --json-port --mot) and as an .mjpeg file
    (model.track, and the CLI with -o and --mot): every object's track id, class and box agree frame by frame."""
    clip = tmp_path / "clip.mjpeg"
    clip.write_bytes(b"".join(dog_jpegs))
    api = _api_ids(model, clip)
    assert len(api) == FRAMES
    ids = {t for frame in api for _, t, _ in frame}
    assert {1, 2} <= ids  # objects were followed
    dog = [{t for c, t, _ in frame if c == 16} for frame in api]
    assert all(len(s) == 1 for s in dog) and len(set.union(*dog)) == 1  # one dog, one id, every frame

    srv = FrameServer(dog_jpegs, fps=10).start()
    srv.go.clear()
    port, out, stop = free_port(), [], threading.Event()
    reader = threading.Thread(target=read_json_port, args=(port, stop, out, 60.0, srv.go))
    reader.start()
    try:
        run = run_detection(Detector(model), [srv.url], None, quiet=True, progress=False,
                            live=LiveOptions(keep_all=True, retries=0, max_frames=FRAMES),
                            outputs_live=LiveOutputs(json_port=port), track=TrackOptions(),
                            mot_path=tmp_path / "live.txt")
    finally:
        stop.set()
        reader.join()
        srv.stop()
    assert run.done == FRAMES
    port_entries = dict(out)["objects"]
    assert_same(_json_ids(port_entries), api)

    r = CliRunner().invoke(main, ["detect", str(CFG), str(clip), "--track", "--nosave", "-q", "-o",
                                  str(tmp_path / "clip.json"), "--mot", str(tmp_path / "clip.txt")])
    assert r.exit_code == 0, r.output
    assert_same(_json_ids(json.loads((tmp_path / "clip.json").read_text())), api)

    # MOT rows: one per tracked box (its best class), frames from 1, in pixels
    w, h = cv2.imdecode(np.frombuffer(dog_jpegs[0], np.uint8), cv2.IMREAD_COLOR).shape[1::-1]
    expected = {}
    for f, frame in enumerate(api, 1):
        for _, t, (cx, cy, bw, bh) in frame:
            if t:
                expected[f, t] = ((cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h)
    for name in ("live.txt", "clip.txt"):
        rows = [line.split(",") for line in (tmp_path / name).read_text().splitlines()]
        assert all(r[7:] == ["-1", "-1", "-1"] for r in rows)
        got = {(int(r[0]), int(r[1])): tuple(float(v) for v in r[2:6]) for r in rows}
        assert sorted(got) == sorted(expected) and len(got) == len(rows), name
        assert np.allclose([got[k] for k in sorted(got)], [expected[k] for k in sorted(got)], atol=0.006), name


@needs_shared
def test_printout_and_stream_track_flag(model, dog_jpegs, tmp_path):
    clip = tmp_path / "clip.mjpeg"
    clip.write_bytes(b"".join(dog_jpegs[:3]))
    r = CliRunner().invoke(main, ["detect", str(CFG), str(clip), "--track", "--nosave", "--ext-output"])
    assert r.exit_code == 0, r.output
    assert re.search(r"^dog: \d+% \(id: \d+\)\t\(left_x: ", r.stdout, re.M)
    via_stream = [[d.track_id for d in dets] for _, _, dets in model.stream(str(clip), track=True)]
    via_track = [[d.track_id for d in dets] for _, _, dets in model.track(str(clip))]
    assert via_stream == via_track and any(t for f in via_track for t in f)
    assert all(d.track_id is None for _, _, dets in model.stream(str(clip)) for d in dets)


# ---- counting lines, exactly, through the CLI ----------------------------------------------------------------------

W, H, N = 640, 480, 20
NAMES = ["car", "person"]


def _paths():
    """(class, [(cx, cy) per frame]) of four objects 40 x 60 px: A (car) crosses x=100 left to right; B (person) goes
    down-left across x=100 and y=200; C (car) wobbles across x=100 (once each way counts); D (person) stands still."""
    t = np.linspace(0, 1, N)
    a = [(40 + 200 * s, 300) for s in t]
    b = [(300 - 240 * s, 100 + 220 * s) for s in t]
    c = [(90 if k % 2 == 0 else 110, 420) for k in range(N)]
    d = [(500, 50)] * N
    return [(0, a), (1, b), (0, c), (1, d)]


class StandIn:
    """A detector whose frame k holds the boxes of `_paths` at frame k (score .9), whatever the pixels."""

    def __init__(self):
        self.thresh, self.nms, self.letterbox, self.batch, self.tiles = 0.25, 0.45, False, 1, None
        self.names, self.model = NAMES, None

    def stream(self, frames, workers=2, lookahead=None):
        for fr in frames:
            bgr = fr.load()
            rows = [(cls, path[fr.index]) for cls, path in _paths()]
            boxes = np.array([[x / W, y / H, 40 / W, 60 / H] for _, (x, y) in rows], np.float32)
            probs = np.zeros((len(rows), 2), np.float32)
            probs[np.arange(len(rows)), [c for c, _ in rows]] = 0.9
            yield Result(fr, bgr, DetectionArray(boxes, np.full(len(rows), 0.9, np.float32), probs, W, H,
                                                 names=NAMES), None, 1.0)


def _blank_video(path):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    for _ in range(N):
        vw.write(np.zeros((H, W, 3), np.uint8))
    vw.release()


EXPECTED = {"lines": [
    {"line": [100.0, 0.0, 100.0, 480.0], "classes": {"car": {"left_to_right": 2, "right_to_left": 1},
                                                      "person": {"right_to_left": 1}},
     "total": {"left_to_right": 2, "right_to_left": 2}},
    {"line": [0.0, 200.0, 640.0, 200.0], "classes": {"person": {"top_to_bottom": 1}},
     "total": {"top_to_bottom": 1, "bottom_to_top": 0}}]}


def test_count_lines_give_exact_counts_per_class_and_direction(tmp_path, monkeypatch):
    import darkcfg.infer.runtime

    monkeypatch.setattr(darkcfg.infer.runtime, "load_detector", lambda *a, **k: StandIn())
    for name in ("east.mp4", "west.mp4"):
        _blank_video(tmp_path / name)
    r = CliRunner().invoke(main, ["detect", "standin.cfg", str(tmp_path / "east.mp4"), str(tmp_path / "west.mp4"),
                                  "--count-line", "100,0,100,480", "--count-line", "0, 200, 640, 200", "-q",
                                  "-o", str(tmp_path / "out.json"), "--mot", str(tmp_path / "m.txt"),
                                  "--out-dir", str(tmp_path / "drawn")])
    assert r.exit_code == 0, r.output
    block = ["  line 1 (100,0 -> 100,480): left_to_right 2, right_to_left 2",
             "    car: left_to_right 2, right_to_left 1",
             "    person: right_to_left 1",
             "  line 2 (0,200 -> 640,200): top_to_bottom 1, bottom_to_top 0",
             "    person: top_to_bottom 1"]
    assert r.stdout.splitlines() == ["counts in east:", *block, "counts in west:", *block]
    entries = json.loads((tmp_path / "out.json").read_text())
    assert len(entries) == 2 * N
    assert entries[N - 1]["counts"] == EXPECTED and entries[-1]["counts"] == EXPECTED
    assert entries[N]["counts"]["lines"][0]["total"] == {"left_to_right": 0, "right_to_left": 0}  # a new sequence
    # one MOT file per sequence, ids from 1 in each, the boxes as drawn by hand
    for seq in ("east", "west"):
        rows = (tmp_path / f"m_{seq}.txt").read_text().splitlines()
        assert len(rows) == 4 * N
        assert rows[:4] == ["1,1,20.00,270.00,40.00,60.00,0.9000,-1,-1,-1",
                            "1,2,280.00,70.00,40.00,60.00,0.9000,-1,-1,-1",
                            "1,3,70.00,390.00,40.00,60.00,0.9000,-1,-1,-1",
                            "1,4,480.00,20.00,40.00,60.00,0.9000,-1,-1,-1"]
        assert rows[-4].startswith(f"{N},1,220.00,270.00,")
    # the annotated video shows the lines (yellow) and the counts panel
    cap = cv2.VideoCapture(str(tmp_path / "drawn" / "east.mp4"))
    ok, last = None, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        last = frame
    cap.release()
    assert last is not None and np.abs(last[240, 100].astype(int) - (0, 255, 255)).max() < 60

    # --mot into a folder: <folder>/<sequence>.txt, as track-eval reads a tracker's results
    r = CliRunner().invoke(main, ["detect", "standin.cfg", str(tmp_path / "east.mp4"), "--nosave", "-q",
                                  "--mot", str(tmp_path / "trackers") + "/"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "trackers" / "east.txt").read_text().splitlines()[0].startswith("1,1,20.00,")


class LowScoreStandIn(StandIn):
    """A detector whose frame k holds a car (40 x 60 px) moving right 20 px a frame, at .9 except in frames 8 to 11:
    .15 with a second class at .12 (ByteTrack's low-score band, under --thresh .25), and in frames 3 to 6 a stray
    person box at .2 far from it; probabilities at or below the detector's threshold are 0, as decode leaves them."""

    def stream(self, frames, workers=2, lookahead=None):
        for fr in frames:
            bgr, k = fr.load(), fr.index
            rows = [((60 + 20 * k) / W, 300 / H, [0.15, 0.12] if 8 <= k < 12 else [0.9, 0.0])]
            if 3 <= k < 7:
                rows.append((500 / W, 80 / H, [0.0, 0.2]))
            boxes = np.array([[x, y, 40 / W, 60 / H] for x, y, _ in rows], np.float32)
            probs = np.array([p for _, _, p in rows], np.float32)
            probs[probs <= np.float32(self.thresh)] = 0
            yield Result(fr, bgr, DetectionArray(boxes, probs.max(1), probs, W, H, names=NAMES), None, 1.0)


def test_low_score_boxes_on_a_track_are_in_every_output(tmp_path, monkeypatch):
    """The boxes ByteTrack keeps on a track from its low-score band (under --thresh) are written like the others,
    with their best class and its probability, to --mot, the JSON file and the API (and printed); a low-score box
    on no track is in none of them."""
    import darkcfg.infer.run
    import darkcfg.infer.runtime

    monkeypatch.setattr(darkcfg.infer.runtime, "load_detector", lambda *a, **k: LowScoreStandIn())
    monkeypatch.setattr(darkcfg.infer.run, "Detector", lambda *a, **k: LowScoreStandIn())
    _blank_video(tmp_path / "v.mp4")
    r = CliRunner().invoke(main, ["detect", "standin.cfg", str(tmp_path / "v.mp4"), "--nosave", "-o",
                                  str(tmp_path / "v.json"), "--mot", str(tmp_path / "v.txt")])
    assert r.exit_code == 0, r.output
    low = range(8, 12)
    car = [(0, 1, ((60 + 20 * k) / W, 300 / H, 40 / W, 60 / H)) for k in range(N)]  # (class, id, box) per frame
    entries = json.loads((tmp_path / "v.json").read_text())
    assert_same(_json_ids(entries), [[o] for o in car])
    assert [e["objects"][0]["confidence"] for e in entries] == [0.15 if k in low else 0.9 for k in range(N)]
    model = type("Model", (), {"track": staticmethod(lambda src, **kw: darkcfg.infer.run.track(None, src, **kw))})
    api = _api_ids(model, tmp_path / "v.mp4", names=NAMES)  # model.track, on the stand-in's detections
    assert_same(api, [[o] for o in car])
    rows = (tmp_path / "v.txt").read_text().splitlines()
    assert rows == [f"{k + 1},1,{40 + 20 * k:.2f},270.00,40.00,60.00,{0.15 if k in low else 0.9:.4f},-1,-1,-1"
                    for k in range(N)]
    printed = [line for line in r.stdout.splitlines() if not line.endswith("milli-seconds.")]
    assert printed == ["car: 15% (id: 1)" if k in low else "car: 90% (id: 1)" for k in range(N)]


def test_bad_tracking_options_are_one_line_errors(tmp_path):
    _blank_video(tmp_path / "v.mp4")
    r = CliRunner().invoke(main, ["detect", str(CFG), str(tmp_path / "v.mp4"), "--nosave", "--tracker", "darknet"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1
    assert "cfg/yolov3-tiny.cfg: --tracker darknet needs a [yolo] layer with embedding_layer" in r.output
    for line, needle in (("1,2,3", "x1,y1,x2,y2"), ("5,5,5,5", "two distinct points")):
        r = CliRunner().invoke(main, ["detect", str(CFG), str(tmp_path / "v.mp4"), "--nosave", "--count-line", line])
        assert r.exit_code == 2 and "Traceback" not in r.output
        err = [text for text in r.output.splitlines() if text.startswith("Error:")]  # click's usage, then one line
        assert len(err) == 1 and needle in err[0], r.output
    r = CliRunner().invoke(main, ["serve", str(CFG), "--tracker", "darknet", "--port", "0"])
    assert r.exit_code == 1 and "embedding_layer" in r.output and len(r.output.strip().splitlines()) == 1


def test_sequences_of_the_sources(tmp_path):
    (tmp_path / "seq").mkdir()
    for k in (2, 1, 3):
        cv2.imwrite(str(tmp_path / "seq" / f"{k:06d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    _blank_video(tmp_path / "v.mp4")
    loose = [str(tmp_path / "seq" / f"{k:06d}.jpg") for k in (1, 2)]
    (tmp_path / "l.txt").write_text("\n".join([loose[0], str(tmp_path / "v.mp4"), loose[1]]))
    plan = plan_sequences([str(tmp_path / "seq"), *loose, str(tmp_path / "v.mp4"), str(tmp_path / "l.txt"), "0"])
    assert plan.names == ["seq", "seq_2", "v", "l", "v_2", "l_2", "camera0"]
    assert plan.place == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0)]
    assert [s.path for s in plan.sources[:3]] == [str(tmp_path / "seq" / f"{k:06d}.jpg") for k in (1, 2, 3)]


def test_track_ids_in_json_text_and_drawing():
    d = DetectionArray(np.array([[0.5, 0.5, 0.4, 0.4], [0.2, 0.2, 0.1, 0.1]], np.float32),
                       np.array([0.9, 0.8], np.float32), np.array([[0.81, 0], [0, 0.7]], np.float32), 200, 100,
                       names=["car", "person"], track_ids=np.array([7, -1]))
    text = json_object(d, 3, None)
    objs = json.loads(text)["objects"]
    assert [o["track_id"] for o in objs] == [7, 0]
    assert '"confidence":0.810000, "track_id":7}' in text
    assert '"track_id"' not in json_object(DetectionArray(d.boxes, d.objectness, d.probs, 200, 100), 3, None)
    assert text_lines(d, 0.25) == ["person: 70%", "car: 81% (id: 7)"]
    drawn = draw_detections(np.zeros((100, 200, 3), np.uint8), d, 0.25)
    assert (drawn[50, 55:65] == track_color(7)).all(1).any()  # the left edge of box 7 (x 60, y 30..70)
    assert track_color(7) != track_color(8)


# ---- serve: named tracked streams ------------------------------------------------------------------------------------

def _post(srv, path, body):
    c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=60)
    c.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


@pytest.fixture(scope="module")
def server(model):
    srv = make_server(Detector(model), "127.0.0.1", 0, batch=4, batch_wait=0.01, max_streams=2, stream_timeout=30)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@needs_shared
def test_serve_interleaved_streams_keep_their_own_ids(server, model, dog_jpegs, tmp_path):
    other = _slide(IMAGES / "person.jpg", backwards=True)
    for name, jpegs in (("dog", dog_jpegs), ("person", other)):
        (tmp_path / name).mkdir()
        for k, b in enumerate(jpegs):
            (tmp_path / name / f"{k:03d}.jpg").write_bytes(b)
    expected = {name: _api_ids(model, tmp_path / name) for name in ("dog", "person")}
    got = {"dog": [], "person": []}
    for k in range(FRAMES):
        for name, jpegs in (("dog", dog_jpegs), ("person", other)):
            status, entry = _post(server, f"/detect?stream={name}&track=1", jpegs[k])
            assert status == 200, entry
            assert entry[0]["frame_id"] == k + 1
            got[name].append(entry[0])
    for name in got:
        assert_same(_json_ids(got[name]), expected[name])
    status, entry = _post(server, "/detect", dog_jpegs[0])  # untracked requests are as before
    assert status == 200 and entry[0]["frame_id"] == 1 and all("track_id" not in o for o in entry[0]["objects"])


def test_serve_bad_stream_parameters_are_400(server):
    for query in ("stream=a/b&track=1", "stream=&track=1", f"stream={'x' * 65}&track=1", "stream=a",
                  "track=1", "stream=a&stream=b&track=1", "stream=a&track=yes", "stream=a%00&track=1"):
        status, answer = _post(server, f"/detect?{query}", b"\xff\xd8")
        assert status == 400 and "\n" not in answer["error"], query


@needs_shared
def test_serve_stream_limit_and_expiry(server, dog_jpegs):
    server.service.streams.timeout = 30
    for name in ("s1", "s2", "s1"):
        assert _post(server, f"/detect?stream={name}&track=1", dog_jpegs[0])[0] == 200
    assert _post(server, "/detect?stream=s1&track=1&thresh=0.5", dog_jpegs[1])[0] == 400  # not the stream's thresh
    assert _post(server, "/detect?stream=s3&track=1", dog_jpegs[0])[0] == 200  # replaces s2, the least recent
    assert sorted(server.service.streams.names()) == ["s1", "s3"]
    assert _post(server, "/detect?stream=s1&track=1", dog_jpegs[1])[1][0]["frame_id"] == 3
    server.service.streams.timeout = 0.2
    time.sleep(0.3)
    assert _post(server, "/detect?stream=s1&track=1", dog_jpegs[2])[1][0]["frame_id"] == 1  # expired: a new stream
    assert server.service.streams.names() == ["s1"]
    server.service.streams.timeout = 30


def test_stream_table_is_busy_when_every_stream_is_in_use():
    table = StreamTable(max_streams=2, timeout=60)
    a, ta = table.enter("a", 0.25, 0.45, 30)
    b, tb = table.enter("b", 0.25, 0.45, 30)
    with pytest.raises(RequestError) as e:
        table.enter("c", 0.25, 0.45, 30)
    assert e.value.status == 503
    # turns: a second request of "a" is tracked after the first, even when its detections come first
    a2, ta2 = table.enter("a", 0.25, 0.45, 30)
    empty = DetectionArray.empty(1, 10, 10)
    order = []
    t = threading.Thread(target=lambda: order.append(("second", table.track(a2, ta2, empty)[1])))
    t.start()
    time.sleep(0.1)
    assert not order  # waits for the first
    order.append(("first", table.track(a, ta, None)[1]))  # a failed request passes its turn
    t.join(5)
    assert order == [("first", 0), ("second", 1)]
    for st in (a, a2, b):
        table.leave(st)
    table.track(b, tb, None)
    c, _ = table.enter("c", 0.25, 0.45, 30)  # now "b" (least recently used, idle) is replaced
    assert sorted(table.names()) == ["a", "c"] and table.dropped == 1
    table.leave(c)


def test_a_stream_bounds_its_requests_in_progress_and_their_wait():
    """A client cannot hold every worker on one stream, nor on many: at most max_pending requests of a stream at
    once and max_busy over all streams (503), and a frame whose predecessor is never tracked gives up after
    turn_timeout (503) without stalling the stream: the frames after it are tracked once the predecessor is
    done."""
    table = StreamTable(max_pending=3, turn_timeout=0.2)
    held = [table.enter("s", 0.25, 0.45, 30) for _ in range(3)]
    with pytest.raises(RequestError, match="3 frames in progress") as e:
        table.enter("s", 0.25, 0.45, 30)
    assert e.value.status == 503
    (s0, t0), (s1, t1), (s2, t2) = held
    empty = DetectionArray.empty(1, 10, 10)
    start = time.monotonic()
    with pytest.raises(RequestError, match="not tracked within 0.2 s"):
        table.track(s1, t1, empty)  # ticket 0 is still detecting
    assert time.monotonic() - start < 2
    table.leave(s1)
    assert table.track(s0, t0, empty)[1] == 1  # ticket 0 done: the turn passes ticket 1 (gave up) to ticket 2
    assert table.track(s2, t2, empty)[1] == 2
    for st in (s0, s2):
        table.leave(st)
    assert table.enter("s", 0.25, 0.45, 30)[1] == 3  # room again
    shared = StreamTable(max_pending=3, max_busy=2)  # over all streams: more streams do not take more workers
    shared.enter("a", 0.25, 0.45, 30)
    b = shared.enter("b", 0.25, 0.45, 30)
    with pytest.raises(RequestError, match="2 tracked frames in progress over all streams") as e:
        shared.enter("c", 0.25, 0.45, 30)
    assert e.value.status == 503
    shared.leave(b[0])
    assert shared.enter("c", 0.25, 0.45, 30)[1] == 0


def test_darknet_tracker_through_the_api_leaves_no_hooks(tmp_path):
    import warnings

    from oracle import randomize

    from darkcfg.model.network import Darknet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Darknet.from_file(REPO / "tests" / "data" / "track" / "tiny-embedding.cfg", size=(128, 128))
    randomize(m.eval(), 0)
    frames = [np.full((96, 128, 3), 40 * k, np.uint8) for k in range(3)]
    for k, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{k}.png"), f)
    out = list(m.track(str(tmp_path), thresh=0.3, tracker="darknet"))
    assert len(out) == 3 and any(d.track_id for _, _, dets in out for d in dets)
    assert not any(layer._forward_hooks for layer in m.layers)
    with pytest.raises(DarkcfgError, match="embedding_layer"):
        next(iter(darkcfg.load(CFG, WEIGHTS, size=96).track(str(tmp_path), tracker="darknet")))


@needs_shared
def test_track_appearance_option_reaches_the_tracker_as_the_api(model, dog_jpegs, tmp_path, monkeypatch):
    """`detect --track-appearance` tracks as `model.track(appearance=True)` (the ids and boxes of the -o JSON);
    with --tracker darknet it is a usage error (and an error through the API)."""
    clip = tmp_path / "clip.mjpeg"
    clip.write_bytes(b"".join(dog_jpegs))
    api = _api_ids(model, clip, appearance=True)
    out = tmp_path / "a.json"
    r = CliRunner().invoke(main, ["detect", str(CFG), str(WEIGHTS), str(clip), "--track-appearance", "--nosave",
                                  "--quiet", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert_same(_json_ids(json.loads(out.read_text())), api)
    assert {t for frame in api for _, t, _ in frame} >= {1, 2}
    from darkcfg.cli.detect import track_from

    assert track_from(False, None, None, (), True) == TrackOptions("bytetrack", [], True)  # implies --track
    import darkcfg.infer.run as run_module

    made = []
    real = run_module.make_tracker
    monkeypatch.setattr(run_module, "make_tracker", lambda *a, **k: made.append(k) or real(*a, **k))
    r = CliRunner().invoke(main, ["detect", str(CFG), str(WEIGHTS), str(clip), "--track-appearance", "--nosave",
                                  "--quiet"])
    assert r.exit_code == 0 and made and all(k.get("appearance") is True for k in made), (r.output, made)
    r = CliRunner().invoke(main, ["detect", str(CFG), str(WEIGHTS), str(clip), "--tracker", "darknet",
                                  "--track-appearance", "--nosave"])
    assert r.exit_code == 2 and "--track-appearance is ByteTrack's cue" in r.output
    with pytest.raises(DarkcfgError, match="ByteTrack's cue"):  # the API (and serve) refuse it as well
        next(iter(model.track(str(clip), tracker="darknet", appearance=True)))
    for other in (["--runtime", "openvino"], ["--compile"]):  # refused before anything loads
        r = CliRunner().invoke(main, ["detect", str(CFG), str(WEIGHTS), str(clip), "--track-appearance", "--nosave",
                                      *other])
        assert r.exit_code == 2 and "--track-appearance reads the network's feature map" in r.output, other
    r = CliRunner().invoke(main, ["detect", str(CFG), str(WEIGHTS), str(clip), "--track-appearance", "--nosave",
                                  "--tiles", "2x2"])
    assert r.exit_code == 1 and "the appearance cue with --tiles" in r.output, r.output


def test_track_buffer_option_reaches_the_tracker(model, tmp_path, monkeypatch):
    """`detect --track-buffer 90` implies --track and reaches ByteTrack (90 frames at 30 fps: 30 at the 10 fps
    video's rate); 0, or with --tracker darknet (whose buffer is the cfg's track_history_size), is a usage error
    before anything loads, and an error through the API as well."""
    from darkcfg.cli.detect import track_from
    from darkcfg.infer.track import make_tracker as real_make

    assert track_from(False, None, None, (), False, 90) == TrackOptions("bytetrack", [], False, 90)
    assert real_make("bytetrack", fps=60, track_buffer=10).max_lost == 20
    assert real_make("bytetrack").max_lost == 45
    _blank_video(tmp_path / "v.mp4")
    import darkcfg.infer.run as run_module

    made = []
    monkeypatch.setattr(run_module, "make_tracker", lambda *a, **k: made.append(real_make(*a, **k)) or made[-1])
    r = CliRunner().invoke(main, ["detect", str(CFG), str(WEIGHTS), str(tmp_path / "v.mp4"), "--track-buffer", "90",
                                  "--nosave", "--quiet", "--size", "96"])
    assert r.exit_code == 0 and made and made[-1].max_lost == 30, (r.output, made)
    made.clear()
    next(iter(model.track(str(tmp_path / "v.mp4"), track_buffer=90)))  # the API: the same value
    assert made and made[-1].max_lost == 30
    for args, needle in ((["--track-buffer", "0"], "--track-buffer (track_buffer=) 0: expected a whole number"),
                         (["--track-buffer", "1" + "0" * 400], "expected a whole number of frames from 1 to"),
                         (["--tracker", "darknet", "--track-buffer", "5"], "--track-buffer is ByteTrack's")):
        for cmd in ("detect", "serve"):  # both refuse before anything loads
            r = CliRunner().invoke(main, [cmd, str(CFG), str(tmp_path / "v.mp4") if cmd == "detect" else "--port",
                                          "0" if cmd == "serve" else "--nosave", *args])
            assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, (cmd, r.output)
    for bad in (0, True, 1.5, "90", float("nan")):
        with pytest.raises(DarkcfgError, match="track_buffer=") as e:
            next(iter(model.track(str(tmp_path / "v.mp4"), track_buffer=bad)))
        assert repr(bad) in str(e.value)
    from darkcfg.infer.serve import StreamTable

    assert StreamTable(track_buffer=7).opts.track_buffer == 7  # serve --track-buffer reaches each stream's tracker


def test_tracked_file_runs_keep_libgomp_spinning_unless_set():
    """`detect --track` on files sets GOMP_SPINCOUNT (a longer libgomp spin, cli/detect.py says why) before PyTorch
    loads; not on a live source (camera index or URL), not without tracking, never over the user's own value, and
    never once PyTorch is loaded (libgomp read its settings then)."""
    import subprocess
    import sys

    code = """
import os, sys
from darkcfg.cli.detect import TRACKING_SPINCOUNT, spin_for_tracking
assert "torch" not in sys.modules
got = []
for sources, tracked, preset in [(("a.mp4", "b/"), True, None), (("0",), True, None),
                                 (("rtsp://cam/1", "a.mp4"), True, None), (("a.mp4",), False, None),
                                 (("a.mp4",), True, "77")]:
    os.environ.pop("GOMP_SPINCOUNT", None)
    if preset:
        os.environ["GOMP_SPINCOUNT"] = preset
    spin_for_tracking(sources, tracked)
    got.append(os.environ.get("GOMP_SPINCOUNT"))
import torch
os.environ.pop("GOMP_SPINCOUNT", None)
spin_for_tracking(("a.mp4",), True)
got.append(os.environ.get("GOMP_SPINCOUNT"))
print(got == [TRACKING_SPINCOUNT, None, None, None, "77", None], got)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("True"), r.stdout
