"""Test helpers for live sources: a local MJPEG stream of generated frames (served by darkcfg's own MJPEG port,
which speaks what IP cameras and `-mjpeg_port` speak), and clients of the JSON and MJPEG ports."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from darkcfg.infer.ports import MjpegPort

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"


def frames(n: int, size: tuple[int, int] = (320, 240)) -> list[bytes]:
    """n distinct JPEG frames of the shipped sample photo (shifted a little each), as bytes."""
    img = cv2.resize(cv2.imread(str(SAMPLE)), size)
    out = []
    for k in range(n):
        ok, buf = cv2.imencode(".jpg", np.roll(img, 6 * k, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(buf.tobytes())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FrameServer:
    """An MJPEG stream at http://127.0.0.1:<port>/ feeding `jpegs` at `fps` (looping when `loop`), starting once
    a client is connected and `go` is set. `stop()` drops the stream; `start()` serves it again on the same port,
    going on with the next frame."""

    def __init__(self, jpegs: list[bytes], fps: float = 30.0, loop: bool = False, port: Optional[int] = None) -> None:
        self.jpegs, self.fps, self.loop = jpegs, fps, loop
        self.port_number = port or free_port()
        self.go = threading.Event()
        self.go.set()
        self.sent = 0
        self._port: Optional[MjpegPort] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port_number}/"

    def start(self) -> FrameServer:
        self._port = MjpegPort(self.port_number)
        self._stop.clear()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()
        return self

    def _feed(self) -> None:
        port = self._port
        assert port is not None
        while not self._stop.is_set():
            if port.viewers and self.go.is_set():  # darkcfg's reconnect check opens bare connections first
                if self.sent >= len(self.jpegs) and not self.loop:
                    time.sleep(0.01)
                    continue
                port.publish(self.jpegs[self.sent % len(self.jpegs)])
                self.sent += 1
            time.sleep(1 / self.fps)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._port is not None:
            self._port.close()
            self._port = None


def read_json_port(port: int, stop: threading.Event, out: list, timeout: float = 60.0,
                   connected: Optional[threading.Event] = None) -> None:
    """Connect to a JSON port (retrying until it listens; then set `connected`), read until it closes, and put
    ('header', text) and ('objects', parsed list) into `out`."""
    end = time.monotonic() + timeout
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            break
        except OSError:
            if time.monotonic() > end or stop.is_set():
                return
            time.sleep(0.05)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    if connected is not None:
        time.sleep(0.3)  # the server has accepted and registered this client by now
        connected.set()
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    out.append(("header", head.decode()))
    text = body.decode()
    out.append(("objects", json.loads(text + "\n]") if text.strip() else []))


def mjpeg_parts(port: int, count: int, timeout: float = 30.0, delay: float = 0.0) -> tuple[str, list[bytes]]:
    """A browser-style client of an MJPEG port: (its response header, the first `count` JPEG parts), reading
    slowly when `delay` > 0 (seconds between 4 KiB reads)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: image/webp,*/*\r\n\r\n")
    buf = b""
    parts: list[bytes] = []
    header = None
    end = time.monotonic() + timeout
    while len(parts) < count and time.monotonic() < end:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
        if delay:
            time.sleep(delay)
        if header is None and b"\r\n\r\n" in buf:
            h, _, buf = buf.partition(b"\r\n\r\n")
            header = h.decode()
        while header is not None:
            start = buf.find(b"--mjpegstream\r\n")
            if start < 0:
                break
            hdr_end = buf.find(b"\r\n\r\n", start)
            if hdr_end < 0:
                break
            lines = buf[start + 16:hdr_end].decode().split("\r\n")
            fields = dict(line.split(": ", 1) for line in lines if ": " in line)
            n = int(fields["Content-Length"])
            if len(buf) < hdr_end + 4 + n:
                break
            parts.append(buf[hdr_end + 4:hdr_end + 4 + n])
            buf = buf[hdr_end + 4 + n:]
    s.close()
    return header or "", parts
