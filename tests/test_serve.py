"""`darkcfg serve`: the JSON `detect --json` writes, for raw and multipart uploads, under 8 concurrent clients
(batched); health; and bad requests as one-line 4xx answers."""
from __future__ import annotations

import http.client
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from oracle import IMAGES, REF_IMAGES, REPO, needs_shared

import darkcfg
from darkcfg.cli import main
from darkcfg.infer.detector import Detector
from darkcfg.infer.serve import make_server

CFG, WEIGHTS = REPO / "cfg" / "yolov3-tiny.cfg", REPO / "weights" / "yolov3-tiny.weights"


@pytest.fixture(scope="module")
def server():
    from darkcfg.infer.fast import prepare_for_inference
    from darkcfg.infer.names import default_names
    model = darkcfg.load(CFG, WEIGHTS)
    det = Detector(prepare_for_inference(model), default_names(model), thresh=0.25, batch=8)  # as `darkcfg serve`
    srv = make_server(det, "127.0.0.1", 0, batch=8, batch_wait=0.02, max_bytes=2 * 1024 * 1024)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=60)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def multipart(name, data):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@needs_shared
def test_answers_equal_detect_json_under_eight_concurrent_clients(server, tmp_path):
    paths = [IMAGES / f"{n}.jpg" for n in REF_IMAGES]
    r = CliRunner().invoke(main, ["detect", str(CFG), *map(str, paths), "--nosave", "--json", str(tmp_path / "r.json"),
                                  "-q"])
    assert r.exit_code == 0, r.output
    expected = {e["filename"]: e["objects"] for e in json.loads((tmp_path / "r.json").read_text())}

    def ask(k):
        p = paths[k % len(paths)]
        if k % 2:
            body, headers = multipart(p.name, p.read_bytes())
        else:
            body, headers = p.read_bytes(), {"Content-Type": "image/jpeg"}
        status, entry = request(server, "POST", "/detect", body, headers)
        return p, status, entry

    server.batcher.batches.clear()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(24)))
    for p, status, entry in answers:
        assert status == 200
        assert len(entry) == 1 and entry[0]["frame_id"] == 1
        assert entry[0]["objects"] == expected[str(p)]
        assert entry[0]["filename"] in (p.name, "image")
    assert max(server.batcher.batches) > 1  # concurrent requests shared forwards


def test_health_and_parameters(server):
    status, info = request(server, "GET", "/health")
    assert status == 200 and info["status"] == "ok" and info["classes"] == 80
    data = (REPO / "darkcfg" / "assets" / "grace_hopper.jpg").read_bytes()
    status, low = request(server, "POST", "/detect?thresh=0.05&ext=1", data)
    status2, high = request(server, "POST", "/detect?thresh=0.5", data)
    assert status == status2 == 200
    assert len(low[0]["objects"]) > len(high[0]["objects"]) >= 1
    assert all(o["confidence"] > 0.5 for o in high[0]["objects"])
    a = low[0]["objects"][0]["absolute_coordinates"]
    assert set(a) == {"left_x", "top_y", "width", "height"} and a["width"] > 0


@pytest.mark.parametrize("path,body,headers,status,needle", [
    ("/detect", b"\x00garbage bytes", {}, 400, "not an image OpenCV can decode (14 bytes)"),
    ("/detect?thresh=abc", b"x", {}, 400, "thresh='abc': expected a number"),
    ("/detect?nms=7", b"x", {}, 400, "nms=7.000000: expected a value in [0, 1]"),
    ("/nothing", b"x", {}, 404, "/nothing: no such endpoint"),
    ("/detect", b"x" * (3 * 1024 * 1024), {}, 413, "request of 3145728 bytes: the limit is 2097152 bytes"),
])
def test_bad_requests_get_a_one_line_4xx(server, path, body, headers, status, needle):
    got, answer = request(server, "POST", path, body, headers)
    assert got == status and needle in answer["error"] and "\n" not in answer["error"]


def test_get_on_detect_and_missing_length(server):
    assert request(server, "GET", "/detect")[0] == 405
    c = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    c.putrequest("POST", "/detect")
    c.endheaders()
    r = c.getresponse()
    assert r.status == 411 and "Content-Length is required" in json.loads(r.read())["error"]
    c.close()
