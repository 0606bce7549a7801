"""`darkcfg detect` on folders, globs, list files and videos; its outputs; bad input; the Python API.

Uses only what the repository ships (cfg/yolov3-tiny.cfg, its weights, the sample image), so it runs
without ../shared. The reference's own numbers are checked in test_detect_reference.py.
"""
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import darkcfg
from darkcfg.cli import main

REPO = Path(__file__).resolve().parent.parent
CFG = REPO / "cfg" / "yolov3-tiny.cfg"
WEIGHTS = REPO / "weights" / "yolov3-tiny.weights"
SAMPLE = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _strip_time(text):
    return re.sub(r"Predicted in [\d.]+ milli", "Predicted in (time) milli", text)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of three images: the sample, a flipped copy (PNG) and a crop."""
    d = tmp_path_factory.mktemp("imgs")
    im = cv2.imread(str(SAMPLE))
    shutil.copy(SAMPLE, d / "a.jpg")
    cv2.imwrite(str(d / "b.png"), im[:, ::-1])
    cv2.imwrite(str(d / "c.jpg"), im[100:500, 50:450])
    (d / "notes.md").write_text("not an image, ignored in a folder")
    return d


def test_folder_glob_and_list_give_the_same_output(images, tmp_path):
    (tmp_path / "list.txt").write_text("".join(f"{images / n}\r\n" for n in ("a.jpg", "b.png", "c.jpg")))
    outs = []
    for src in (images, images / "*.[jp][pn]g", tmp_path / "list.txt"):
        r = run("detect", CFG, src, "-w", WEIGHTS, "--nosave", "--ext-output")
        assert r.exit_code == 0, r.output
        outs.append(_strip_time(r.stdout))
    assert outs[0] == outs[1] == outs[2]
    assert outs[0].count("Predicted in") == 3
    assert "tie: 86%\t(left_x:  216   top_y:  415   width:   76   height:  124)" in outs[0]


def test_batches_give_the_same_detections_as_single_images(images):
    single = run("detect", CFG, images, "-w", WEIGHTS, "--nosave", "--ext-output")
    batched = run("detect", CFG, images, "-w", WEIGHTS, "--nosave", "--ext-output", "--batch", "3")
    assert single.exit_code == batched.exit_code == 0
    assert _strip_time(single.stdout) == _strip_time(batched.stdout)


def test_outputs_json_labels_and_annotated_images(images, tmp_path):
    out = tmp_path / "pred"
    r = run("detect", CFG, images / "a.jpg", images / "b.png", "-w", WEIGHTS, "--out-dir", out, "--json",
            tmp_path / "r.json", "--save-txt")
    assert r.exit_code == 0, r.output
    entries = json.loads((tmp_path / "r.json").read_text())
    assert [e["frame_id"] for e in entries] == [1, 2]
    assert entries[0]["filename"] == str(images / "a.jpg")
    first = entries[0]["objects"][0]
    assert set(first) == {"class_id", "name", "relative_coordinates", "confidence"}
    assert first["name"] == "tie" and abs(first["confidence"] - 0.86) < 0.01
    # annotated images: same size as the input, boxes drawn
    drawn, orig = cv2.imread(str(out / "a.jpg")), cv2.imread(str(images / "a.jpg"))
    assert drawn.shape == orig.shape and np.abs(drawn.astype(int) - orig).max() > 100
    assert (out / "b.png").is_file()
    # label files: best class and box of each detection, "%d %2.4f %2.4f %2.4f %2.4f"
    lines = (out / "a.txt").read_text().splitlines()
    assert len(lines) == len({json.dumps(o["relative_coordinates"]) for o in entries[0]["objects"]})
    cls, *box = lines[0].split()
    assert int(cls) == 27 and all(re.fullmatch(r"\d\.\d{4}", v) for v in box)
    assert not list(out.glob("*.tmp"))  # atomic writes leave no temporary files


def test_video_in_video_out(tmp_path):
    video = tmp_path / "clip.avi"
    im = cv2.resize(cv2.imread(str(SAMPLE)), (256, 300))
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (256, 300))
    for k in range(4):
        w.write(np.roll(im, 4 * k, axis=1))
    w.release()
    r = run("detect", CFG, video, "-w", WEIGHTS, "--out-dir", tmp_path / "out", "--json", tmp_path / "v.json")
    assert r.exit_code == 0, r.output
    assert [f"{video}#{k}: Predicted" in r.stdout for k in range(4)] == [True] * 4
    entries = json.loads((tmp_path / "v.json").read_text())
    assert [e["frame_id"] for e in entries] == [1, 2, 3, 4] and {e["filename"] for e in entries} == {str(video)}
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert "4/4" in r.stderr  # the progress bar's final line


def test_bad_sources_are_reported_and_the_good_ones_still_run(images, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "empty").mkdir()
    r = run("detect", CFG, tmp_path / "broken.jpg", images / "a.jpg", tmp_path / "empty", tmp_path / "nope.jpg",
            tmp_path / "*.bmp", "-w", WEIGHTS, "--nosave", "--json", tmp_path / "r.json")
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, r.stderr
    assert any("broken.jpg: not an image OpenCV can decode (20 bytes)" in e for e in errors)
    assert any("empty: folder has no image files" in e for e in errors)
    assert any("nope.jpg: no such file or folder" in e for e in errors)
    assert any("*.bmp: no file matches this pattern" in e for e in errors)
    assert "a.jpg: Predicted in" in r.stdout and "Traceback" not in r.output
    assert len(json.loads((tmp_path / "r.json").read_text())) == 1  # the JSON holds what succeeded


def test_bad_model_inputs_are_one_line_errors(tmp_path):
    names = tmp_path / "three.names"
    names.write_text("a\nb\nc\n")
    cfg20 = tmp_path / "voc.cfg"
    cfg20.write_text(CFG.read_text().replace("classes=80", "classes=20").replace("filters=255", "filters=75"))
    cases = [
        (("detect", CFG, SAMPLE, "-w", tmp_path / "missing.weights"), "missing.weights: no such weights file"),
        (("detect", tmp_path / "x.cfg", SAMPLE), "x.cfg"),
        (("detect", CFG, SAMPLE, "-w", WEIGHTS, "-n", names), "three.names: has 3 names, expected 80"),
        (("detect", cfg20, SAMPLE, "-w", WEIGHTS), "classes=20: give the class names with --names"),
        (("detect", CFG, SAMPLE, "-w", SAMPLE), "grace_hopper.jpg"),
    ]
    for args, expect in cases:
        r = run(*args, "--nosave")
        assert r.exit_code != 0, args
        assert expect in r.output and "Traceback" not in r.output, r.output
        assert len([x for x in r.stderr.splitlines() if x.strip()]) <= 2, r.stderr


def test_default_weights_are_looked_up_by_cfg_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "mynet.cfg"
    cfg.write_text(CFG.read_text())
    r = run("detect", cfg, SAMPLE, "--nosave")
    assert r.exit_code == 1 and "weights/mynet.weights: no such weights file" in r.output
    assert "darkcfg download mynet" in r.output
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "mynet.weights").symlink_to(WEIGHTS)
    r = run("detect", cfg, SAMPLE, "--nosave")
    assert r.exit_code == 0 and "tie: 86%" in r.stdout


def test_python_api():
    model = darkcfg.load(CFG, WEIGHTS)
    dets = model.detect(str(SAMPLE))
    assert [d.name for d in dets] == ["tie", "tie", "tie"]
    best = dets[0]
    assert best.class_id == 27 and abs(best.confidence - 0.86) < 0.01
    x1, y1, x2, y2 = best.box  # pixels; the printout's left_x 216 top_y 415 width 76 height 124
    assert (round(x1), round(y1), round(x2 - x1), round(y2 - y1)) == (216, 415, 76, 124)
    bgr = cv2.imread(str(SAMPLE))
    both = model.detect([bgr, bgr[:, :, ::-1].copy()], bgr=True)
    assert [d.name for d in both[0]] == ["tie", "tie", "tie"] and both[0][0].confidence == best.confidence
    rgb_view = model.detect(bgr[:, :, ::-1].copy(), bgr=False)
    assert [d.confidence for d in rgb_view] == [d.confidence for d in dets]
    assert model.detect(str(SAMPLE), thresh=0.5)[0].confidence == best.confidence
    assert len(model.detect(str(SAMPLE), thresh=0.5)) == 1


def test_demo_runs_detection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("demo")
    assert r.exit_code == 0, r.output
    assert "tie: 86%" in r.stdout and (tmp_path / "predictions" / "grace_hopper.jpg").is_file()


def test_stream_reads_ahead_a_bounded_number_of_frames():
    """A folder of any size runs in constant memory: frames are pulled only a few batches ahead."""
    from darkcfg.infer.detector import Detector
    from darkcfg.infer.sources import Frame, Source

    model = darkcfg.load(CFG, size=64)
    det = Detector(model, batch=4)
    small = np.zeros((40, 50, 3), np.uint8)
    pulled = []

    def frames():
        for i in range(100):
            pulled.append(i)
            yield Frame(Source(f"img{i}.jpg"), None, lambda: small)

    stream = det.stream(frames())
    first = [next(stream) for _ in range(4)]
    assert [r.frame.source.path for r in first] == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"]
    assert len(pulled) <= 3 * 4 + 4  # look-ahead + one batch, not all 100
    assert sum(1 for _ in stream) == 96


def test_checkpoint_and_grey_networks(tmp_path):
    pt = tmp_path / "tiny.pt"
    assert run("convert", WEIGHTS, pt, "--cfg", CFG).exit_code == 0
    r = run("detect", pt, SAMPLE, "--nosave")  # the checkpoint carries cfg and weights
    assert r.exit_code == 0 and "tie: 86%" in r.stdout, r.output
    grey = tmp_path / "grey.cfg"
    grey.write_text(CFG.read_text().replace("channels=3", "channels=1"))
    model = darkcfg.load(grey, size=96)
    assert model.detect(str(SAMPLE), thresh=0.0) is not None  # image read as grey, (1, H, W)
    from darkcfg.infer.detector import Detector
    assert Detector(model).to_image(cv2.imread(str(SAMPLE))).shape == (1, 600, 512)


def test_json_escapes_file_and_class_names(tmp_path):
    """A file name with quotes and backslashes (a Windows path in a list file, say) and a class name with a
    quote: the -out file parses and gives them back, no field can be injected."""
    weird = tmp_path / 'we"ird\\ name", "objects": [.jpg'
    shutil.copy(SAMPLE, weird)
    names = tmp_path / "odd.names"
    names.write_text("".join(f'c"{k}\\' + "\n" for k in range(80)))  # c"0\ ... c"79\
    r = run("detect", CFG, weird, "-n", names, "--json", tmp_path / "r.json", "--nosave", "-q")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert [e["filename"] for e in data] == [str(weird)]
    assert data[0]["objects"] and all(o["name"] == f'c"{o["class_id"]}\\' for o in data[0]["objects"])


def test_ctrl_c_on_a_video_keeps_the_frames_written(tmp_path):
    """SIGINT while a video is being annotated: exit status 130, and the mp4 holds the frames done so far."""
    import signal
    import subprocess
    import sys
    import time

    clip = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    im = cv2.resize(cv2.imread(str(SAMPLE)), (320, 240))
    for k in range(400):
        w.write(np.roll(im, k, axis=1))
    w.release()
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "darkcfg", "detect", str(CFG), str(clip), "--out-dir", str(out), "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a background shell's
    # children ignore SIGINT (and Python then installs no KeyboardInterrupt): the default, as from a terminal
    deadline = time.time() + 60
    while time.time() < deadline and not any(f.stat().st_size > 20000 for f in out.glob(".clip.mp4.*")):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert 0 < frames < 400 and not list(out.glob(".clip.mp4.*"))


def test_same_named_inputs_keep_their_own_outputs(tmp_path):
    """a/x.jpg and b/x.jpg: two annotated images and two label files (x, x_2), none overwritten."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(SAMPLE, tmp_path / folder / "x.jpg")
    im = cv2.imread(str(SAMPLE))
    cv2.imwrite(str(tmp_path / "b" / "x.jpg"), im[:, ::-1])  # a different picture under the same name
    out = tmp_path / "out"
    r = run("detect", CFG, tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", "--out-dir", out, "--save-txt", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["x.jpg", "x.txt", "x_2.jpg", "x_2.txt"]
    assert (out / "x.txt").read_text() != (out / "x_2.txt").read_text()


def test_save_txt_beside_images_never_replaces_labels_silently(tmp_path):
    """`--save-txt --nosave` writes labels beside the images (-save_labels): an existing label file (a
    dataset's own) is refused in one line before anything runs, and replaced only with --overwrite."""
    img = tmp_path / "x.jpg"
    shutil.copy(SAMPLE, img)
    (tmp_path / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    r = run("detect", CFG, img, "--save-txt", "--nosave", "-q")
    assert r.exit_code == 1 and "x.txt: label file exists" in r.output and "--overwrite" in r.output
    assert (tmp_path / "x.txt").read_text() == "0 0.5 0.5 0.1 0.1\n"
    r = run("detect", CFG, img, "--save-txt", "--nosave", "-q", "--overwrite")
    assert r.exit_code == 0 and (tmp_path / "x.txt").read_text() != "0 0.5 0.5 0.1 0.1\n"
