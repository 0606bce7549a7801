"""Live sources for `darkcfg detect`, as `darknet detector demo` opens them: a camera index (`0`), and
`rtsp://`, `http(s)://` (MJPEG and what else OpenCV's FFmpeg backend opens), `rtmp://`, `udp://` and `tcp://`
streams.

A `LiveReader` reads its source in a thread. By default it keeps only the newest frame: a detector slower
than the stream takes the latest picture instead of working through seconds of buffered frames (the usual
cause of stream latency); `keep_all` keeps every frame instead (`--no-drop`). Frames are numbered in the order
they arrived, so skipped ones leave gaps in the numbers, and stamped with their arrival time
(`time.perf_counter`). When the stream drops, the reader reconnects with back-off (0.5 s doubling to 8 s),
printing one line per attempt, until `retries` attempts have failed (negative: forever); a source that cannot be
opened at all is a one-line ImageError at once.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Optional

import numpy as np

from darkcfg.data.images import ImageError

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
OPEN_TIMEOUT_MS = 5000
BACKOFF_START, BACKOFF_MAX = 0.5, 8.0


def is_live(arg: str) -> bool:
    """A camera index (digits only) or a stream URL."""
    return arg.isdigit() or arg.lower().startswith(LIVE_SCHEMES)


def describe(target: str) -> str:
    return f"camera {target}" if target.isdigit() else target


def _quiet_ffmpeg() -> None:
    """FFmpeg's and OpenCV's own messages about a dropped stream ("Stream ends prematurely", timeouts) would
    interleave with darkcfg's one line per reconnect: keep them quiet unless the user asked for them."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg opens a stream
    import cv2

    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935}


def _refused(target: str) -> bool:
    """True when a TCP-based stream's server does not accept connections at all: FFmpeg would wait out its
    whole open timeout on it (which makes reconnecting to a restarting camera slow)."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(target)
    port = u.port or DEFAULT_PORTS.get(u.scheme.lower())
    if u.scheme.lower() == "udp" or not u.hostname or not port:
        return False
    try:
        with socket.create_connection((u.hostname, port), timeout=OPEN_TIMEOUT_MS / 1000):
            return False
    except OSError:
        return True


def open_capture(target: str):  # noqa: ANN201 - cv2.VideoCapture
    """cv2.VideoCapture of a camera index or URL (FFmpeg for URLs, with open and read timeouts); None when it
    does not open."""
    import cv2

    _quiet_ffmpeg()
    if not target.isdigit() and _refused(target):
        return None

    if target.isdigit():
        cap = cv2.VideoCapture(int(target))
    else:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
        cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        return None
    return cap


class LiveReader:
    """Reads `target` in a thread (see the module docstring). `frames()` yields (index, BGR frame, arrival
    time) until the source ends (retries exhausted) or `stop()`."""

    def __init__(self, target: str, keep_all: bool = False, retries: int = -1, log: Optional[IO[str]] = None,
                 max_queue: int = 256) -> None:
        self.target, self.keep_all, self.retries = target, keep_all, retries
        self.log = log if log is not None else sys.stderr
        self.fps = 25.0
        self._cap = None
        self._cond = threading.Condition()
        self._items: collections.deque = collections.deque(maxlen=max_queue if keep_all else 1)
        self._stopped = False
        self._ended = False
        self._count = 0
        self.error: Optional[str] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> LiveReader:
        """Open the source (a one-line ImageError when it cannot be opened) and start reading."""
        import cv2

        self._cap = open_capture(self.target)
        if self._cap is None:
            what = "no such camera, or it is in use" if self.target.isdigit() else "unreachable or not a stream"
            raise ImageError(f"{describe(self.target)}: cannot open ({what})")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        if fps and 1 <= fps <= 240:
            self.fps = float(fps)
        self._thread = threading.Thread(target=self._run, name=f"live {self.target}", daemon=True)
        self._thread.start()
        return self

    def _say(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    def _run(self) -> None:
        failures = 0
        while not self._stopped:
            ok, frame = self._cap.read() if self._cap is not None else (False, None)
            if ok and frame is not None:
                failures = 0
                with self._cond:
                    self._items.append((self._count, frame, time.perf_counter()))
                    self._count += 1
                    self._cond.notify_all()
                continue
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            if self.retries >= 0 and failures >= self.retries:
                tried = f" ({failures} reconnect attempt{'s' if failures > 1 else ''} failed)" if failures else ""
                self.error = f"{describe(self.target)}: the stream ended{tried}"
                break
            delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** failures)
            failures += 1
            self._say(f"{describe(self.target)}: stream lost; reconnecting in {delay:g} s (attempt {failures})")
            end = time.monotonic() + delay
            while not self._stopped and time.monotonic() < end:
                time.sleep(0.05)
            if not self._stopped:
                self._cap = open_capture(self.target)
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        if self._cap is not None:
            self._cap.release()

    def frames(self) -> Iterator[tuple[int, np.ndarray, float]]:
        while True:
            with self._cond:
                while not self._items and not self._ended and not self._stopped:
                    self._cond.wait(0.1)
                if not self._items:
                    return
                item = self._items.popleft()
            yield item

    def stop(self) -> None:
        self._stopped = True
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=0.5)  # a read blocked on a silent stream ends at its timeout, in the thread
