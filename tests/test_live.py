"""Live sources and Darknet's ports, with no camera: the tests serve generated frames as an MJPEG stream
(tests/streams.py) and read `--json-port` / `--mjpeg-port` like a program and a browser would."""
from __future__ import annotations

import json
import logging
import re
import socket
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from oracle import REPO, chromium, render_page
from streams import FrameServer, frames, free_port, mjpeg_parts, read_json_port

import darkcfg
from darkcfg.cli import main
from darkcfg.infer.detector import Detector
from darkcfg.infer.ports import JsonPort, MjpegPort
from darkcfg.infer.run import DetectionRun, LiveOutputs, _Live, run_detection
from darkcfg.infer.sources import LiveOptions

CFG, WEIGHTS = REPO / "cfg" / "yolov3-tiny.cfg", REPO / "weights" / "yolov3-tiny.weights"


@pytest.fixture(scope="module")
def detector():
    return Detector(darkcfg.load(CFG, WEIGHTS, size=320), thresh=0.25)


def _run(detector, url, live, ports, out=None, json_path=None):
    return run_detection(detector, [url], out, json_path=json_path, quiet=True, progress=False, live=live,
                         outputs_live=ports)


def test_json_port_sends_what_detect_on_the_same_frames_finds(detector, tmp_path):
    """Six distinct frames through an HTTP MJPEG stream (--no-drop) and the same JPEGs as an .mjpeg file (the
    same decoder): the JSON objects from the port equal detect's -out entries, without the file name, as the
    reference's -json_port sends them."""
    jpegs = frames(6)
    srv = FrameServer(jpegs, fps=10).start()
    srv.go.clear()  # no frame before the JSON client is there
    port, out, stop = free_port(), [], threading.Event()
    reader = threading.Thread(target=read_json_port, args=(port, stop, out, 60.0, srv.go))
    reader.start()
    try:
        run = _run(detector, srv.url, LiveOptions(keep_all=True, retries=0, max_frames=6), LiveOutputs(json_port=port))
    finally:
        stop.set()
        reader.join()
        srv.stop()
    assert run.done == 6 and run.failed == 0
    header, objects = dict(out)["header"], dict(out)["objects"]
    assert header.startswith("HTTP/1.0 200 OK") and "Content-Type: application/json" in header
    (tmp_path / "same.mjpeg").write_bytes(b"".join(jpegs))
    run_detection(detector, [str(tmp_path / "same.mjpeg")], None, json_path=tmp_path / "files.json", quiet=True,
                  progress=False)
    files = json.loads((tmp_path / "files.json").read_text())
    assert [o["frame_id"] for o in objects] == [1, 2, 3, 4, 5, 6]
    assert all("filename" not in o for o in objects)
    assert [o["objects"] for o in objects] == [f["objects"] for f in files]
    assert sum(len(o["objects"]) for o in objects) > 0


def test_a_browser_gets_jpeg_parts_and_a_slow_client_skips_frames(detector):
    srv = FrameServer(frames(8), fps=30, loop=True).start()
    port = free_port()
    got: dict = {}

    def watch(name, delay):
        got[name] = mjpeg_parts(port, 5 if not delay else 1000, timeout=4, delay=delay)

    clients = [threading.Thread(target=watch, args=("fast", 0.0)), threading.Thread(target=watch, args=("slow", 0.5))]
    threading.Timer(0.5, lambda: [c.start() for c in clients]).start()
    t0 = time.perf_counter()
    try:
        run = _run(detector, srv.url, LiveOptions(retries=0, max_frames=60), LiveOutputs(mjpeg_port=port,
                                                                                        mjpeg_quality=70))
    finally:
        srv.stop()
    took = time.perf_counter() - t0
    for c in clients:
        c.join()
    header, parts = got["fast"]
    assert "multipart/x-mixed-replace; boundary=mjpegstream" in header
    assert len(parts) == 5
    for p in parts:
        img = cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == (240, 320, 3)
    # the slow reader (4 KiB every 0.5 s) got a few frames; the loop ran at its own speed meanwhile
    assert len(got["slow"][1]) < run.done / 4
    assert run.done == 60 and took < 60 / 30 + 30, took


def test_a_stream_that_stops_and_restarts_is_reconnected(detector):
    srv = FrameServer(frames(10), fps=20, loop=True).start()
    lines: list[str] = []

    def bounce():
        time.sleep(1.0)
        srv.stop()
        time.sleep(1.5)
        srv.start()

    threading.Thread(target=bounce, daemon=True).start()
    import io
    import sys
    err, old = io.StringIO(), sys.stderr
    sys.stderr = err
    try:
        run = _run(detector, srv.url, LiveOptions(retries=6, max_frames=40), None)
    finally:
        sys.stderr = old
        srv.stop()
    lines = [ln for ln in err.getvalue().splitlines() if "reconnecting" in ln]
    assert run.done == 40 and run.failed == 0
    assert lines and all(ln.startswith(f"{srv.url}: stream lost; reconnecting in ") for ln in lines)


def test_bad_live_sources_are_one_line_errors(tmp_path):
    r = CliRunner().invoke(main, ["detect", str(CFG), f"http://127.0.0.1:{free_port()}/nothing", "--nosave",
                                  "--retries", "0"])
    assert r.exit_code == 1 and "cannot open (unreachable or not a stream)" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, ["detect", str(CFG), "7", "--nosave"])
    assert r.exit_code == 1 and "camera 7: cannot open (no such camera, or it is in use)" in r.output


def test_show_without_a_display_is_a_note(detector, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    caplog.set_level(logging.INFO, logger="darkcfg")  # the note is logged (the CLI prints the log on stderr)
    img = tmp_path / "a.jpg"
    img.write_bytes(frames(1)[0])
    run = run_detection(detector, [str(img)], None, quiet=True, progress=False, outputs_live=LiveOutputs(show=True))
    assert run.done == 1
    assert "note: --show: no display here" in caplog.text


def test_model_stream_yields_frames_and_detections():
    model = darkcfg.load(CFG, WEIGHTS, size=320)
    srv = FrameServer(frames(4), fps=10).start()
    try:
        got = list(model.stream(srv.url, keep_all=True, max_frames=4, retries=0))
    finally:
        srv.stop()
    assert [k for k, _, _ in got] == [0, 1, 2, 3]
    assert all(f.shape == (240, 320, 3) for _, f, _ in got)
    assert any(d and d[0].name == "tie" for _, _, d in got)


def test_a_browser_shows_the_annotated_stream(detector, tmp_path):
    """Headless Chromium opens a page embedding the --mjpeg-port stream; its screenshot shows the frame with
    darkcfg's box and label drawn on it."""
    chromium()  # skips here, in the test's own thread, where Chromium cannot be had
    srv = FrameServer(frames(4), fps=15, loop=True).start()
    port = free_port()
    page = tmp_path / "watch.html"
    page.write_text(f"<html><body style='margin:0'><img id=v src='http://127.0.0.1:{port}/' width=320 height=240>"
                    "</body></html>")
    shot = tmp_path / "shot.png"
    done = threading.Event()

    def browse():
        try:
            time.sleep(1.0)
            render_page(page, shot, size=(400, 300))
        finally:
            done.set()

    threading.Thread(target=browse, daemon=True).start()
    try:
        _until(detector, srv.url, port, done)
    finally:
        srv.stop()
    img = cv2.imread(str(shot))
    assert img is not None
    frame = img[:240, :320].astype(int)
    assert frame.std() > 20  # a picture, not a blank page
    # darkcfg draws the tie's box and label bar in the class colour: it must be on the screen
    close = (np.abs(frame - _tie_colour()).sum(axis=2) < 40).sum()
    assert close > 30, "the annotated box is not visible in the browser's screenshot"


def _tie_colour():
    from darkcfg.infer.detections import DetectionArray
    from darkcfg.infer.draw import draw_detections
    blank = np.zeros((100, 100, 3), np.uint8)
    probs = np.zeros((1, 80), np.float32)
    probs[0, 27] = 0.9
    d = DetectionArray(np.array([[0.5, 0.5, 0.5, 0.5]], np.float32), np.array([0.9], np.float32), probs, 100, 100)
    d.names = [str(i) for i in range(80)]
    drawn = draw_detections(blank, d, 0.25)
    colours, counts = np.unique(drawn.reshape(-1, 3), axis=0, return_counts=True)
    colours, counts = colours[1:], counts[1:]  # not the black background
    return colours[np.argmax(counts)].astype(int)


def _until(detector, url, port, done):
    """Detect on the stream, publishing to the MJPEG port, until the browser is done."""
    from darkcfg.infer.sources import expand_sources, iter_frames

    found, _ = expand_sources([url])
    deadline = time.monotonic() + 120
    ports = _Live(LiveOutputs(mjpeg_port=port), detector.thresh)
    try:
        for r in detector.stream(iter_frames(found, LiveOptions(retries=0)), lookahead=0):
            if r.detections is not None:
                ports.publish(r.frame, r.image, r.detections)
            if done.is_set() or time.monotonic() > deadline:
                break
    finally:
        ports.close()


def test_a_live_stream_is_recorded_and_written_to_json(detector, tmp_path):
    srv = FrameServer(frames(5), fps=10).start()
    try:
        run = _run(detector, srv.url, LiveOptions(keep_all=True, retries=0, max_frames=5), None,
                   out=tmp_path / "out", json_path=tmp_path / "live.json")
    finally:
        srv.stop()
    assert run.done == 5
    videos = list((tmp_path / "out").glob("*.mp4"))
    assert len(videos) == 1
    cap = cv2.VideoCapture(str(videos[0]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    entries = json.loads((tmp_path / "live.json").read_text())
    assert [e["filename"] for e in entries] == [srv.url] * 5


@pytest.mark.parametrize("port_type", [JsonPort, MjpegPort])
def test_a_client_that_never_reads_does_not_hold_up_publish(port_type):
    """`publish` is what detection calls per frame. A client connects, sends its request and never reads (4 KiB
    receive buffer): 40 items of 1 MiB, 10 ms apart (far more than the sockets buffer), are each handed over in
    under 50 ms (a send from the publishing thread would wait for the client, up to the 3 s timeout); once the
    client reads, it gets the first item (the sender was at work, then stuck), then the newest, most skipped."""
    port = port_type(0, timeout=3.0, host="127.0.0.1")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        client.connect(("127.0.0.1", port.port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        end = time.monotonic() + 5
        while not port.viewers and time.monotonic() < end:
            time.sleep(0.01)
        assert port.viewers == 1
        took = []
        for k in range(40):
            item = b"<%03d>" % k + b"x" * (1 << 20)
            t0 = time.perf_counter()
            port.publish(item)
            took.append(time.perf_counter() - t0)
            time.sleep(0.01)  # a frame's detection: the sender thread takes the item and sends until it is stuck
        assert max(took) < 0.05, [round(t, 3) for t in took]
        client.settimeout(5)
        data = b""
        while b"<039>" not in data:
            chunk = client.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        got = [int(k) for k in re.findall(rb"<(\d{3})>", data)]
        assert got[0] == 0 and got[-1] == 39 and len(got) < 20 and got == sorted(got), got
    finally:
        client.close()
        port.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.2 is a local address on Linux")
def test_ports_listen_on_the_port_host(monkeypatch):
    """--port-host reaches the ports: bound to 127.0.0.1 they answer there and not on 127.0.0.2 (another address of
    this machine), which the default (0.0.0.0, all interfaces, as the reference's) answers on."""
    seen = {}

    def fake_run(detector, sources, *args, outputs_live=None, **kwargs):
        seen.setdefault("ports", []).append(outputs_live)
        return DetectionRun(done=1, sources=1)

    monkeypatch.setattr("darkcfg.infer.runtime.load_detector", lambda *a, **k: None)
    monkeypatch.setattr("darkcfg.infer.run.run_detection", fake_run)
    for extra in ([], ["--port-host", "127.0.0.1"]):
        r = CliRunner().invoke(main, ["detect", str(CFG), "x.jpg", "--json-port", "1", "--nosave"] + extra)
        assert r.exit_code == 0, r.output
    assert [o.port_host for o in seen["ports"]] == ["0.0.0.0", "127.0.0.1"]

    def answers(host, port):
        try:
            socket.create_connection((host, port), timeout=2).close()
            return True
        except ConnectionRefusedError:
            return False

    live = _Live(LiveOutputs(json_port=free_port(), mjpeg_port=free_port(), port_host="127.0.0.1"), 0.25)
    try:
        for p in (live.json, live.mjpeg):
            assert answers("127.0.0.1", p.port) and not answers("127.0.0.2", p.port)
    finally:
        live.close()
    everywhere = _Live(LiveOutputs(json_port=free_port()), 0.25)
    try:
        assert answers("127.0.0.2", everywhere.json.port) and answers("127.0.0.1", everywhere.json.port)
    finally:
        everywhere.close()
