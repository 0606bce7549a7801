"""`darknet detector test` output of the C reference, box for box (../shared/reference/detect).

Two checks per reference run:
- with the pixels the reference itself read (stb_image's JPEG decode), the printed lines are identical
  and the `-out` JSON matches to 1e-5 (measured: coordinates 1e-6, confidences 3e-6);
- `darkcfg detect` as shipped decodes JPEG with OpenCV (libjpeg-turbo), whose pixels differ from
  stb_image's by up to 3 levels; its output has the same lines in the same order with percentages and
  pixel boxes within 1 (the decoder difference, measured: at most 1), and the JSON the same objects in
  the same order with coordinates within 3e-3 (measured 1.2e-3) and confidences within 1.5e-2 (measured
  1.1e-2).
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from oracle import IMAGES, REF, REF_IMAGES, SHARED, needs_shared, stb_decode

import darkcfg
from darkcfg.cli import main
from darkcfg.data.images import bgr_to_image
from darkcfg.data.names import read_names
from darkcfg.infer.detector import Detector
from darkcfg.infer.outputs import JsonWriter
from darkcfg.infer.printout import text_lines

REPO = Path(__file__).resolve().parent.parent
DET = REF / "detect"
WEIGHTS = SHARED / "darknet" / "weights" / "yolov3-tiny.weights"
# (reference file stem, cfg, thresh)
RUNS = [
    ("yolov3-tiny", REPO / "cfg" / "yolov3-tiny.cfg", 0.25),
    ("yolov3-tiny_thresh0.1", REPO / "cfg" / "yolov3-tiny.cfg", 0.1),
    ("yolov3-tiny_greedynms", DET / "cfg" / "yolov3-tiny_greedynms.cfg", 0.1),
    ("yolov3-tiny_diounms", DET / "cfg" / "yolov3-tiny_diounms.cfg", 0.1),
    ("yolov3-tiny_letterbox_diounms", DET / "cfg" / "yolov3-tiny_letterbox_diounms.cfg", 0.1),
]
LINE = re.compile(r"^(.+): (\d+)%(?:\t\(left_x: +(-?\d+) +top_y: +(-?\d+) +width: +(-?\d+) +height: +(-?\d+)\))?$")


def _reference(stem):
    text = (DET / f"{stem}.txt").read_text().splitlines()
    return text, json.loads((DET / f"{stem}.json").read_text())


def _compare_json(mine, ref, coord_tol, conf_tol):
    assert [e["filename"] for e in mine] == [e["filename"] for e in ref]
    assert [e["frame_id"] for e in mine] == [e["frame_id"] for e in ref]
    worst = [0.0, 0.0]
    for a, b in zip(mine, ref):
        assert [(o["class_id"], o["name"]) for o in a["objects"]] == [(o["class_id"], o["name"]) for o in b["objects"]]
        for oa, ob in zip(a["objects"], b["objects"]):
            ra, rb = oa["relative_coordinates"], ob["relative_coordinates"]
            worst[0] = max(worst[0], *(abs(ra[k] - rb[k]) for k in rb))
            worst[1] = max(worst[1], abs(oa["confidence"] - ob["confidence"]))
    assert worst[0] <= coord_tol and worst[1] <= conf_tol, worst


@needs_shared
@pytest.mark.parametrize("stem,cfg,thresh", RUNS, ids=[r[0] for r in RUNS])
def test_reference_output_exactly_with_the_reference_decoder(stem, cfg, thresh, tmp_path):
    model = darkcfg.load(cfg, WEIGHTS)
    det = Detector(model, read_names(SHARED / "darknet" / "coco.names", 80), thresh=thresh)
    lines = []
    with JsonWriter(tmp_path / "out.json") as jw:
        for name in REF_IMAGES:
            rgb = stb_decode(IMAGES / f"{name}.jpg")
            dets = det.detect_arrays([bgr_to_image(rgb[:, :, ::-1])])[0]
            lines.append(f"data/{name}.jpg: Predicted in (time) milli-seconds.")
            lines += text_lines(dets, thresh, ext_output=True)
            jw.add(dets, f"data/{name}.jpg")
    ref_text, ref_json = _reference(stem)
    assert lines == ref_text
    mine = json.loads((tmp_path / "out.json").read_text())
    _compare_json(mine, ref_json, 1e-5, 1e-5)
    # the file itself is laid out as the reference writes it
    first = (tmp_path / "out.json").read_text().splitlines()[:5]
    assert first == (DET / f"{stem}.json").read_text().splitlines()[:5]


@needs_shared
@pytest.mark.parametrize("stem,cfg,thresh", RUNS, ids=[r[0] for r in RUNS])
def test_cli_matches_reference(stem, cfg, thresh, tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(IMAGES)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / f"{cfg.stem}.weights").symlink_to(WEIGHTS)  # the default weights/<cfg>.weights
    monkeypatch.chdir(tmp_path)
    args = ["detect", str(cfg), *[f"data/{n}.jpg" for n in REF_IMAGES], "--thresh", str(thresh), "--ext-output",
            "--json", "out.json", "--nosave", "--batch", "3"]
    _check_cli(args, stem, "out.json")


@needs_shared
def test_darknet_spellings_print_what_the_reference_prints(tmp_path, monkeypatch):
    """`detect CFG WEIGHTS IMAGES -thresh .1 -ext_output -dont_show -out r.json`, as `detector test` is
    called: the weights positional, the reference's single-dash flags."""
    (tmp_path / "data").symlink_to(IMAGES)
    monkeypatch.chdir(tmp_path)
    args = ["detect", str(REPO / "cfg" / "yolov3-tiny.cfg"), str(WEIGHTS), *[f"data/{n}.jpg" for n in REF_IMAGES],
            "-thresh", "0.1", "-ext_output", "-dont_show", "-out", "r.json"]
    _check_cli(args, "yolov3-tiny_thresh0.1", "r.json")
    assert not Path("ut").exists()  # `-out` was never read as `-o ut`


def _check_cli(args, stem, json_file):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    ref_text, ref_json = _reference(stem)
    mine = [re.sub(r"Predicted in [\d.]+ milli", "Predicted in (time) milli", s) for s in res.stdout.splitlines()]
    assert len(mine) == len(ref_text)
    for a, b in zip(mine, ref_text):
        if b.endswith("milli-seconds."):
            assert a == b
            continue
        ma, mb = LINE.match(a), LINE.match(b)
        assert ma and mb and ma.group(1) == mb.group(1), (a, b)
        nums = np.array([int(v) for v in ma.groups()[1:]]) - np.array([int(v) for v in mb.groups()[1:]])
        assert np.abs(nums).max() <= 1, (a, b)  # JPEG decoder difference, see the module docstring
    _compare_json(json.loads(Path(json_file).read_text()), ref_json, 3e-3, 1.5e-2)
