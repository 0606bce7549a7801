"""Darknet .weights in and out: byte-identical round trips, the reference's file sizes, and clear errors."""
import struct
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from oracle import CFG_DIR, SHARED, needs_shared, randomize, shared_cfgs

from darkcfg import WeightsError, load_weights, save_weights
from darkcfg.cli import main
from darkcfg.model.network import Darknet
from darkcfg.model.weights import WeightsHeader

REAL = SHARED / "darknet" / "weights" / "yolov3-tiny.weights"

# DARKNET_SEMANTICS.md section 2: sizes of complete files written by the C reference
REFERENCE_BYTES = {"yolov4-tiny": 24_251_276, "yolov3-tiny": 35_434_956, "yolov4-csp": 211_944_840,
                   "yolov4-p5": 283_669_892}


def build(name, size=64):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Darknet.from_file(CFG_DIR / f"{name}.cfg", size=(size, size) if size else None)


@needs_shared
@pytest.mark.parametrize("name", shared_cfgs())
def test_round_trip_is_byte_identical(name, tmp_path):
    a = build(name)
    randomize(a, seed=1)
    save_weights(a, tmp_path / "a.weights")
    b = build(name)
    report = load_weights(b, tmp_path / "a.weights")
    assert report.complete
    save_weights(b, tmp_path / "b.weights")
    data = (tmp_path / "a.weights").read_bytes()
    assert data == (tmp_path / "b.weights").read_bytes()
    floats = sum(blob.tensor.numel() for m in a.layers for blob in m.darknet_blobs())
    assert len(data) == 20 + 4 * floats
    if name in REFERENCE_BYTES:
        assert len(data) == REFERENCE_BYTES[name]


@needs_shared
def test_real_weights_round_trip(tmp_path):
    model = build("yolov3-tiny", size=None)
    report = load_weights(model, REAL)
    assert report.complete and report.layers_loaded == 13
    save_weights(model, tmp_path / "out.weights")
    assert (tmp_path / "out.weights").read_bytes() == REAL.read_bytes()
    # header as stored: version 0.2.x with a 64-bit seen
    major, minor, _ = struct.unpack_from("<3i", REAL.read_bytes())
    assert (model.header.major, model.header.minor, model.header.seen_bytes) == (major, minor, 8)


@needs_shared
def test_truncated_file_names_the_layer(tmp_path):
    data = REAL.read_bytes()
    # layer 0 of yolov3-tiny: 16 filters, BN, 3x3x3 -> (16*4 + 432) floats after the 20-byte header
    cut = 20 + 4 * (16 * 4 + 432) + 100  # 100 bytes into layer 2 (layer 1 is a maxpool)
    # layer 2: 32 filters with BN over 16 channels, 3x3: (32*4 + 32*16*9) floats = 18944 bytes
    (tmp_path / "t.weights").write_bytes(data[:cut])
    with pytest.raises(WeightsError, match=r"ends inside layer 2 \[conv\]: it needs 18944 bytes, 100 left"):
        load_weights(build("yolov3-tiny", None), tmp_path / "t.weights")
    report = load_weights(build("yolov3-tiny", None), tmp_path / "t.weights", partial=True)
    assert report.layers_loaded == 1 and report.upto == 1


@needs_shared
def test_too_long_file_and_wrong_cfg(tmp_path):
    (tmp_path / "long.weights").write_bytes(REAL.read_bytes() + b"\0" * 12)
    with pytest.raises(WeightsError, match="12 bytes left over"):
        load_weights(build("yolov3-tiny", None), tmp_path / "long.weights")
    with pytest.raises(WeightsError, match="left over|ends inside layer"):
        load_weights(build("yolov4-tiny", None), REAL)
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_weights(build("yolov3-tiny", None), tmp_path / "missing.weights")
    (tmp_path / "tiny.weights").write_bytes(b"\0" * 7)
    with pytest.raises(WeightsError, match="too short for a .weights header"):
        load_weights(build("yolov3-tiny", None), tmp_path / "tiny.weights")


@needs_shared
def test_prefix_file_loads_the_layers_it_holds(tmp_path):
    full = build("yolov4-tiny")
    randomize(full, seed=3)
    save_weights(full, tmp_path / "conv29.weights", upto=29)
    model = build("yolov4-tiny")
    report = load_weights(model, tmp_path / "conv29.weights")
    with_weights = [i for i, m in enumerate(full.layers) if m.darknet_blobs()]
    # the reference table of yolov4-tiny has 17 conv layers below 29 (yolov4-tiny.conv.29)
    assert report.layers_loaded == len([i for i in with_weights if i < 29]) == 17
    assert not report.complete and report.upto == 29
    for i in range(29):
        for x, y in zip(full.layers[i].darknet_blobs(), model.layers[i].darknet_blobs()):
            assert torch.equal(x.tensor, y.tensor)


@needs_shared
def test_partial_command_matches_the_reference_semantics(tmp_path):
    result = CliRunner().invoke(main, ["partial", str(CFG_DIR / "yolov3-tiny.cfg"), str(REAL),
                                       str(tmp_path / "p.weights"), "15"])
    assert result.exit_code == 0, result.output
    out = (tmp_path / "p.weights").read_bytes()
    src = REAL.read_bytes()
    model = build("yolov3-tiny", None)
    n = sum(b.tensor.numel() for m in list(model.layers)[:15] for b in m.darknet_blobs())
    assert out[:20] == struct.pack("<3iQ", 0, 2, 5, 0)  # fresh header, seen = 0
    assert out[20:] == src[20: 20 + 4 * n]


def test_old_header_has_32_bit_seen_and_round_trips(tmp_path):
    text = "[net]\nwidth=8\nheight=8\nchannels=2\n[convolutional]\nfilters=3\nsize=3\npad=1\nactivation=leaky\n"
    model = Darknet(text)
    body = np.arange(3 + 3 * 2 * 9, dtype="<f4").tobytes()
    (tmp_path / "old.weights").write_bytes(struct.pack("<3iI", 0, 1, 0, 1234) + body)
    load_weights(model, tmp_path / "old.weights")
    assert model.header == WeightsHeader(0, 1, 0, 1234, 4)
    torch.testing.assert_close(model.layers[0].conv.bias, torch.tensor([0.0, 1.0, 2.0]))
    save_weights(model, tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == (tmp_path / "old.weights").read_bytes()


def test_connected_layout_and_transposed_files(tmp_path):
    """connected: biases, weights [out][in], then the BN block; major > 1000 stores weights [in][out]."""
    text = "[net]\nwidth=2\nheight=1\nchannels=2\n[connected]\noutput=3\nbatch_normalize=1\nactivation=linear\n"
    model = Darknet(text)
    biases = np.array([1, 2, 3], "<f4")
    w = np.arange(12, dtype="<f4").reshape(3, 4)
    scales, mean, var = np.full(3, 2, "<f4"), np.full(3, .5, "<f4"), np.full(3, 4, "<f4")
    for major, stored in ((0, w), (1001, w.T)):
        raw = struct.pack("<3iQ", major, 2, 0, 0) + b"".join(
            a.tobytes() for a in (biases, np.ascontiguousarray(stored), scales, mean, var))
        (tmp_path / "c.weights").write_bytes(raw)
        load_weights(model, tmp_path / "c.weights")
        torch.testing.assert_close(model.layers[0].weight, torch.from_numpy(w))
        model.eval()
        x = torch.arange(4.0).view(1, 2, 1, 2)
        expect = (x.view(1, 4) @ torch.from_numpy(w).T - 0.5) / (4 + 1e-5) ** 0.5 * 2 + torch.from_numpy(biases)
        torch.testing.assert_close(model(x)[0].view(1, 3), expect)
        save_weights(model, tmp_path / "c2.weights")
        assert (tmp_path / "c2.weights").read_bytes() == raw


@needs_shared
def test_convert_to_checkpoint_and_back(tmp_path):
    runner = CliRunner()
    pt, back = tmp_path / "m.pt", tmp_path / "back.weights"
    r = runner.invoke(main, ["convert", str(REAL), str(pt), "--cfg", str(CFG_DIR / "yolov3-tiny.cfg")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["convert", str(pt), str(back)])
    assert r.exit_code == 0, r.output
    assert back.read_bytes() == REAL.read_bytes()
    # the checkpoint needs no cfg file: it carries the cfg text
    import darkcfg

    a = darkcfg.load(pt)
    b = darkcfg.load(CFG_DIR / "yolov3-tiny.cfg", REAL)
    x = torch.rand(1, 3, 416, 416)
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(a(x), b(x)))


def test_dontloadscales_and_flipped_layouts(tmp_path):
    """dontloadscales: the BN block is not in the stream; flipped: weights stored [(c/g)*k*k][n]."""
    text = ("[net]\nwidth=4\nheight=4\nchannels=2\n[convolutional]\nfilters=3\nsize=1\nbatch_normalize=1\n"
            "dontloadscales=1\n[convolutional]\nfilters=2\nsize=1\nflipped=1\nactivation=linear\n")
    model = Darknet(text)
    b0, w0 = np.array([1, 2, 3], "<f4"), np.arange(6, dtype="<f4").reshape(3, 2)
    b1, w1 = np.array([7, 8], "<f4"), np.arange(6, dtype="<f4").reshape(2, 3) * 10
    raw = struct.pack("<3iQ", 0, 2, 5, 0) + b"".join(
        a.tobytes() for a in (b0, w0, b1, np.ascontiguousarray(w1.T)))
    (tmp_path / "f.weights").write_bytes(raw)
    assert load_weights(model, tmp_path / "f.weights").complete
    conv0, conv1 = model.layers
    torch.testing.assert_close(conv0.bn.bias, torch.from_numpy(b0))
    torch.testing.assert_close(conv0.conv.weight.view(3, 2), torch.from_numpy(w0))
    assert torch.equal(conv0.bn.weight, torch.ones(3))  # scales not read
    torch.testing.assert_close(conv1.conv.weight.view(2, 3), torch.from_numpy(w1))


@needs_shared
def test_checkpoint_as_weights_for_a_cfg(tmp_path):
    """darkcfg.load(cfg, weights=x.pt) loads the checkpoint's tensors and header into the cfg's network."""
    import darkcfg
    from darkcfg.model.checkpoint import save_checkpoint

    real = darkcfg.load(CFG_DIR / "yolov3-tiny.cfg", REAL)
    save_checkpoint(real, tmp_path / "m.pt")
    model = darkcfg.load(CFG_DIR / "yolov3-tiny.cfg", tmp_path / "m.pt")
    assert model.header == real.header
    save_weights(model, tmp_path / "back.weights", upto=model.loaded_upto)
    assert (tmp_path / "back.weights").read_bytes() == REAL.read_bytes()


def test_convert_never_overwrites_its_source_and_reads_the_content(tmp_path):
    """`convert a.weights a.weights` is refused with the source byte-identical; the direction comes from the
    content: a torch checkpoint named .weights converts to Darknet weights, byte-identical to the original."""
    import hashlib

    src = tmp_path / "a.weights"
    src.write_bytes(REAL.read_bytes())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    r = CliRunner().invoke(main, ["convert", str(src), str(src), "--cfg", str(CFG_DIR / "yolov3-tiny.cfg")])
    assert r.exit_code == 1 and "is the source file" in r.output and "Traceback" not in r.output
    same = tmp_path / "." / "a.weights"
    r = CliRunner().invoke(main, ["convert", str(same), str(src), "--cfg", str(CFG_DIR / "yolov3-tiny.cfg")])
    assert r.exit_code == 1 and hashlib.sha256(src.read_bytes()).hexdigest() == digest
    disguised = tmp_path / "model.weights"  # a .pt under a Darknet name
    r = CliRunner().invoke(main, ["convert", str(src), str(disguised), "--cfg", str(CFG_DIR / "yolov3-tiny.cfg")])
    assert r.exit_code == 0, r.output
    back = tmp_path / "back.bin"
    r = CliRunner().invoke(main, ["convert", str(disguised), str(back)])
    assert r.exit_code == 0, r.output
    assert back.read_bytes() == REAL.read_bytes()


EVIL = """
import pathlib, sys, torch
class Evil:
    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(sys.argv[2]),))
torch.save({"format": "darkcfg-checkpoint-1", "cfg_text": "", "state_dict": Evil()}, sys.argv[1])
"""


def test_a_crafted_checkpoint_is_refused_in_one_line_without_running(tmp_path):
    """A .pt whose unpickling would create a file, given as weights or as the model: one line naming it,
    no torch advice to allow code, and the file never appears. A .pt without its cfg text: one line too."""
    import subprocess
    import sys

    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    subprocess.run([sys.executable, "-c", EVIL, str(evil), str(marker)], check=True)
    for args in (["detect", str(CFG_DIR / "yolov3-tiny.cfg"), "x.jpg", "-w", str(evil)],
                 ["detect", str(evil), "x.jpg"], ["convert", str(evil), str(tmp_path / "o.weights")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, r.output
        assert r.output.startswith(f"Error: {evil}: refused: loading this checkpoint would run code")
        assert len(r.output.strip().splitlines()) == 1 and "weights_only" not in r.output
        assert not marker.exists()
    bare = tmp_path / "bare.pt"
    torch.save({"format": "darkcfg-checkpoint-1", "state_dict": {}}, bare)
    r = CliRunner().invoke(main, ["convert", str(bare), str(tmp_path / "o.weights")])
    assert r.exit_code == 1 and "bare.pt: damaged darkcfg checkpoint: 'cfg_text' is missing" in r.output
