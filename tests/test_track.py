"""The trackers (darkcfg.infer.track): the darknet tracker against a loop-for-loop transcription of the reference's
http_stream.cpp:set_track_id, ByteTrack's identities through a crossing and an occlusion in a generated sequence,
counting lines against hand-counted crossings, and the per-box embeddings against the layer outputs they come
from."""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from oracle import randomize

from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.track import TRACKERS, kalman, make_tracker
from darkcfg.infer.track.bytetrack import LOST_SIGMA, PROBATION, SURE_THRESH, TRACK_BUFFER, ByteTracker
from darkcfg.infer.track.counting import LineCounter
from darkcfg.infer.track.darknet import DarknetTracker

DATA = Path(__file__).parent / "data" / "track"
F32 = np.float32


# -- the darknet tracker ---------------------------------------------------------------------------------
class SetTrackId:
    """http_stream.cpp:set_track_id and its helpers, statement for statement (the static state as attributes).
    A detection is a dict: bbox (x, y, w, h), prob (list), embeddings (list), track_id, sort_class, sim.
    std::sort is not stable: equal similarities are kept in (old, new) order here, as the tracker does."""

    def __init__(self, thresh, sim_thresh, track_ciou_norm, deque_size, dets_for_track, dets_for_show):
        self.thresh, self.sim_thresh, self.track_ciou_norm = F32(thresh), F32(sim_thresh), F32(track_ciou_norm)
        self.deque_size, self.dets_for_track, self.dets_for_show = deque_size, dets_for_track, dets_for_show
        self.new_track_id = 1
        self.old_dets_dq = []

    @staticmethod
    def cosine_similarity(a, b):
        mul, d_a, d_b = F32(0), F32(0), F32(0)
        for x, y in zip(a, b):
            mul += x * y
            d_a += x * x
            d_b += y * y
        divider = F32(math.sqrt(d_a)) * F32(math.sqrt(d_b))
        return mul / divider if divider > 0 else F32(0)

    @staticmethod
    def box_iou(a, b):
        def overlap(x1, w1, x2, w2):
            l1, l2 = x1 - w1 / F32(2), x2 - w2 / F32(2)
            left = l1 if l1 > l2 else l2
            r1, r2 = x1 + w1 / F32(2), x2 + w2 / F32(2)
            right = r1 if r1 < r2 else r2
            return right - left

        w = overlap(a[0], a[2], b[0], b[2])
        h = overlap(a[1], a[3], b[1], b[3])
        inter = F32(0) if w < 0 or h < 0 else w * h
        union = a[2] * a[3] + b[2] * b[3] - inter
        return F32(0) if inter == 0 or union == 0 else inter / union

    def check_prob(self, det):
        for p in det["prob"]:
            if p > self.thresh:
                return 1
        return 0

    def check_classes_id(self, det1, det2):
        det1_id, det1_prob, det2_id, det2_prob = -1, F32(0), -1, F32(0)
        for i in range(len(det1["prob"])):
            if det1["prob"][i] > self.thresh and det1["prob"][i] > det1_prob:
                det1_prob, det1_id = det1["prob"][i], i
            if det2["prob"][i] > self.thresh and det2["prob"][i] > det2_prob:
                det2_prob, det2_id = det2["prob"][i], i
        return 1 if det1_id == det2_id and det2_id != -1 else 0

    def fill_remaining_id(self, new_dets):
        for d in new_dets:
            if d["track_id"] == 0 and self.check_prob(d):
                if d["sort_class"] > self.dets_for_track:
                    d["track_id"] = self.new_track_id
                    self.new_track_id += 1

    def __call__(self, new_dets):
        old_dets = [dict(d) for v in self.old_dets_dq for d in v]
        sim_det = []
        for old_id in range(len(old_dets)):
            for new_id in range(len(new_dets)):
                sim = self.cosine_similarity(new_dets[new_id]["embeddings"], old_dets[old_id]["embeddings"])
                sim_det.append({"new_id": new_id, "old_id": old_id, "sim": sim})
        sim_det.sort(key=lambda v: -v["sim"])
        new_idx = [1] * len(new_dets)
        old_idx = [1] * len(old_dets)
        track_idx = [1] * self.new_track_id
        for index in range(len(new_dets) * len(old_dets)):
            new_id, old_id = sim_det[index]["new_id"], sim_det[index]["old_id"]
            track_id = old_dets[old_id]["track_id"]
            det_count = old_dets[old_id]["sort_class"]
            if track_idx[track_id] and new_idx[new_id] and old_idx[old_id] \
                    and self.check_classes_id(new_dets[new_id], old_dets[old_id]):
                sim = sim_det[index]["sim"]
                ciou = self.box_iou(new_dets[new_id]["bbox"], old_dets[old_id]["bbox"])
                sim = sim * (F32(1) - self.track_ciou_norm) + ciou * self.track_ciou_norm
                if self.sim_thresh < sim and new_dets[new_id]["sim"] < sim:
                    new_dets[new_id]["sim"] = sim
                    new_dets[new_id]["track_id"] = track_id
                    new_dets[new_id]["sort_class"] = det_count + 1
                    old_idx[old_id] = 0
                    if track_id:
                        track_idx[track_id] = 0
        self.fill_remaining_id(new_dets)
        self.old_dets_dq.append([dict(d, prob=list(d["prob"])) for d in new_dets if self.check_prob(d)])
        if len(self.old_dets_dq) > self.deque_size:
            self.old_dets_dq.pop(0)
        for d in new_dets:
            if d["sort_class"] < self.dets_for_show:
                d["prob"] = [F32(0)] * len(d["prob"])


def _stored_frames():
    """tests/data/track/darknet_frames.npz (20 frames: objects crossing, one hidden for 5 frames, a look-alike
    of another, one appearing late; per row a box, class probabilities and a 16-value embedding) as
    DetectionArrays."""
    z = np.load(DATA / "darknet_frames.npz", allow_pickle=False)
    out = []
    for f in range(int(z["frame"].max()) + 1):
        k = z["frame"] == f
        d = DetectionArray(z["boxes"][k], np.ones(int(k.sum()), F32), z["probs"][k], 640, 480)
        d.embeddings = z["embeddings"][k]
        out.append(d)
    return out


@pytest.mark.parametrize("opts", [
    dict(sim_thresh=0.7, track_ciou_norm=0.2, track_history_size=20, dets_for_track=8, dets_for_show=2),  # the cfg's
    dict(sim_thresh=0.7, track_ciou_norm=0.2, track_history_size=20, dets_for_track=2, dets_for_show=2,
         after_nms=False),
    dict(sim_thresh=0.8, track_ciou_norm=0.01, track_history_size=5, dets_for_track=1, dets_for_show=1),  # parser.c
    dict(sim_thresh=0.5, track_ciou_norm=0.5, track_history_size=3, dets_for_track=0, dets_for_show=3,
         after_nms=False),
])
def test_darknet_tracker_equals_set_track_id(opts):
    thresh = 0.25
    after_nms = opts.pop("after_nms", True)
    tracker = DarknetTracker(thresh, after_nms=after_nms, **opts)
    ref = SetTrackId(thresh, opts["sim_thresh"], opts["track_ciou_norm"], opts["track_history_size"],
                     opts["dets_for_track"], opts["dets_for_show"])
    assigned = 0
    for k, dets in enumerate(_stored_frames()):
        start = dets.probs.shape[1] - 1 if after_nms else 0  # do_nms_sort leaves sort_class at the last class
        new = [{"bbox": [F32(v) for v in b], "prob": [F32(v) for v in p], "embeddings": [F32(v) for v in e],
                "track_id": 0, "sort_class": start, "sim": F32(0)}
               for b, p, e in zip(dets.boxes, dets.probs, dets.embeddings)]
        ref(new)
        ids = tracker.update(dets)
        want = [d["track_id"] if d["track_id"] else -1 for d in new]
        assert ids.tolist() == want, f"frame {k}"
        assert dets.track_ids.tolist() == want
        np.testing.assert_array_equal(dets.probs, np.array([d["prob"] for d in new], F32).reshape(dets.probs.shape),
                                      err_msg=f"frame {k}: dets_for_show")
        assigned += sum(i > 0 for i in want)
    assert assigned > 20  # the sequence exercises matching, not only "no id"
    tracker.reset()
    assert tracker.update(_stored_frames()[0]).max() <= 3  # ids start again at 1


def test_darknet_tracker_needs_embeddings():
    d = DetectionArray(np.full((1, 4), 0.5, F32), np.ones(1, F32), np.full((1, 2), 0.9, F32), 10, 10)
    with pytest.raises(DarkcfgError, match="embedding"):
        make_tracker("darknet").update(d)
    with pytest.raises(DarkcfgError, match="unknown tracker 'sort'"):
        make_tracker("sort")
    assert TRACKERS == ("bytetrack", "darknet")


# -- ByteTrack -------------------------------------------------------------------------------------------
W, H = 640, 480


def _crossing_sequence(seed=0, frames=80):
    """A generated sequence (boxes only, no network): A (class 0) moves right and B (class 0) left; they cross
    near frame 30 with their boxes overlapping; B then goes behind an occluder: 3 frames of low scores, 15 frames
    unseen, 3 frames of low scores, then seen again; C (class 1) appears at frame 50. Box noise 1.5 px.
    -> [(DetectionArray, [object name per row])]."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(frames):
        objs = [("A", (40 + 7 * f, 200, 40, 60, 0), 0.9)]
        score_b = 0.85
        if 38 <= f < 41 or 56 <= f < 59:
            score_b = 0.15
        elif 41 <= f < 56:
            score_b = 0.0
        objs.append(("B", (460 - 6 * f, 212, 42, 62, 0), score_b))
        if f >= 50:
            objs.append(("C", (300 + 2 * (f - 50), 420 - 4 * (f - 50), 50, 50, 1), 0.8))
        boxes, probs, names = [], [], []
        for name, (cx, cy, w, h, c), s in objs:
            if s <= 0:
                continue
            e = rng.normal(0, 1.5, 4)
            boxes.append([(cx + e[0]) / W, (cy + e[1]) / H, (w + e[2]) / W, (h + e[3]) / H])
            p = np.zeros(2, F32)
            p[c] = s
            probs.append(p)
            names.append(name)
        order = rng.permutation(len(boxes))  # detections come in no particular order
        d = DetectionArray(np.array(boxes, F32)[order].reshape(-1, 4), np.ones(len(boxes), F32),
                           np.array(probs, F32)[order].reshape(-1, 2), W, H)
        out.append((d, [names[i] for i in order]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bytetrack_keeps_ids_through_crossing_and_occlusion(seed):
    tracker = make_tracker("bytetrack", thresh=0.25)
    seen: dict[str, set[int]] = {"A": set(), "B": set(), "C": set()}
    for f, (dets, names) in enumerate(_crossing_sequence(seed)):
        ids = tracker.update(dets)
        assert ids.dtype == np.int64 and dets.track_ids is ids
        for name, i, p in zip(names, ids.tolist(), dets.probs.max(1)):
            if i >= 0:
                seen[name].add(i)
            elif p > 0.25 and not (name == "C" and f == 50):  # a high box is tracked, but in a new track's 1st frame
                pytest.fail(f"frame {f}: {name} has no id")
        if 38 <= f < 41:  # B still tracked: its low-score boxes continue it
            assert ids[names.index("B")] in seen["B"]
    # one id each, from 1, through the crossing and the occlusion
    assert len(seen["A"]) == len(seen["B"]) == 1 and seen["A"] | seen["B"] == {1, 2}
    assert len(seen["C"]) == 1 and seen["C"] != {1} and seen["C"] != {2}  # the new object gets a new id


def test_bytetrack_reset_and_empty_frames():
    tracker = make_tracker("bytetrack")
    seq = _crossing_sequence(0, 10)
    for d, _ in seq:
        tracker.update(d)
    empty = DetectionArray.empty(2, W, H)
    assert tracker.update(empty).shape == (0,) and empty.track_ids.shape == (0,)
    tracker.reset()
    d = _crossing_sequence(1, 1)[0][0]
    assert sorted(tracker.update(d).tolist()) == [1, 2]


def _boxes(rows, classes=1):
    """[(cx, cy, score)] of 40 x 40 px boxes, class 0 -> a DetectionArray (W x H)."""
    b = np.array([[x / W, y / H, 40 / W, 40 / H] for x, y, _ in rows], F32).reshape(-1, 4)
    p = np.zeros((len(rows), classes), F32)
    p[:, 0] = [sc for _, _, sc in rows]
    return DetectionArray(b, np.ones(len(rows), F32), p, W, H)


def test_bytetrack_starts_tracks_for_every_box_shown_above_thresh_plus_a_margin():
    """A new track needs a score of thresh + 0.1 (ByteTrack's det_thresh = track_thresh + 0.1), not a fixed 0.6:
    an object the detector shows at 0.45 has its id in the sequence's first frame; one that appears later at 0.9
    (>= sure_thresh) has it from its second frame, one at 0.4 after PROBATION (5) more matches; 0.3 (shown, but
    within the margin) starts none; near thresh 1 the bar stays below 1."""
    assert (SURE_THRESH, PROBATION, TRACK_BUFFER) == (0.8, 5, 45)
    tracker = make_tracker("bytetrack", thresh=0.25)
    seen = []
    for f in range(10):
        rows = [(100 + 5 * f, 100, 0.45), (500, 300 + 4 * f, 0.3)]
        if f >= 3:
            rows += [(300, 400 - 5 * f, 0.4), (700, 100 + 5 * f, 0.9)]
        seen.append(tracker.update(_boxes(rows)).tolist())
    assert [ids[0] for ids in seen] == [1] * 10  # from the first frame
    assert [ids[1] for ids in seen] == [-1] * 10  # never a track
    assert [ids[3] for ids in seen[3:]] == [-1, 2, 2, 2, 2, 2, 2]  # sure: confirmed in its second frame
    assert [ids[2] for ids in seen[3:]] == [-1, -1, -1, -1, -1, 3, 3]  # less sure: on probation for 5 matches
    missed = make_tracker("bytetrack", thresh=0.25)  # a less sure track missed once in probation ends
    got = [missed.update(_boxes([(100, 100, 0.9)] + ([(300, 300, 0.7)] if f not in (0, 2) else []))).tolist()
           for f in range(10)]  # born in frame 2, missed in 3: born again in 4, its id in 9
    assert [g[1] for g in got if len(g) > 1] == [-1, -1, -1, -1, -1, -1, 2, 2]
    strict = make_tracker("bytetrack", thresh=0.95)
    assert strict.update(_boxes([(100, 100, 0.99)])).tolist() == [1]
    assert strict.update(_boxes([(100, 100, 0.96)])).tolist() == [1]


def test_bytetrack_keeps_at_most_max_tracks_dropping_the_oldest_lost_first():
    """max_tracks=4: a new object takes the room of the lost track seen longest ago (D, gone since frame 1, rather
    than A, gone since frame 2, which then comes back with its id); while every track is followed a new object
    gets none; once one is lost, the newcomer takes its room, and D, back, is a new object (id 6)."""
    from darkcfg.infer.track.bytetrack import ByteTracker

    at = {"A": (50, 50), "B": (150, 50), "C": (250, 50), "D": (350, 50), "E": (450, 50)}
    frames = ["ABCD", "ABC", "BC", "BCE", "BCEA", "BCEAD", "BCAD", "BCAD"]
    tracker = ByteTracker(thresh=0.25, max_tracks=4)
    got = []
    for objs in frames:
        ids = tracker.update(_boxes([(*at[o], 0.9) for o in objs]))
        got.append(dict(zip(objs, ids.tolist())))
        assert len(tracker.tid) <= 4
    assert got[0] == {"A": 1, "B": 2, "C": 3, "D": 4}
    assert got[3]["E"] == -1 and got[4]["E"] == 5  # E: room made by dropping D, confirmed in its second frame
    assert got[4]["A"] == 1  # A was kept: D, lost earlier, went first
    assert got[5]["D"] == -1  # no room: A, B, C and E are all followed
    assert got[6]["D"] == -1 and got[7]["D"] == 6  # E lost in frame 7 makes room; D's old track was dropped
    assert all(got[k][o] == i for k in range(5, 8) for o, i in (("A", 1), ("B", 2), ("C", 3)))
    with pytest.raises(DarkcfgError, match="max_tracks=0"):
        ByteTracker(max_tracks=0)
    with pytest.raises(DarkcfgError, match="probation=0"):
        ByteTracker(probation=0)
    with pytest.raises(DarkcfgError, match="sure_thresh=1.5"):
        ByteTracker(sure_thresh=1.5)


def test_bytetrack_track_count_stays_bounded_under_a_flood():
    """2500 boxes in every frame, each frame in new places: the tracker holds at most MAX_TRACKS (1000) tracks,
    the highest-scoring boxes start them, and the lost ones make room for the next frame's."""
    from darkcfg.infer.track.bytetrack import MAX_TRACKS

    assert MAX_TRACKS == 1000
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(50) * 100.0 + 60, np.arange(50) * 100.0 + 60), -1).reshape(-1, 2)
    size = 5100
    tracker = make_tracker("bytetrack")
    for f in range(4):
        xy = grid + 50 * (f % 2)  # half a step: no box overlaps the previous frame's
        scores = rng.uniform(0.4, 1.0, len(xy)).astype(F32)
        d = DetectionArray(np.c_[xy / size, np.full((len(xy), 2), 40 / size)].astype(F32), np.ones(len(xy), F32),
                           scores[:, None], size, size)
        ids = tracker.update(d)
        assert len(tracker.tid) == MAX_TRACKS and len(tracker.mean) == len(tracker.cov) == MAX_TRACKS
        if f == 0:  # the first frame confirms at once: ids for the 1000 best boxes
            assert (ids > 0).sum() == MAX_TRACKS and scores[ids > 0].min() >= scores[ids < 0].max()
        else:  # the new tracks wait for their second frame; the old ones are lost and dropped
            assert (ids > 0).sum() == 0 and (tracker.tid < 0).all()


def test_bench_track_detect_command_names_the_classes(tmp_path):
    """scripts/bench_track.py --detect-fps: the detect command it times carries --names for the cfg's classes:
    --names itself, else the names= of a .data beside the cfg (one name per class), else the shapes set's names
    written for the cfg's classes."""
    import importlib.util

    from oracle import REPO
    spec = importlib.util.spec_from_file_location("bench_track", REPO / "scripts" / "bench_track.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = tmp_path / "net" / "tiny.cfg"
    cfg.parent.mkdir()
    cfg.write_text((DATA / "tiny-embedding.cfg").read_text())  # classes=10
    out = tmp_path / "out"
    made = bench.names_file(str(cfg), None, out)
    assert made == out / "shapes.names"
    assert made.read_text().split() == ["circle", "square", "triangle", "cross", "ring"] + \
        [f"class{k}" for k in range(5, 10)]
    (cfg.parent / "wrong.names").write_text("a\nb\n")  # not one per class: passed over
    (cfg.parent / "set.names").write_text("".join(f"n{k}\n" for k in range(10)))
    (cfg.parent / "set.data").write_text("classes = 10\nnames = set.names\n")  # relative to the .data file
    assert bench.names_file(str(cfg), None, out) == cfg.parent / "set.names"
    assert bench.names_file(str(cfg), str(cfg.parent / "set.names"), out) == cfg.parent / "set.names"
    with pytest.raises(SystemExit, match="--names: .*wrong.names: has 2 names, expected 10"):
        bench.names_file(str(cfg), str(cfg.parent / "wrong.names"), out)
    # the command it times runs: a 3-frame video, random weights
    import cv2
    from click.testing import CliRunner

    from darkcfg.cli import main
    from darkcfg.model.network import Darknet
    from darkcfg.model.weights import save_weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Darknet.from_file(cfg, size=(64, 64))
    randomize(model, 0)
    save_weights(model, tmp_path / "w.weights")
    video = tmp_path / "v.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for k in range(3):
        vw.write(np.full((48, 64, 3), 60 * k, np.uint8))
    vw.release()
    for track in (False, True):
        cmd = bench.detect_command(str(cfg), str(tmp_path / "w.weights"), 64, video, made, 0.25, "cpu", track)
        assert cmd[1:4] == ["-m", "darkcfg", "detect"] and cmd[cmd.index("--names") + 1] == str(made)
        assert ("--track" in cmd) == track
        r = CliRunner().invoke(main, cmd[3:])  # `python -m darkcfg` is the CLI main
        assert r.exit_code == 0 and "3 image(s)" in r.output, r.output
    # and the in-process pairs run each sequence's video both ways
    seq = tmp_path / "seqs" / "s1"
    seq.mkdir(parents=True)
    video.rename(seq / "s1.mp4")
    (line,) = bench.paired_fps(str(cfg), str(tmp_path / "w.weights"), 64, [seq], made, 0.25, "cpu", 2)
    spin = os.environ.get("GOMP_SPINCOUNT", "libgomp's default")  # the spin the process runs with, named
    assert line.startswith(f"  paired in one process (2 pairs: 1 video(s) x 2; GOMP_SPINCOUNT {spin}, not the "
                           "command's): detect ") and "pairs' median" in line


# -- counting --------------------------------------------------------------------------------------------
def _count_frames():
    """Tracks given directly (no tracker): id -> (class, centre per frame or None when unseen)."""
    def path(f0, p0, v, frames, hide=()):
        return [None if f in hide else (p0[0] + v[0] * f, p0[1] + v[1] * f) for f in range(frames)]

    wobble = [(310 + (20 if (f // 2) % 2 else 0), 150) for f in range(40)]  # across x=320 and back, many times
    return {
        1: (0, path(0, (100, 200), (10, 0), 40)),  # car, left to right across the vertical line
        2: (1, path(0, (500, 250), (-10, 0), 40)),  # person, right to left
        3: (0, wobble),  # car, wobbling on the vertical line: one each way
        4: (0, path(0, (100, 450), (10, 0), 40)),  # car, below the vertical segment's end: not counted
        5: (1, path(0, (200, 100), (0, 9), 40)),  # person, down across the horizontal line
        6: (0, path(0, (100, 350), (10, 0), 40, hide=range(15, 23))),  # car, unseen while crossing: counted
        7: (0, path(0, (300, 120), (4, 0), 40)),  # car, its centre exactly on the line at frame 5
    }


def _count_dets(tracks, f, names=("car", "person")):
    rows = [(tid, c, p[f]) for tid, (c, p) in tracks.items() if p[f] is not None]
    boxes = np.array([[x / W, y / H, 20 / W, 20 / H] for _, _, (x, y) in rows], F32).reshape(-1, 4)
    probs = np.zeros((len(rows), 2), F32)
    for i, (_, c, _) in enumerate(rows):
        probs[i, c] = 0.9
    d = DetectionArray(boxes, np.ones(len(rows), F32), probs, W, H, names=list(names))
    d.track_ids = np.array([tid for tid, _, _ in rows], np.int64)
    return d


def test_counting_lines_per_class_and_direction():
    tracks = _count_frames()
    counter = LineCounter([(320, 100, 320, 400), (100, 300, 500, 300), (500, 60, 100, 60)])
    events = []
    for f in range(40):
        events += counter.update(_count_dets(tracks, f))
    c = counter.counts["lines"]
    assert c[0]["classes"] == {"car": {"left_to_right": 4, "right_to_left": 1}, "person": {"right_to_left": 1}}
    assert c[0]["total"] == {"left_to_right": 4, "right_to_left": 2}
    # the horizontal line: person 5 down; car 6 passes under it (x 100..500 at y 350: never crosses y=300)
    assert c[1]["classes"] == {"person": {"top_to_bottom": 1}} and c[1]["total"] == {"top_to_bottom": 1,
                                                                                       "bottom_to_top": 0}
    assert c[2]["total"] == {"top_to_bottom": 0, "bottom_to_top": 0}  # nobody goes above y=60
    assert sorted((k, t) for k, t, _, _ in events if k == 0) == [(0, 1), (0, 2), (0, 3), (0, 3), (0, 6), (0, 7)]
    import json
    json.dumps(counter.counts)
    counter.reset()
    assert counter.counts["lines"][0]["total"] == {"left_to_right": 0, "right_to_left": 0}
    with pytest.raises(DarkcfgError, match="count line 1"):
        LineCounter([(1, 2, 1, 2)])


# -- embeddings ------------------------------------------------------------------------------------------
def _contrastive(size=128):
    from darkcfg.model.network import Darknet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracking options of its [yolo]
        model = Darknet.from_file(DATA / "tiny-embedding.cfg", size=(size, size)).eval()
    randomize(model, 0)
    return model


def test_embeddings_are_the_embedding_layer_at_each_cell():
    from darkcfg.infer.detector import Detector
    model = _contrastive()
    head = model.output_layers[-1]
    emb_layer = model.layers[head].params.embedding_layer
    assert emb_layer == head - 4
    im = np.random.default_rng(0).random((3, 96, 150), dtype=F32)
    thresh = 0.53  # objectness of this random network: 0.46 .. 0.55
    plain = Detector(model, thresh=thresh, nms=0).detect_arrays([im])[0]
    assert plain.embeddings is None  # off by default
    dets = Detector(model, thresh=thresh, nms=0, embeddings=True).detect_arrays([im])[0]
    x = torch.from_numpy(Detector(model, thresh=thresh).prepare(im))[None]
    with torch.no_grad():
        outs = model.forward_all(x)
    yolo = outs[head][0].numpy()  # (n*(5+C), H, W)
    emb = outs[emb_layer][0].numpy()  # (n*E, H, W)
    n = len(model.layers[head].params.mask)
    lh, lw = yolo.shape[1:]
    e = emb.shape[0] // n
    want = []
    for i in range(lw * lh):  # get_yolo_detections' loops, get_embedding's index
        row, col = i // lw, i % lw
        for a in range(n):
            if yolo[a * (yolo.shape[0] // n) + 4, row, col] > thresh:
                want.append([emb[a * e + k, row, col] for k in range(e)])
    assert 5 < len(want) == len(dets) < n * lh * lw
    # the same values (up to the convolution's run-to-run rounding: forward_all is a second forward)
    np.testing.assert_allclose(dets.embeddings, np.array(want, F32), rtol=0, atol=1e-5)
    # after NMS each row keeps its own embedding
    nmsd = Detector(model, thresh=thresh, embeddings="layer").detect_arrays([im])[0]
    for b, v in zip(nmsd.boxes, nmsd.embeddings):
        j = int(np.flatnonzero((dets.boxes == b).all(1))[0])
        np.testing.assert_array_equal(v, dets.embeddings[j])


def test_feature_embeddings_pool_the_map_feeding_each_head():
    from darkcfg.infer.detector import Detector
    from darkcfg.infer.track.appearance import EmbeddingTap
    model = _contrastive(96)
    with pytest.raises(DarkcfgError, match="no \\[yolo\\] layer has embedding_layer"):
        EmbeddingTap(_plain_model(), "layer")
    im = np.random.default_rng(1).random((3, 96, 96), dtype=F32)  # the network's size: boxes need no letterbox
    dets = Detector(model, thresh=0.3, nms=0, embeddings="features", letterbox=False).detect_arrays([im])[0]
    head = model.output_layers[-1]
    with torch.no_grad():
        fmap = model.forward_all(torch.from_numpy(im)[None])[head - 2][0].double().numpy()  # (C, h, w)
    c, h, w = fmap.shape
    live = (dets.probs > 0).any(1)  # boxes with a class above thresh: the others are never tracked
    assert dets.embeddings.shape == (len(dets), c) and 3 < live.sum() < len(dets)
    assert not dets.embeddings[~live].any()
    for b, v in list(zip(dets.boxes[live].astype(np.float64), dets.embeddings[live]))[:20]:
        x0, x1 = max(0, math.floor((b[0] - b[2] / 2) * w)), min(w, math.ceil((b[0] + b[2] / 2) * w))
        y0, y1 = max(0, math.floor((b[1] - b[3] / 2) * h)), min(h, math.ceil((b[1] + b[3] / 2) * h))
        if x1 <= x0 or y1 <= y0:
            x0, y0 = min(w - 1, max(0, int(b[0] * w))), min(h - 1, max(0, int(b[1] * h)))
            x1, y1 = x0 + 1, y0 + 1
        mean = sum(fmap[:, y, x] for y in range(y0, y1) for x in range(x0, x1)) / ((x1 - x0) * (y1 - y0))
        np.testing.assert_allclose(v, mean / np.linalg.norm(mean), rtol=1e-4, atol=1e-6)


def _plain_model():
    from darkcfg.model.network import Darknet
    text = (DATA / "tiny-embedding.cfg").read_text().replace("embedding_layer = -4", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Darknet(text[:text.index("[route]\nlayers= -5")], "plain.cfg", size=(64, 64)).eval()


def test_kalman_blocks_follow_the_dense_kalman_equations():
    """kalman.py keeps the covariance as one 2 x 2 (position, velocity) block per coordinate. Against the
    textbook filter on full 8 x 8 matrices (x' = F x, P' = F P F^T + Q; S = H P H^T + R, K = P H^T S^-1,
    x += K (z - H x), P -= K H P; DeepSORT's noise: initial std 2h/20 and 10h/160, then position std h/20,
    velocity h/160, aspect 1e-2 and 1e-5, measured h/20 and 1e-1) over random tracks and 30 frames of
    predictions and updates: the same means, covariances (the dense one's other entries stay 0), innovation
    variances (S stays diagonal) and Mahalanobis distances, to 1e-9."""
    rng = np.random.default_rng(5)
    t = 6
    f = np.eye(8)
    f[:4, 4:] = np.eye(4)
    h_mat = np.eye(4, 8)

    def diag(h, pos, vel, aspect=(1e-2, 1e-5)):
        return np.diag(np.r_[pos * h, pos * h, aspect[0], pos * h, vel * h, vel * h, aspect[1], vel * h] ** 2)

    def dense(cov):  # (T, 3, 4) blocks -> (T, 8, 8)
        out = np.zeros((len(cov), 8, 8))
        for i in range(4):
            out[:, i, i], out[:, i + 4, i + 4] = cov[:, 0, i], cov[:, 2, i]
            out[:, i, i + 4] = out[:, i + 4, i] = cov[:, 1, i]
        return out

    z = np.c_[rng.uniform(0, 600, (t, 2)), rng.uniform(0.3, 3, t), rng.uniform(10, 200, t)]
    mean, cov = kalman.initiate(z)
    dm, dp = np.c_[z, np.zeros((t, 4))], np.stack([diag(zz[3], 2 / 20, 10 / 160) for zz in z])
    assert np.array_equal(mean, dm) and np.allclose(dense(cov), dp, rtol=1e-12, atol=0)
    for step in range(30):
        before = mean.copy(), cov.copy()
        m2, c2 = kalman.predict(mean, cov)
        assert np.array_equal(mean, before[0]) and np.array_equal(cov, before[1])  # the inputs are left as they were
        mean, cov = m2, c2
        dp = np.stack([f @ p @ f.T + diag(m[3], 1 / 20, 1 / 160) for m, p in zip(dm, dp)])
        dm = dm @ f.T
        assert np.allclose(mean, dm, rtol=1e-9) and np.allclose(dense(cov), dp, rtol=1e-9, atol=1e-12)
        s = np.stack([h_mat @ p @ h_mat.T + diag(m[3], 1 / 20, 0, (1e-1, 0))[:4, :4] for m, p in zip(dm, dp)])
        assert not (s * (1 - np.eye(4))).any()  # S is diagonal
        zm, var = kalman.project(mean, cov)
        assert np.allclose(var, np.diagonal(s, axis1=1, axis2=2), rtol=1e-9)
        measured = zm + rng.normal(0, 5, (t, 4)) * np.r_[1, 1, 0.01, 1]
        d = measured[:, None, :2] - zm[None, :, :2]  # (N, T, 2) every measurement against every track
        want = np.einsum("ntj,tjk,ntk->tn", d, np.linalg.inv(s[:, :2, :2]), d)
        assert np.allclose(kalman.mahalanobis(mean, cov, measured), want, rtol=1e-9)
        if step % 3 != 2:  # every third frame predicted only (a lost track)
            k = np.stack([p @ h_mat.T @ np.linalg.inv(ss) for p, ss in zip(dp, s)])  # (T, 8, 4)
            dm = dm + np.einsum("tij,tj->ti", k, measured - dm[:, :4])
            dp = dp - np.einsum("tij,tjk->tik", k, dp[:, :4, :])
            before = mean.copy(), cov.copy()
            m2, c2 = kalman.update(mean, cov, measured)
            assert np.array_equal(mean, before[0]) and np.array_equal(cov, before[1])
            mean, cov = m2, c2
            assert np.allclose(mean, dm, rtol=1e-9) and np.allclose(dense(cov), dp, rtol=1e-9, atol=1e-12)


def test_bytetrack_lost_track_reaches_within_its_position_uncertainty():
    """A moves right at 6 px a frame, is unseen for 25 frames and comes back `back` px behind its motion (it slowed
    behind the occluder). Its 40 px box there no longer overlaps the prediction enough (30 px back: IoU 0.14,
    cost 0.87 > match_thresh 0.8), but the filter's position standard deviation has grown to 29 px: moved
    towards the box by half of it (LOST_SIGMA), the prediction overlaps it again and A keeps its id. With
    lost_sigma=0 (the paper's matching) A gets a new id, as it does 100 px back with the reach; B, a still object
    elsewhere, keeps its id throughout."""
    assert LOST_SIGMA == 0.5

    def run(back, **kw):
        tracker = ByteTracker(thresh=0.25, **kw)
        got = []
        for f in range(55):
            rows = [(600, 400, 0.9)]
            if f < 20:
                rows.append((100 + 6 * f, 200, 0.9))
            elif f >= 45:
                rows.append((100 + 6 * f - back, 200, 0.9))
            d = _boxes(rows)
            if f == 45:  # the lost track's position uncertainty at its return (the filter's own covariance)
                i = int(np.flatnonzero(tracker.tid == 2)[0])
                m, c = kalman.predict(tracker.mean[i:i + 1], tracker.cov[i:i + 1])
                sd = np.sqrt(kalman.project(m, c)[1][0, 0])
                assert 27 < sd < 31 and abs(m[0, 0] - (100 + 6 * f)) < 6
            ids = tracker.update(d).tolist()
            assert ids[0] == 1
            got.append(ids[1] if len(ids) > 1 else None)
        return got[:20], got[45:]

    before, after = run(30)
    assert set(before[1:]) == {2} and set(after) == {2}  # back at once, from its first frame
    before, after = run(30, lost_sigma=0)
    assert set(before[1:]) == {2} and after[0] == -1 and set(after[1:]) == {3}
    before, after = run(100)
    assert after[0] == -1 and set(after[1:]) == {3}
    with pytest.raises(DarkcfgError, match="lost_sigma"):
        ByteTracker(lost_sigma=-1)


def test_bytetrack_costs_of_tracked_and_unconfirmed_tracks_are_the_papers():
    """ByteTrack's code (byte_tracker.update, matching.iou_distance / fuse_score): a tracked track matches a high
    box on its predicted box alone (the reach of LOST_SIGMA is a lost track's only), at 1 - IoU x score <= 0.8; an
    unconfirmed track takes a high box at 1 - IoU x score <= 0.7 (the score fused there too). Boxes 40 x 40 px
    (`_boxes`), a shift of dx along x: IoU = (40 - dx) / (40 + dx)."""
    far = (500, 200)
    # a tracked track: dx 29 (IoU 0.159, cost 0.84) is no match, though the predicted centre's half standard
    # deviation (2.75 px here) would bring it to IoU 0.208, cost 0.79; dx 26 (IoU 0.212, cost 0.79) is
    for dx, same in ((29, False), (26, True)):
        tracker = ByteTracker()
        first = tracker.update(_boxes([(100, 200, 1.0), (*far, 1.0)]))
        ids = tracker.update(_boxes([(100 + dx, 200, 1.0), (*far, 1.0)]))
        assert first[0] == 1 and (ids[0] == 1) == same, (dx, ids)
    # an unconfirmed track (born in the second frame, scoring 0.85: confirmed by its next match): dx 20 (IoU 1/3,
    # x 0.85 = 0.283, cost 0.717) is no match; dx 10 (IoU 0.6, cost 0.49) is
    for dx, same in ((20, False), (10, True)):
        tracker = ByteTracker()
        tracker.update(_boxes([(*far, 0.85)]))
        born = tracker.update(_boxes([(100, 200, 0.85), (*far, 0.85)]))
        ids = tracker.update(_boxes([(100 + dx, 200, 0.85), (*far, 0.85)]))
        assert born[0] == -1 and (ids[0] == 2) == same and ids[1] == 1, (dx, ids)


def test_nearest_iou_is_the_best_iou_within_the_reach():
    """boxes.nearest_iou: each pair's IoU with the first box moved by at most its reach on each axis equals the
    best over a grid of such moves (brute force), and the plain IoU with no reach."""
    from darkcfg.infer.track.boxes import iou_matrix, nearest_iou

    rng = np.random.default_rng(3)
    a = np.c_[rng.uniform(0, 200, (5, 2)), rng.uniform(10, 60, (5, 2))]
    b = np.c_[rng.uniform(0, 200, (7, 2)), rng.uniform(10, 60, (7, 2))]
    reach = rng.uniform(0, 40, (5, 2))
    got = nearest_iou(a, reach, b)
    grid = np.linspace(-1, 1, 201)
    for i in range(5):
        moved = np.array([[a[i, 0] + dx * reach[i, 0], a[i, 1] + dy * reach[i, 1], a[i, 2], a[i, 3]]
                          for dx in grid for dy in grid])
        best = iou_matrix(moved, b).max(0)
        assert np.all(got[i] >= best - 1e-12) and np.allclose(got[i], best, atol=2e-3)
    assert np.allclose(nearest_iou(a, np.zeros((5, 2)), b), iou_matrix(a, b))
    assert nearest_iou(a[:0], reach[:0], b).shape == (0, 7)


def test_bytetrack_appearance_finds_a_lost_track_its_motion_missed():
    """A moves right, is hidden 10 frames and comes back 42 px behind where its motion puts it (it slowed down
    behind the occluder); B, elsewhere, looks different. With appearance its embedding brings A's id back at
    once; without, A gets a new id."""
    rng = np.random.default_rng(0)
    look = {"A": rng.normal(size=32), "B": rng.normal(size=32)}

    def frame(f):
        objs = [("B", 500, 400)]
        if f < 20:
            objs.append(("A", 100 + 6 * f, 200))
        elif f >= 30:
            objs.append(("A", 100 + 6 * f - 42, 200))  # its boxes no longer overlap the motion's (40 px wide)
        d = DetectionArray(np.array([[x / W, y / H, 40 / W, 60 / H] for _, x, y in objs], F32),
                           np.ones(len(objs), F32), np.full((len(objs), 1), 0.9, F32), W, H)
        d.embeddings = np.array([look[n] + rng.normal(0, 0.1, 32) for n, _, _ in objs], F32)
        return d, [n for n, _, _ in objs]

    for appearance in (True, False):
        tracker = make_tracker("bytetrack", appearance=appearance)
        before, after = set(), set()
        for f in range(40):
            d, names = frame(f)
            ids = tracker.update(d)
            if "A" in names and f > 0:
                (before if f < 20 else after).add(int(ids[names.index("A")]))
        if appearance:
            assert before == after == {2}  # from its first frame back
        else:
            assert before == {2} and -1 in after and len(after - {-1}) == 1 and not after & before


def test_darknet_tracker_reads_the_cfg_options():
    model = _contrastive(64)
    params = model.layers[model.output_layers[-1]].params
    t = make_tracker("darknet", thresh=0.3, params=params)
    assert (t.history, t.sim_thresh, t.dets_for_track, t.dets_for_show, t.track_ciou_norm, t.thresh) == \
        (20, pytest.approx(0.7), 8, 2, pytest.approx(0.2), 0.3)
    d = make_tracker("darknet", params=None)  # parser.c's defaults
    assert (d.history, d.sim_thresh, d.dets_for_track, d.dets_for_show, d.track_ciou_norm) == (5, 0.8, 1, 1, 0.01)


def test_assign_takes_the_most_pairs_then_the_least_cost():
    """assign.assign against brute force over every one-to-one matching of small random cost matrices: as many
    pairs within the limit as possible, then the least total cost among those; sparse matrices (no two candidates
    in a row or a column: the fast path without the solver) and dense ones (the solver) alike."""
    from itertools import permutations

    from darkcfg.infer.track.assign import assign

    rng = np.random.default_rng(11)
    for trial in range(300):
        t, n = (int(v) for v in rng.integers(1, 5, 2))
        cost = rng.uniform(0, 1, (t, n))
        if trial % 2:  # sparse: at most one candidate per row and column
            cost[:] = 2.0
            rows, cols = rng.permutation(t)[:min(t, n)], rng.permutation(n)[:min(t, n)]
            keep = rng.uniform(size=len(rows)) < 0.7
            cost[rows[keep], cols[keep]] = rng.uniform(0, 0.8, keep.sum())
        best = (0, 0.0)
        for perm in permutations(range(t + n), t):  # row i -> column perm[i] (>= n: none)
            pairs = [(i, j) for i, j in enumerate(perm) if j < n and cost[i, j] <= 0.8]
            key = (len(pairs), -sum(cost[i, j] for i, j in pairs))
            best = max(best, key)
        pairs, free_rows, free_cols = assign(cost, 0.8)
        assert (len(pairs), -cost[pairs[:, 0], pairs[:, 1]].sum()) == pytest.approx(best)
        assert list(free_rows) == sorted(free_rows) and list(free_cols) == sorted(free_cols)
        assert (np.diff(pairs[:, 0]) > 0).all() and (cost[pairs[:, 0], pairs[:, 1]] <= 0.8).all()
        assert sorted([*pairs[:, 0], *free_rows]) == list(range(t)) and sorted([*pairs[:, 1], *free_cols]) == \
            list(range(n))

    assert assign(np.array([[0.5]]), 0.5)[0].tolist() == [[0, 0]]  # a cost equal to the limit is within it
    assert assign(np.array([[0.5, 0.5], [0.9, 0.5]]), 0.5)[0].tolist() == [[0, 0], [1, 1]]


def test_bytetrack_keeps_a_lost_track_for_track_buffer_frames_at_30_fps():
    """A still object unseen for TRACK_BUFFER (45) frames keeps its id when it shows again; unseen for one frame more
    its track is gone and it gets a new id (confirmed at its next match, scoring >= sure_thresh); at 60 fps the
    buffer is twice as many frames. A box scoring exactly sure_thresh (0.5 here) is sure: its id in its second frame."""
    def back_after(gap, fps=30.0):
        tracker = ByteTracker(thresh=0.25, fps=fps)
        got = [tracker.update(_boxes([(300, 200, 0.9)])).tolist() for _ in range(5)]
        got += [tracker.update(_boxes([])).tolist() for _ in range(gap)]
        got += [tracker.update(_boxes([(300, 200, 0.9)])).tolist() for _ in range(2)]
        assert got[:5] == [[1]] * 5
        return got[-2:]

    assert back_after(TRACK_BUFFER) == [[1], [1]]
    assert back_after(TRACK_BUFFER + 1) == [[-1], [2]]
    assert back_after(2 * TRACK_BUFFER, fps=60) == [[1], [1]]
    assert back_after(2 * TRACK_BUFFER + 1, fps=60) == [[-1], [2]]
    edge = ByteTracker(thresh=0.25, sure_thresh=0.5)
    got = [edge.update(_boxes([(100, 100, 0.9)] + ([(400, 300, 0.5)] if f else []))).tolist() for f in range(3)]
    assert [g[-1] for g in got[1:]] == [-1, 2]
