"""`darkcfg serve CFG [WEIGHTS]`: detection as an HTTP service (one process: an asyncio HTTP/1.1 server from the
standard library, worker threads that decode, and one batching thread that runs the network).

- `POST /detect` with an image as the raw body (any Content-Type but multipart) or as the first file of a
  `multipart/form-data` body (at most `max_parts` parts before it) -> 200 and the JSON `darkcfg detect --json`
  writes for that image: a list with one entry (`frame_id` 1, `filename` = the uploaded file name or "image",
  `objects`). Query parameters: `thresh` (in [MIN_THRESH, 1]), `nms` (in [0, 1]), as the options of `detect`, and
  `ext=1`, which adds each object's `absolute_coordinates` (left_x, top_y, width, height in pixels, as
  `-ext_output` prints them).
- `GET /health` -> 200 `{"status": "ok", ...}` naming the cfg, classes and input size.
- Requests arriving together are detected together: the batching thread takes the first waiting request, waits
  up to `batch_wait` seconds for more, up to `batch` images, and runs them in one forward (requests with other
  thresh / nms values in their own group). Results equal one-image detection, with two bounds on what one image
  may cost: at most `max_boxes` candidate boxes (the highest objectness) enter NMS, and the answer lists at most
  `max_boxes` objects (the most confident). Below ~1000 candidates, as with thresh >= MIN_THRESH on natural
  images, neither bound changes anything.
- Images: the width and height are read from the header before decoding (`darkcfg.data.images.decode_bgr`); above
  `max_pixels` -> 413, and the pixels decoded at once by all requests stay within 2 x `max_pixels` (a request
  waits for room, up to the timeout).
- Errors are one-line JSON `{"error": "..."}`: 400 for an unreadable image, a bad parameter or a malformed
  request, 404, 405, 408 (too slow), 411 without Content-Length (or with a chunked body), 413 above `max_bytes`
  or `max_pixels`, 431, 500, 501, 503 (too many connections, or busy). What the network may cost: see
  `darkcfg.infer.http_server`.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import queue
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Optional, Union
from urllib.parse import parse_qs, unquote

import numpy as np

from darkcfg.data.images import ImageError, PixelLimitError, check_image_bytes, decode_bgr
from darkcfg.errors import DarkcfgError
from darkcfg.infer.detections import DetectionArray
from darkcfg.infer.detector import Detector
from darkcfg.infer.http_server import (
    Handler,
    HttpError,
    HttpServer,
    Limits,
    Request,
    Response,
    error_response,
    json_response,
)
from darkcfg.infer.printout import json_number, json_object

MAX_BYTES = 20 * 1024 * 1024
MIN_THRESH = 0.001  # thresh=0 keeps every box of every class: 10 s of NMS for one yolov3-tiny image
MAX_BOXES = 1000  # candidates into NMS, and objects in an answer
MAX_PARTS = 32  # multipart parts before the file


class RequestError(HttpError):
    """A request darkcfg cannot serve: the HTTP status and a one-line reason."""


@dataclass
class _Job:
    bgr: np.ndarray
    thresh: float
    nms: float
    future: Future


class _CappedDetector(Detector):
    """A Detector whose NMS sees at most `max_boxes` candidates: those with the highest objectness, in their
    order (NMS costs O(boxes^2) per class)."""

    max_boxes = MAX_BOXES

    def postprocess(self, dets: DetectionArray) -> DetectionArray:
        if len(dets) > self.max_boxes:
            dets = dets.take(np.sort(np.argsort(-dets.objectness, kind="stable")[:self.max_boxes]))
        return super().postprocess(dets)


class Batcher:
    """Collects jobs into batches for one forward each (see the module docstring)."""

    def __init__(self, detector: Detector, batch: int = 8, batch_wait: float = 0.005,
                 max_boxes: int = MAX_BOXES) -> None:
        self.detector, self.batch, self.batch_wait, self.max_boxes = detector, batch, batch_wait, max_boxes
        self._queue: queue.Queue[Optional[_Job]] = queue.Queue()
        self._groups: dict[tuple[float, float], Detector] = {}
        self._closed = False
        # sizes of the last batches run (for the tests and the benchmark; bounded: a service runs for months)
        self.batches: collections.deque[int] = collections.deque(maxlen=1000)
        self._thread = threading.Thread(target=self._run, name="serve batcher", daemon=True)
        self._thread.start()

    def submit(self, bgr: np.ndarray, thresh: float, nms: float) -> DetectionArray:
        """Detect on one (H, W, 3) uint8 BGR image with its batch; blocks until done."""
        if self._closed:
            raise RequestError(503, "the server is stopping")
        job = _Job(bgr, thresh, nms, Future())
        self._queue.put(job)
        return job.future.result()

    def _detector(self, thresh: float, nms: float) -> Detector:
        key = (thresh, nms)
        if key not in self._groups:
            d = self.detector
            det = _CappedDetector(d.model, d.names, thresh, nms, d.letterbox, self.batch, d.tiles)
            det.max_boxes = self.max_boxes
            self._groups[key] = det
        return self._groups[key]

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
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
                    # one full-size float image at a time -> its network inputs (its tiles with --tiles)
                    out = det.run_images([(*det.inputs(det.to_image(j.bgr)), (j.bgr.shape[1], j.bgr.shape[0]))
                                          for j in group])
                    for j, d in zip(group, out):
                        j.future.set_result(d)
                except Exception as e:  # noqa: BLE001 - every waiting request gets the failure, the server lives on
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(e)
        while True:  # closed: whoever still waits gets an answer
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.future.set_exception(RequestError(503, "the server is stopping"))

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)


class _PixelBudget:
    """Pixels of the images decoded and not yet detected, across requests (worker threads wait for room)."""

    def __init__(self, total: int, timeout: float) -> None:
        self.total, self.timeout, self.used = total, timeout, 0
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + n <= self.total, self.timeout):
                raise RequestError(503, "busy: the images of other requests fill the memory allowed; try again "
                                        "later")
            self.used += n

    def release(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


# ---- multipart/form-data, parsed with a bound on the parts (email.parser took 13 s on 150k tiny parts) ----

_PARAM = re.compile(r";\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^;\s]*)")


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """'form-data; name="file"; filename="a.jpg"' -> ('form-data', {'name': 'file', 'filename': 'a.jpg'}); names
    lower-cased, quoted strings unescaped, RFC 5987 `filename*=UTF-8''...` decoded (and preferred)."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for m in _PARAM.finditer(";" + rest):
        key, v = m.group(1).lower(), m.group(2)
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        if key.endswith("*"):
            charset, _, encoded = v.partition("''")
            try:
                key, v = key[:-1], unquote(encoded, encoding=charset or "utf-8", errors="replace")
            except LookupError:  # a charset Python does not know
                key, v = key[:-1], unquote(encoded, errors="replace")
            params[key] = v
        else:
            params.setdefault(key, v)
    return main.strip().lower(), params


def multipart_boundary(content_type: str) -> Optional[str]:
    """The boundary of a multipart Content-Type, None for other types; RequestError(400) when it lacks one."""
    kind, params = header_params(content_type)
    if not kind.startswith("multipart/"):
        return None
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70:
        raise RequestError(400, f"{kind} without a boundary of 1 to 70 characters")
    return boundary


def first_file(body: Union[bytes, bytearray], boundary: str,
               max_parts: int = MAX_PARTS) -> tuple[Union[bytes, bytearray], str]:
    """The content and file name of the first part that is a file (has a filename, or an image/* type) of a
    multipart/form-data body; RequestError(400) when there is none among the first `max_parts` parts or the body
    is malformed. Linear in the body size."""
    delim = b"--" + boundary.encode("latin-1")
    if body.startswith(delim):
        pos = len(delim)
    else:  # a preamble
        i = body.find(b"\r\n" + delim)
        if i < 0:
            raise RequestError(400, "multipart body without its boundary")
        pos = i + 2 + len(delim)
    for _ in range(max_parts):
        if body[pos:pos + 2] == b"--":
            break
        eol = body.find(b"\r\n", pos, pos + 1024)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise RequestError(400, "malformed multipart body: no line end after a boundary")
        start = eol + 2
        if body.startswith(b"\r\n", start):  # a part without headers
            head, content = b"", start + 2
        else:
            end = body.find(b"\r\n\r\n", start, start + 8192)
            if end < 0:
                raise RequestError(400, "malformed multipart body: part headers missing or above 8 KiB")
            head, content = body[start:end], end + 4
        nxt = body.find(b"\r\n" + delim, content)
        if nxt < 0:
            raise RequestError(400, "multipart body without its closing boundary")
        headers = {}
        for line in bytes(head).decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        _, disposition = header_params(headers.get("content-disposition", ""))
        filename = disposition.get("filename")
        if filename is not None or headers.get("content-type", "").lower().startswith("image/"):
            return body[content:nxt], filename or "image"
        pos = nxt + 2 + len(delim)
    else:
        if body[pos:pos + 2] != b"--":
            raise RequestError(400, f"multipart body with more than {max_parts} parts before a file")
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


def most_confident(dets: DetectionArray, n: int) -> DetectionArray:
    """The detections with only the n most confident (box, class) pairs of `pairs()` left (the others' probabilities
    set to 0), in the same order: an answer lists at most n objects."""
    pairs = dets.pairs()
    if len(pairs) <= n:
        return dets
    rows, cols = np.array(pairs).T  # (P,) each
    keep = np.argsort(-dets.probs[rows, cols], kind="stable")[:n]
    probs = np.zeros_like(dets.probs)
    probs[rows[keep], cols[keep]] = dets.probs[rows[keep], cols[keep]]
    return dataclasses.replace(dets, probs=probs)


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


class DetectService:
    """The routes of `darkcfg serve` (module docstring): called on the event loop with each request head, it
    answers at once (health, refusals) or returns the handler that detects on the body in a worker thread."""

    def __init__(self, detector: Detector, batcher: Batcher, max_pixels: int, max_parts: int = MAX_PARTS,
                 max_boxes: int = MAX_BOXES, timeout: float = 10.0) -> None:
        self.detector, self.batcher = detector, batcher
        self.max_pixels, self.max_parts, self.max_boxes = max_pixels, max_parts, max_boxes
        self.pixels = _PixelBudget(2 * max_pixels, timeout)
        d = detector
        self.info = json.dumps({"status": "ok", "cfg": d.model.cfg_file, "classes": d.classes,
                                "width": d.model.net.width, "height": d.model.net.height, "batch": batcher.batch,
                                "max_pixels": max_pixels})

    def __call__(self, req: Request) -> Union[Response, Handler]:
        try:
            return self._route(req)
        except RequestError as e:  # 411: the client may have sent a body without saying: never read it as a request
            return error_response(e.status, str(e), close=e.status == 411)

    def _route(self, req: Request) -> Union[Response, Handler]:
        endpoints = "POST /detect, GET /health"
        if req.path == "/health":
            if req.method not in ("GET", "HEAD"):
                return self._not_allowed("GET /health", "GET, HEAD")
            return json_response(200, self.info)
        if req.path != "/detect":
            raise RequestError(404, f"{req.path}: no such endpoint ({endpoints})")
        if req.method != "POST":
            return self._not_allowed("POST an image to /detect", "POST")
        if req.content_length is None:
            raise RequestError(411, "Content-Length is required")
        qs = parse_qs(req.query)
        thresh = _float(qs, "thresh", self.detector.thresh, MIN_THRESH, 1.0)
        nms = _float(qs, "nms", self.detector.nms, 0.0, 1.0)
        ext = qs.get("ext", ["0"])[-1] not in ("0", "false", "")
        boundary = multipart_boundary(req.headers.get("content-type", ""))
        return lambda body: self._detect(body, boundary, thresh, nms, ext)

    @staticmethod
    def _not_allowed(message: str, allow: str) -> Response:
        r = error_response(405, message)
        r.headers.append(("Allow", allow))
        return r

    def _detect(self, body: bytearray, boundary: Optional[str], thresh: float, nms: float, ext: bool) -> Response:
        try:
            data, name = (body, "image") if boundary is None else first_file(body, boundary, self.max_parts)
            width, height = check_image_bytes(data, name, self.max_pixels)  # from the header, before decoding
            pixels = width * height
            self.pixels.acquire(pixels)
            try:
                dets = self.batcher.submit(decode_bgr(data, name, self.max_pixels), thresh, nms)
            finally:
                self.pixels.release(pixels)
        except RequestError as e:
            return error_response(e.status, str(e))
        except PixelLimitError as e:
            return error_response(413, str(e))
        except (ImageError, DarkcfgError) as e:
            return error_response(400, str(e))
        dets = most_confident(dets, self.max_boxes)
        text = json_object(dets, 1, name)
        if ext:
            text = with_absolute(text, dets)
        return json_response(200, "[\n" + text + "\n]")


class DetectServer(HttpServer):
    """The HTTP server of `darkcfg serve`: its `service` (the routes) and `batcher` attached; server_close also
    stops the batcher."""

    def __init__(self, service: DetectService, host: str, port: int, limits: Limits) -> None:
        super().__init__(service, host, port, limits)
        self.service, self.batcher = service, service.batcher

    def server_close(self) -> None:
        super().server_close()
        self.batcher.close()


def make_server(detector: Detector, host: str = "127.0.0.1", port: int = 8080, batch: int = 8,
                batch_wait: float = 0.005, max_bytes: int = MAX_BYTES, *, max_pixels: Optional[int] = None,
                max_boxes: int = MAX_BOXES, max_parts: int = MAX_PARTS, workers: Optional[int] = None,
                max_connections: int = 1024, timeout: float = 10.0, body_timeout: float = 60.0) -> DetectServer:
    """The HTTP server (listening, not yet serving: call serve_forever); its `batcher` is attached.

    max_pixels: the largest image (width x height), None: `darkcfg.data.images.MAX_PIXELS`; workers: threads
    that decode and wait for detections (None: 2 x batch); timeout: seconds for a request head (and an idle
    kept-alive connection), body_timeout: for a body. A detector thresh below MIN_THRESH is a DarkcfgError."""
    from darkcfg.data import images

    if not MIN_THRESH <= detector.thresh <= 1:
        raise DarkcfgError(f"thresh={json_number(detector.thresh)}: the server takes values in [{MIN_THRESH:g}, 1] "
                           "(lower ones keep every box: seconds of NMS per image)")
    limits = Limits(max_body=max_bytes, max_connections=max_connections, workers=workers or 2 * batch,
                    timeout=timeout, body_timeout=body_timeout)
    batcher = Batcher(detector, batch, batch_wait, max_boxes)
    service = DetectService(detector, batcher, images.MAX_PIXELS if max_pixels is None else max_pixels, max_parts,
                            max_boxes, timeout)
    try:
        return DetectServer(service, host, port, limits)
    except OSError:
        batcher.close()
        raise
