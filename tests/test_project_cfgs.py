"""darkcfg's own cfg/yolov2-tiny.cfg and cfg/yolov4-{tiny,csp,p5}.cfg (written by scripts/write_cfgs.py, not
copied) build the same networks as the reference cfgs: layer types, shapes, sources, options, tensor layout,
so official weights load."""
import dataclasses
import subprocess
import sys
import warnings

import pytest
import torch
from oracle import CFG_DIR, REPO, needs_shared, randomize

from darkcfg import load_weights, save_weights
from darkcfg.model.network import Darknet

NAMES = ["yolov2-tiny", "yolov4-tiny", "yolov4-csp", "yolov4-p5"]
LAYER_ATTRS = ("ltype", "out_shape", "in_shape", "sources", "activation", "filters", "size", "stride", "groups",
               "dilation", "padding", "batch_normalize", "group_id", "params", "weights_type")


def build(path, size=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unused options in our own cfgs
        return Darknet.from_file(path, size=size)


def test_generator_output_is_what_is_committed(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "write_cfgs.py"), str(tmp_path)], check=True,
                   capture_output=True)
    for name in NAMES:
        assert (tmp_path / f"{name}.cfg").read_text() == (REPO / "cfg" / f"{name}.cfg").read_text()


@needs_shared
@pytest.mark.parametrize("name", NAMES)
def test_same_network_as_the_reference_cfg(name, tmp_path):
    ours, ref = build(REPO / "cfg" / f"{name}.cfg"), build(CFG_DIR / f"{name}.cfg")
    assert (REPO / "cfg" / f"{name}.cfg").read_bytes() != (CFG_DIR / f"{name}.cfg").read_bytes()
    assert dataclasses.asdict(ours.net) == dataclasses.asdict(ref.net)
    assert len(ours.layers) == len(ref.layers)
    for i, (a, b) in enumerate(zip(ours.layers, ref.layers)):
        assert type(a) is type(b), f"layer {i}"
        for attr in LAYER_ATTRS:
            assert getattr(a, attr, None) == getattr(b, attr, None), f"layer {i} [{a.ltype}] {attr}"
        assert [x.tensor.shape for x in a.darknet_blobs()] == [x.tensor.shape for x in b.darknet_blobs()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


@needs_shared
@pytest.mark.parametrize("name", NAMES)
def test_weights_written_for_the_reference_cfg_load_into_ours(name, tmp_path):
    ref = build(CFG_DIR / f"{name}.cfg", size=(128, 128))
    randomize(ref, seed=5)
    save_weights(ref, tmp_path / "w.weights")
    ours = build(REPO / "cfg" / f"{name}.cfg", size=(128, 128))
    assert load_weights(ours, tmp_path / "w.weights").complete
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(ours.eval()(x), ref.eval()(x)):
            assert torch.equal(a, b)
