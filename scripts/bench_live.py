"""Latency of live detection and throughput of `darkcfg serve` (a benchmark, not a test).

    python scripts/bench_live.py [--cfg cfg/yolov3-tiny.cfg] [--fps 30] [--seconds 20] [--threads N]

1. Live: a local MJPEG stream (darkcfg's own MJPEG port, fed with the shipped photo, shifted each frame, at
   --fps) read as `darkcfg detect URL --json-port P` reads it (the newest frame; the fast path), with a client
   on the JSON port. Latency = the time a frame's JSON arrives at the client minus the time the reader got that
   frame (one process, one clock): median and p95, and the frames detected per second. Also with --no-drop,
   where frames queue when the detector is slower than the stream.
2. Serve: `make_server` (what `darkcfg serve` runs) on a free port; 1 and 8 concurrent clients, each POSTing the
   photo in a loop over a keep-alive connection for --seconds / 2: requests/s and median latency.
The machine and library versions are printed first.
"""
from __future__ import annotations

import argparse
import http.client
import json
import platform
import re
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import darkcfg  # noqa: E402
from darkcfg.infer.detector import Detector  # noqa: E402
from darkcfg.infer.fast import prepare_for_inference  # noqa: E402
from darkcfg.infer.names import default_names  # noqa: E402
from darkcfg.infer.ports import MjpegPort  # noqa: E402
from darkcfg.infer.run import LiveOutputs, run_detection  # noqa: E402
from darkcfg.infer.serve import make_server  # noqa: E402
from darkcfg.infer.sources import LiveOptions  # noqa: E402

PHOTO = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}; {threads} threads; torch {torch.__version__}, OpenCV {cv2.__version__}, "
            f"Python {platform.python_version()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def feed(port: MjpegPort, fps: float, stop: threading.Event) -> None:
    img = cv2.resize(cv2.imread(str(PHOTO)), (640, 480))
    jpegs = [cv2.imencode(".jpg", np.roll(img, 8 * k, axis=1))[1].tobytes() for k in range(30)]
    k, t = 0, time.perf_counter()
    while not stop.is_set():
        if port.viewers:
            port.publish(jpegs[k % len(jpegs)])
            k += 1
        t += 1 / fps
        time.sleep(max(0.0, t - time.perf_counter()))


def json_client(port: int, received: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            break
        except OSError:
            time.sleep(0.02)
    else:
        return
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    s.settimeout(1)
    buf = ""
    while not stop.is_set():
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        now = time.perf_counter()
        buf += chunk.decode()
        for m in re.finditer(r'"frame_id":(\d+)', buf):
            received.setdefault(int(m.group(1)), now)
        buf = buf[-200:]
    s.close()


def live(det: Detector, fps: float, seconds: float, keep_all: bool) -> tuple[list[float], float]:
    src = MjpegPort(0)
    stop = threading.Event()
    threading.Thread(target=feed, args=(src, fps, stop), daemon=True).start()
    jport = free_port()
    arrival: dict[int, float] = {}
    received: dict[int, float] = {}
    client = threading.Thread(target=json_client, args=(jport, received, stop), daemon=True)
    client.start()
    time.sleep(0.3)

    def on_json(frame, frame_id: int, text: str) -> None:  # noqa: ANN001
        arrival[frame_id] = frame.arrival

    # a live run ends when its stream does: stop the source after `seconds`
    timer = threading.Timer(seconds, lambda: (stop.set(), src.close()))
    t0 = time.perf_counter()
    timer.start()
    done = run_detection(det, [f"http://127.0.0.1:{src.port}/"], None, quiet=True, progress=False,
                         live=LiveOptions(keep_all, 0, None),
                         outputs_live=LiveOutputs(json_port=jport, on_json=on_json))
    took = time.perf_counter() - t0
    timer.cancel()
    stop.set()
    client.join(timeout=2)
    lat = [(received[k] - arrival[k]) * 1000 for k in arrival if k in received and arrival[k] is not None]
    return lat, done.done / took


def serve_bench(det: Detector, seconds: float, clients: int) -> tuple[float, float]:
    srv = make_server(det, "127.0.0.1", 0, batch=8, batch_wait=0.005)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    data = PHOTO.read_bytes()
    lat: list[float] = []
    counts = [0] * clients
    end = time.perf_counter() + seconds

    def client(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=60)
        while time.perf_counter() < end:
            t = time.perf_counter()
            c.request("POST", "/detect", body=data, headers={"Content-Type": "image/jpeg"})
            r = c.getresponse()
            json.loads(r.read())
            assert r.status == 200
            lat.append((time.perf_counter() - t) * 1000)
            counts[k] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    srv.shutdown()
    srv.server_close()
    return sum(counts) / took, statistics.median(lat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default=str(REPO / "cfg" / "yolov3-tiny.cfg"))
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    print(machine(a.threads), flush=True)
    model = darkcfg.load(a.cfg, str(REPO / "weights" / (Path(a.cfg).stem + ".weights")))
    det = Detector(prepare_for_inference(model), default_names(model), 0.25, 0.45, None, 1)
    size = f"{model.net.width}x{model.net.height}"
    for keep_all in (False, True):
        lat, rate = live(det, a.fps, a.seconds, keep_all)
        mode = "--no-drop" if keep_all else "newest frame (default)"
        print(f"live {Path(a.cfg).stem} {size}, stream at {a.fps:g} fps, {mode}: {len(lat)} frames, "
              f"{rate:.1f} frames/s detected, latency median {statistics.median(lat):.0f} ms, "
              f"p95 {np.percentile(lat, 95):.0f} ms", flush=True)
    det8 = Detector(det.model, det.names, 0.25, 0.45, None, 8)
    for clients in (1, 8):
        rps, med = serve_bench(det8, a.seconds / 2, clients)
        print(f"serve {Path(a.cfg).stem} {size}, {clients} client(s): {rps:.1f} requests/s, median latency "
              f"{med:.0f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
