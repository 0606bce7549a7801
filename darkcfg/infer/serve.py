"""`darkcfg serve CFG [WEIGHTS]`: detection as an HTTP service (one process: an asyncio HTTP/1.1 server from the
standard library, worker threads that decode, and one batching thread that runs the network).

- `POST /detect` with an image as the raw body (any Content-Type but multipart) or as the first file of a
  `multipart/form-data` body (at most `max_parts` parts before it) -> 200 and the JSON `darkcfg detect --json`
  writes for that image: a list with one entry (`frame_id` 1, `filename` = the uploaded file name or "image",
  `objects`). Query parameters: `thresh` (in [MIN_THRESH, 1]), `nms` (in [0, 1]), as the options of `detect`, and
  `ext=1`, which adds each object's `absolute_coordinates` (left_x, top_y, width, height in pixels, as
  `-ext_output` prints them).
- Tracking: `POST /detect?stream=NAME&track=1` follows objects through the frames POSTed under NAME (1 to 64
  letters, digits, `.`, `_`, `-`; anything else, `stream` without `track=1` or `track=1` without `stream`: 400).
  Each named stream has its own tracker (`--tracker`, as `detect --track`); the answer's `frame_id` counts the
  stream's frames from 1 and each object carries its `track_id` (0: no track yet). A stream keeps the thresh and nms
  of its first request (another value later: 400); `fps` (first request, 1 to 60, default 30) scales how long
  ByteTrack waits for a lost object (`track_buffer` frames at 30 fps, `serve --track-buffer`). A tracker sees at
  most MAX_TRACKED boxes of a frame (the most probable), so that what one stream costs stays bounded. Frames of one
  stream are tracked one at a time, in the order their bodies finished arriving (their detection still batches with
  other requests); a client that needs a strict order sends a frame after the previous answer. At most `max_streams`
  streams are kept: a new one replaces the least recently used stream that has no request in progress (whose next
  frame then starts a fresh tracker, frame_id 1 again), or gets 503 when every stream is in use; a stream idle for
  `stream_timeout` seconds is forgotten. Tracked requests in progress are at most MAX_PENDING per stream and half
  the server's workers over all streams (503 beyond), so tracked clients cannot take every worker.
- `GET /health` -> 200 `{"status": "ok", ...}` naming the cfg, classes and input size, the tracker and the streams.
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
  or `max_pixels`, 431, 500, 501, 503 (too many connections, or busy, or every tracked stream in use). What the
  network may cost: see `darkcfg.infer.http_server`.
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
from darkcfg.infer.run import SequenceTracking, TrackOptions, check_tracking

MAX_BYTES = 20 * 1024 * 1024
MIN_THRESH = 0.001  # thresh=0 keeps every box of every class: 10 s of NMS for one yolov3-tiny image
MAX_BOXES = 1000  # candidates into NMS, and objects in an answer
MAX_PARTS = 32  # multipart parts before the file
MAX_STREAMS = 64  # tracked streams kept at once
STREAM_TIMEOUT = 300.0  # seconds a tracked stream is kept without a frame
MAX_PENDING = 4  # requests of one tracked stream in progress at once (each holds a worker thread while it waits)
TURN_TIMEOUT = 30.0  # seconds a tracked frame waits for the frames before it to be tracked
MAX_GROUPS = 64  # detectors kept for distinct (thresh, nms) values
MAX_TRACKED = 256  # boxes of one frame given to a stream's tracker (the most probable): its cost stays bounded
STREAM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestError(HttpError):
    """A request darkcfg cannot serve: the HTTP status and a one-line reason."""


@dataclass
class _Job:
    bgr: np.ndarray
    thresh: float
    nms: float
    future: Future
    embeddings: bool = False  # keep each box's embedding (the darknet tracker)


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
        self._groups: collections.OrderedDict[tuple[float, float, bool], Detector] = collections.OrderedDict()
        self._tap = None  # one EmbeddingTap on the network, shared by the detectors that keep embeddings
        self._closed = False
        # sizes of the last batches run (for the tests and the benchmark; bounded: a service runs for months)
        self.batches: collections.deque[int] = collections.deque(maxlen=1000)
        self._thread = threading.Thread(target=self._run, name="serve batcher", daemon=True)
        self._thread.start()

    def submit(self, bgr: np.ndarray, thresh: float, nms: float, embeddings: bool = False) -> DetectionArray:
        """Detect on one (H, W, 3) uint8 BGR image with its batch; blocks until done. `embeddings`: each box also
        gets its embedding layer's vector (the darknet tracker)."""
        if self._closed:
            raise RequestError(503, "the server is stopping")
        job = _Job(bgr, thresh, nms, Future(), embeddings)
        self._queue.put(job)
        return job.future.result()

    def _detector(self, thresh: float, nms: float, embeddings: bool = False) -> Detector:
        """The detector of a group (the MAX_GROUPS most recently used are kept)."""
        key = (thresh, nms, embeddings)
        if key not in self._groups:
            d = self.detector
            det = _CappedDetector(d.model, d.names, thresh, nms, d.letterbox, self.batch, d.tiles)
            det.max_boxes = self.max_boxes
            if embeddings:
                if self._tap is None:
                    from darkcfg.infer.track.appearance import EmbeddingTap

                    self._tap = EmbeddingTap(d.model, "layer")
                det.tap = self._tap
            self._groups[key] = det
            while len(self._groups) > MAX_GROUPS:
                self._groups.popitem(last=False)
        self._groups.move_to_end(key)
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
            groups: dict[tuple[float, float, bool], list[_Job]] = {}
            for j in jobs:
                groups.setdefault((j.thresh, j.nms, j.embeddings), []).append(j)
            for (thresh, nms, embeddings), group in groups.items():
                try:
                    det = self._detector(thresh, nms, embeddings)
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
        if self._tap is not None:
            self._thread.join(timeout=5.0)
            self._tap.close()  # the network is the caller's again, without hooks


@dataclass
class _Stream:
    """One named tracked stream: its tracking, the thresholds it was created with, and the turns of its requests
    (`ticket`: the next request's number, `turn`: the number whose frame is tracked next)."""

    tracking: SequenceTracking
    thresh: float
    nms: float
    fps: float
    used: float
    busy: int = 0  # requests holding a ticket
    ticket: int = 0
    turn: int = 0
    frames: int = 0
    skipped: set[int] = dataclasses.field(default_factory=set)  # tickets that gave up waiting for their turn
    cond: threading.Condition = dataclasses.field(default_factory=threading.Condition)


class StreamTable:
    """The tracked streams of a server (module docstring): at most `max_streams`, the least recently used idle one
    replaced by a new one, each forgotten after `timeout` seconds without a frame. Thread-safe."""

    def __init__(self, tracker: str = "bytetrack", params: object = None, max_streams: int = MAX_STREAMS,
                 timeout: float = STREAM_TIMEOUT, max_pending: int = MAX_PENDING,
                 turn_timeout: float = TURN_TIMEOUT, max_busy: Optional[int] = None,
                 track_buffer: Optional[int] = None) -> None:
        self.opts, self.params = TrackOptions(tracker, track_buffer=track_buffer), params
        self.max_streams, self.timeout = max_streams, timeout
        self.max_pending, self.turn_timeout = max_pending, turn_timeout
        self.max_busy = max_busy  # tracked requests in progress over all streams (None: no bound but the streams')
        self._streams: collections.OrderedDict[str, _Stream] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.dropped = 0  # streams replaced while the table was full (for /health and the tests)

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._streams)

    def _expire(self, now: float) -> None:
        for name in [n for n, st in self._streams.items() if not st.busy and now - st.used > self.timeout]:
            del self._streams[name]

    def enter(self, name: str, thresh: float, nms: float, fps: float) -> tuple[_Stream, int]:
        """Take a turn in stream `name` (made if new): (the stream, this request's ticket). RequestError 400 for
        other thresholds than the stream's, 503 when the table is full of streams in use or the stream has
        `max_pending` requests in progress or the table `max_busy` over all streams. Every `enter` must be followed
        by one `leave`."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            st = self._streams.get(name)
            if st is None:
                if len(self._streams) >= self.max_streams:
                    idle = next((n for n, s in self._streams.items() if not s.busy), None)
                    if idle is None:
                        raise RequestError(503, f"busy: all {self.max_streams} tracked streams have requests in "
                                                "progress; try again later")
                    del self._streams[idle]
                    self.dropped += 1
                st = _Stream(SequenceTracking(self.opts, thresh, self.params), thresh, nms, fps, now)
                self._streams[name] = st
            elif (st.thresh, st.nms) != (thresh, nms):
                raise RequestError(400, f"stream={name} tracks at thresh={json_number(st.thresh)}, "
                                        f"nms={json_number(st.nms)} (its first request's): this request asks "
                                        f"thresh={json_number(thresh)}, nms={json_number(nms)}")
            if st.busy >= self.max_pending:
                raise RequestError(503, f"busy: stream={name} has {st.busy} frames in progress (at most "
                                        f"{self.max_pending}); send the next frame after an answer")
            busy = sum(s.busy for s in self._streams.values())  # a stream in use is never dropped
            if self.max_busy is not None and busy >= self.max_busy:
                raise RequestError(503, f"busy: {busy} tracked frames in progress over all streams (at most "
                                        f"{self.max_busy}); try again later")
            self._streams.move_to_end(name)
            st.used, st.busy = now, st.busy + 1
            ticket, st.ticket = st.ticket, st.ticket + 1
            return st, ticket

    def track(self, st: _Stream, ticket: int, dets: Optional[DetectionArray]) -> tuple[Optional[DetectionArray], int]:
        """Wait for this ticket's turn, then track its frame's detections (None: the request failed; its turn
        passes): (the detections shown at the stream's thresh, and the low-score boxes ByteTrack kept on a track,
        with track ids; the stream's frame number). RequestError 503 when the frames before it are not tracked
        within `turn_timeout` (its turn is then skipped, so the stream goes on)."""
        with st.cond:
            if not st.cond.wait_for(lambda: st.turn == ticket, self.turn_timeout):
                st.skipped.add(ticket)
                raise RequestError(503, f"busy: an earlier frame of this stream was not tracked within "
                                        f"{self.turn_timeout:g} s; try again")
            try:
                if dets is None:
                    return None, st.frames
                st.frames += 1
                shown, _ = st.tracking.update(0, st.fps, strongest(dets, MAX_TRACKED))
                return shown, st.frames
            finally:
                st.turn += 1
                while st.turn in st.skipped:  # tickets that stopped waiting
                    st.skipped.discard(st.turn)
                    st.turn += 1
                st.cond.notify_all()

    def leave(self, st: _Stream) -> None:
        with self._lock:
            st.busy -= 1
            st.used = time.monotonic()


def strongest(dets: DetectionArray, n: int) -> DetectionArray:
    """The n rows with the highest class probability, in their order (all of them when there are no more)."""
    if len(dets) <= n:
        return dets
    return dets.take(np.sort(np.argsort(-dets.probs.max(1), kind="stable")[:n]))


def parse_stream(qs: dict) -> Optional[str]:
    """The tracked stream a query names (None: not tracked); RequestError(400) for a bad name, a repeated one,
    `stream` without `track=1` or `track=1` without `stream`."""
    track = qs.get("track", ["0"])
    names = qs.get("stream")
    if len(track) > 1 or (names is not None and len(names) > 1):
        raise RequestError(400, "stream and track may each be given once")
    if track[0] not in ("0", "1", "false", "true"):
        raise RequestError(400, f"track={track[0][:20]!r}: expected 1 or 0")
    on = track[0] in ("1", "true")
    if names is None:
        if on:
            raise RequestError(400, "track=1 needs stream=NAME: the stream whose frames are followed")
        return None
    name = names[0]
    if not STREAM_NAME.fullmatch(name):
        raise RequestError(400, f"stream={name[:70]!r}: expected 1 to 64 letters, digits, '.', '_' or '-'")
    if not on:
        raise RequestError(400, f"stream={name} goes with track=1")
    return name


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
                 max_boxes: int = MAX_BOXES, timeout: float = 10.0, streams: Optional[StreamTable] = None) -> None:
        self.detector, self.batcher = detector, batcher
        self.max_pixels, self.max_parts, self.max_boxes = max_pixels, max_parts, max_boxes
        self.pixels = _PixelBudget(2 * max_pixels, timeout)
        self.streams = streams if streams is not None else StreamTable()
        d = detector
        self._info = {"status": "ok", "cfg": d.model.cfg_file, "classes": d.classes, "width": d.model.net.width,
                      "height": d.model.net.height, "batch": batcher.batch, "max_pixels": max_pixels,
                      "tracker": self.streams.opts.tracker, "max_streams": self.streams.max_streams}

    @property
    def info(self) -> str:
        """The /health answer (with the number of tracked streams now)."""
        return json.dumps({**self._info, "streams": len(self.streams)})

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
        fps = _float(qs, "fps", 30.0, 1.0, 60.0)
        ext = qs.get("ext", ["0"])[-1] not in ("0", "false", "")
        stream = parse_stream(qs)
        boundary = multipart_boundary(req.headers.get("content-type", ""))
        return lambda body: self._detect(body, boundary, thresh, nms, ext, stream, fps)

    def _find(self, body: bytearray, boundary: Optional[str], thresh: float, nms: float,
              embeddings: bool) -> Union[Response, tuple[DetectionArray, str]]:
        """The detections in a request's image and its file name, or the error answer."""
        try:
            data, name = (body, "image") if boundary is None else first_file(body, boundary, self.max_parts)
            width, height = check_image_bytes(data, name, self.max_pixels)  # from the header, before decoding
            pixels = width * height
            self.pixels.acquire(pixels)
            try:
                return self.batcher.submit(decode_bgr(data, name, self.max_pixels), thresh, nms, embeddings), name
            finally:
                self.pixels.release(pixels)
        except RequestError as e:
            return error_response(e.status, str(e))
        except PixelLimitError as e:
            return error_response(413, str(e))
        except (ImageError, DarkcfgError) as e:
            return error_response(400, str(e))

    @staticmethod
    def _not_allowed(message: str, allow: str) -> Response:
        r = error_response(405, message)
        r.headers.append(("Allow", allow))
        return r

    def _detect(self, body: bytearray, boundary: Optional[str], thresh: float, nms: float, ext: bool,
                stream: Optional[str] = None, fps: float = 30.0) -> Response:
        if stream is None:
            found = self._find(body, boundary, thresh, nms, False)
            if isinstance(found, Response):
                return found
            dets, name = found
            frame_id = 1
        else:
            try:
                st, ticket = self.streams.enter(stream, thresh, nms, fps)
            except RequestError as e:
                return error_response(e.status, str(e))
            try:
                found = None
                try:
                    found = self._find(body, boundary, st.tracking.detect_thresh, nms,
                                       self.streams.opts.embeddings() is not None)
                finally:  # this frame's turn: tracked in request order (a failed request passes its turn)
                    late = None
                    try:
                        tracked, frame_id = self.streams.track(st, ticket,
                                                               found[0] if isinstance(found, tuple) else None)
                    except RequestError as e:  # the frames before it took too long
                        late = e
            finally:
                self.streams.leave(st)
            if late is not None:
                return error_response(late.status, str(late))
            if isinstance(found, Response):
                return found
            assert found is not None and tracked is not None
            dets, name = tracked, found[1]
        dets = most_confident(dets, self.max_boxes)
        text = json_object(dets, frame_id, name)
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
                max_connections: int = 1024, timeout: float = 10.0, body_timeout: float = 60.0,
                tracker: str = "bytetrack", max_streams: int = MAX_STREAMS,
                stream_timeout: float = STREAM_TIMEOUT, track_buffer: Optional[int] = None) -> DetectServer:
    """The HTTP server (listening, not yet serving: call serve_forever); its `batcher` is attached.

    max_pixels: the largest image (width x height), None: `darkcfg.data.images.MAX_PIXELS`; workers: threads
    that decode and wait for detections (None: 2 x batch); timeout: seconds for a request head (and an idle
    kept-alive connection), body_timeout: for a body. tracker, max_streams, stream_timeout, track_buffer
    (ByteTrack's; None: its default): the tracked streams (`?stream=NAME&track=1`, module docstring). A detector
    thresh below MIN_THRESH, the darknet tracker on a cfg without embedding_layer, or a bad track_buffer, is a
    DarkcfgError."""
    from darkcfg.data import images

    if not MIN_THRESH <= detector.thresh <= 1:
        raise DarkcfgError(f"thresh={json_number(detector.thresh)}: the server takes values in [{MIN_THRESH:g}, 1] "
                           "(lower ones keep every box: seconds of NMS per image)")
    opts = TrackOptions(tracker, track_buffer=track_buffer)
    check_tracking(detector, opts)
    params = None
    if tracker == "darknet":
        from darkcfg.model.heads import last_head

        params = getattr(last_head(detector.model), "params", None)
    limits = Limits(max_body=max_bytes, max_connections=max_connections, workers=workers or 2 * batch,
                    timeout=timeout, body_timeout=body_timeout)
    # tracked frames wait for their turn on a worker: at most half the workers, so untracked requests and other
    # clients keep the rest whatever the number of streams
    streams = StreamTable(tracker, params, max_streams, stream_timeout, max_busy=max(1, limits.workers // 2),
                          track_buffer=track_buffer)
    batcher = Batcher(detector, batch, batch_wait, max_boxes)
    service = DetectService(detector, batcher, images.MAX_PIXELS if max_pixels is None else max_pixels, max_parts,
                            max_boxes, timeout, streams)
    try:
        return DetectServer(service, host, port, limits)
    except OSError:
        batcher.close()
        raise
