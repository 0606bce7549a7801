"""`darkcfg download` against a local HTTP server on loopback (this machine has no internet)."""
import http.server
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from oracle import CFG_DIR, SHARED

import darkcfg
from darkcfg.cli import main
from darkcfg.model.download import RELEASES

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "weights" / "yolov3-tiny.weights"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves bytes from `files`; honours `Range: bytes=N-` unless `ranges` is off; can cut off after `limit`."""

    files: dict = {}
    ranges = True
    limit = None
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        data = self.files.get(self.path.lstrip("/"))
        self.seen.append((self.path, self.headers.get("Range")))
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and self.ranges:
            start = int(rng.split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if self.limit is None else body[: self.limit])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files = {"yolov3-tiny.weights": WEIGHTS.read_bytes(), "yolov4-tiny.weights": b"\0" * 1000}
    _Handler.ranges, _Handler.limit, _Handler.seen = True, None, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_download_checks_and_places_the_file(server, tmp_path):
    url, _ = server
    r = run("download", "yolov3-tiny", "-d", tmp_path, "--mirror", url)
    assert r.exit_code == 0, r.output
    out = tmp_path / "yolov3-tiny.weights"
    assert out.read_bytes() == WEIGHTS.read_bytes() and not list(tmp_path.glob("*.part"))
    assert "35,434,956 bytes, checked" in r.stdout
    assert "35.4/35.4 MB" in r.stderr  # the progress bar's last line


def test_resume_from_a_partial_file(server, tmp_path):
    url, handler = server
    (tmp_path / "yolov3-tiny.weights.part").write_bytes(WEIGHTS.read_bytes()[:10_000_000])
    r = run("download", "yolov3-tiny", "-d", tmp_path, "--mirror", url)
    assert r.exit_code == 0, r.output
    assert handler.seen == [("/yolov3-tiny.weights", "bytes=10000000-")]
    assert (tmp_path / "yolov3-tiny.weights").read_bytes() == WEIGHTS.read_bytes()


def test_server_without_ranges_restarts(server, tmp_path):
    url, handler = server
    handler.ranges = False
    (tmp_path / "yolov3-tiny.weights.part").write_bytes(b"garbage" * 1000)
    r = run("download", "yolov3-tiny", "-d", tmp_path, "--mirror", url)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "yolov3-tiny.weights").read_bytes() == WEIGHTS.read_bytes()


def test_broken_off_download_resumes_on_the_next_run(server, tmp_path):
    url, handler = server
    handler.limit = 5_000_000
    r = run("download", "yolov3-tiny", "-d", tmp_path, "--mirror", url)
    assert r.exit_code == 1 and "broke off" in r.output and "Traceback" not in r.output
    assert (tmp_path / "yolov3-tiny.weights.part").stat().st_size == 5_000_000
    handler.limit = None
    assert run("download", "yolov3-tiny", "-d", tmp_path, "--mirror", url).exit_code == 0
    assert (tmp_path / "yolov3-tiny.weights").read_bytes() == WEIGHTS.read_bytes()


def test_wrong_content_is_rejected(server, tmp_path):
    url, handler = server
    handler.files["yolov3-tiny.weights"] = bytes(WEIGHTS.stat().st_size)  # right size, wrong bytes
    r = run("download", "yolov3-tiny", "yolov4-tiny", "-d", tmp_path, "--mirror", url)
    assert r.exit_code == 1 and "SHA-256" in r.output
    assert not (tmp_path / "yolov3-tiny.weights").exists() and not list(tmp_path.glob("*.part"))
    r = run("download", "yolov4-tiny", "-d", tmp_path, "--mirror", url)
    assert r.exit_code == 1 and "1,000 bytes, expected 24,251,276" in r.output


def test_offline_is_one_line(tmp_path):
    r = run("download", "yolov4-tiny", "-d", tmp_path, "--mirror", "http://127.0.0.1:9")
    assert r.exit_code == 1 and "cannot download yolov4-tiny.weights" in r.output and "no network?" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = run("download", "yolov9-huge", "-d", tmp_path)
    assert r.exit_code == 1 and "unknown weights" in r.output


def test_float_counts_are_the_cfgs():
    """The sizes download checks against come from the networks, not from memory."""
    checked = 0
    for key, rel in RELEASES.items():
        for cfg in (REPO / "cfg" / f"{rel.cfg}.cfg", CFG_DIR / f"{rel.cfg}.cfg"):
            if cfg.is_file():
                model = darkcfg.load(cfg)
                layers = model.layers if rel.upto is None else model.layers[: rel.upto]
                assert sum(b.tensor.numel() for m in layers for b in m.darknet_blobs()) == rel.floats, key
                checked += 1
                break
    in_repo = sum((REPO / "cfg" / f"{rel.cfg}.cfg").is_file() for rel in RELEASES.values())
    assert checked == (len(RELEASES) if SHARED.is_dir() else in_repo)
