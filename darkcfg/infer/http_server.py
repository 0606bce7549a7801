"""The HTTP/1.1 server under `darkcfg serve`: asyncio from the standard library, written to face a network.

What one client may cost is bounded (`Limits`):
- connections: at most `max_connections` open at once; an idle one costs a few kB on the event loop, never a
  thread (the file-descriptor limit is raised to fit, where the system allows). At the cap, a new connection
  takes the place of the one that has waited longest for a request head (slowloris clients, idle kept-alive
  ones); when all are inside requests it gets 503 and is closed;
- time: the request head must arrive within `timeout` seconds (from the connection, or from the previous answer
  on a kept-alive one), the body within `body_timeout`, and the answer must be taken within `send_timeout`;
- memory: the head within `max_head` bytes and `max_headers` lines; a body within `max_body` bytes, read only
  when its declared length fits in `body_budget` (the bytes of all bodies held at once). A request that does
  not fit makes room by evicting uploads that stalled (less than `min_rate` bytes/s over half a second: 408;
  the room is held for it), or waits for room, up to `timeout`, then 503. Bodies grow as they arrive (a
  stalled upload holds what it sent);
- threads: the event loop, and `workers` threads that run the handlers.

Parsing is strict, so that this server and a proxy in front of it always agree where a request ends (no request
smuggling): a request line `METHOD /target HTTP/1.x`, `Name: value` lines (no space before the colon, no line
folding, no control characters), one Host on HTTP/1.1, at most one Content-Length made of decimal digits only,
and no Transfer-Encoding (chunked bodies: 411, other codings: 501). A request answered before its body was read
(a refusal, a malformed head) is answered with `Connection: close`; the server then reads and drops what the
client still sends for up to `linger` seconds, so that the client reads the answer instead of a reset, and
closes. Every answer, error or not, is JSON with a Content-Length; errors are one line, `{"error": "..."}`.
Clients that go away are not errors: nothing is printed for them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Optional, Union

log = logging.getLogger("darkcfg")


@dataclass(frozen=True)
class Limits:
    """What one client, and all of them together, may cost (see the module docstring). body_budget 0 means
    8 x max_body."""

    max_body: int = 20 * 1024 * 1024
    max_connections: int = 1024
    workers: int = 16
    timeout: float = 10.0
    body_timeout: float = 60.0
    send_timeout: float = 30.0
    linger: float = 2.0
    max_head: int = 16 * 1024
    max_headers: int = 64
    body_budget: int = 0
    min_rate: int = 64 * 1024

    @property
    def budget(self) -> int:
        return self.body_budget or 8 * self.max_body


class HttpError(Exception):
    """A request refused: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    """A parsed request head. headers: lower-case names -> values (repeated ones joined by ', ');
    content_length: None without the header; keep_alive: whether the connection may carry another request."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    content_length: Optional[int]
    keep_alive: bool
    expect_continue: bool


@dataclass
class Response:
    """An answer: status, JSON body bytes, whether to close the connection after it, extra headers."""

    status: int
    body: bytes
    close: bool = False
    headers: list[tuple[str, str]] = field(default_factory=list)
    head_only: bool = False  # the answer to a HEAD request: the headers of the body, without it


Handler = Callable[[bytearray], Response]  # runs in a worker thread with the request body
Route = Callable[[Request], Union[Response, Handler]]  # runs on the event loop: an answer now, or a body handler


def one_line(text: str) -> str:
    """Messages from libraries (OpenCV's span several lines) as one line."""
    return " ".join(text.split())


def json_response(status: int, text: str, close: bool = False) -> Response:
    return Response(status, (text + "\n").encode(), close)


def error_response(status: int, message: str, close: bool = False) -> Response:
    """`{"error": "..."}` on one line."""
    return json_response(status, json.dumps({"error": one_line(message)}), close)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LENGTH = re.compile(r"[0-9]{1,18}")


def _clip(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def parse_head(head: bytes, max_headers: int = 64) -> Optional[Request]:
    """A request head (up to and including the blank line) -> Request; None when it holds only empty lines
    (which RFC 9112 lets a client send between requests). `HttpError` for anything malformed or refused."""
    lines = head.decode("latin-1").split("\r\n")[:-2]  # (the head ends with CRLF CRLF)
    while lines and lines[0] == "":
        lines.pop(0)
    if not lines:
        return None
    if any("\r" in line or "\n" in line for line in lines):
        raise HttpError(400, "bare CR or LF in the request head: lines end with CRLF")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
        raise HttpError(400, f"malformed request line {_clip(lines[0])}: expected METHOD /path HTTP/1.1")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, f"{version}: HTTP/1.0 and HTTP/1.1 are served")
    if not _TARGET.fullmatch(target):
        raise HttpError(400, f"request target {_clip(target)}: expected a path starting with /")
    if len(lines) - 1 > max_headers:
        raise HttpError(431, f"{len(lines) - 1} header lines: the limit is {max_headers}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HttpError(400, f"malformed header line {_clip(line)}: expected Name: value")
        value = value.strip(" \t")
        if _CTL.search(value):
            raise HttpError(400, f"header {name}: control characters in its value")
        key = name.lower()
        if key in headers:
            if key in ("content-length", "host"):
                raise HttpError(400, f"header {name} given twice")
            headers[key] += ", " + value
        else:
            headers[key] = value
    if version == "HTTP/1.1" and "host" not in headers:
        raise HttpError(400, "HTTP/1.1 request without a Host header")
    te = headers.get("transfer-encoding")
    if te is not None:
        if "chunked" in te.lower():
            raise HttpError(411, "Transfer-Encoding: chunked is not accepted: send the body with a Content-Length")
        raise HttpError(501, f"Transfer-Encoding {_clip(te)} is not supported: send the body with a Content-Length")
    length = headers.get("content-length")
    if length is not None and not _LENGTH.fullmatch(length):
        raise HttpError(400, f"Content-Length {_clip(length)}: expected a non-negative decimal integer")
    expect = headers.get("expect")
    if expect is not None and expect.lower() != "100-continue":
        raise HttpError(417, f"Expect {_clip(expect)}: only 100-continue is understood")
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    path, _, query = target.partition("?")
    return Request(method, path, query, version, headers, None if length is None else int(length),
                   version == "HTTP/1.1" and "close" not in tokens, expect is not None and version == "HTTP/1.1")


class _Upload:
    """A body being received: its declared size, and when it last had `min_rate` bytes more (its checkpoint)."""

    def __init__(self, n: int, now: float) -> None:
        self.n, self.received, self.mark, self.mark_bytes = n, 0, now, 0
        self.task = asyncio.current_task()
        self.reading, self.evicted = True, False

    def progress(self, received: int, now: float, min_rate: int) -> None:
        self.received = received
        if received - self.mark_bytes >= min_rate * _Uploads.STALL:
            self.mark, self.mark_bytes = now, received


class _Uploads:
    """The bodies held at once, by declared length, within `total` bytes (on the event loop). A request that does
    not fit evicts uploads that stalled (less than `min_rate` bytes in the last STALL seconds) to make room, and
    the room they leave is held for it (other waiters, stalled uploads among them, cannot take it first); else it
    waits for room."""

    STALL = 0.5  # seconds without min_rate * STALL bytes: stalled (evicted only when another request needs room)

    def __init__(self, total: int, min_rate: int) -> None:
        self.total, self.min_rate, self.used = total, min_rate, 0
        self.active: set[_Upload] = set()
        self._claims: list[list[_Upload]] = []  # per waiting request: the uploads it evicted
        self._cond = asyncio.Condition()

    def _held(self, claim: list[_Upload]) -> int:
        """Room a waiting request made: the bytes of its evicted uploads already released."""
        return sum(u.n for u in claim if u not in self.active)

    async def admit(self, n: int, timeout: float) -> Optional[_Upload]:
        """Room for a body of n bytes (None: not within `timeout` seconds)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        mine: list[_Upload] = []
        self._claims.append(mine)
        try:
            async with self._cond:
                while True:
                    others = sum(self._held(c) for c in self._claims if c is not mine)
                    if self.used + others + n <= self.total:
                        break
                    leaving = sum(u.n for u in mine if u in self.active)  # evicted by me, not yet released
                    deficit = self.used + others + n - self.total - leaving
                    if deficit > 0:
                        mine += self._evict(deficit, loop.time())
                    left = end - loop.time()
                    if left <= 0:
                        return None
                    try:  # stalls show with time: look again every tenth of a second
                        await asyncio.wait_for(self._cond.wait(), min(left, 0.1))
                    except asyncio.TimeoutError:
                        pass
                self.used += n
                up = _Upload(n, loop.time())
                self.active.add(up)
                return up
        finally:
            self._claims.remove(mine)
            if mine:  # the room held for this request is everyone's again
                async with self._cond:
                    self._cond.notify_all()

    def _evict(self, need: int, now: float) -> list[_Upload]:
        """Evict stalled uploads, the longest stalled first, until `need` bytes are on their way out."""
        stalled = [u for u in self.active if u.reading and not u.evicted and now - u.mark > self.STALL]
        out: list[_Upload] = []
        for u in sorted(stalled, key=lambda u: u.mark):
            if need <= 0:
                break
            u.evicted = True
            need -= u.n
            out.append(u)
            if u.task is not None:
                u.task.cancel()  # it is waiting inside _read_body, which answers 408
        return out

    async def release(self, up: _Upload) -> None:
        async with self._cond:
            self.active.discard(up)
            self.used -= up.n
            self._cond.notify_all()


def _raise_fd_limit(want: int) -> int:
    """Raise the soft limit on open files to `want` where the hard limit allows; -> what it now is."""
    try:
        import resource
    except ImportError:  # not on Windows
        return want
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return want
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        return new
    except (ValueError, OSError):
        return soft


class HttpServer:
    """Serves `route` on host:port under `limits` (listening from construction on: `server_address` is known,
    and a port in use raises OSError here). `serve_forever` runs the event loop in the calling thread until
    `shutdown` (from another thread); `server_close` frees the socket and the workers."""

    def __init__(self, route: Route, host: str = "127.0.0.1", port: int = 8080, limits: Limits = Limits()) -> None:
        spare = 64  # files besides connections: the model, libraries, the listening socket
        fds = _raise_fd_limit(limits.max_connections + spare)
        if fds < limits.max_connections + spare:
            log.warning("serve: at most %d open files: --max-connections lowered from %d to %d", fds,
                        limits.max_connections, max(fds - spare, 16))
            limits = dataclasses.replace(limits, max_connections=max(fds - spare, 16))
        self.route, self.limits = route, limits
        self._sock = socket.create_server((host, port), backlog=min(limits.max_connections, 1024))
        self.server_address: tuple[str, int] = self._sock.getsockname()[:2]
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="serve worker")
        self.connections = 0  # open now (for the tests and /health)
        self._refusing = 0  # connections above the cap being answered 503
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._stopping = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._waiting: dict[asyncio.StreamWriter, float] = {}  # connections waiting for a request head -> since

    # ---- running ----

    def serve_forever(self) -> None:
        try:
            asyncio.run(self._main())
        finally:
            self._done.set()

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread) and wait until it returned."""
        with self._lock:
            self._stopping = True
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._loop is not None:
            self._done.wait()

    def server_close(self) -> None:
        self._sock.close()
        self._pool.shutdown(wait=False)

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: log.debug("serve: %s", one_line(str(ctx.get("message")))))
        self._uploads = _Uploads(self.limits.budget, self.limits.min_rate)
        with self._lock:
            self._loop, self._stop = loop, asyncio.Event()
            if self._stopping:
                return
        server = await asyncio.start_server(self._client, sock=self._sock, limit=self.limits.max_head)
        async with server:
            await self._stop.wait()
            for w in list(self._writers):
                w.transport.abort()

    # ---- one connection ----

    def _evict_idle(self) -> bool:
        """At the cap: close the connection that has waited longest (at least 0.5 s) for a request head, a slowloris
        client or an idle kept-alive one, to make room; False when every connection is inside a request."""
        for writer, since in self._waiting.items():  # in the order they began to wait
            if asyncio.get_running_loop().time() - since < 0.5:
                return False
            del self._waiting[writer]
            writer.transport.abort()  # its coroutine sees the end of the stream and finishes
            return True
        return False

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.limits.max_connections and not self._evict_idle():
            r = error_response(503, f"{self.limits.max_connections} connections are open: try again later", True)
            r.headers.append(("Retry-After", "1"))
            if self._refusing >= 64:  # a flood: close at once (what the client sent may turn the answer into a reset)
                writer.write(self._encode(r))
                writer.close()
                return
            self._refusing += 1
            try:
                await self._refuse(reader, writer, r, min(self.limits.linger, 0.5))
            except (ConnectionError, OSError, asyncio.TimeoutError):
                pass
            finally:
                self._refusing -= 1
                writer.transport.abort()
            return
        self.connections += 1
        self._writers.add(writer)
        try:
            await self._requests(reader, writer)
        except (ConnectionError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled: nothing to say to anyone
        except Exception as e:  # noqa: BLE001 - one line in the log, never a traceback; the server carries on
            log.warning("serve: %s: %s", type(e).__name__, one_line(str(e)))
        finally:
            self.connections -= 1
            self._writers.discard(writer)
            self._waiting.pop(writer, None)
            writer.transport.abort()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lim = self.limits
        served = 0
        while True:
            self._waiting[writer] = asyncio.get_running_loop().time()
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), lim.timeout)
            except asyncio.TimeoutError:
                if served == 0:  # a kept-alive connection that stays idle is closed without a word
                    await self._send(writer, error_response(408, f"no complete request head within {lim.timeout:g} "
                                                                 "s", True))
                return
            except asyncio.LimitOverrunError:
                await self._refuse(reader, writer, error_response(431, f"request head above {lim.max_head} bytes"))
                return
            self._waiting.pop(writer, None)
            try:
                req = parse_head(head, lim.max_headers)
            except HttpError as e:
                await self._refuse(reader, writer, error_response(e.status, str(e)))
                return
            if req is None:
                continue
            n = req.content_length or 0
            try:
                answer = self.route(req)
            except Exception as e:  # noqa: BLE001
                answer = error_response(500, f"{type(e).__name__}: {e}")
            if isinstance(answer, Response):  # answered without the body
                answer.head_only = req.method == "HEAD"
                if n or answer.close or not req.keep_alive:
                    await self._refuse(reader, writer, answer, None if n or answer.status >= 400 else 0)
                    return
                await self._send(writer, answer)
                served += 1
                continue
            if n > lim.max_body:
                await self._refuse(reader, writer, error_response(413, f"request of {n} bytes: the limit is "
                                                                       f"{lim.max_body} bytes"))
                return
            upload = await self._uploads.admit(n, lim.timeout)
            if upload is None:
                await self._refuse(reader, writer, error_response(503, "busy: the bodies of other requests fill "
                                                                       "the memory allowed; try again later"))
                return
            response = None
            try:
                if req.expect_continue:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await self._read_body(reader, upload)
                if body is not None:
                    try:
                        response = await asyncio.get_running_loop().run_in_executor(self._pool, answer, body)
                    except Exception as e:  # noqa: BLE001 - one line to the client, the server keeps serving
                        response = error_response(500, f"{type(e).__name__}: {e}")
                    del body
            finally:
                await self._uploads.release(upload)
            if response is None:
                why = (f"slower than {lim.min_rate // 1024} KiB/s while other requests waited" if upload.evicted
                       else f"not complete within {lim.body_timeout:g} s")
                await self._refuse(reader, writer, error_response(408, f"body of {n} bytes {why}"))
                return
            response.close = response.close or not req.keep_alive
            await self._send(writer, response)
            if response.close:
                return
            served += 1

    async def _read_body(self, reader: asyncio.StreamReader, up: _Upload) -> Optional[bytearray]:
        """The up.n bytes of a body, growing as they arrive; None past body_timeout or when evicted (as stalled);
        IncompleteReadError if the client closes first."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.limits.body_timeout
        body = bytearray()
        try:
            while len(body) < up.n:
                try:
                    chunk = await asyncio.wait_for(reader.read(min(up.n - len(body), 1 << 18)), end - loop.time())
                except asyncio.TimeoutError:
                    return None
                if not chunk:
                    raise asyncio.IncompleteReadError(bytes(body), up.n)
                body += chunk
                up.progress(len(body), loop.time(), self.limits.min_rate)
        except asyncio.CancelledError:
            if up.evicted:
                if hasattr(up.task, "uncancel"):  # Python >= 3.11: the task carries on, not cancelled
                    up.task.uncancel()
                return None
            raise
        finally:
            up.reading = False
        return body

    def _encode(self, r: Response) -> bytes:
        head = [f"HTTP/1.1 {r.status} {HTTPStatus(r.status).phrase}", "Server: darkcfg",
                "Content-Type: application/json", f"Content-Length: {len(r.body)}",
                f"Connection: {'close' if r.close else 'keep-alive'}"]
        head += [f"{k}: {v}" for k, v in r.headers]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if r.head_only else r.body)

    async def _send(self, writer: asyncio.StreamWriter, r: Response) -> None:
        writer.write(self._encode(r))
        await asyncio.wait_for(writer.drain(), self.limits.send_timeout)

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, r: Response,
                      linger: Optional[float] = None) -> None:
        """Answer and close: what the client sent after the head is never read as a request. Then read and drop
        what it still sends for up to `linger` seconds (None: limits.linger) after the answer (its end marked by
        a FIN), so that a client still writing reads the answer rather than a reset."""
        r.close = True
        await self._send(writer, r)
        linger = self.limits.linger if linger is None else linger
        if linger <= 0:
            return
        if writer.can_write_eof():
            writer.write_eof()
        loop = asyncio.get_running_loop()
        end = loop.time() + linger
        while loop.time() < end:
            try:
                if not await asyncio.wait_for(reader.read(1 << 16), end - loop.time()):
                    return
            except (asyncio.TimeoutError, asyncio.LimitOverrunError):
                return
