"""`darknet detector map` of the C reference (../shared/reference/map), number for number.

The reference read the JPEGs with stb_image; with those pixels (see oracle.stb_decode) every printed line
from `detections_count` on is identical for -points 0, 11 and 101. `darkcfg map` as shipped (OpenCV's
decoder) is checked too: it finds one more detection at thresh .005 (153 vs 152) and an average IoU
0.01 % lower; every AP, TP/FP and the mAP line are the same.
"""
import pytest
from click.testing import CliRunner
from oracle import REF, REF_IMAGES, SHARED, map_set, needs_shared, stb_decode

import darkcfg
from darkcfg.cli import main
from darkcfg.data.names import read_names
from darkcfg.eval.printout import map_lines
from darkcfg.eval.runner import compute_map

WEIGHTS = SHARED / "darknet" / "weights" / "yolov3-tiny.weights"
CFG = SHARED / "darknet" / "cfg" / "yolov3-tiny.cfg"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    d = tmp_path_factory.mktemp("map")
    map_set(d)  # only tests marked needs_shared use this fixture
    return d


def _reference(points):
    return (REF / "map" / f"yolov3-tiny_points{points}.txt").read_text().splitlines()


@needs_shared
@pytest.mark.parametrize("points", [0, 11, 101])
def test_map_equals_reference_with_its_decoder(valid, points):
    model = darkcfg.load(CFG, WEIGHTS)
    names = read_names(SHARED / "darknet" / "coco.names", 80)
    paths = [str(valid / f"{n}.jpg") for n in REF_IMAGES]
    res = compute_map(model, paths, names, points=points, loader=lambda p: stb_decode(p)[:, :, ::-1].copy(),
                      progress=False)
    lines = map_lines(res, names)
    lines[0] = lines[0].lstrip()  # the stored printout starts at "detections_count"
    assert lines == _reference(points)


@needs_shared
def test_map_cli(valid):
    r = CliRunner().invoke(main, ["map", str(valid / "coco.data"), str(CFG), str(WEIGHTS), "--batch", "2"])
    assert r.exit_code == 0, r.output
    mine, ref = r.stdout.splitlines(), _reference(0)
    assert mine[0].lstrip().startswith("detections_count = 153, unique_truth_count = 28")  # ref: 152 (decoder)
    same = [k for k, line in enumerate(ref) if line.startswith(("class_id", " for conf_thresh = 0.25, precision",
                                                                 " IoU", " mean"))]
    assert len(same) == 83  # 80 classes, precision line, IoU line, mAP line
    for k in same:
        assert ref[k] in mine, ref[k]
    assert " for conf_thresh = 0.25, TP = 12, FP = 9, FN = 16, average IoU = 41.83 % " in mine  # ref: 41.84
