"""Every shared cfg builds with the reference's layer count, layer types, output shapes and BFLOPs.

The expected values are parsed from ../shared/reference/layers/<cfg>.txt, the table the C reference
printed while building each cfg at its own size.
"""
import re
import warnings

import pytest
from oracle import CFG_DIR, REF, needs_shared, shared_cfgs

from darkcfg.model.network import Darknet

# our layer types -> the word the reference prints
PRINTED = {"conv": "conv", "max": "max", "avg": "avg", "route": "route", "shortcut": "Shortcut", "yolo": "yolo",
           "upsample": "upsample", "sam": "scale", "scale_channels": "scale", "dropout": "dropout",
           "softmax": "softmax", "region": "detection", "reorg": "reorg", "reorg_old": "reorg_old"}


def parse_reference_table(text):
    """{index: (type word, (w, h, c) or None, bflops or None)} and the total BFLOPS."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(\d+) (\w+)", line)
        if not m:
            continue
        idx, word = int(m.group(1)), m.group(2)
        shape = None
        s = re.search(r"(?:->|outputs:)\s+(\d+) x\s*(\d+) x\s*(\d+)", line)
        if s:
            shape = tuple(int(v) for v in s.groups())
        elif word == "avg":
            shape = (1, 1, int(line.split("->")[1]))
        bf = re.search(r"([\d.]+) BF", line)
        rows[idx] = (word, shape, float(bf.group(1)) if bf else None)
    total = float(re.search(r"Total BFLOPS\s+([\d.]+)", text).group(1))
    return rows, total


@needs_shared
@pytest.mark.parametrize("name", shared_cfgs())
def test_builds_like_the_reference(name):
    rows, total = parse_reference_table((REF / "layers" / f"{name}.txt").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Darknet.from_file(CFG_DIR / f"{name}.cfg")
    assert len(model.layers) == len(rows) == max(rows) + 1
    for i, layer in enumerate(model.layers):
        word, shape, bf = rows[i]
        assert PRINTED[layer.ltype] == word, f"layer {i}: {layer.ltype} vs reference {word}"
        o = layer.out_shape
        if shape is not None:
            assert (o.w, o.h, o.c) == shape, f"layer {i} [{word}]: {(o.w, o.h, o.c)} vs reference {shape}"
        if bf is not None:
            assert f"{layer.bflops:5.3f}".strip() == f"{bf:5.3f}".strip(), f"layer {i} BFLOPs"
    assert f"{model.bflops:.3f}" == f"{total:.3f}"


@needs_shared
def test_layer_table_prints_like_the_reference():
    """Conv, maxpool, upsample and shortcut rows print exactly as the reference prints them."""
    for name in ("yolov3-tiny", "yolov4-csp"):
        ref_lines = (REF / "layers" / f"{name}.txt").read_text().splitlines()
        model = Darknet.from_file(CFG_DIR / f"{name}.cfg")
        mine = model.layer_table().splitlines()
        ref_rows = {int(m.group(1)): line.rstrip() for line in ref_lines
                    if (m := re.match(r"^\s*(\d+) (conv|max|upsample|Shortcut)", line))}
        for i, line in ref_rows.items():
            assert mine[i + 1].rstrip() == line, f"{name} layer {i}"
        assert mine[-1].strip() == next(t for t in ref_lines if t.startswith("Total BFLOPS")).strip()


@needs_shared
@pytest.mark.parametrize("name,size,strides", [("yolov4-tiny", (320, 192), (32, 16)),
                                               ("yolov4-p5", (256, 384), (8, 16, 32))])
def test_input_size_override(name, size, strides):
    model = Darknet.from_file(CFG_DIR / f"{name}.cfg", size=size)
    w, h = size
    heads = [model.layers[i].out_shape for i in model.output_layers]
    assert [(s.w, s.h) for s in heads] == [(w // k, h // k) for k in strides]
    assert "width=416" in model.cfg_text or "width=896" in model.cfg_text  # the cfg text is unchanged
