#!/usr/bin/env python3
"""Tracking benchmark: darkcfg's trackers and the peers on the same detections of generated sequences, scored by
`darkcfg track-eval` (HOTA, DetA, AssA, MOTA, IDF1, ID switches), with the time of one tracker update.

    python scripts/bench_track.py --cfg bench-tiles/train/yolov4-tiny-128/yolov4-tiny-shapes.cfg \\
        --weights bench-tiles/train/yolov4-tiny-128/backup/yolov4-tiny-shapes_final.weights \\
        [--size 256] [--out DIR] [--seqs DIR] [--sequences 3] [--frames 150] [--seed 0]
        [--thresh 0.25] [--det-thresh 0.1] [--peers PYTHON] [--no-peers]
        [--detect-fps [--names FILE] [--fps-repeats 3]]
        [--device cpu|cuda] [--redetect]

1. Sequences: scripts/make_track_video.py's (moving shapes crossing, hidden behind a bar, entering and leaving;
   MOTChallenge ground truth), written to OUT/seqs unless --seqs names a folder of them.
2. Detections: the darkcfg Detector (the cfg's NMS) runs once per frame at --det-thresh (ByteTrack's low-score
   boxes need a threshold under the tracker's), keeping each box's appearance vector (the network's feature map
   pooled in the box, `embeddings="features"`); they are stored in OUT/dets/<seq>.npz and reused by a later run
   (unless --redetect).
3. Trackers, each fed exactly those detections, frame by frame: darkcfg's `bytetrack` without and with the
   appearance cue, and the peers Roboflow `trackers` (Apache-2.0) ByteTrack and OC-SORT, at their defaults and
   with their thresholds set to darkcfg's (high = --thresh, a new track from --thresh + 0.1, as darkcfg's
   ByteTrack). The peers run in their own virtual environment (they need opencv-python 5, which would hide
   the OpenCV test oracle in darkcfg's): `python -m venv PEERS && PEERS/bin/pip install trackers`
   (default PEERS: darkcfg-peers in the temporary folder);
   this script runs itself there (`--peer-worker`) on the stored detections.
4. Scores: each tracker's boxes (the detections it gave an id) as OUT/pred/<tracker>/<seq>.txt, scored against
   the ground truth with darkcfg.eval.tracking (TrackEval's definitions, combined over the sequences).
   "ms/update" is the median wall time of one update() over all frames (the detections already in memory; the
   median, as the host's load may preempt a few updates).
   Every tracker's output holds the low-score boxes it kept on a track (ByteTrack's second association); the
   row "boxes > thresh only" leaves those out of darkcfg's, as a file holding only the shown boxes would.
Also the time of one update at 100 boxes (a synthetic scene of 100 boxes moving for 200 frames) and, with
--detect-fps, frames/s with and without tracking two ways: `darkcfg detect` with and without `--track` on every
sequence's video joined into one (OUT/joined.mp4: the longer the video, the less the start-up's variation weighs),
and `run_detection` on each sequence's video in one process, the two runs of a video back to back (`paired_fps`:
the host's drift cancels, so this is the precise figure), at --size or at each --fps-size. The class names they
need for a cfg of other than 80 classes: --names, else the names= of a .data file beside the cfg, else a .names
file beside it, else the shapes set's names for the cfg's classes, written to OUT/shapes.names: `names_file`).
The machine is printed first.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

PEERS = Path(tempfile.gettempdir()) / "darkcfg-peers"  # the peers' own venv (opencv-python 5)

REPO = Path(__file__).resolve().parent.parent
NAMES = ["circle", "square", "triangle", "cross", "ring"]


# -- stored detections: one npz per sequence -----------------------------------------------------------------
def save_dets(path: Path, frames: list[dict[str, np.ndarray]], width: int, height: int) -> None:
    """Per frame: boxes (N, 4) relative cx, cy, w, h; objectness (N,); probs (N, C); embeddings (N, E) or none.
    Stored concatenated with each frame's row count; xyxy (N, 4) pixels, score (N,), cls (N,) for the peers."""
    cat = {k: np.concatenate([f[k] for f in frames]) for k in ("boxes", "objectness", "probs")}
    if all(f.get("embeddings") is not None for f in frames):
        cat["embeddings"] = np.concatenate([f["embeddings"] for f in frames]).astype(np.float32)
    b = cat["boxes"].astype(np.float64) * [width, height, width, height]
    xyxy = np.c_[b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2]
    probs = cat["probs"]
    np.savez_compressed(path, counts=np.array([len(f["boxes"]) for f in frames]), size=np.array([width, height]),
                        xyxy=xyxy, score=probs.max(1) if probs.size else np.zeros(0),
                        cls=probs.argmax(1) if probs.size else np.zeros(0, int), **cat)


def load_dets(path: Path) -> tuple[dict[str, np.ndarray], list[slice]]:
    z = np.load(path)  # arrays only (allow_pickle is False)
    data = {k: z[k] for k in z.files}
    ends = np.cumsum(data["counts"])
    return data, [slice(int(e - c), int(e)) for e, c in zip(ends, data["counts"])]


def mot_text(rows: list[tuple[int, int, float, float, float, float, float]]) -> str:
    return "".join(f"{f},{i},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1\n"
                   for f, i, x1, y1, x2, y2, s in rows)


# -- the peers, run in their own venv --------------------------------------------------------------------------
def peer_configs(thresh: float) -> dict[str, tuple[str, dict[str, Any]]]:
    """Roboflow trackers' contenders: name -> (class, keyword arguments)."""
    tuned = {"high_conf_det_threshold": thresh}
    return {"trackers ByteTrack (defaults)": ("ByteTrackTracker", {}),
            "trackers ByteTrack (thresh as darkcfg)": ("ByteTrackTracker",
                                                       {**tuned, "track_activation_threshold": thresh + 0.1}),
            "trackers OC-SORT (defaults)": ("OCSORTTracker", {}),
            "trackers OC-SORT (thresh as darkcfg)": ("OCSORTTracker", tuned)}


def peer_worker(dets_dir: str, out_dir: str, thresh: float, fps: float) -> int:
    """In the peers' venv: every peer config over every OUT/dets/<seq>.npz -> out/<name>/<seq>.txt and timing.json
    (every update's seconds)."""
    import supervision as sv
    import trackers

    timing: dict[str, list[float]] = {}  # name -> seconds of each update
    for name, (cls_name, kwargs) in peer_configs(thresh).items():
        times: list[float] = []
        for npz in sorted(Path(dets_dir).glob("*.npz")):
            data, frames = load_dets(npz)
            tracker = getattr(trackers, cls_name)(frame_rate=fps, **kwargs)
            rows = []
            for t, sl in enumerate(frames, 1):
                d = sv.Detections(xyxy=data["xyxy"][sl].astype(np.float32), confidence=data["score"][sl].astype(
                    np.float32), class_id=data["cls"][sl].astype(int))
                t0 = time.perf_counter()
                out = tracker.update(d)
                times.append(time.perf_counter() - t0)
                for box, tid, s in zip(out.xyxy, out.tracker_id, out.confidence):
                    if tid >= 0:
                        rows.append((t, int(tid) + 1, *(float(v) for v in box), float(s)))
            dest = Path(out_dir) / name / f"{npz.stem}.txt"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(mot_text(rows))
        timing[name] = times
    (Path(out_dir) / "timing.json").write_text(json.dumps(timing))
    return 0


# -- darkcfg's side --------------------------------------------------------------------------------------------
def detect_sequences(seqs: list[Path], cfg: str, weights: str, size: int, det_thresh: float, device: str,
                     out: Path, redetect: bool = True) -> None:
    """Run the detector once over every frame of every sequence; store OUT/dets/<seq>.npz (kept from an earlier
    run, newer than the frames, unless `redetect`; the settings are the caller's to keep the same)."""
    import darkcfg
    from darkcfg.eval.runner import frames_for
    from darkcfg.infer.detector import Detector
    from darkcfg.infer.fast import prepare_for_inference

    model = prepare_for_inference(darkcfg.load(cfg, weights, size=(size, size)).to(device))
    det = Detector(model, None, det_thresh, embeddings="features")
    out.mkdir(parents=True, exist_ok=True)
    for seq in seqs:
        paths = [str(p) for p in sorted((seq / "img1").glob("*.jpg"))]
        dest = out / f"{seq.name}.npz"
        if not redetect and dest.is_file() and dest.stat().st_mtime > max(os.path.getmtime(p) for p in paths):
            print(f"{seq.name}: detections from {dest} (--redetect to run the detector again)", file=sys.stderr)
            continue
        frames: list[dict[str, np.ndarray]] = []
        width = height = 0
        t0 = time.perf_counter()
        for r in det.stream(frames_for(paths)):
            d = r.detections
            if d is None:
                raise SystemExit(f"{r.frame}: {r.error}")
            keep = np.flatnonzero(d.probs.max(1) > det_thresh) if len(d) else np.zeros(0, int)
            d = d.take(keep)
            width, height = d.width, d.height
            frames.append({"boxes": d.boxes, "objectness": d.objectness, "probs": d.probs,
                           "embeddings": d.embeddings})
        save_dets(dest, frames, width, height)
        n = sum(len(f["boxes"]) for f in frames)
        print(f"{seq.name}: {len(paths)} frames detected in {time.perf_counter() - t0:.1f} s, {n} boxes "
              f"> {det_thresh:g}", file=sys.stderr)


def run_darkcfg_tracker(dets_dir: Path, out_dir: Path, name: str, thresh: float, fps: float, appearance: bool,
                        shown_only: bool = False, lost_sigma: Optional[float] = None) -> list[float]:
    """darkcfg's `name` tracker over every stored sequence -> out_dir/<seq>.txt; returns each update's seconds.
    shown_only: write only the boxes above `thresh` (not the low-score ones ByteTrack kept on a track)."""
    from darkcfg.infer.detections import DetectionArray
    from darkcfg.infer.track import make_tracker

    if lost_sigma is None:
        tracker = make_tracker(name, thresh=thresh, fps=fps, appearance=appearance)
    else:  # ByteTrack's reach of a lost track, for its ablation (docs/benchmarks.md)
        from darkcfg.infer.track.bytetrack import ByteTracker

        tracker = ByteTracker(thresh=thresh, fps=fps, appearance=appearance, lost_sigma=lost_sigma)
    times: list[float] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for npz in sorted(dets_dir.glob("*.npz")):
        data, frames = load_dets(npz)
        w, h = (int(v) for v in data["size"])
        tracker.reset()
        rows = []
        for t, sl in enumerate(frames, 1):
            emb = data["embeddings"][sl] if "embeddings" in data else None
            d = DetectionArray(data["boxes"][sl], data["objectness"][sl], data["probs"][sl], w, h, names=NAMES,
                               embeddings=emb)
            t0 = time.perf_counter()
            ids = tracker.update(d)
            times.append(time.perf_counter() - t0)
            for k in np.flatnonzero((ids >= 0) & ((data["score"][sl] > thresh) | (not shown_only))):
                rows.append((t, int(ids[k]), *(float(v) for v in data["xyxy"][sl][k]), float(data["score"][sl][k])))
        (out_dir / f"{npz.stem}.txt").write_text(mot_text(rows))
    return times


def crowd_dets(path: Path, boxes: int = 100, frames: int = 200, seed: int = 0, width: int = 1920,
               height: int = 1080) -> None:
    """A synthetic crowd for the update time: `boxes` boxes moving at constant speeds, a little jitter and score
    noise, stored like the sequences' detections (3 classes, no embeddings)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([0, 0], [width, height], (boxes, 2))
    vel = rng.normal(0, 3, (boxes, 2))
    size = rng.uniform(20, 60, (boxes, 2))
    cls = rng.integers(0, 3, boxes)
    out = []
    for _ in range(frames):
        pos = (pos + vel) % [width, height]
        b = np.c_[(pos + rng.normal(0, 1, pos.shape)) / [width, height], size / [width, height]]
        probs = np.zeros((boxes, 3), np.float32)
        probs[np.arange(boxes), cls] = rng.uniform(0.05, 0.95, boxes)
        out.append({"boxes": b.astype(np.float32), "objectness": probs.max(1), "probs": probs, "embeddings": None})
    save_dets(path, out, width, height)


def cfg_classes(cfg: str) -> int:
    """classes= of the cfg's last detection head ([yolo], [Gaussian_yolo] or [region]; Darknet's default 20)."""
    from darkcfg.model.cfg import parse_cfg_text, read_cfg

    text, name = read_cfg(cfg)
    heads = [sec for sec in parse_cfg_text(text, name) if sec.type in ("yolo", "Gaussian_yolo", "region")]
    if not heads:
        raise SystemExit(f"{cfg}: no [yolo] or [region] layer: not a detector cfg")
    return int(heads[-1].int("classes", 20) or 20)


def names_file(cfg: str, names: Optional[str], out: Path) -> Path:
    """The class names file `darkcfg detect --names` gets for `cfg`: `names` when given; else the names= of a .data
    file beside the cfg (as written, else beside the .data file), else a .names file beside the cfg, either only
    with one name per class of the cfg; else OUT/shapes.names, the shapes set's names (NAMES, then class<k>) for
    the cfg's classes."""
    from darkcfg.data.dataset import read_data_cfg
    from darkcfg.data.names import read_names
    from darkcfg.errors import DarkcfgError

    classes = cfg_classes(cfg)
    if names is not None:
        try:
            read_names(names, classes)  # a one-line error now rather than two failed detect runs
        except DarkcfgError as e:
            raise SystemExit(f"--names: {e}") from None
        return Path(names)
    folder = Path(cfg).resolve().parent
    found: list[Path] = []
    for data in sorted(folder.glob("*.data")):
        with contextlib.suppress(DarkcfgError, OSError):
            listed = read_data_cfg(data).names
            if listed:
                found += [Path(listed), data.parent / listed]
    found += sorted(folder.glob("*.names"))
    for p in found:
        with contextlib.suppress(DarkcfgError, OSError):
            if p.is_file() and read_names(p, classes):
                return p
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "shapes.names"
    dest.write_text("".join(f"{NAMES[k] if k < len(NAMES) else f'class{k}'}\n" for k in range(classes)))
    return dest


def detect_command(cfg: str, weights: str, size: int, video: Path, names: Path, thresh: float, device: str,
                   track: bool) -> list[str]:
    """The `darkcfg detect` command line detect_fps times (with or without --track): nothing written, nothing
    printed, the class names given."""
    return [sys.executable, "-m", "darkcfg", "detect", cfg, str(video), "--weights", weights, "--size", str(size),
            "--names", str(names), "--thresh", str(thresh), "--device", device, "--nosave", "--quiet",
            *(["--track"] if track else [])]


def detect_fps(cfg: str, weights: str, size: int, video: Path, names: Path, thresh: float, device: str,
               out: Path, repeats: int = 3) -> Optional[list[str]]:
    """`darkcfg detect` frames/s on `video` without and with --track, start-up left out: each command also runs on
    the video's first frame as an image (start-up, model load and one frame), and frames/s = (frames - 1) / (time
    on the video - time on that image); the runs alternate and each takes its best of `repeats`; also each round's
    ratio (a detect run and the --track run right after it) and their median. None when detect has no --track."""
    import cv2

    exe = [sys.executable, "-m", "darkcfg"]
    help_text = subprocess.run([*exe, "detect", "--help"], capture_output=True, text=True).stdout
    if "--track" not in help_text:
        return None
    cap = cv2.VideoCapture(str(video))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = cap.read()
    cap.release()
    if not ok or frames < 2:
        return [f"  {video}: not a video of 2 frames or more"]
    out.mkdir(parents=True, exist_ok=True)
    image = out / f"{video.stem}-first.jpg"  # in the benchmark's folder, never beside the user's files
    cv2.imwrite(str(image), first)
    best: dict[tuple[str, bool], float] = {}
    pairs: list[float] = []  # each round's --track frames/s over its detect frames/s
    for _ in range(repeats):  # alternated, the best of each: the host's load moves between runs
        took: dict[tuple[str, bool], float] = {}
        for track in (False, True):
            for source, whole in ((image, False), (video, True)):
                cmd = detect_command(cfg, weights, size, source, names, thresh, device, track)
                t0 = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True)
                dt = time.perf_counter() - t0
                if r.returncode:
                    return [f"  {' '.join(cmd[2:])}: failed: {r.stderr.strip().splitlines()[-1:]}"]
                key = ("detect --track" if track else "detect", whole)
                took[key] = dt
                best[key] = min(best.get(key, dt), dt)
        pairs.append((took[("detect", True)] - took[("detect", False)])
                     / max(took[("detect --track", True)] - took[("detect --track", False)], 1e-9))
    lines, fps = [], {}
    for key in ("detect", "detect --track"):
        full, one = best[(key, True)], best[(key, False)]
        fps[key] = (frames - 1) / max(full - one, 1e-9)
        lines.append(f"  {key:<16} {fps[key]:7.1f} frames/s ({frames} frames in {full:.2f} s, start-up and one "
                     f"frame {one:.2f} s; best of {repeats})")
    lines.append(f"  --track: {100 * (fps['detect --track'] / fps['detect'] - 1):+.1f} % frames/s (bests); each "
                 f"round's: {', '.join(f'{100 * (p - 1):+.1f}' for p in pairs)} %, median "
                 f"{100 * (float(np.median(pairs)) - 1):+.1f} %")
    return lines


def paired_fps(cfg: str, weights: str, size: int, seqs: list[Path], names: Path, thresh: float, device: str,
               repeats: int = 3) -> list[str]:
    """Frames/s of `run_detection` (what `darkcfg detect` runs, with its default runtime) without and with tracking,
    in one process: each sequence's video once each way, back to back (their order alternating), `repeats` times
    over the sequences. A pair of runs takes a few seconds, so the host's speed, which moves by several per cent
    over a minute, is nearly the same for both halves: the median of the pairs' ratios is the tracking's cost to
    a fraction of a per cent (the whole-command timing of `detect_fps` varies by more than the cost). Start-up
    (the model's load) is outside the timing; each run's own set-up (opening the video, a fresh tracker) is in.
    The process keeps the libgomp spin it started with (`darkcfg detect --track` sets a longer one: cli/detect.py),
    so this measures the tracker's cost under that spin; run this script with GOMP_SPINCOUNT=30000000 for the
    command's."""
    from darkcfg.infer.run import TrackOptions, run_detection
    from darkcfg.infer.runtime import Runtime, load_detector

    videos = [str(s / f"{s.name}.mp4") for s in seqs if (s / f"{s.name}.mp4").is_file()]
    if not videos:
        return ["  paired: skipped (no sequence videos)"]
    det = load_detector(cfg, weights, names, (size, size), thresh, runtime=Runtime(device=device))
    took = {False: 0.0, True: 0.0}
    frames = {False: 0, True: 0}
    ratios: list[float] = []  # each pair's --track frames/s over its detect frames/s
    for rep in range(repeats):
        for k, video in enumerate(videos):
            pair: dict[bool, float] = {}
            for track in ((False, True) if (rep + k) % 2 == 0 else (True, False)):
                t0 = time.perf_counter()
                run = run_detection(det, [video], out_dir=None, quiet=True, progress=False,
                                    track=TrackOptions() if track else None)
                dt = time.perf_counter() - t0
                pair[track] = dt / max(run.done, 1)
                took[track] += dt
                frames[track] += run.done
            ratios.append(pair[False] / pair[True])
    q25, q50, q75 = (100 * (float(v) - 1) for v in np.percentile(ratios, [25, 50, 75]))
    fps = {k: frames[k] / max(took[k], 1e-9) for k in took}
    spin = os.environ.get("GOMP_SPINCOUNT", "libgomp's default")
    return [f"  paired in one process ({len(ratios)} pairs: {len(videos)} video(s) x {repeats}; GOMP_SPINCOUNT "
            f"{spin}, not the command's): detect "
            f"{fps[False]:.1f} frames/s, with tracking {fps[True]:.1f}; --track: "
            f"{100 * (fps[True] / fps[False] - 1):+.2f} % (totals), pairs' median {q50:+.2f} % (quartiles "
            f"{q25:+.2f}, {q75:+.2f})"]


def joined_video(seqs: list[Path], dest: Path) -> Optional[Path]:
    """Every sequence's video (<seq>/<seq>.mp4, all of one frame size) joined into one at `dest` (at the first's
    frame rate: only its length matters here), written atomically; kept for a later run when its manifest
    (dest + .json: each video's path, size and time) names the same videos. None when a sequence has no video."""
    import cv2

    from darkcfg.files import AtomicFile, Sources, write_text

    videos = [s / f"{s.name}.mp4" for s in seqs]
    if not videos or not all(v.is_file() for v in videos):
        return None
    manifest = json.dumps([[str(v.resolve()), v.stat().st_size, v.stat().st_mtime_ns] for v in videos])
    record = dest.with_name(dest.name + ".json")
    if dest.is_file() and record.is_file() and record.read_text() == manifest:
        return dest
    size: Optional[tuple[int, int]] = None
    with AtomicFile(dest, suffix=dest.suffix, own_handle=False, sources=Sources(videos)) as f:  # never over a video
        writer = None
        for v in videos:
            cap = cv2.VideoCapture(str(v))
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(str(f.temp), cv2.VideoWriter_fourcc(*"mp4v"),
                                             cap.get(cv2.CAP_PROP_FPS) or 30.0, size)
                    if not writer.isOpened():
                        raise SystemExit(f"{dest}: OpenCV cannot write mp4v video here")
                if (frame.shape[1], frame.shape[0]) != size:
                    raise SystemExit(f"{v}: {frame.shape[1]}x{frame.shape[0]} frames, the first video's are "
                                     f"{size[0]}x{size[1]}: --detect-fps joins videos of one size")
                writer.write(frame)
            cap.release()
        if writer is None:
            raise SystemExit(f"{videos[0]}: no frame could be read")
        writer.release()
    write_text(record, manifest)
    return dest


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cfg", help="a shapes-trained cfg (scripts/bench_train.py); required")
    ap.add_argument("--weights", help="its weights; required")
    ap.add_argument("--size", type=int, default=256, help="network input (square)")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "darkcfg-bench-track"))
    ap.add_argument("--seqs", default=None, help="a folder of make_track_video.py sequences (default: OUT/seqs)")
    ap.add_argument("--sequences", type=int, default=3)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--thresh", type=float, default=0.25, help="the trackers' detection (high-score) threshold")
    ap.add_argument("--det-thresh", type=float, default=0.1, help="the detector's threshold (low-score boxes)")
    ap.add_argument("--peers", default=str(PEERS / "bin" / "python"), help="python of the venv with `trackers`")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--detect-fps", action="store_true", help="also time `darkcfg detect` with and without --track")
    ap.add_argument("--fps-size", type=int, action="append", default=None, metavar="N",
                    help="with --detect-fps: the network input (square) the frames/s are measured at (default: "
                         "--size; repeatable: the cost of tracking is nearly fixed per frame, so its share falls as "
                         "the network grows: e.g. --fps-size 256 --fps-size 416, the cfg's own)")
    ap.add_argument("--fps-repeats", type=int, default=3, help="with --detect-fps: runs of each command, >= 1 (the "
                    "best counts)")
    ap.add_argument("--names", default=None, help="with --detect-fps: the cfg's class names file (default: the "
                    "names= of a .data beside the cfg, a .names beside it, else the shapes set's names)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lost-sigma", type=float, default=None, help="darkcfg ByteTrack's reach of a lost track in "
                    "standard deviations (default: the tracker's LOST_SIGMA)")
    ap.add_argument("--redetect", action="store_true", help="run the detector even where OUT/dets/<seq>.npz is kept "
                    "from an earlier run (same --cfg, --weights, --size and --det-thresh assumed otherwise)")
    ap.add_argument("--peer-worker", nargs=4, metavar=("DETS", "OUT", "THRESH", "FPS"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.peer_worker:
        return peer_worker(a.peer_worker[0], a.peer_worker[1], float(a.peer_worker[2]), float(a.peer_worker[3]))
    if not a.cfg or not a.weights:  # required for a run, not for the peers' worker (which reads stored detections)
        ap.error("the following arguments are required: --cfg, --weights")
    if a.fps_repeats < 1:
        ap.error(f"--fps-repeats {a.fps_repeats}: expected at least 1")
    if any(n < 32 or n % 32 for n in a.fps_size or []):
        ap.error(f"--fps-size {a.fps_size}: expected multiples of 32")

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "scripts"))
    from darkcfg.data.mot import find_sequences, seq_length
    from darkcfg.eval.tracking import evaluate_tracking
    from scripts.bench_train import machine  # darkcfg's side only: the peers' venv has no torch

    out = Path(a.out)
    seq_root = Path(a.seqs) if a.seqs else out / "seqs"
    if not a.seqs:
        import make_track_video

        with contextlib.redirect_stdout(sys.stderr):  # stdout holds the results
            make_track_video.main([str(seq_root), "--sequences", str(a.sequences), "--frames", str(a.frames),
                                   "--seed", str(a.seed)])
    seqs = sorted(d for d in seq_root.iterdir() if (d / "gt" / "gt.txt").is_file())
    fps = 30.0
    detect_sequences(seqs, a.cfg, a.weights, a.size, a.det_thresh, a.device, out / "dets", a.redetect)
    crowd = out / "crowd"
    crowd.mkdir(parents=True, exist_ok=True)
    crowd_dets(crowd / "crowd.npz")

    contenders: dict[str, list[float]] = {}  # name -> seconds of each update
    crowd_ms: dict[str, float] = {}
    for name, appearance, shown in (("darkcfg bytetrack", False, False),
                                    ("darkcfg bytetrack + appearance", True, False),
                                    ("darkcfg bytetrack, boxes > thresh only", False, True)):
        contenders[name] = run_darkcfg_tracker(out / "dets", out / "pred" / name, "bytetrack", a.thresh, fps,
                                               appearance, shown, a.lost_sigma)
        if name == "darkcfg bytetrack":
            crowd_ms[name] = 1000 * float(np.median(run_darkcfg_tracker(crowd, out / "crowd_pred" / name,
                                                                        "bytetrack", a.thresh, fps, False,
                                                                        lost_sigma=a.lost_sigma)))
    peers_note = ""
    if not a.no_peers:
        if Path(a.peers).is_file():
            for src, dst in ((out / "dets", out / "pred"), (crowd, out / "crowd_pred")):
                r = subprocess.run([a.peers, __file__, "--peer-worker", str(src), str(dst), str(a.thresh), str(fps)],
                                   capture_output=True, text=True)
                if r.returncode:
                    peers_note = f"peers failed: {r.stderr.strip().splitlines()[-1:]}"
                    break
                timing = json.loads((dst / "timing.json").read_text())
                for name, times in timing.items():
                    if src == crowd:
                        crowd_ms[name] = 1000 * float(np.median(times))
                    else:
                        contenders[name] = times
        else:
            peers_note = (f"peers skipped: {a.peers} not found (python -m venv {PEERS} && "
                          f"{PEERS}/bin/pip install trackers)")

    print(f"machine: {machine()}")
    lengths = [seq_length(s / "seqinfo.ini") for s in seqs]
    print(f"sequences: {len(seqs)} x {lengths[0] if lengths else 0} frames ({seq_root}); detector {Path(a.cfg).name} "
          f"at {a.size}x{a.size}, boxes > {a.det_thresh:g} (NMS as the cfg), tracker threshold {a.thresh:g}")
    head = f"{'tracker':<40} {'HOTA':>6} {'DetA':>6} {'AssA':>6} {'MOTA':>6} {'IDF1':>6} {'IDSW':>5} {'ms/update':>10}"
    print(head)
    for name, times in contenders.items():
        res = evaluate_tracking(find_sequences(seq_root, out / "pred" / name)).combined.summary()
        print(f"{name:<40} " + " ".join(f"{100 * res[k]:6.2f}" for k in ("HOTA", "DetA", "AssA", "MOTA", "IDF1"))
              + f" {int(res['IDSW']):5d} {1000 * float(np.median(times)):10.3f}")
    if peers_note:
        print(peers_note)
    print("update time at 100 boxes (synthetic crowd, 200 frames, 1920x1080; median):")
    for name, ms in crowd_ms.items():
        print(f"  {name:<38} {ms:7.3f} ms/update")
    if a.detect_fps:
        video = joined_video(seqs, out / "joined.mp4")
        names = names_file(a.cfg, a.names, out)
        for size in a.fps_size or [a.size]:
            print(f"detect frames/s at {size}x{size}:")
            lines = detect_fps(a.cfg, a.weights, size, video, names, a.thresh, a.device, out, a.fps_repeats) \
                if video is not None else None
            print("\n".join(lines) if lines else "  skipped (no video, or detect has no --track yet)")
            print("\n".join(paired_fps(a.cfg, a.weights, size, seqs, names, a.thresh, a.device, a.fps_repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
