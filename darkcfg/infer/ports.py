"""Darknet's output ports (http_stream.cpp), for `darkcfg detect --json-port N --mjpeg-port M`.

- `JsonPort`: each client gets `HTTP/1.0 200 OK`, headers with `Content-Type: application/json`, then `[\\n`, then
  one JSON object per frame as the reference's send_json writes them (detection_to_json without a file name:
  `frame_id` counted from 1, `objects`), separated by `, \\n`: a JSON array that grows while the stream runs.
- `MjpegPort`: `multipart/x-mixed-replace; boundary=mjpegstream` with one JPEG part per annotated frame
  (`--mjpegstream`, `Content-Type: image/jpeg`, `Content-Length`), what a browser shows as video in an <img>.

Any number of clients at once; each has its own sender thread holding only the newest item, so `publish` (what
detection calls per frame) only hands the item over and returns: a slow client skips to the latest frame and never
slows detection (or the other clients). A client that cannot take an item within `timeout` seconds is dropped.
Ports listen on `host`: by default all interfaces (0.0.0.0), like the reference's (`--port-host` in `detect`).
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Optional

JSON_HEADER = (b"HTTP/1.0 200 OK\r\nServer: darkcfg\r\nConnection: close\r\nMax-Age: 0\r\nExpires: 0\r\n"
               b"Cache-Control: no-cache, private\r\nPragma: no-cache\r\nContent-Type: application/json\r\n\r\n")
MJPEG_HEADER = (b"HTTP/1.0 200 OK\r\nServer: darkcfg\r\nConnection: close\r\nMax-Age: 0\r\nExpires: 0\r\n"
                b"Cache-Control: no-cache, private\r\nPragma: no-cache\r\n"
                b"Content-Type: multipart/x-mixed-replace; boundary=mjpegstream\r\n\r\n")


class _Client:
    """One connection: a sender thread that sends the newest published item (older ones are replaced)."""

    def __init__(self, port: _Port, conn: socket.socket) -> None:
        self.port, self.conn = port, conn
        self._cond = threading.Condition()
        self._item: Optional[bytes] = None
        self._closed = False
        self.sent = 0
        self.requested = False  # it sent an HTTP request (a viewer, not a bare TCP probe)
        self._thread = threading.Thread(target=self._run, name=f"port {port.port} client", daemon=True)
        self._thread.start()

    def offer(self, item: bytes) -> None:
        with self._cond:
            self._item = item
            self._cond.notify()

    def stop(self) -> None:
        """Ask the sender to send what is pending and end (`close` waits for it)."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def close(self, wait: float = 1.0) -> None:
        """Send what is pending, then close (at most `wait` seconds; then the connection is cut)."""
        self.stop()
        self._thread.join(timeout=wait)
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _run(self) -> None:
        try:
            self.conn.settimeout(0.2)
            try:
                self.requested = bool(self.conn.recv(65536))  # the request (the reference ignores it)
            except (socket.timeout, OSError):
                pass
            self.conn.settimeout(self.port.timeout)
            self.conn.sendall(self.port.header)
            while True:
                with self._cond:
                    while self._item is None and not self._closed:
                        self._cond.wait()
                    if self._item is None:  # closed, nothing left to send
                        return
                    item, self._item = self._item, None
                self.conn.sendall(self.port.frame(item, self.sent))
                self.sent += 1
        except OSError:
            pass  # the client went away or stalled past the timeout: drop it
        finally:
            self.port._remove(self)
            try:
                self.conn.close()
            except OSError:
                pass


class _Port:
    header = b""

    def __init__(self, port: int, timeout: float = 5.0, host: str = "0.0.0.0") -> None:
        self.timeout = timeout
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as e:
            self._sock.close()
            raise OSError(f"{host}:{port}: cannot listen ({e.strerror or e})") from None
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._open = True
        threading.Thread(target=self._accept, name=f"port {self.port}", daemon=True).start()

    def frame(self, item: bytes, index: int) -> bytes:
        raise NotImplementedError

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    @property
    def viewers(self) -> int:
        """Clients that sent a request (browsers, players, programs), not bare connection checks."""
        with self._lock:
            return sum(c.requested for c in self._clients)

    def _accept(self) -> None:
        while self._open:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._clients.append(_Client(self, conn))

    def _remove(self, client: _Client) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def publish(self, item: bytes) -> None:
        """Hand an item to every client (each keeps only the newest); never blocks on a client."""
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.offer(item)

    def close(self) -> None:
        self._open = False
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            clients = list(self._clients)
        for c in clients:  # every sender finishes at once: one second in all, however many clients stall
            c.stop()
        end = time.monotonic() + 1.0
        for c in clients:
            c.close(wait=max(0.0, end - time.monotonic()))


class JsonPort(_Port):
    """The reference's -json_port (module docstring)."""

    header = JSON_HEADER + b"[\n"

    def frame(self, item: bytes, index: int) -> bytes:
        return item if index == 0 else b", \n" + item


class MjpegPort(_Port):
    """The reference's -mjpeg_port (module docstring); `quality` is the JPEG quality of the frames."""

    header = MJPEG_HEADER

    def __init__(self, port: int, quality: int = 80, **kwargs: object) -> None:
        super().__init__(port, **kwargs)  # type: ignore[arg-type]
        self.quality = quality

    def frame(self, item: bytes, index: int) -> bytes:
        return (b"--mjpegstream\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(item)) + item + b"\r\n"

    def publish_image(self, bgr) -> None:  # noqa: ANN001 - (H, W, 3) uint8
        """Encode only when someone is watching."""
        if not self.clients:
            return
        import cv2

        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.quality)])
        if ok:
            self.publish(buf.tobytes())
