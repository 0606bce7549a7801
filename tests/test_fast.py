"""The inference fast path (batch-norm folded, channels-last, optionally torch.compile'd or half precision)
gives the reference's outputs: yolov3-tiny's heads on dog.jpg against reference/forward within the core
tolerance (1e-4 of the largest value), the detections of `darkcfg detect` on the six shared images as the
reference prints them, and the plain path's outputs for every kind of layer the zoo uses."""
from __future__ import annotations

import ctypes
import subprocess
import sys

import numpy as np
import pytest
import torch
from oracle import CFG_DIR, REF, SHARED, needs_shared, randomize, shared_cfgs

import darkcfg
from darkcfg.infer.fast import InferenceModel, fold_batchnorm, prepare_for_inference
from darkcfg.memory import keep_freed_memory


@needs_shared
def test_fast_heads_match_reference_forward() -> None:
    ref = np.load(REF / "forward" / "yolov3-tiny_dog.npz")
    model = darkcfg.load(CFG_DIR / "yolov3-tiny.cfg", SHARED / "darknet" / "weights" / "yolov3-tiny.weights")
    fast = InferenceModel(model)
    assert fast.folded == 11
    heads = fast(torch.from_numpy(ref["input"]))
    for h, key in zip(heads, ("layer_016", "layer_023")):
        r = ref[key]
        assert h.is_contiguous() and h.dtype == torch.float32
        assert np.abs(h[0].numpy() - r).max() / np.abs(r).max() <= 1e-4, key


@needs_shared
@pytest.mark.parametrize("name", [n for n in shared_cfgs() if n not in ("darknet53", "efficientnet_b0")])
def test_fast_equals_plain_on_the_zoo(name: str) -> None:
    """Every detection cfg of ../shared at 128x128 with random weights and batch-norm statistics."""
    model = darkcfg.load(CFG_DIR / f"{name}.cfg", size=128).eval()
    randomize(model, seed=3)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        plain = model(x)
    fast = InferenceModel(model)(x)
    for a, b in zip(fast, plain):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(b.abs().max())), name
    with torch.no_grad():  # the original is untouched (InferenceModel works on a copy)
        assert torch.equal(model(x)[0], plain[0])


def test_fold_batchnorm_in_place_counts_layers(tmp_path) -> None:
    cfg = tmp_path / "c.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\n"
                   "pad=1\nactivation=leaky\n[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
                   "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\npad=1\nactivation=mish\n")
    model = darkcfg.load(str(cfg)).eval()
    randomize(model, seed=1)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        want = model.forward_all(x)[-1]
        assert fold_batchnorm(model) == 2
        assert all(getattr(m, "bn", None) is None for m in model.layers)
        assert torch.allclose(model.forward_all(x)[-1], want, rtol=1e-5, atol=1e-5)


@needs_shared
def test_compiled_equals_plain() -> None:
    """torch.compile (inductor, frozen weights) on yolov4-tiny at 64x64."""
    model = darkcfg.load(CFG_DIR / "yolov4-tiny.cfg", size=64).eval()
    randomize(model, seed=4)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
    out = InferenceModel(model, compile=True)(x)
    for a, b in zip(out, plain):
        assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(b.abs().max()))


@needs_shared
def test_bfloat16_close_to_float32() -> None:
    """--half on a CPU: bfloat16 autocast. Not exact; the heads stay within bfloat16's precision."""
    model = darkcfg.load(CFG_DIR / "yolov3-tiny.cfg", SHARED / "darknet" / "weights" / "yolov3-tiny.weights",
                         size=128)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        plain = model(x)
    out = InferenceModel(model, half=True)(x)
    for a, b in zip(out, plain):
        assert a.dtype == torch.float32
        assert float((a - b).abs().max()) <= 0.1 * float(b.abs().max())


def test_prepare_for_inference_modes() -> None:
    model = darkcfg.load("cfg/yolov3-tiny.cfg", size=64)
    assert prepare_for_inference(model, fast=False) is model
    fast = prepare_for_inference(model)
    assert isinstance(fast, InferenceModel) and fast.darknet is model  # in place: one copy of the weights
    assert not fast.half and not fast.cuda_graphs and fast.net is model.net


@needs_shared
def test_detect_cli_fast_and_plain_print_the_same(tmp_path) -> None:
    args = [sys.executable, "-m", "darkcfg", "detect", "cfg/yolov3-tiny.cfg", str(SHARED / "images"), "--nosave",
            "--ext-output", "--thresh", "0.1"]
    fast = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    plain = subprocess.run(args + ["--no-fast"], capture_output=True, text=True, check=True).stdout

    def strip(s: str) -> list[str]:
        return [ln for ln in s.splitlines() if "milli-seconds" not in ln]

    assert strip(fast) == strip(plain) and len(strip(fast)) > 20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_gpu_half_and_cuda_graphs() -> None:
    model = darkcfg.load("cfg/yolov3-tiny.cfg", "weights/yolov3-tiny.weights", size=416).cuda()
    x = torch.rand(2, 3, 416, 416, device="cuda")
    with torch.no_grad():
        plain = model(x)
    fast = InferenceModel(model, half=True, cuda_graphs=True)
    for _ in range(2):  # capture, then replay
        out = fast(x)
        for a, b in zip(out, plain):
            assert float((a - b).abs().max()) <= 0.02 * float(b.abs().max())
    assert len(fast._graphs) == 1


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc >= 2.33 (mallinfo2)")
def test_keep_freed_memory_serves_large_blocks_from_the_heap() -> None:
    """After keep_freed_memory a 64 MiB activation is not a fresh mmap (which page-faults in on every
    forward and goes back to the kernel on free) but a block of malloc's heap, reused when freed."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _Mallinfo2
    assert keep_freed_memory()
    before = mallinfo2().hblkhd  # bytes in mmap'ed blocks
    t = torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB, twice glibc's largest mmap threshold
    assert mallinfo2().hblkhd == before
    assert mallinfo2().uordblks >= t.numel() * 4  # in the heap instead
