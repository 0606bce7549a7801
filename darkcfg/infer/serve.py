"""`darkcfg serve CFG [WEIGHTS]`: detection as an HTTP service (Python's standard library server: no extra
dependency, and one process with a batching thread is what a CPU or one GPU can use).

- `POST /detect` with an image as the raw body (any Content-Type but multipart) or as the first file of a
  `multipart/form-data` body -> 200 and the JSON `darkcfg detect --json` writes for that image: a list with one
  entry (`frame_id` 1, `filename` = the uploaded file name or "image", `objects`). Query parameters: `thresh`,
  `nms` (as the options of `detect`) and `ext=1`, which adds each object's `absolute_coordinates` (left_x, top_y,
  width, height in pixels, as `-ext_output` prints them).
- `GET /health` -> 200 `{"status": "ok", ...}` naming the cfg, classes and input size.
- Requests arriving together are detected together: the batching thread takes the first waiting request, waits
  up to `batch_wait` seconds for more, up to `batch` images, and runs them in one forward (requests with other
  thresh / nms values in their own group). Results equal one-image detection.
- Errors are one-line JSON `{"error": "..."}`: 400 for an unreadable image or a bad parameter, 404, 405, 411
  without Content-Length, 413 above `max_bytes`.
"""
from __future__ import annotations

import collections
import json
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.detector import Detector
from darkcfg.infer.printout import json_number, json_object

MAX_BYTES = 20 * 1024 * 1024


class RequestError(Exception):
    """A request darkcfg cannot serve: the HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    bgr: np.ndarray
    thresh: float
    nms: float
    future: Future


class Batcher:
    """Collects jobs into batches for one forward each (see the module docstring)."""

    def __init__(self, detector: Detector, batch: int = 8, batch_wait: float = 0.005) -> None:
        self.detector, self.batch, self.batch_wait = detector, batch, batch_wait
        self._queue: queue.Queue[Optional[_Job]] = queue.Queue()
        self._groups: dict[tuple[float, float], Detector] = {}
        # sizes of the last batches run (for the tests and the benchmark; bounded: a service runs for months)
        self.batches: collections.deque[int] = collections.deque(maxlen=1000)
        self._thread = threading.Thread(target=self._run, name="serve batcher", daemon=True)
        self._thread.start()

    def submit(self, bgr: np.ndarray, thresh: float, nms: float) -> DetectionArray:
        job = _Job(bgr, thresh, nms, Future())
        self._queue.put(job)
        return job.future.result()

    def _detector(self, thresh: float, nms: float) -> Detector:
        key = (thresh, nms)
        if key not in self._groups:
            d = self.detector
            self._groups[key] = Detector(d.model, d.names, thresh, nms, d.letterbox, self.batch)
        return self._groups[key]

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            end = time.perf_counter() + self.batch_wait
            while len(jobs) < self.batch:
                left = end - time.perf_counter()
                try:
                    job = self._queue.get(timeout=max(left, 0)) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                jobs.append(job)
            self.batches.append(len(jobs))
            groups: dict[tuple[float, float], list[_Job]] = {}
            for j in jobs:
                groups.setdefault((j.thresh, j.nms), []).append(j)
            for (thresh, nms), group in groups.items():
                det = self._detector(thresh, nms)
                try:
                    images = [det.to_image(j.bgr) for j in group]
                    sizes = [(im.shape[2], im.shape[1]) for im in images]
                    out = det.run_batch([det.prepare(im) for im in images], sizes)
                    for j, d in zip(group, out):
                        j.future.set_result(d)
                except Exception as e:  # noqa: BLE001 - every waiting request gets the failure, the server lives on
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(e)

    def close(self) -> None:
        self._queue.put(None)


def decode_image(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise RequestError(400, f"not an image OpenCV can decode ({len(data)} bytes)")
    return img


def image_from_body(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The image bytes and file name of a request body: raw, or the first file part of multipart/form-data."""
    if not content_type.lower().startswith("multipart/"):
        return body, "image"
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise RequestError(400, "multipart body without parts")
    for part in msg.iter_parts():
        if part.get_filename() is not None or part.get_content_maintype() == "image":
            return part.get_payload(decode=True) or b"", part.get_filename() or "image"
    raise RequestError(400, "multipart body without a file part")


def with_absolute(text: str, dets: DetectionArray) -> str:
    """The JSON entry with each object's absolute_coordinates (pixels, as -ext_output prints them) added."""
    entry = json.loads(text)
    pairs = dets.pairs()
    for obj, (i, _) in zip(entry["objects"], pairs):
        x, y, w, h = (float(v) for v in dets.boxes[i])
        obj["absolute_coordinates"] = {
            "left_x": round((x - w / 2) * dets.width), "top_y": round((y - h / 2) * dets.height),
            "width": round(w * dets.width), "height": round(h * dets.height)}
    return json.dumps(entry, indent=1)


def _float(qs: dict, key: str, default: float, lo: float, hi: float) -> float:
    if key not in qs:
        return default
    try:
        v = float(qs[key][-1])
    except ValueError:
        raise RequestError(400, f"{key}={qs[key][-1]!r}: expected a number") from None
    if not lo <= v <= hi:
        raise RequestError(400, f"{key}={json_number(v)}: expected a value in [{lo:g}, {hi:g}]")
    return v


def make_server(detector: Detector, host: str = "127.0.0.1", port: int = 8080, batch: int = 8,
                batch_wait: float = 0.005, max_bytes: int = MAX_BYTES) -> ThreadingHTTPServer:
    """The HTTP server (not yet serving: call serve_forever); its `batcher` is attached."""
    batcher = Batcher(detector, batch, batch_wait)
    info = json.dumps({"status": "ok", "cfg": detector.model.cfg_file, "classes": detector.classes,
                       "width": detector.model.net.width, "height": detector.model.net.height, "batch": batch})

    class Handler(BaseHTTPRequestHandler):
        server_version = "darkcfg"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass  # no line per request on stderr

        def _send(self, status: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"error": message}))

        def _drain(self, n: int) -> None:
            """Read and drop an oversized body so the client can read the answer (beyond 8 x the limit the
            connection is closed instead)."""
            self.close_connection = True
            if n > 8 * max_bytes:
                return
            while n > 0:
                chunk = self.rfile.read(min(n, 1 << 20))
                if not chunk:
                    return
                n -= len(chunk)

        def handle_expect_100(self) -> bool:
            """`Expect: 100-continue` (curl for large uploads): refuse an oversized body before it is sent."""
            length = self.headers.get("Content-Length", "0")
            if length.isdigit() and int(length) > max_bytes:
                self.close_connection = True
                self._error(413, f"request of {length} bytes: the limit is {max_bytes} bytes")
                return False
            return super().handle_expect_100()

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = urlsplit(self.path).path
            if path == "/health":
                self._send(200, info)
            elif path == "/detect":
                self._error(405, "POST an image to /detect")
            else:
                self._error(404, f"{path}: no such endpoint (POST /detect, GET /health)")

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            try:
                if url.path != "/detect":
                    raise RequestError(404, f"{url.path}: no such endpoint (POST /detect, GET /health)")
                length = self.headers.get("Content-Length")
                if length is None:
                    raise RequestError(411, "Content-Length is required")
                try:
                    n = int(length)
                except ValueError:
                    raise RequestError(400, f"Content-Length {length!r}: expected a number") from None
                if n > max_bytes:
                    self._drain(n)
                    raise RequestError(413, f"request of {n} bytes: the limit is {max_bytes} bytes")
                qs = parse_qs(url.query)
                thresh = _float(qs, "thresh", detector.thresh, 0.0, 1.0)
                nms = _float(qs, "nms", detector.nms, 0.0, 1.0)
                ext = qs.get("ext", ["0"])[-1] not in ("0", "false", "")
                body = self.rfile.read(n)
                data, name = image_from_body(body, self.headers.get("Content-Type", ""))
                dets = batcher.submit(decode_image(data), thresh, nms)
                text = json_object(dets, 1, name)
                if ext:
                    text = with_absolute(text, dets)
                self._send(200, "[\n" + text + "\n]")
            except RequestError as e:
                self._error(e.status, str(e))
            except Exception as e:  # noqa: BLE001 - one line to the client, the server keeps serving
                self._error(500, f"{type(e).__name__}: {e}")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.batcher = batcher  # type: ignore[attr-defined]
    return server
