"""The optional OpenVINO runtime (`--runtime openvino`): the heads equal the plain network's within the fast path's
tolerance, `detect` and `map` print what the torch runtime prints, the converted model is cached per model, and
what it cannot run is refused in one line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from oracle import REPO, SHARED, map_set, needs_shared

import darkcfg
from darkcfg.cli import main
from darkcfg.errors import DarkcfgError

openvino = pytest.importorskip("openvino")

from darkcfg.infer.detector import detect  # noqa: E402
from darkcfg.infer.openvino import OpenVinoModel, compile_cpu  # noqa: E402
from darkcfg.infer.openvino.int8 import head_convolutions  # noqa: E402

CFG, WEIGHTS = REPO / "cfg" / "yolov3-tiny.cfg", REPO / "weights" / "yolov3-tiny.weights"
SAMPLE = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DARKCFG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_heads_equal_the_plain_network_and_the_model_is_cached(cache):
    model = darkcfg.load(CFG, WEIGHTS, size=320)
    x = torch.rand(3, 3, 320, 320)
    with torch.no_grad():
        ref = model(x)
    first = OpenVinoModel(model)
    again = OpenVinoModel(model)
    assert not first.cached and again.cached and len(list((cache / "openvino").iterdir())) == 2  # IR + blobs
    for m in (first, again):
        out = m(x)  # batch 3: the converted graph has a dynamic batch
        for o, r in zip(out, ref):
            assert o.shape == r.shape
            assert float((o - r).abs().max() / r.abs().max()) < 1e-4
    other = darkcfg.load(CFG, WEIGHTS, size=256)
    assert not OpenVinoModel(other).cached  # another input size is another model


def test_detect_prints_what_the_torch_runtime_prints(tmp_path):
    args = ["detect", str(CFG), str(SAMPLE), "--nosave", "--ext-output", "--thresh", "0.1"]
    plain = CliRunner().invoke(main, args)
    ov = CliRunner().invoke(main, args + ["--runtime", "openvino"])
    assert plain.exit_code == ov.exit_code == 0, ov.output
    strip = [ln for ln in plain.stdout.splitlines() if "Predicted in" not in ln]
    assert strip == [ln for ln in ov.stdout.splitlines() if "Predicted in" not in ln] and len(strip) > 2


@needs_shared
def test_map_with_openvino_prints_the_same_numbers(tmp_path):
    data = map_set(tmp_path)
    weights = SHARED / "darknet" / "weights" / "yolov3-tiny.weights"
    cfg = SHARED / "darknet" / "cfg" / "yolov3-tiny.cfg"
    plain = CliRunner().invoke(main, ["map", str(data), str(cfg), str(weights)])
    ov = CliRunner().invoke(main, ["map", str(data), str(cfg), str(weights), "--runtime", "openvino"])
    assert plain.exit_code == ov.exit_code == 0, ov.output
    pick = [ln for ln in plain.stdout.splitlines() if ln.startswith(("class_id", " mean average precision"))]
    assert pick and all(ln in ov.stdout for ln in pick)


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _same_objects(fp32, other) -> float:
    """The accuracy rule for reduced precision: the same classes, each fp32 box matched by one of its class
    with IoU >= .9. Returns the worst of those IoUs."""
    assert sorted(d.class_id for d in fp32) == sorted(d.class_id for d in other)
    worst = 1.0
    for d in fp32:
        iou = max(_iou(d.box, e.box) for e in other if e.class_id == d.class_id)
        assert iou >= 0.9
        worst = min(worst, iou)
    return worst


def test_bf16_finds_the_same_objects_in_the_sample_photo():
    model = darkcfg.load(CFG, WEIGHTS)
    _same_objects(model.detect(str(SAMPLE), thresh=0.2),
                  detect(OpenVinoModel(model, "bf16"), str(SAMPLE), thresh=0.2))


@needs_shared
@pytest.mark.parametrize("precision", ["bf16", "default", "int8"])
def test_reduced_precision_finds_the_same_objects_in_the_shared_images(precision):
    """The shipped yolov3-tiny on the six shared images (thresh .25), int8 calibrated on them: as many objects per
    image as fp32 and the worst IoU >= .9 (measured .9874 for bf16 and default, .9550 for int8); int8 leaves the
    heads' convolutions unquantized (no FakeQuantize on their input, float weights), as `quantize` says."""
    from oracle import IMAGES, REF_IMAGES
    model = darkcfg.load(CFG, WEIGHTS)
    paths = [str(IMAGES / f"{n}.jpg") for n in REF_IMAGES]
    fp32 = model.detect(paths)
    runtime = OpenVinoModel(model, precision, calibration=paths)
    low = detect(runtime, paths)
    assert [len(a) for a in fp32] == [len(b) for b in low] and sum(map(len, fp32)) > 10
    worst = min(_same_objects(a, b) for a, b in zip(fp32, low))
    print(f"{precision}: worst IoU {worst:.4f}")
    assert worst >= 0.9
    if precision == "int8":
        heads = head_convolutions(OpenVinoModel._read(runtime._ir))
        assert len(heads) == 4  # yolov3-tiny's two heads, each split by fuse_heads into logistic and linear parts
        assert not [c.get_friendly_name() for c in heads if _quantized(c)]
        assert any(_quantized(op) for op in OpenVinoModel._read(runtime._ir).get_ops()
                   if op.get_type_name() == "Convolution")  # the rest is quantized: the check can see it


def _quantized(conv) -> bool:
    """Whether an IR convolution runs quantized: a FakeQuantize on the way to its input from the convolutions
    before it (NNCF puts an input's quantizer after the activation, or before a pooling or a concatenation), or
    quantized weights (a FakeQuantize, or int8 constants converted and scaled, as NNCF stores them)."""
    todo, seen = [(conv.input_value(0).get_node(), False), (conv.input_value(1).get_node(), True)], set()
    while todo:
        node, weights = todo.pop()
        kind, name = node.get_type_name(), node.get_friendly_name()
        if name in seen or kind in ("Convolution", "Parameter"):  # the convolution computing the input: the end
            continue
        seen.add(name)
        if kind == "FakeQuantize" or (weights and kind == "Constant" and node.get_output_element_type(0).is_integral()):
            return True
        todo += [(node.input_value(i).get_node(), weights) for i in range(node.get_input_size())]
    return False


@needs_shared
def test_int8_is_cached_per_calibration_set_and_map_calibrates_on_its_data(tmp_path, cache):
    from oracle import IMAGES, REF_IMAGES
    model = darkcfg.load(CFG, WEIGHTS, size=224)
    paths = [str(IMAGES / f"{n}.jpg") for n in REF_IMAGES]
    first = OpenVinoModel(model, "int8", calibration=paths)
    assert not first.cached and OpenVinoModel(model, "int8", calibration=paths).cached
    assert not OpenVinoModel(model, "int8", calibration=paths[:3]).cached  # another set: another model
    data = map_set(tmp_path)
    r = CliRunner().invoke(main, ["map", str(data), str(CFG), str(WEIGHTS), "--runtime", "openvino",
                                  "--precision", "int8"])
    assert r.exit_code == 0, r.output
    assert " mean average precision (mAP@0.50)" in r.stdout


def _conv(filters: int, size: int, activation: str, bn: bool = False) -> str:
    """A [convolutional] section: with bn, stride 2 and batch-norm; else stride 1, no padding."""
    more = "stride=2\npad=1\nbatch_normalize=1\n" if bn else ""
    return f"[convolutional]\n{more}filters={filters}\nsize={size}\nactivation={activation}\n"


YOLO3 = "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=1\nnum=3\n"
# heads of every fused kind (logistic + scale_x_y, new_coords, Gaussian) and one whose conv another layer reads
HEADS_CFG = ("[net]\nwidth=32\nheight=32\nchannels=3\n" + _conv(8, 3, "leaky", bn=True)
             + _conv(18, 1, "linear") + YOLO3 + "scale_x_y=1.05\n[route]\nlayers=-3\n"
             + _conv(18, 1, "logistic") + YOLO3 + "new_coords=1\nscale_x_y=2.0\n[route]\nlayers=-6\n"
             + _conv(22, 1, "linear") + "[Gaussian_yolo]\nmask=0,1\nanchors=10,14, 23,27\nclasses=2\nnum=2\n"
             + "[route]\nlayers=-9\n" + _conv(18, 1, "linear") + YOLO3 + "[route]\nlayers=-2\n")


def test_fused_heads_equal_the_heads():
    """The graph OpenVINO gets: each [yolo] / [Gaussian_yolo] and its [convolutional] as one layer of per-channel
    operations (logistic entries split from the rest, scale_x_y, new_coords), equal to the plain network; a
    convolution whose output another layer reads (the last head's) stays as it is."""
    from darkcfg.infer.fast import InferenceModel
    from darkcfg.infer.openvino import fuse_heads

    torch.manual_seed(0)
    model = darkcfg.Darknet(HEADS_CFG, "heads.cfg").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        graph = InferenceModel(model, channels_last=False).darknet.eval()  # batch-norm folded, as converted
        folded = graph(x)
        assert fuse_heads(graph) == 3
        got = graph(x)
    assert len(got) == len(ref) == 4
    for o, f in zip(got, folded):
        assert o.shape == f.shape and float((o - f).abs().max() / f.abs().max()) < 1e-6
    ov = OpenVinoModel(model)(x)
    for o, r in zip(ov, ref):
        assert float((o - r).abs().max() / r.abs().max()) < 1e-4


GROUPS_CFG = ("[net]\nwidth=32\nheight=32\nchannels=3\n" + _conv(16, 3, "leaky", bn=True)
              + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n" + _conv(8, 1, "leaky") + "[route]\nlayers=-1,-3\n"
              + _conv(18, 1, "linear") + YOLO3)


def _random_net(cfg: str, size: int) -> tuple[darkcfg.Darknet, torch.Tensor, torch.Tensor]:
    """A network of `cfg` text with seeded random weights, an input (1, 3, size, size) and its first head's output."""
    torch.manual_seed(0)
    model = darkcfg.Darknet(cfg, "test.cfg").eval()
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        return model, x, model(x)[0]


def test_new_weights_with_the_same_cfg_and_size_miss_the_cache():
    """The cache key covers every weight: a changed convolution weight, then a changed batch-norm statistic (a
    buffer, not a parameter), each converts anew, and what runs is the network as it is now."""
    model, x, _ = _random_net(GROUPS_CFG, 32)
    assert not OpenVinoModel(model).cached and OpenVinoModel(model).cached
    with torch.no_grad():
        model.layers[2].conv.weight.mul_(-1.5)
        first = OpenVinoModel(model)
        model.layers[0].bn.running_mean.add_(0.25)
        second = OpenVinoModel(model)
        ref = model(x)[0]
    assert not first.cached and not second.cached
    got = second(x)[0]
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-4


def _ir_ops(m: OpenVinoModel) -> list[str]:
    """The operation types of the IR the runtime `m` compiled."""
    return [op.get_type_name() for op in OpenVinoModel._read(m._ir).get_ops()]


def test_route_groups_are_slices_except_in_graphs_to_quantize():
    """A [route] group reaches OpenVINO as a slice (its Split kernel took ~10 % of yolov4-tiny in fp32), and as one
    piece of a split in graphs NNCF quantizes (a slice got a quantizer of its own there); both equal the plain
    network within their precision's tolerance."""
    model, x, ref = _random_net(GROUPS_CFG, 32)
    fp32, int8 = OpenVinoModel(model), OpenVinoModel(model, "int8", calibration=[str(SAMPLE)] * 2)
    splits = [sum(t in ("Split", "VariadicSplit") for t in _ir_ops(m)) for m in (fp32, int8)]
    assert splits == [0, 1]
    for m, tolerance in ((fp32, 1e-4), (int8, 0.1)):
        got = m(x)[0]
        assert float((got - ref).abs().max() / ref.abs().max()) < tolerance


MISH_CFG = ("[net]\nwidth=64\nheight=64\nchannels=3\n" + _conv(16, 3, "mish", bn=True) + _conv(32, 3, "mish", bn=True)
            + _conv(18, 1, "linear") + YOLO3)


def _convolutions_with_mish(m) -> int:
    """The compiled convolutions that took a Mish into their own kernel (OpenVINO's run-time graph)."""
    info = [op.get_rt_info() for op in m.compiled.get_runtime_model().get_ops()]
    return sum(i["layerType"].astype(str) == "Convolution" and "mish" in i["originalLayersNames"].astype(str).lower()
               for i in info)


def test_int8_keeps_mish_fused_and_writes_it_out_where_openvino_refuses(monkeypatch, recwarn, tmp_path):
    """int8 keeps the quantized model as it is (each Mish fused into its quantized convolution); where OpenVINO
    refuses that (openvinotoolkit/openvino#20716, simulated here), quantize warns and writes Mish out, and that is
    the model cached and compiled. Both give fp32's heads within int8's error."""
    import darkcfg.infer.openvino.int8 as ovq

    model, x, ref = _random_net(MISH_CFG, 64)

    def has_mish(m) -> bool:
        return "Mish" in _ir_ops(m)

    fused = OpenVinoModel(model, "int8", calibration=[str(SAMPLE)] * 2)
    assert has_mish(fused) and not [w for w in recwarn if "Mish" in str(w.message)]
    assert _convolutions_with_mish(fused) == 2
    real = ovq.compile_cpu

    def refusing(m, config=None):
        if not isinstance(m, Path) and any(op.get_type_name() == "Mish" for op in m.get_ops()):
            raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117: could not append an elementwise "
                               "post-op")
        return real(m, config)

    monkeypatch.setattr(ovq, "compile_cpu", refusing)
    with pytest.warns(UserWarning, match="Mish is written out"):
        out = OpenVinoModel(model, "int8", calibration=[str(SAMPLE)] * 2, cache=tmp_path / "refused")
    assert not has_mish(out) and _convolutions_with_mish(out) == 0
    assert len(out(torch.cat([x, x]))[0]) == 2  # the batch compile takes the written-out form too
    for m in (fused, out):
        got = m(x)[0]
        assert float((got - ref).abs().max() / ref.abs().max()) < 0.1


def test_mish_written_out_equals_mish():
    """The form int8 models compile with (decompose_mish) against torch's mish, overflow included."""
    from darkcfg.infer.openvino import decompose_mish

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.mish(x)

    x = torch.cat([torch.linspace(-30, 30, 2001), torch.tensor([-1e4, -100.0, 88.0, 89.0, 100.0, 1e4])])
    ov_model = openvino.convert_model(M(), example_input=x)
    assert any(op.get_type_name() == "Mish" for op in ov_model.get_ops())
    ov_model = decompose_mish(ov_model)
    assert not any(op.get_type_name() == "Mish" for op in ov_model.get_ops())
    got = compile_cpu(ov_model, {"INFERENCE_PRECISION_HINT": "f32"})(x.numpy())[0]
    assert torch.allclose(torch.from_numpy(got), torch.nn.functional.mish(x), rtol=1e-5, atol=1e-6)


def test_export_openvino_runs_outside_darkcfg(tmp_path):
    model = darkcfg.load(CFG, WEIGHTS, size=160)
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        ref = model(x)
    r = CliRunner().invoke(main, ["export", str(CFG), str(WEIGHTS), "--format", "openvino", "--size", "160",
                                  "--dynamic-batch", "-o", str(tmp_path / "y.xml")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "y.bin").is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    compiled = compile_cpu(tmp_path / "y.xml", {"INFERENCE_PRECISION_HINT": "f32"})
    assert compiled.inputs[0].get_any_name() == "images"
    outs = compiled(x.numpy())
    for k, want in enumerate(ref):
        got = torch.from_numpy(outs[compiled.output(f"head{k}")])
        assert float((got - want).abs().max() / want.abs().max()) < 1e-4
    (tmp_path / "imgs").mkdir()
    for n in ("a", "b"):
        (tmp_path / "imgs" / f"{n}.jpg").write_bytes(SAMPLE.read_bytes())
    r = CliRunner().invoke(main, ["export", str(CFG), str(WEIGHTS), "--format", "openvino", "--size", "160",
                                  "-o", str(tmp_path / "q.xml"), "--calibration", str(tmp_path / "imgs")])
    assert r.exit_code == 0 and "int8" in r.output, r.output
    q = openvino.Core().read_model(str(tmp_path / "q.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in q.get_ops())
    assert compile_cpu(q)(x[:1].numpy())[0].shape == ref[0][:1].shape


SIGNAL_STACK_SCRIPT = """
import ctypes, faulthandler, gc, signal, subprocess, sys
import numpy as np, openvino.opset13 as ops, openvino as ov
from darkcfg.infer.openvino.core import compile_cpu, _StackT

faulthandler.enable()  # as pytest does: Python's handlers then run on its signal stack
signal.signal(signal.SIGCHLD, lambda *a: None)  # as torch's DataLoader does
p = ops.parameter([1, 3, 8, 8], np.float32)
a = compile_cpu(ov.Model([ops.relu(p)], [p]))
b = compile_cpu(ov.Model([ops.relu(p)], [p]))
del a; gc.collect()
del b; gc.collect()  # freed out of order
ss = _StackT()
ctypes.CDLL(None).sigaltstack(None, ctypes.byref(ss))
spans = [[int(v, 16) for v in line.split()[0].split("-")] for line in open("/proc/self/maps")]
assert any(lo <= ss.ss_sp < hi for lo, hi in spans), "the signal stack is unmapped"
subprocess.run([sys.executable, "-c", "pass"], check=True)  # its SIGCHLD is handled on that stack
print("alive")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack, /proc")
def test_freed_runtimes_leave_a_live_signal_stack():
    """OpenVINO's CPU plugin swaps the thread's signal stack; freed out of order, it left the thread on unmapped
    memory and the next SIGCHLD killed the process (SIGSEGV in the training tests run after these)."""
    out = subprocess.run([sys.executable, "-c", SIGNAL_STACK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "alive" in out.stdout, (out.returncode, out.stderr[-2000:])


def test_what_it_cannot_run_is_one_line():
    text = (REPO / "tests" / "test_recurrent.py").read_text().split('TRACK_CFG = """', 1)[1].split('"""', 1)[0]
    with pytest.raises(DarkcfgError, match=r"layer 1 \[crnn\] carries state .*use the torch runtime"):
        OpenVinoModel(darkcfg.Darknet(text, "track.cfg"))
    with pytest.raises(DarkcfgError, match="precision 'int4'"):
        OpenVinoModel(darkcfg.load(CFG, WEIGHTS, size=64), "int4")
    r = CliRunner().invoke(main, ["detect", str(CFG), str(SAMPLE), "--runtime", "openvino", "--device", "cuda"])
    assert r.exit_code == 2 and "runs on the CPU" in r.output
    with pytest.raises(DarkcfgError, match="precision int8 needs calibration images"):
        OpenVinoModel(darkcfg.load(CFG, WEIGHTS, size=64), "int8")
    r = CliRunner().invoke(main, ["detect", str(CFG), str(SAMPLE), "--precision", "int8", "--calibration", str(SAMPLE)])
    assert r.exit_code == 2 and "add --runtime openvino" in r.output
    r = CliRunner().invoke(main, ["detect", str(CFG), str(SAMPLE), "--precision", "int8", "--runtime", "openvino"])
    assert r.exit_code == 2 and "needs --calibration" in r.output
    r = CliRunner().invoke(main, ["export", str(CFG), "--calibration", str(SAMPLE)])
    assert r.exit_code == 2 and "add --format openvino" in r.output
    r = CliRunner().invoke(main, ["export", str(CFG), "--format", "openvino", "--with-nms", "-o", "x.xml"])
    assert r.exit_code == 1 and "--with-nms is not exported to OpenVINO" in r.output
