"""Every shared cfg OpenCV DNN can import: random weights, reduced input, every exposed layer within 1e-3."""
import pytest
from oracle import CFG_DIR, compare_with_opencv, needs_shared, shared_cfgs

# OpenCV 4.x has no [reorg3d]; that cfg is checked layer by layer in test_layers.py instead
NOT_IN_OPENCV = {"yolov4-sam-mish-csp-reorg-bfm"}


@needs_shared
@pytest.mark.parametrize("name", [n for n in shared_cfgs() if n not in NOT_IN_OPENCV])
def test_every_layer_matches_opencv(name):
    worst, compared, where = compare_with_opencv(CFG_DIR / f"{name}.cfg", size=128)
    assert compared > 10
    assert worst <= 1e-3, f"{name}: layer {where} differs by {worst:.2e} (max |diff| / max |ref|)"
