"""`darkcfg detect`: the detector run over sources, as `darknet detector test` (files, folders, lists, videos)
and `detector demo` (cameras, streams) run it: the printout, the files (`Outputs`), and the live outputs (the
reference's JSON and MJPEG ports, a window).

Tracking (`TrackOptions`, `detect --track`, `model.track`): the sources form sequences (`plan_sequences`), each
with its own tracker (`darkcfg.infer.track`) and counting lines; every frame's detections gain their track ids
before they are printed, drawn, written (JSON, --mot) and published. The detector runs at the tracker's
`detect_thresh` (ByteTrack's low-score bound, below --thresh, so that its second association has boxes to use);
after the tracker has seen them, the probabilities at or below --thresh are zeroed, except that a box on a track
(one of ByteTrack's low-score boxes that continued a track) keeps its best class, and the boxes left with none
are dropped (`shown_only`): what is shown, written and counted is what a run at --thresh shows (NMS removes a box
only for a more probable one, so the boxes above --thresh are the same), now with ids, and every box that carries
a track id, in every output alike (the printout, the drawing, the JSON file and port, --mot, --save-txt, the API,
the counting lines). The outputs of a tracked frame therefore apply no threshold of their own (`TRACKED_SHOWN`).
Frames reach the tracker in order: `Detector.stream` yields them as they were read, whatever its batch and
reading threads.
"""
from __future__ import annotations

import copy
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Optional, Union

import numpy as np

from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import Detection, DetectionArray
from darkcfg.infer.detector import Detector, TilesArg
from darkcfg.infer.draw import draw_detections
from darkcfg.infer.names import default_names
from darkcfg.infer.outputs import FrameTrack, Outputs
from darkcfg.infer.printout import json_object, text_lines
from darkcfg.infer.sources import (
    LIST_EXTENSIONS,
    Frame,
    LiveOptions,
    Source,
    expand_sources,
    iter_frames,
    video_info,
)
from darkcfg.infer.track import TRACKERS, Tracker, make_tracker
from darkcfg.infer.track.counting import LineCounter
from darkcfg.model.network import Darknet
from darkcfg.progress import Progress

log = logging.getLogger("darkcfg")


@dataclass
class DetectionRun:
    """What `run_detection` did: images (frames) done, labelled boxes printed, sources or frames that
    failed (each reported on stderr), and the files written."""

    done: int = 0
    boxes: int = 0
    failed: int = 0
    sources: int = 0
    written: list[Path] = field(default_factory=list)
    counts: list[tuple[str, dict]] = field(default_factory=list)  # tracked with lines: (sequence, counts) each


@dataclass
class LiveOutputs:
    """The live outputs of a detection run: Darknet's JSON and MJPEG ports (0: none), the MJPEG quality, a
    window (`show`), a callback `on_json(frame, frame_id, text)` called as each frame's JSON is published, and the
    address the ports listen on (`port_host`; 0.0.0.0, all interfaces, as the reference's). `_Live` starts them
    for the run."""

    json_port: int = 0
    mjpeg_port: int = 0
    mjpeg_quality: int = 80
    show: bool = False
    on_json: Optional[Callable[[Frame, int, str], None]] = None
    port_host: str = "0.0.0.0"


class _Live:
    """The ports and window of a run (opened before the first frame, closed at the end)."""

    def __init__(self, opts: LiveOutputs, thresh: float) -> None:
        from darkcfg.infer.ports import JsonPort, MjpegPort

        self.opts, self.thresh = opts, thresh
        host = opts.port_host
        self.json = JsonPort(opts.json_port, host=host) if opts.json_port else None
        try:
            self.mjpeg = MjpegPort(opts.mjpeg_port, opts.mjpeg_quality, host=host) if opts.mjpeg_port else None
        except BaseException:  # the JSON port does not stay open when the MJPEG one cannot listen
            if self.json is not None:
                self.json.close()
            raise
        self.frame_id = 0
        self.window = _open_window() if opts.show else False

    def publish(self, frame: Frame, bgr: np.ndarray, d: DetectionArray, counts: Optional[dict] = None) -> None:
        self.frame_id += 1
        if self.json is not None or self.opts.on_json is not None:
            text = json_object(d, self.frame_id, None, counts)
            if self.json is not None:
                self.json.publish(text.encode())
            if self.opts.on_json is not None:
                self.opts.on_json(frame, self.frame_id, text)
        if self.mjpeg is not None and self.mjpeg.clients or self.window:
            drawn = draw_detections(bgr, d, self.thresh, counts)
            if self.mjpeg is not None:
                self.mjpeg.publish_image(drawn)
            if self.window:
                import cv2

                cv2.imshow("darkcfg", drawn)
                if cv2.waitKey(1) in (27, ord("q")):
                    raise KeyboardInterrupt

    def close(self) -> None:
        for port in (self.json, self.mjpeg):
            if port is not None:
                port.close()
        if self.window:
            import cv2

            cv2.destroyAllWindows()


def _open_window() -> bool:
    """A window for --show when a display and OpenCV's GUI exist; else a one-line note and no window."""
    import cv2

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("win32", "darwin")):
        log.info("note: --show: no display here; detecting without a window")
        return False
    try:
        cv2.namedWindow("darkcfg", cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        log.info("note: --show: this OpenCV has no GUI (opencv-python-headless); detecting without a window")
        return False


@dataclass
class TrackOptions:
    """Tracking in a detection run: the tracker (one of darkcfg.infer.track.TRACKERS), counting `lines` (pixels,
    (x1, y1, x2, y2) each), and ByteTrack's appearance cue (`appearance`: each box's embedding from the network's
    own feature map, or the cfg's embedding layer), and how many frames at 30 fps ByteTrack keeps a lost track
    (`track_buffer`; None: bytetrack.TRACK_BUFFER)."""

    tracker: str = "bytetrack"
    lines: Sequence[Sequence[float]] = ()
    appearance: bool = False
    track_buffer: Optional[int] = None

    def embeddings(self) -> Optional[str]:
        """What the detector must keep for this tracker: "layer" (darknet), "auto" (appearance), else None."""
        if self.tracker == "darknet":
            return "layer"
        return "auto" if self.appearance else None

    def conflict(self) -> Optional[str]:
        """The one-line reason these options cannot work together, or None."""
        if self.appearance and self.tracker == "darknet":
            return "--track-appearance is ByteTrack's cue: the darknet tracker always matches on the cfg's embeddings"
        if self.track_buffer is not None and self.tracker == "darknet":
            return ("--track-buffer is ByteTrack's: the darknet tracker keeps the frames of the cfg's "
                    "track_history_size")
        if self.track_buffer is not None:
            from darkcfg.infer.track.bytetrack import buffer_error

            return buffer_error(self.track_buffer)
        return None


def check_tracking(detector: Detector, opts: TrackOptions) -> None:
    """Refuse, in one line, what cannot track: an unknown tracker, options that conflict (`TrackOptions.conflict`),
    `darknet` on a cfg without embedding_layer or with tiles (merged tiles carry no embeddings), the appearance cue
    with tiles, bad counting lines."""
    from darkcfg.infer.track.appearance import has_embedding_layer

    cfg = getattr(detector.model, "cfg_file", "the network")
    if opts.tracker not in TRACKERS:
        raise DarkcfgError(f"--tracker {opts.tracker}: expected one of {', '.join(TRACKERS)}")
    if reason := opts.conflict():
        raise DarkcfgError(reason)
    if opts.tracker == "darknet":
        if not has_embedding_layer(detector.model):
            raise DarkcfgError(f"{cfg}: --tracker darknet needs a [yolo] layer with embedding_layer (as "
                               "yolov4-tiny_contrastive.cfg has); this cfg has none: use --tracker bytetrack")
        if detector.tiles is not None:
            raise DarkcfgError(f"{cfg}: --tracker darknet with --tiles: boxes merged across tiles carry no "
                               "embeddings: track without --tiles, or with --tracker bytetrack")
    if opts.appearance and detector.tiles is not None:
        raise DarkcfgError(f"{cfg}: the appearance cue with --tiles: boxes merged across tiles carry no embeddings: "
                           "track without --tiles, or without the appearance cue")
    LineCounter(opts.lines)  # one-line errors for bad lines


def tracking_detector(detector: Detector, thresh: float, embeddings: Optional[str]) -> Detector:
    """`detector` (the same network and settings) at detection threshold `thresh`, also keeping each box's embedding
    where asked (`Detector(embeddings=)`, hooks on the network that `_untap` removes); the same detector when
    nothing changes."""
    if embeddings is None:
        if thresh == detector.thresh:
            return detector
        other = copy.copy(detector)  # its class and settings (a subclass's too), at another threshold
        other.thresh = thresh
        return other
    try:
        return Detector(detector.model, detector.names, thresh, detector.nms, detector.letterbox, detector.batch,
                        detector.tiles, embeddings=embeddings)
    except AttributeError:  # a runtime without PyTorch layers to read (OpenVINO)
        raise DarkcfgError(f"{getattr(detector.model, 'cfg_file', 'the network')}: embeddings for tracking need "
                           "the PyTorch runtime") from None


TRACKED_SHOWN = 0.0  # the threshold the outputs of a tracked frame apply: `shown_only` has applied --thresh


def shown_only(dets: DetectionArray, thresh: float) -> DetectionArray:
    """A tracked frame's detections as shown: probabilities at or below thresh set to 0 (as decode does), except
    that a row with a track id (>= 1) and no class above thresh (a low-score box the tracker kept on a track)
    keeps its best class's probability; rows left without any dropped, in their order (with their track ids)."""
    t = np.float32(thresh)
    if not len(dets):
        return dets
    probs = np.where(dets.probs > t, dets.probs, np.float32(0)).astype(np.float32)
    if dets.track_ids is not None:
        low = np.flatnonzero((np.asarray(dets.track_ids) >= 1) & ~probs.any(1))
        if len(low):
            best = dets.probs[low].argmax(1)
            probs[low, best] = dets.probs[low, best]
    keep = np.flatnonzero(probs.any(1))
    if len(keep) == len(dets) and np.array_equal(probs, dets.probs):
        return dets
    return dets.take(keep, probs[keep])


def _safe_name(text: str) -> str:
    """A sequence name usable as a file name: runs of other characters than letters, digits, `.`, `_`, `-`
    become `_` (at most 80 characters)."""
    return re.sub(r"[^\w.-]+", "_", text).strip("._")[:80] or "sequence"


@dataclass
class SequencePlan:
    """The sources of a run grouped into the sequences tracking follows: `sources` (in order) and `errors` as
    `expand_sources` gives them; `place[i]` = (sequence index, position in it from 0) of sources[i]; `names`: each
    sequence's name (unique, usable in a file name)."""

    sources: list[Source]
    errors: list[str]
    place: list[tuple[int, int]]
    names: list[str]

    def __post_init__(self) -> None:
        self._by_id = {id(s): p for s, p in zip(self.sources, self.place)}

    def of(self, source: Source) -> tuple[int, int]:
        """The (sequence, position) of one of `sources` (by identity)."""
        return self._by_id[id(source)]


def plan_sequences(args: Sequence[str]) -> SequencePlan:
    """SOURCE arguments -> their sources grouped into sequences: each video and each live source is one; the images
    of one folder (in name order), one glob or one list file are one (a video inside a list splits it); image files
    named one by one, next to each other on the command line (a shell glob), are one. Names: the video's, folder's
    or list's stem, the folder of loose images, `camera0` for camera 0, the URL made file-safe; a second sequence of
    the same name gets `_2`."""
    sources: list[Source] = []
    errors: list[str] = []
    place: list[tuple[int, int]] = []
    names: list[str] = []
    taken: set[str] = set()
    current: Optional[tuple[int, int]] = None  # (sequence index, images in it) of the image run that is open
    loose_open = False  # the last argument was a single image file: the next one may join its sequence

    def start(name: str) -> int:
        base = name = _safe_name(name)
        k = 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        names.append(name)
        return len(names) - 1

    for arg in args:
        found, errs = expand_sources([arg])
        errors += errs
        p = Path(arg)
        loose = len(found) == 1 and found[0].kind == "image" and p.is_file() \
            and p.suffix.lower() not in LIST_EXTENSIONS
        if not (loose and loose_open):
            current = None
        if p.is_dir():
            group = p.resolve().name
        elif loose:
            group = p.resolve().parent.name
        elif p.is_file():
            group = p.stem
        else:
            group = Path(arg).parent.name or "images"
        for s in found:
            sources.append(s)
            if s.kind in ("video", "live"):
                current = None
                name = Path(s.path).stem if s.kind == "video" else \
                    (f"camera{s.path}" if s.path.isdigit() else s.path.split("://", 1)[-1])
                place.append((start(name), 0))
                continue
            if current is None:
                current = (start(group), 0)
            place.append(current)
            current = (current[0], current[1] + 1)
        loose_open = loose
    return SequencePlan(sources, errors, place, names)


class SequenceTracking:
    """The tracking state of a run: one tracker and one LineCounter per sequence, started when its first frame
    comes (`update`). `detect_thresh`: the threshold the detector runs at."""

    def __init__(self, opts: TrackOptions, thresh: float, params: object = None) -> None:
        self.opts, self.thresh, self.params = opts, thresh, params
        self.tracker: Optional[Tracker] = None
        self.counter: Optional[LineCounter] = None
        self.sequence: Optional[int] = None
        self.detect_thresh = min(thresh, self._make(30.0).detect_thresh)
        self.counts: dict[int, dict] = {}  # sequence -> its counts so far (with lines)

    def _make(self, fps: float) -> Tracker:
        return make_tracker(self.opts.tracker, thresh=self.thresh, fps=fps, params=self.params,
                            appearance=self.opts.appearance, track_buffer=self.opts.track_buffer)

    def update(self, sequence: int, fps: float, dets: DetectionArray) -> tuple[DetectionArray, Optional[dict]]:
        """One frame of `sequence` (a new sequence starts a fresh tracker at its `fps`) -> its detections as shown
        (`shown_only`: above thresh, and every box on a track) with track ids, and the sequence's counts so far
        (None without lines)."""
        if sequence != self.sequence:
            self.sequence, self.tracker = sequence, self._make(fps)
            self.counter = LineCounter(self.opts.lines) if self.opts.lines else None
        assert self.tracker is not None
        self.tracker.update(dets)
        shown = shown_only(dets, self.thresh)
        if self.counter is None:
            return shown, None
        self.counter.update(shown)
        self.counts[sequence] = self.counter.counts
        return shown, self.counts[sequence]


def _fps(source: Source) -> float:
    if source.kind == "video":
        return video_info(source.path)[1]
    return source.fps or 30.0


def run_detection(detector: Detector, sources: Sequence[str], out_dir: Optional[Union[str, Path]] = "predictions",
                  save_txt: bool = False, json_path: Optional[Union[str, Path]] = None, ext_output: bool = False,
                  quiet: bool = False, progress: bool = True, stdout: Optional[IO[str]] = None,
                  overwrite: bool = False, live: Optional[LiveOptions] = None,
                  outputs_live: Optional[LiveOutputs] = None, track: Optional[TrackOptions] = None,
                  mot_path: Optional[Union[str, Path]] = None) -> DetectionRun:
    """`darknet detector test` over SOURCES (image files, folders, globs, list files, videos) and `detector
    demo` over live ones (camera indices, stream URLs; read as `live` says).

    Prints each frame's `<name>: Predicted in ... milli-seconds.` and its labelled boxes as the reference
    does (to `stdout`, default sys.stdout; nothing with `quiet`), writes annotated images and videos into
    `out_dir` (None: none), YOLO label files with `save_txt`, and the reference's `-out` JSON to
    `json_path`; `outputs_live` adds the JSON and MJPEG ports and a window. Unreadable sources and frames are
    reported on stderr, one line each, and skipped. Label files beside the images (`save_txt` without
    `out_dir`, like `-save_labels`) never replace existing ones (a dataset's own labels) unless `overwrite`: a
    one-line error before anything runs. Ctrl-C stops cleanly: what was written so far is kept.

    `track` follows objects through each sequence of the sources (module docstring): ids in the printout
    (`car: 81% (id: 7)`), the JSON (`"track_id"`), the ports and the annotated frames; `mot_path` writes
    MOTChallenge text (`darkcfg.infer.outputs.mot_paths` names one file per sequence); the counting lines' totals
    per sequence come back in `DetectionRun.counts`.
    """
    out = stdout if stdout is not None else sys.stdout
    if mot_path is not None and track is None:
        raise DarkcfgError("--mot writes track ids: it goes with --track")
    thresh = detector.thresh
    plan = plan_sequences(sources)
    found, errors = plan.sources, plan.errors
    tracking: Optional[SequenceTracking] = None
    if track is not None:
        check_tracking(detector, track)
        tracking = SequenceTracking(track, thresh, _params(detector, track))
        detector = tracking_detector(detector, tracking.detect_thresh, track.embeddings())
    shown_at = thresh if tracking is None else TRACKED_SHOWN  # a tracked frame comes cut by `shown_only`
    live = live or LiveOptions()
    has_live = any(s.kind == "live" for s in found)
    outputs = Outputs(Path(out_dir) if out_dir is not None else None, save_txt, shown_at, json_path, overwrite,
                      mot_path)
    try:
        outputs.check(found, plan.names)
    except BaseException:
        outputs.close()
        _untap(detector)
        raise
    run = DetectionRun(failed=len(errors), sources=len(found))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    total: Optional[int] = sum(video_info(s.path)[0] or 1 if s.kind == "video" else 1 for s in found)
    if has_live:
        total = live.max_frames if live.max_frames is not None and len(found) == 1 else None
    ports = _Live(outputs_live, shown_at) if outputs_live is not None else None
    show_bar = progress and (total is None or total > 1 or any(s.kind == "video" for s in found))
    try:
        with Progress(total, "detect", unit="img", enabled=show_bar) as bar:
            for r in detector.stream(iter_frames(found, live), lookahead=live.lookahead(found)):
                if r.error is not None or r.detections is None or r.image is None:
                    run.failed += 1
                    bar.write(f"error: {r.error}", stream=sys.stderr)
                    if r.frame.source.kind != "live":  # a stream that failed is not a frame done
                        bar.update(1)
                    continue
                d, where = r.detections, None
                if tracking is not None:
                    seq, pos = plan.of(r.frame.source)
                    fps = _fps(r.frame.source) if seq != tracking.sequence else 0.0  # read once per sequence
                    d, counts = tracking.update(seq, fps, d)
                    where = FrameTrack(seq, (r.frame.index if r.frame.index is not None else pos) + 1, counts)
                lines = text_lines(d, shown_at, ext_output)
                run.boxes += len(lines)
                if not quiet:
                    bar.write("\n".join([f"{r.frame.name}: Predicted in {r.ms:f} milli-seconds."] + lines), stream=out)
                outputs.add(r.frame.source, r.frame.index, r.image, d, where)
                if ports is not None:
                    ports.publish(r.frame, r.image, d, where.counts if where is not None else None)
                run.done += 1
                bar.update(1)
    finally:
        _untap(detector)
        if tracking is not None and track is not None and track.lines:
            run.counts = [(plan.names[k], c) for k, c in sorted(tracking.counts.items())]
        outputs.close()
        if ports is not None:
            ports.close()
    run.written = outputs.written
    return run


def _params(detector: Detector, opts: TrackOptions) -> Any:
    """The options of the network's last head (`YoloParams`), which the darknet tracker reads; None for others."""
    if opts.tracker != "darknet":
        return None
    from darkcfg.model.heads import last_head

    return getattr(last_head(detector.model), "params", None)


def _untap(detector: Detector) -> None:
    """Remove the embedding hooks a tracking detector put on the (shared) network."""
    tap = getattr(detector, "tap", None)
    if tap is not None:
        tap.close()


def track(model: Any, source: Union[str, int], thresh: float = 0.25, nms: float = 0.45,
          names: Optional[Sequence[str]] = None, letterbox: Optional[bool] = None, tracker: str = "bytetrack",
          lines: Sequence[Sequence[float]] = (), appearance: bool = False, keep_all: bool = False, retries: int = -1,
          max_frames: Optional[int] = None, tiles: TilesArg = None, batch: int = 1,
          track_buffer: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, list[Detection]]]:
    """`model.track(source)` (also `model.stream(source, track=True)`): `model.stream` with identities. Yields
    (frame index, the frame as (H, W, 3) uint8 BGR, its `Detection` list, each with its `track_id`, None for a
    box without a track yet) for every frame of `source` (a video, a camera index, a stream URL, a folder of
    images in name order, a list file), as `darkcfg detect --track` follows it: one tracker per sequence of the
    source (a list file's videos are sequences of their own), `tracker` one of "bytetrack" (default) and "darknet"
    (the reference's set_track_id, for cfgs with an embedding_layer); `appearance`: ByteTrack also matches on the
    network's own features; `track_buffer`: frames at 30 fps ByteTrack waits for a lost object (default 45);
    `lines`: counting lines (pixels), whose counts `track_arrays` gives. The Detections are
    those above `thresh` and the low-score boxes ByteTrack kept on a track (as the JSON lists them). Unreadable
    frames raise their one-line error."""
    for index, bgr, dets, _ in track_arrays(model, source, thresh, nms, names, letterbox, tracker, lines, appearance,
                                            keep_all, retries, max_frames, tiles, batch, track_buffer):
        yield index, bgr, dets.to_list()  # the JSON's objects: every box shown, every box on a track


def track_arrays(model: Any, source: Union[str, int], thresh: float = 0.25, nms: float = 0.45,
                 names: Optional[Sequence[str]] = None, letterbox: Optional[bool] = None, tracker: str = "bytetrack",
                 lines: Sequence[Sequence[float]] = (), appearance: bool = False, keep_all: bool = False,
                 retries: int = -1, max_frames: Optional[int] = None, tiles: TilesArg = None, batch: int = 1,
                 track_buffer: Optional[int] = None
                 ) -> Iterator[tuple[int, np.ndarray, DetectionArray, Optional[dict]]]:
    """`track` with each frame's tracked `DetectionArray` (track_ids set) and its sequence's counts so far (None
    without `lines`) instead of the Detection list."""
    opts = TrackOptions(tracker, lines, appearance, track_buffer)
    det = Detector(model, names if names is not None else default_names(model), thresh, nms, letterbox, batch, tiles)
    check_tracking(det, opts)
    plan = plan_sequences([str(source)])
    if plan.errors:
        raise DarkcfgError(plan.errors[0])
    tracking = SequenceTracking(opts, thresh, _params(det, opts))
    det = tracking_detector(det, tracking.detect_thresh, opts.embeddings())
    live = LiveOptions(keep_all, retries, max_frames)
    try:
        k = 0
        for r in det.stream(iter_frames(plan.sources, live), lookahead=live.lookahead(plan.sources)):
            if r.error is not None or r.detections is None or r.image is None:
                raise DarkcfgError(r.error or f"{r.frame.name}: cannot read")
            seq, pos = plan.of(r.frame.source)
            fps = _fps(r.frame.source) if seq != tracking.sequence else 0.0
            d, counts = tracking.update(seq, fps, r.detections)
            yield (r.frame.index if r.frame.index is not None else pos), r.image, d, counts
            k += 1
            if max_frames is not None and k >= max_frames:
                return
    finally:
        _untap(det)


Darknet.tracker_stream = track  # `model.track(...)` and `model.stream(..., track=True)`
