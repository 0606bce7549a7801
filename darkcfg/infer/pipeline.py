"""The detection pipeline of `darknet detector test`, batched and streaming.

For each image: pre-process (resize_image, or letterbox_image when letterboxing), run the network,
decode the heads (decode.py), then NMS (nms.py) with the last head's nms_kind and beta_nms. Images are
grouped into batches of `batch` for one forward each; loading and pre-processing run in worker threads
ahead of the network, with a bounded look-ahead, so any number of images streams in constant memory.
`run_detection` is the whole of `darkcfg detect`: sources in, printout, annotated files and JSON out.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Optional, Union

import numpy as np
import torch

from darkcfg.data.dataset import label_path
from darkcfg.data.images import bgr_to_image, read_bgr
from darkcfg.errors import DarkcfgError
from darkcfg.infer.decode import decode
from darkcfg.infer.detections import Detection, Detections
from darkcfg.infer.draw import draw_detections
from darkcfg.infer.formats import JsonWriter, json_object, text_lines
from darkcfg.infer.names import default_names
from darkcfg.infer.nms import nms_sort
from darkcfg.infer.outputs import Outputs
from darkcfg.infer.preprocess import prepare
from darkcfg.infer.sources import Frame, LiveOptions, Source, expand_sources, iter_frames, video_info
from darkcfg.model.heads import last_head
from darkcfg.model.network import Darknet
from darkcfg.progress import Progress

ImageInput = Union[str, Path, np.ndarray]


@dataclass
class Result:
    """What the pipeline gives for one frame: the detections after NMS, or the error that stopped it."""

    frame: Frame
    image: Optional[np.ndarray]  # (H, W, 3) uint8 BGR, the original
    detections: Optional[Detections]
    error: Optional[str] = None
    ms: float = 0.0  # this image's share of its batch's forward + decode + NMS time


class Detector:
    """A network plus the settings of `detector test`.

    Args:
        model: a Darknet network ending in [yolo]/[Gaussian_yolo]/[region] heads.
        names: class names (index = class id); shorter lists are padded with the ids.
        thresh: detection threshold (strict >), default .25 like `detector test`.
        nms: NMS threshold, default .45; 0 disables NMS, as in the reference.
        letterbox: letterbox the input; None means the cfg's [net] letter_box.
        batch: images per forward.
    """

    def __init__(self, model: torch.nn.Module, names: Optional[Sequence[str]] = None, thresh: float = 0.25,
                 nms: float = 0.45, letterbox: Optional[bool] = None, batch: int = 1) -> None:
        self.model = model
        last = last_head(model)
        self.classes = last.classes
        self.names = list(names) if names is not None else []
        self.names += [str(i) for i in range(len(self.names), self.classes)]
        self.thresh, self.nms = thresh, nms
        self.nms_kind, self.beta_nms = last.nms_kind, last.beta_nms
        self.letterbox = bool(model.net.letter_box) if letterbox is None else bool(letterbox)
        if batch < 1:
            raise ValueError(f"batch={batch}: expected a positive number of images per forward")
        self.batch = batch

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def prepare(self, im: np.ndarray) -> np.ndarray:
        """(C, H, W) float32 Darknet image -> (C, net_h, net_w) network input."""
        return prepare(im, self.model.net.width, self.model.net.height, self.letterbox)

    def to_image(self, bgr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 BGR -> the Darknet image the cfg wants: RGB, or grey for channels=1 (as
        load_image(path, 0, 0, 1) reads it)."""
        c = self.model.net.channels
        if c == 3:
            return bgr_to_image(bgr)
        if c == 1:
            import cv2

            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
            return grey[None].astype(np.float32) / np.float32(255.0)
        raise DarkcfgError(f"{self.model.cfg_file}: [net] channels={c}: detection on images needs 1 or 3 channels")

    def postprocess(self, dets: Detections) -> Detections:
        """NMS as test_detector does (none when nms is 0); names attached."""
        dets.names = self.names
        if self.nms and len(dets):
            order, probs = nms_sort(dets.boxes, dets.objectness, dets.probs, self.nms, self.nms_kind, self.beta_nms)
            dets = dets.take(order, probs)
        return dets

    @torch.inference_mode()
    def run_batch(self, inputs: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """inputs: B network inputs (3, net_h, net_w); sizes: B original (width, height) -> B Detections."""
        x = torch.from_numpy(np.stack(inputs)).to(self.device)
        dtype = next(self.model.parameters(), x).dtype
        outs = self.model(x.to(dtype))
        dets = decode(self.model, outs, sizes, self.thresh, self.letterbox)
        return [self.postprocess(d) for d in dets]

    @property
    def stateful(self) -> bool:
        """Whether the network carries state between forwards (recurrent layers)."""
        return bool(getattr(self.model, "stateful", False))

    def reset_state(self) -> None:
        if self.stateful:
            self.model.reset_state()

    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Darknet images (3, H, W) float32 RGB in [0, 1] -> one Detections each, in batches of `batch`.
        The images are independent: a recurrent network starts each batch from zero state."""
        out: list[Detections] = []
        for i in range(0, len(images), self.batch):
            chunk = images[i:i + self.batch]
            self.reset_state()
            out += self.run_batch([self.prepare(im) for im in chunk], [(im.shape[2], im.shape[1]) for im in chunk])
        return out

    def stream(self, frames: Iterable[Frame], workers: int = 2, lookahead: Optional[int] = None) -> Iterator[Result]:
        """Detect on every frame, in order, yielding as batches finish. Unreadable frames come back with
        `error` set and the rest carry on. At most ~3 batches of images are in memory at once.

        A recurrent network (`stateful`) carries its state from one frame of a video to the next, so a video's
        frames run one per forward; it starts from zero state at each new source, and batches of image files
        (independent sources) each start from zero.
        """
        stateful = self.stateful
        last_video: Optional[str] = None

        def load(frame: Frame) -> tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[str]]:
            try:
                bgr = frame.load()
                return bgr, self.prepare(self.to_image(bgr)), None
            except DarkcfgError as e:
                return None, None, str(e)
            except Exception as e:  # a decoder failure is still a one-line report for that frame
                return None, None, f"{frame.name}: cannot read: {type(e).__name__}: {e}"

        # frames read ahead of the batch being detected; 0 for live sources: the newest frame, not a backlog
        ahead = max(2 * self.batch, workers * 2) if lookahead is None else lookahead
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque[tuple[Frame, Future]] = deque()
            it = iter(frames)
            exhausted = False
            while True:
                while not exhausted and len(pending) < ahead + self.batch:
                    frame = next(it, None)
                    if frame is None:
                        exhausted = True
                        break
                    pending.append((frame, pool.submit(load, frame)))
                if not pending:
                    return
                group: list[tuple[Frame, np.ndarray, np.ndarray]] = []
                while pending and len(group) < self.batch:
                    if stateful and group and (pending[0][0].index is not None or group[-1][0].index is not None):
                        break  # a video frame goes alone: its state comes from the previous frame
                    frame, fut = pending.popleft()
                    bgr, x, err = fut.result()
                    if err is not None or bgr is None or x is None:
                        yield Result(frame, None, None, err or f"{frame.name}: cannot read")
                        continue
                    group.append((frame, bgr, x))
                if not group:
                    continue
                if stateful:
                    video = group[0][0].source.path if group[0][0].index is not None else None
                    if video is None or video != last_video:
                        self.reset_state()
                    last_video = video
                t0 = time.perf_counter()
                dets = self.run_batch([g[2] for g in group], [(g[1].shape[1], g[1].shape[0]) for g in group])
                ms = (time.perf_counter() - t0) * 1000 / len(group)
                for (frame, bgr, _), d in zip(group, dets):
                    d.source, d.frame = frame.source.path, frame.index
                    yield Result(frame, bgr, d, None, ms)


def _as_image(det: Detector, item: ImageInput, bgr: bool) -> np.ndarray:
    """A path, an (H, W, 3) uint8 array or a (C, H, W) float32 Darknet image -> the network's image."""
    if isinstance(item, (str, Path)):
        return det.to_image(read_bgr(item))
    a = np.asarray(item)
    if a.ndim == 3 and a.dtype != np.uint8 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        return a.astype(np.float32)  # already a Darknet image (C, H, W) in [0, 1]
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise ValueError(f"image array of shape {a.shape} and dtype {a.dtype}: expected (H, W, 3) uint8 "
                         "or (3, H, W) float32 in [0, 1]")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return det.to_image(a if bgr else np.ascontiguousarray(a[:, :, ::-1]))


def detect(model: torch.nn.Module, images: Union[ImageInput, Sequence[ImageInput]], thresh: float = 0.25,
           nms: float = 0.45, names: Optional[Sequence[str]] = None, letterbox: Optional[bool] = None,
           batch: int = 8, bgr: bool = True) -> Union[list[Detection], list[list[Detection]]]:
    """Detect objects the way `darknet detector test` does.

    Args:
        model: a Darknet network (e.g. from `darkcfg.load`).
        images: a path, an (H, W, 3) uint8 array (OpenCV's BGR unless bgr=False), a (3, H, W) float32
            Darknet image, or a list of these.
        thresh, nms: thresholds (defaults .25, .45); letterbox: None = the cfg's letter_box.
        names: class names; default COCO's when the cfg has 80 classes, else the class ids.
    Returns:
        for one image a list of `Detection` (class_id, name, confidence, box (x1, y1, x2, y2) in pixels),
        one per (box, class) with confidence > thresh in the reference's `-out` order; for a list, a list of
        those lists.
    """
    single = isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)
                                                  and not (images.ndim == 3 and images.dtype == object))
    items = [images] if single else list(images)  # type: ignore[arg-type]
    det = Detector(model, names if names is not None else default_names(model), thresh, nms, letterbox, batch)
    results = [d.to_list(thresh) for d in det.detect_arrays([_as_image(det, i, bgr) for i in items])]
    return results[0] if single else results


Darknet.detector = detect  # `model.detect(...)` (the model stage does not import this one)


def live_lookahead(found: Sequence[Source], live: LiveOptions) -> Optional[int]:
    """Detector.stream's read-ahead: none with live sources that drop frames, so each forward takes the newest
    frame instead of a backlog; the default otherwise."""
    return 0 if any(s.kind == "live" for s in found) and not live.keep_all else None


def stream(model: torch.nn.Module, source: Union[str, int], thresh: float = 0.25, nms: float = 0.45,
           names: Optional[Sequence[str]] = None, letterbox: Optional[bool] = None, keep_all: bool = False,
           retries: int = -1, max_frames: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, list[Detection]]]:
    """`model.stream(source)`: detect frame by frame on any source `darkcfg detect` takes (an image, a folder, a
    video, a camera index such as 0, a stream URL), yielding (frame index, the frame as (H, W, 3) uint8 BGR, its
    `Detection` list) as each frame is done.

    A live source is read in a thread that keeps only the newest frame (`keep_all`: every frame), reconnecting
    after a drop (`retries`; negative: forever); `max_frames` stops after that many frames. Unreadable inputs
    raise their one-line error. Recurrent networks carry their state from frame to frame of one source.
    """
    det = Detector(model, names if names is not None else default_names(model), thresh, nms, letterbox, 1)
    found, errors = expand_sources([str(source)])
    if errors:
        raise DarkcfgError(errors[0])
    live = LiveOptions(keep_all, retries, max_frames)
    k = 0
    for r in det.stream(iter_frames(found, live), lookahead=live_lookahead(found, live)):
        if r.error is not None or r.detections is None or r.image is None:
            raise DarkcfgError(r.error or f"{r.frame.name}: cannot read")
        yield (r.frame.index if r.frame.index is not None else k), r.image, r.detections.to_list(thresh)
        k += 1
        if max_frames is not None and k >= max_frames:
            return


Darknet.streamer = stream  # `model.stream(...)`


@dataclass
class DetectionRun:
    """What `run_detection` did: images (frames) done, labelled boxes printed, sources or frames that
    failed (each reported on stderr), and the files written."""

    done: int = 0
    boxes: int = 0
    failed: int = 0
    sources: int = 0
    written: list[Path] = field(default_factory=list)


@dataclass
class LiveOutputs:
    """The live outputs of a detection run: Darknet's JSON and MJPEG ports (0: none), the MJPEG quality, a
    window (`show`), and a callback `on_json(frame, frame_id, text)` called as each frame's JSON is published."""

    json_port: int = 0
    mjpeg_port: int = 0
    mjpeg_quality: int = 80
    show: bool = False
    on_json: Optional[Callable[[Frame, int, str], None]] = None


class _Live:
    """The ports and window of a run (opened before the first frame, closed at the end)."""

    def __init__(self, opts: LiveOutputs, thresh: float) -> None:
        from darkcfg.infer.ports import JsonPort, MjpegPort

        self.opts, self.thresh = opts, thresh
        self.json = JsonPort(opts.json_port) if opts.json_port else None
        self.mjpeg = MjpegPort(opts.mjpeg_port, opts.mjpeg_quality) if opts.mjpeg_port else None
        self.frame_id = 0
        self.window = _open_window() if opts.show else False

    def publish(self, frame: Frame, bgr: np.ndarray, d: Detections) -> None:
        self.frame_id += 1
        if self.json is not None or self.opts.on_json is not None:
            text = json_object(d, self.frame_id, None)
            if self.json is not None:
                self.json.publish(text.encode())
            if self.opts.on_json is not None:
                self.opts.on_json(frame, self.frame_id, text)
        if self.mjpeg is not None and self.mjpeg.clients or self.window:
            drawn = draw_detections(bgr, d, self.thresh)
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
    import os

    import cv2

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("win32", "darwin")):
        print("note: --show: no display here; detecting without a window", file=sys.stderr)
        return False
    try:
        cv2.namedWindow("darkcfg", cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        print("note: --show: this OpenCV has no GUI (opencv-python-headless); detecting without a window",
              file=sys.stderr)
        return False


def run_detection(detector: Detector, sources: Sequence[str], out_dir: Optional[Union[str, Path]] = "predictions",
                  save_txt: bool = False, json_path: Optional[Union[str, Path]] = None, ext_output: bool = False,
                  quiet: bool = False, progress: bool = True, stdout: Optional[IO[str]] = None,
                  overwrite: bool = False, live: Optional[LiveOptions] = None,
                  outputs_live: Optional[LiveOutputs] = None) -> DetectionRun:
    """`darknet detector test` over SOURCES (image files, folders, globs, list files, videos) and `detector
    demo` over live ones (camera indices, stream URLs; read as `live` says).

    Prints each frame's `<name>: Predicted in ... milli-seconds.` and its labelled boxes as the reference
    does (to `stdout`, default sys.stdout; nothing with `quiet`), writes annotated images and videos into
    `out_dir` (None: none), YOLO label files with `save_txt`, and the reference's `-out` JSON to
    `json_path`; `outputs_live` adds the JSON and MJPEG ports and a window. Unreadable sources and frames are
    reported on stderr, one line each, and skipped. Label files beside the images (`save_txt` without
    `out_dir`, like `-save_labels`) never replace existing ones (a dataset's own labels) unless `overwrite`: a
    one-line error before anything runs. Ctrl-C stops cleanly: what was written so far is kept.
    """
    out = stdout if stdout is not None else sys.stdout
    found, errors = expand_sources(sources)
    live = live or LiveOptions()
    has_live = any(s.kind == "live" for s in found)
    if save_txt and out_dir is None and not overwrite:
        existing = [p for p in (label_path(s.path) for s in found if s.kind == "image") if Path(p).exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise DarkcfgError(f"{existing[0]}: label file exists{more}; --save-txt beside the images would replace "
                               "it: give --out, or --overwrite")
    run = DetectionRun(failed=len(errors), sources=len(found))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    total: Optional[int] = sum(video_info(s.path)[0] or 1 if s.kind == "video" else 1 for s in found)
    if has_live:
        total = live.max_frames if live.max_frames is not None and len(found) == 1 else None
    outputs = Outputs(Path(out_dir) if out_dir is not None else None, save_txt, detector.thresh)
    json_out = JsonWriter(json_path) if json_path else None
    ports = _Live(outputs_live, detector.thresh) if outputs_live is not None else None
    show_bar = progress and (total is None or total > 1 or any(s.kind == "video" for s in found))
    try:
        with Progress(total, "detect", unit="img", enabled=show_bar) as bar:
            for r in detector.stream(iter_frames(found, live), lookahead=live_lookahead(found, live)):
                if r.error is not None or r.detections is None or r.image is None:
                    run.failed += 1
                    bar.write(f"error: {r.error}", stream=sys.stderr)
                    bar.update(1)
                    continue
                d = r.detections
                lines = text_lines(d, detector.thresh, ext_output)
                run.boxes += len(lines)
                if not quiet:
                    bar.write("\n".join([f"{r.frame.name}: Predicted in {r.ms:f} milli-seconds."] + lines), stream=out)
                if json_out is not None:
                    json_out.add(d, r.frame.source.path)
                outputs.add(r.frame.source, r.frame.index, r.image, d)
                if ports is not None:
                    ports.publish(r.frame, r.image, d)
                run.done += 1
                bar.update(1)
    finally:
        outputs.close()
        if json_out is not None:
            json_out.close()
        if ports is not None:
            ports.close()
    run.written = outputs.written + ([Path(json_path)] if json_path else [])
    return run
