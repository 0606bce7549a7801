"""What `darkcfg detect SOURCE...` reads: image files, folders, globs, list files, videos, and live sources
(camera indices and stream URLs, read by `darkcfg.infer.live`).

`expand_sources` turns the command-line arguments into `Source`s (one image, or one video) plus one-line
errors for arguments that give nothing (a missing file, an empty folder, a glob without matches); a bad
argument never stops the good ones. `iter_frames` then yields `Frame`s lazily, so a folder of any size, or
a long video, streams through in constant memory.
"""
from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from darkcfg.data.dataset import image_list
from darkcfg.data.images import IMAGE_EXTENSIONS, ImageError, check_pixels, list_images, read_bgr
from darkcfg.infer.live import LiveReader, is_live

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".mjpeg")
LIST_EXTENSIONS = (".txt", ".list", ".lst")


@dataclass
class Source:
    """One input: `path` as the user named it (printed and written to JSON as such); kind image|video|live;
    `fps` of a live source once it is open (for a recorded output video)."""

    path: str
    kind: str = "image"
    fps: Optional[float] = None


@dataclass
class LiveOptions:
    """How live sources are read: every frame (`keep_all`, else the newest), reconnect attempts (`retries`,
    negative: forever), and a frame count after which to stop (`max_frames`, None: until the stream ends)."""

    keep_all: bool = False
    retries: int = -1
    max_frames: Optional[int] = None

    def lookahead(self, sources: Sequence[Source]) -> Optional[int]:
        """Frames `Detector.stream` reads ahead: none with live sources that drop frames, so that each forward
        takes the newest frame instead of a backlog; the default (None) otherwise."""
        return 0 if any(s.kind == "live" for s in sources) and not self.keep_all else None


@dataclass
class Frame:
    """One image to detect on: an image file, or frame `index` (from 0) of a video. `load` returns it as
    (H, W, 3) uint8 BGR or raises ImageError."""

    source: Source
    index: Optional[int]
    load: Callable[[], np.ndarray]
    arrival: Optional[float] = None  # live frames: time.perf_counter() when the reader got it

    @property
    def name(self) -> str:
        return self.source.path if self.index is None else f"{self.source.path}#{self.index}"


def _is_glob(arg: str) -> bool:
    return any(ch in arg for ch in "*?[")


def _classify(p: str) -> Source:
    return Source(p, "video" if Path(p).suffix.lower() in VIDEO_EXTENSIONS else "image")


def expand_sources(args: Sequence[str]) -> tuple[list[Source], list[str]]:
    """Command-line SOURCE arguments -> (sources in order, one-line errors)."""
    sources: list[Source] = []
    errors: list[str] = []
    for arg in args:
        p = Path(arg)
        if is_live(arg) and not p.exists():
            sources.append(Source(arg, "live"))
        elif p.is_dir():
            found = list_images(p)
            if not found:
                errors.append(f"{arg}: folder has no image files ({', '.join(IMAGE_EXTENSIONS[:5])}, ...)")
            sources += [Source(f) for f in found]
        elif p.is_file():
            if p.suffix.lower() in LIST_EXTENSIONS:
                found = image_list(p)
                if not found:
                    errors.append(f"{arg}: list file has no paths")
                sources += [_classify(f) for f in found]
            else:
                sources.append(_classify(arg))
        elif _is_glob(arg):
            found = sorted(glob.glob(arg))
            found = [f for f in found if Path(f).is_file()]
            if not found:
                errors.append(f"{arg}: no file matches this pattern")
            sources += [_classify(f) for f in found]
        else:
            errors.append(f"{arg}: no such file or folder")
    return sources, errors


def video_frames(source: Source, max_pixels: Optional[int] = None) -> Iterator[Frame]:
    """Decode a video sequentially; each frame is already read when yielded. A frame size (from the container,
    before any frame is decoded) above `max_pixels` (None: darkcfg.data.images.MAX_PIXELS) is a one-line
    ImageError."""
    import cv2

    cap = cv2.VideoCapture(source.path)
    if not cap.isOpened():
        raise ImageError(f"{source.path}: cannot open this video")
    i = 0
    try:
        check_pixels(source.path, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                     max_pixels)
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield Frame(source, i, lambda im=bgr: im)
            i += 1
    finally:
        cap.release()
    if i == 0:
        raise ImageError(f"{source.path}: video has no readable frames")


def video_info(path: str) -> tuple[int, float, int, int]:
    """(frame count or 0 if unknown, fps, width, height) of a video."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        return (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 25.0),
                int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


def _failed(source: Source, err: ImageError) -> Frame:
    def fail() -> np.ndarray:
        raise err

    return Frame(source, None, fail)


def live_frames(source: Source, opts: LiveOptions) -> Iterator[Frame]:
    """The frames of a live source as its reader delivers them (module darkcfg.infer.live); a source that
    cannot be opened yields one Frame whose load raises, and one that ends after reconnecting yields a last such
    Frame saying so."""
    reader = LiveReader(source.path, opts.keep_all, opts.retries)
    try:
        reader.start()
    except ImageError as e:
        yield _failed(source, e)
        return
    source.fps = reader.fps
    n = 0
    try:
        for index, frame, t in reader.frames():
            yield Frame(source, index, lambda im=frame: im, t)
            n += 1
            if opts.max_frames is not None and n >= opts.max_frames:
                return
        if reader.error:
            yield _failed(source, ImageError(reader.error))
    finally:
        reader.stop()


def iter_frames(sources: Sequence[Source], live: Optional[LiveOptions] = None) -> Iterator[Frame]:
    """Every frame of every source, lazily. A video that fails to open yields one Frame whose load raises."""
    for s in sources:
        if s.kind == "live":
            yield from live_frames(s, live or LiveOptions())
        elif s.kind == "video":
            try:
                yield from video_frames(s)
            except ImageError as e:
                yield _failed(s, e)
        else:
            yield Frame(s, None, lambda p=s.path: read_bgr(p))
