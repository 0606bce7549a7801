"""`darkcfg download NAME`: the official Darknet weights from their published URLs into weights/.

Downloads go to `<file>.part` and resume from there with an HTTP Range request (a server that ignores
Range restarts the file). Reading stops at the larger expected size: a server that announces a longer body
(Content-Length) or sends more than that is refused and the `.part` removed, so an endless or wrong body never
fills the disk. A finished file is checked before it is moved into place: its size must fit the
network (a 16- or 20-byte header plus the float count of the cfg it belongs to; the counts are tested
against the cfgs) and, where the digest is known, its SHA-256. Without network the command fails with
one line that says how to get the file by hand.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from darkcfg.errors import DarkcfgError
from darkcfg.progress import Progress

ALEXEYAB = "https://github.com/AlexeyAB/darknet/releases/download"
PJREDDIE = "https://pjreddie.com/media/files"


@dataclass(frozen=True)
class Release:
    """A published weights file: its URL, the float32 count the cfg needs, and its SHA-256 when known."""

    file: str
    url: str
    floats: int
    cfg: str  # the cfg it belongs to (for a prefix file like .conv.29: the full network's cfg)
    upto: Optional[int] = None  # prefix files hold layers 0..upto-1
    sha256: Optional[str] = None

    def sizes(self) -> tuple[int, int]:
        """The two possible file sizes: 32-bit `seen` (16-byte header) or 64-bit (20 bytes)."""
        return 16 + 4 * self.floats, 20 + 4 * self.floats


RELEASES: dict[str, Release] = {r.file.rsplit(".weights", 1)[0]: r for r in [
    Release("yolov4-tiny.weights", f"{ALEXEYAB}/darknet_yolo_v4_pre/yolov4-tiny.weights", 6062814, "yolov4-tiny"),
    Release("yolov4-csp.weights", f"{ALEXEYAB}/darknet_yolo_v4_pre/yolov4-csp.weights", 52986205, "yolov4-csp"),
    Release("yolov4-p5.weights", f"{ALEXEYAB}/darknet_yolo_v4_pre/yolov4-p5.weights", 70917468, "yolov4-p5"),
    Release("yolov4.weights", f"{ALEXEYAB}/darknet_yolo_v3_optimal/yolov4.weights", 64429405, "yolov4"),
    Release("yolov4x-mish.weights", f"{ALEXEYAB}/darknet_yolo_v4_pre/yolov4x-mish.weights", 99847037,
            "yolov4x-mish"),
    Release("yolov4-csp-swish.weights", f"{ALEXEYAB}/darknet_yolo_v4_pre/yolov4-csp-swish.weights", 52986205,
            "yolov4-csp-swish"),
    Release("yolov4-tiny.conv.29", f"{ALEXEYAB}/darknet_yolo_v4_pre/yolov4-tiny.conv.29", 4947424,
            "yolov4-tiny", upto=29),
    Release("yolov4.conv.137", f"{ALEXEYAB}/darknet_yolo_v3_optimal/yolov4.conv.137", 42509664, "yolov4",
            upto=137),
    Release("yolov3-tiny.weights", f"{PJREDDIE}/yolov3-tiny.weights", 8858734, "yolov3-tiny",
            sha256="dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"),
    Release("yolov3.weights", f"{PJREDDIE}/yolov3.weights", 62001757, "yolov3"),
    Release("yolov3-spp.weights", f"{PJREDDIE}/yolov3-spp.weights", 63052381, "yolov3-spp"),
    Release("yolov2.weights", f"{PJREDDIE}/yolov2.weights", 50983561, "yolov2"),
    Release("yolov2-tiny.weights", f"{PJREDDIE}/yolov2-tiny.weights", 11237145, "yolov2-tiny"),
    Release("darknet53.conv.74", f"{PJREDDIE}/darknet53.conv.74", 40620640, "darknet53", upto=74),
]}


class DownloadError(DarkcfgError):
    """A download that failed or a file that does not check out."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(release: Release, path: Path) -> None:
    """Size (and SHA-256 when known) of a downloaded file; DownloadError naming the file otherwise."""
    size = path.stat().st_size
    if size not in release.sizes():
        a, b = release.sizes()
        raise DownloadError(f"{path}: {size:,} bytes, expected {b:,} (or {a:,}) for {release.cfg}.cfg"
                            + (f" layers 0..{release.upto - 1}" if release.upto else ""))
    if release.sha256 is not None:
        digest = _sha256(path)
        if digest != release.sha256:
            raise DownloadError(f"{path}: SHA-256 {digest[:16]}..., expected {release.sha256[:16]}...")


def _too_long(rel: Release, url: str, part: Path, detail: str) -> None:
    """Refuse a body longer than the file can be: remove the `.part` and raise a one-line DownloadError."""
    try:
        part.unlink()
    except FileNotFoundError:
        pass
    a, b = rel.sizes()
    raise DownloadError(f"{rel.file} from {url}: {detail}, more than the expected {b:,} bytes (or {a:,}) for "
                        f"{rel.cfg}.cfg: refused, nothing kept")


def download(name: str, dest_dir: Path = Path("weights"), mirror: Optional[str] = None,
             timeout: float = 30.0, progress: bool = True) -> Path:
    """Fetch RELEASES[name] into dest_dir, resuming a previous `.part`; returns the final path.

    mirror: a base URL to fetch the same file name from instead of the official URL (also the
    DARKCFG_MIRROR environment variable).
    """
    if name not in RELEASES:
        raise DownloadError(f"'{name}': unknown weights; known: {', '.join(sorted(RELEASES))}")
    rel = RELEASES[name]
    mirror = mirror or os.environ.get("DARKCFG_MIRROR")
    url = f"{mirror.rstrip('/')}/{rel.file}" if mirror else rel.url
    dest = dest_dir / rel.file
    if dest.is_file():
        verify(rel, dest)
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the .part is complete
            resp = None
        else:
            raise DownloadError(f"cannot download {rel.file} from {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot download {rel.file} from {url}: {reason} (no network? copy the file into "
                            f"{dest_dir}/ by hand, or give --mirror URL)") from None
    if resp is not None:
        with resp:
            resumed = have and resp.status == 206
            if not resumed:
                have = 0
            length = resp.headers.get("Content-Length")
            limit = max(rel.sizes())
            try:
                total = have + int(length) if length is not None else limit
            except ValueError:
                length, total = None, limit
            if total > limit:
                _too_long(rel, url, part, f"the server announces a body of {total:,} bytes")
            try:
                with open(part, "ab" if resumed else "wb") as f, \
                        Progress(total, rel.file, unit="MB", scale=1e6, enabled=progress) as bar:
                    bar.update(have)
                    got = have
                    while True:
                        chunk = resp.read(min(1 << 16, limit + 1 - got))  # one byte past the limit tells
                        if not chunk:
                            break
                        f.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                        if got > limit:
                            break
                if got > limit:
                    _too_long(rel, url, part, "the server sent a longer body (reading stopped there)")
                got = part.stat().st_size
                if length is not None and got < total:
                    raise OSError(f"connection closed at {got:,} of {total:,} bytes")
            except (OSError, socket.timeout, http.client.HTTPException) as e:
                raise DownloadError(f"download of {rel.file} from {url} broke off: {e}; run the same command "
                                    f"again to resume from {part.stat().st_size:,} bytes") from None
    try:
        verify(rel, part)
    except DownloadError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest
