"""The memory budget (darkcfg.model.budget): a cfg that cannot fit is refused in one line, quickly and before
anything big is allocated, by `darkcfg info`, `darkcfg.load`, `Darknet(...)` and checkpoints; the override lets a
big cfg through; every project and zoo cfg fits the default at its own size; the estimate is the real network's
memory."""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import warnings

import pytest
import torch
from click.testing import CliRunner
from oracle import CFG_DIR, REPO

import darkcfg
from darkcfg.cli import main
from darkcfg.errors import CfgError, CfgWarning, DarkcfgError
from darkcfg.model import budget
from darkcfg.model.checkpoint import FORMAT, load_checkpoint
from darkcfg.model.network import Darknet

CONV = "[convolutional]\nfilters={filters}\nsize=3\npad=1\nactivation=leaky\n"
# the probe's cfg (1.9 KB): 50 convolutions of 4096 filters at 32 x 32, 28.3 GiB (weights 27.8 GiB)
BOMB = "[net]\nwidth=32\nheight=32\nchannels=3\n" + CONV.format(filters=4096) * 50
# 3 convolutions of 1024 filters at 32 x 32: 72.1 MiB of weights + 12.0 MiB of outputs
BIG = "[net]\nwidth=32\nheight=32\nchannels=3\n" + CONV.format(filters=1024) * 3


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(budget.ENV, raising=False)


@pytest.fixture
def bomb(tmp_path):
    path = tmp_path / "bomb.cfg"
    path.write_text(BOMB)
    return path


def _max_rss() -> int:
    """The process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _refused_quickly(fn) -> str:
    """Call `fn`, which must raise a DarkcfgError within 2 s with the peak memory grown by < 1 GiB; its message."""
    peak, start = _max_rss(), time.perf_counter()
    with pytest.raises(DarkcfgError) as err:
        fn()
    assert time.perf_counter() - start < 2.0
    assert _max_rss() - peak < 2**30
    return str(err.value)


def test_info_refuses_the_probe_cfg_in_one_line(bomb):
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["info", str(bomb)])
    assert time.perf_counter() - start < 2.0
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    # where: the file, line and layer at which the running total crosses 16 GiB (at most: 3/4 of a smaller machine)
    assert f"{bomb}:" in line and "[convolutional]" in line and "layer " in line
    assert "over the memory budget of" in line and "28.3 GiB in all" in line and "DARKCFG_MAX_MEMORY=32G" in line


def test_the_crossing_layer_totals_and_budget_are_named(bomb, monkeypatch):
    monkeypatch.setenv(budget.ENV, "16G")
    msg = _refused_quickly(lambda: Darknet.from_file(bomb))
    # layers 0..27: 27 convolutions of 4096 x 4096 x 3 x 3 floats, one of 3 input channels, their batch-norm-less
    # biases, and 28 outputs of 4096 x 32 x 32 floats: 16.2 GiB, the first total over 16 GiB
    assert msg.startswith(f"{bomb}:145: layer 28 [convolutional]: the network needs 16.2 GiB up to this layer "
                          "(weights 15.8 GiB + layer outputs 464.0 MiB for one 32x32x3 input) and 28.3 GiB in all, "
                          "over the memory budget of 16.0 GiB (DARKCFG_MAX_MEMORY=16G)"), msg
    assert "\n" not in msg


def test_every_loader_refuses_it_without_allocating(bomb, tmp_path):
    """darkcfg.load, Darknet(...), and a checkpoint (1 KB, whose cfg text is the probe's) are refused alike."""
    assert isinstance(_refused_quickly(lambda: darkcfg.load(bomb)), str)
    assert "bomb.cfg:" in _refused_quickly(lambda: Darknet(BOMB, "bomb.cfg"))
    ckpt = tmp_path / "bomb.pt"
    torch.save({"format": FORMAT, "cfg_text": BOMB, "cfg_file": "bomb.cfg", "size": (32, 32), "header": {},
                "upto": None, "state_dict": {}}, ckpt)
    assert f"{ckpt}:cfg:" in _refused_quickly(lambda: darkcfg.load(ckpt))
    assert "memory budget" in _refused_quickly(lambda: load_checkpoint(ckpt))


def test_the_override_lets_a_big_cfg_through(tmp_path, monkeypatch):
    path = tmp_path / "big.cfg"
    path.write_text(BIG)
    monkeypatch.setenv(budget.ENV, "64M")
    with pytest.raises(CfgError, match=r"big.cfg:15: layer 2 \[convolutional\]: the network needs 84.1 MiB up to this "
                                       r"layer .* over the memory budget of 64.0 MiB \(DARKCFG_MAX_MEMORY=64M\); to "
                                       r"allow it, set DARKCFG_MAX_MEMORY=1G"):
        darkcfg.load(path)
    model = darkcfg.load(path, max_memory="128M")  # the argument beats the variable
    assert model.memory_budget.limit == 128 * 2**20 and len(model.layers) == 3
    assert len(Darknet(BIG, max_memory="off").layers) == 3
    assert len(Darknet(BIG, max_memory=100 * 2**20).layers) == 3
    monkeypatch.setenv(budget.ENV, "0.5g")
    assert len(darkcfg.load(path).layers) == 3


def test_a_bad_override_is_one_line(monkeypatch, tmp_path):
    path = tmp_path / "big.cfg"
    path.write_text(BIG)
    monkeypatch.setenv(budget.ENV, "lots")
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: DARKCFG_MAX_MEMORY='lots': expected a size such as 16G, 512M or 1.5T (powers of 1024), a number of "
        "bytes, or 'off'"]
    with pytest.raises(DarkcfgError, match="max_memory='-1': expected a size"):
        Darknet(BIG, max_memory=-1)


@pytest.mark.parametrize("text, expected", [("32G", 32 * 2**30), ("512M", 512 * 2**20), ("1.5T", 3 * 2**39),
                                            ("16GiB", 16 * 2**30), ("16gb", 16 * 2**30), ("100", 100),
                                            ("64 k", 64 * 1024), ("off", None), ("0", None), ("unlimited", None)])
def test_sizes(text, expected):
    assert budget.parse_size(text) == expected


def test_the_default_is_three_quarters_of_the_machine_at_most_16_gib(monkeypatch):
    for mem, limit in ((4 * 2**30, 3 * 2**30), (64 * 2**30, 16 * 2**30), (None, 16 * 2**30)):
        monkeypatch.setattr(budget, "machine_memory", lambda mem=mem: mem)
        assert budget.default_budget().limit == limit
    monkeypatch.undo()
    mem = budget.machine_memory()
    assert mem is not None and budget.resolve().limit == min(16 * 2**30, int(mem * 0.75))


def _zoo() -> list:
    cfgs = sorted((REPO / "cfg").glob("*.cfg")) + sorted(CFG_DIR.glob("*.cfg"))
    assert len(cfgs) >= 5
    return cfgs


def test_every_project_and_zoo_cfg_fits_the_default_at_its_own_size():
    """Checked on the meta device (no memory, ~1 s for all). The largest, yolov4-p5 at 896 x 896, needs 1.9 GiB:
    under the default on any machine with 4 GB or more (3/4 of it, 3 GiB), so asserted against 3 GiB too."""
    default = budget.default_budget()
    largest = (0, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg in _zoo():
            model = Darknet.from_file(cfg, warn_unused=False, meta=True)
            est = budget.check(model, default)  # raises where it would not fit
            assert est.weights > 0 and est.activations > 0
            largest = max(largest, (est.total, cfg.stem))
    assert largest[0] < 3 * 2**30, largest


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov4-csp"])
def test_the_estimate_is_what_the_built_network_holds(name):
    """Weights: the real network's parameter bytes within 1 % (the rest: batch-norm statistics); activations: the
    bytes of every output `forward_all` returns, at a small size."""
    cfg = REPO / "cfg" / f"{name}.cfg"
    est = budget.estimate(Darknet.from_file(cfg, size=(96, 64), meta=True))
    torch.manual_seed(0)
    model = Darknet.from_file(cfg, size=(96, 64)).eval()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    held = params + sum(b.numel() * b.element_size() for b in model.buffers())
    assert params <= est.weights < 1.01 * params and est.weights == held
    with torch.no_grad():
        outputs = model.forward_all(torch.rand(1, 3, 64, 96))
    assert est.activations == sum(o.numel() * o.element_size() for o in outputs)
    assert est.total == est.weights + est.activations and len(est.layers) == len(model.layers)


# every section type (and alias) darkcfg builds, in four small cfgs
NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"
EVERY_TYPE = [
    NET + "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nantialiasing=1\nactivation=leaky\n"
    "[conv]\nfilters=8\nsize=3\nstride=2\npad=1\nantialiasing=2\nactivation=mish\n[batchnorm]\n[activation]\n"
    "activation=relu\n[lrn]\n[normalization]\n[max]\nsize=2\nstride=1\n[local_avgpool]\nsize=3\nstride=1\n[local_avg]\nsize=2\n"
    "stride=2\n[upsample]\nstride=2\n[reorg]\nstride=2\n[reorg3d]\nstride=2\n[route]\nlayers=-1\n[shortcut]\n"
    "from=-2\n[sam]\nfrom=-3\n[avg]\n[scale_channels]\nfrom=-5\n[empty]\n[silence]\n[implicit]\nfilters=4\n"
    "[local]\nsize=1\nfilters=2\n[crop]\ncrop_height=1\ncrop_width=1\n[dropout]\n[avgpool]\n[softmax]\n[cost]\n",
    NET + "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=10,14,23,27,37,58\n"
    "classes=1\nnum=3\n[route]\nlayers=-2\n[convolutional]\nfilters=20\nsize=1\nactivation=linear\n[Gaussian_yolo]\n"
    "mask=0,1\nanchors=10,14,23,27\nclasses=1\nnum=2\n[route]\nlayers=-4\n[convolutional]\nfilters=12\nsize=1\n"
    "activation=linear\n[region]\nclasses=1\nnum=2\ncoords=4\nanchors=1,1,2,2\n[route]\nlayers=-6\n"
    "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=10,14,23,27,37,58\n"
    "classes=1\nnum=3\nembedding_layer=-2\n[route]\nlayers=-3\n[contrastive]\nclasses=1\nyolo_layer=-2\n",
    NET + "[maxpool]\nsize=4\nstride=4\n[connected]\noutput=16\nactivation=leaky\n[conn]\noutput=8\n[rnn]\nhidden=6\n"
    "output=8\n[lstm]\noutput=8\n[gru]\noutput=8\n[dropout]\n[connected]\noutput=44\n[detection]\nclasses=1\ncoords=4\n"
    "side=2\nnum=2\n[soft]\n",
    NET + "[crnn]\nsize=3\npad=1\noutput=3\nhidden=2\n[conv_lstm]\nsize=3\npad=1\n"
    "output=2\n[history]\nhistory_size=2\n",
]


def test_every_section_type_is_counted_as_built():
    """The meta build holds what the real one does, for every section type: the same bytes of parameters and buffers
    per layer, the same output shapes."""
    from darkcfg.model.layers import section_types
    assert {s.type for t in EVERY_TYPE for s in Darknet(t, meta=True).sections} == set(section_types())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, text in enumerate(EVERY_TYPE):
            meta, real = Darknet(text, f"{i}.cfg", meta=True), Darknet(text, f"{i}.cfg")
            assert all(t.is_meta for t in list(meta.parameters()) + list(meta.buffers()))
            assert budget.estimate(meta) == budget.estimate(real) and meta.shapes == real.shapes


_META_PROBE = """
import json, sys, time, warnings
import torch
from darkcfg.model import budget
from darkcfg.model.network import Darknet
warnings.simplefilter("ignore")
start = time.perf_counter()
texts, files = json.load(sys.stdin), sys.argv[1:]
models = [Darknet(t, "t.cfg", meta=True) for t in texts] + [Darknet.from_file(f, meta=True) for f in files]
fallbacks = [m.cfg_file for m in models for t in list(m.parameters()) + list(m.buffers()) if not t.is_meta]
print(json.dumps({"seconds": time.perf_counter() - start, "fallbacks": fallbacks,
                  "imported": [m for m in ("torch._dynamo", "sympy") if m in sys.modules]}))
"""


def test_the_check_is_cheap_in_a_fresh_process():
    """Building on the meta device takes no tensor arithmetic in any builder (where there is some, torch's Python meta
    kernels import torch._dynamo and sympy at first use: 1-2 s per process), nor a fallback to a real build; all
    project and zoo cfgs and every section type together take ~1 s (bounded loosely: a loaded machine)."""
    files = [str(p) for p in _zoo()]
    out = subprocess.run([sys.executable, "-c", _META_PROBE, *files], input=json.dumps(EVERY_TYPE), text=True,
                         capture_output=True, check=True, cwd=REPO)
    got = json.loads(out.stdout)
    assert got["imported"] == [] and got["fallbacks"] == [] and got["seconds"] < 15.0, got


def test_the_check_changes_neither_the_weights_nor_the_warnings():
    """The meta build before the real one draws no random numbers (a seeded build is the same with and without the
    budget) and its warnings are not given twice."""
    cfg = REPO / "cfg" / "yolov4-tiny.cfg"
    torch.manual_seed(0)
    checked = Darknet.from_file(cfg).state_dict()
    torch.manual_seed(0)
    plain = Darknet.from_file(cfg, max_memory="off").state_dict()
    assert all(torch.equal(checked[k], plain[k]) for k in plain)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Darknet("[net]\nwidth=8\nheight=8\nchannels=3\n" + CONV.format(filters=4).replace("leaky", "swishy"), "w.cfg")
    assert [str(w.message) for w in caught if issubclass(w.category, CfgWarning)] == [
        "w.cfg:9: layer 0 [convolutional]: unknown activation 'swishy', using relu as the reference does"]
