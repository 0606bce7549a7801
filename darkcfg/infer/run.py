"""`darkcfg detect`: the detector run over sources, as `darknet detector test` (files, folders, lists, videos)
and `detector demo` (cameras, streams) run it: the printout, the files (`Outputs`), and the live outputs (the
reference's JSON and MJPEG ports, a window).
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Optional, Union

import numpy as np

from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.detector import Detector
from darkcfg.infer.draw import draw_detections
from darkcfg.infer.outputs import Outputs
from darkcfg.infer.printout import json_object, text_lines
from darkcfg.infer.sources import Frame, LiveOptions, expand_sources, iter_frames, video_info
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

    def publish(self, frame: Frame, bgr: np.ndarray, d: DetectionArray) -> None:
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
    outputs = Outputs(Path(out_dir) if out_dir is not None else None, save_txt, detector.thresh, json_path, overwrite)
    try:
        outputs.check(found)
    except BaseException:
        outputs.close()
        raise
    run = DetectionRun(failed=len(errors), sources=len(found))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    total: Optional[int] = sum(video_info(s.path)[0] or 1 if s.kind == "video" else 1 for s in found)
    if has_live:
        total = live.max_frames if live.max_frames is not None and len(found) == 1 else None
    ports = _Live(outputs_live, detector.thresh) if outputs_live is not None else None
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
                d = r.detections
                lines = text_lines(d, detector.thresh, ext_output)
                run.boxes += len(lines)
                if not quiet:
                    bar.write("\n".join([f"{r.frame.name}: Predicted in {r.ms:f} milli-seconds."] + lines), stream=out)
                outputs.add(r.frame.source, r.frame.index, r.image, d)
                if ports is not None:
                    ports.publish(r.frame, r.image, d)
                run.done += 1
                bar.update(1)
    finally:
        outputs.close()
        if ports is not None:
            ports.close()
    run.written = outputs.written
    return run
