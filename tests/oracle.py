"""Helpers shared by tests: paths of ../shared, random weights with non-trivial BN statistics, and the
OpenCV DNN oracle (cv2.dnn.readNetFromDarknet, an independent Darknet importer; OpenCV < 5 only)."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

from darkcfg.model.network import Darknet
from darkcfg.model.weights import save_weights

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CFG_DIR = SHARED / "darknet" / "cfg"
REF = SHARED / "reference"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (reference data) is not beside the checkout")


def shared_cfgs() -> list[str]:
    """The zoo cfgs the reference built: one per reference/layers/<name>.txt. Taken from the reference's
    tables, not from a glob of the cfg folder, so a cfg missing from ../shared fails its tests instead of
    silently dropping them (without ../shared at all there are none, and the tests skip)."""
    layers = REF / "layers"
    return sorted(p.stem for p in layers.glob("*.txt")) if layers.is_dir() else []


def randomize(model: Darknet, seed: int = 0) -> None:
    """Random weights; BN scale in [.5, 1.5], mean in [-.1, .1], variance in [.5, 1.5] (well away from 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            # BN variances and scales of the layer and of its sub-layers (recurrent layers)
            positive = {id(t) for m in layer.modules() for t in (
                getattr(getattr(m, "bn", None), "running_var", None), getattr(getattr(m, "bn", None), "weight", None),
                getattr(m, "scales", None)) if t is not None}
            for b in layer.darknet_blobs():
                t = b.tensor
                u = torch.rand(t.shape, generator=g)
                if id(t) in positive:
                    t.copy_(u + 0.5)
                elif t.dim() > 1:
                    fan_in = t[0].numel()
                    t.copy_((u * 2 - 1) * (3.0 / fan_in) ** 0.5)  # keeps activations O(1) through deep nets
                else:
                    t.copy_(u * 0.2 - 0.1)


_ACT = {"leaky", "mish", "swish", "logistic", "relu", "tanh", "elu", "sigmoid", "relu6", "selu", "gelu", "hardswish"}


def opencv_layer_outputs(cfg: Path, model: Darknet, x: torch.Tensor) -> dict[int, np.ndarray]:
    """Run OpenCV's importer on `cfg` with `model`'s weights; return {darknet index: output} for every
    layer OpenCV exposes (its last sub-layer for that index; activations named <act>_<i+1> belong to i).
    Decoded detection outputs ([yolo] permute/yolo, region) are left out."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip("this OpenCV has no Darknet importer (needs opencv-python-headless<5)")
    with tempfile.TemporaryDirectory() as d:
        w = os.path.join(d, "x.weights")
        save_weights(model, w)
        net = cv2.dnn.readNetFromDarknet(str(cfg), w)
    net.enableFusion(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    names = list(net.getLayerNames())
    last: dict[int, str] = {}
    for name in names:
        m = re.fullmatch(r"([A-Za-z]+)_(\d+)", name)
        if not m or m.group(1) in ("permute", "yolo", "region", "detection"):
            continue
        kind, k = m.group(1), int(m.group(2))
        idx = k - 1 if kind in _ACT else k
        last[idx] = name
    net.setInput(x.numpy())
    wanted = sorted(last)
    outs = net.forward([last[i] for i in wanted])
    return {i: np.asarray(o) for i, o in zip(wanted, outs)}


def compare_with_opencv(cfg: Path, size: Optional[int] = 128, seed: int = 0) -> tuple[float, int, int]:
    """(max over layers of max|diff|/max|ref|, layers compared, worst layer index)."""
    model = Darknet.from_file(cfg, size=(size, size) if size else None, warn_unused=False)
    randomize(model, seed)
    model.eval()
    x = torch.rand(1, *model.input_shape, generator=torch.Generator().manual_seed(seed))
    ref = opencv_layer_outputs(cfg, model, x)
    with torch.no_grad():
        mine = model.forward_all(x)
    worst, worst_i, n = 0.0, -1, 0
    for i, r in ref.items():
        if model.layers[i].ltype in ("yolo", "region", "Gaussian_yolo"):
            continue
        o = mine[i].numpy()
        assert o.size == r.size, f"layer {i} [{model.layers[i].ltype}]: {o.shape} vs OpenCV {r.shape}"
        rel = float(np.abs(o.reshape(-1) - r.reshape(-1)).max() / max(np.abs(r).max(), 1e-12))
        n += 1
        if rel > worst:
            worst, worst_i = rel, i
    return worst, n, worst_i


IMAGES = SHARED / "images"
REF_IMAGES = ("dog", "eagle", "giraffe", "horses", "person", "scream")  # the order of reference/detect


def stb_decode(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB as stb_image decodes it: the decoder of the reference's build without OpenCV,
    which wrote ../shared/reference/detect. raylib bundles stb_image; libjpeg-turbo (OpenCV, Pillow)
    differs from it by up to 3 levels per pixel on these JPEGs."""
    pyray = pytest.importorskip("pyray", reason="raylib (stb_image) is a dev dependency")
    from raylib import ffi

    pyray.set_trace_log_level(pyray.LOG_ERROR)
    img = pyray.load_image(str(path))
    assert img.format == pyray.PIXELFORMAT_UNCOMPRESSED_R8G8B8, f"{path}: unexpected raylib format {img.format}"
    try:
        buf = ffi.buffer(ffi.cast("unsigned char*", img.data), img.width * img.height * 3)
        return np.frombuffer(buf, dtype=np.uint8).reshape(img.height, img.width, 3).copy()
    finally:
        pyray.unload_image(img)


def chromium() -> str:
    """A headless Chromium for the tests that render pages: on PATH, or installed from Debian's `chromium`
    package when the tests run as root with apt (as CI does); otherwise the test skips with the reason."""
    import shutil
    import subprocess

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no Chromium on PATH and not root with apt-get to install Debian's chromium package")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"], capture_output=True,
                       text=True, env=env, timeout=900)
    if r.returncode != 0:  # the package lists may be stale: refresh them once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
                           capture_output=True, text=True, env=env, timeout=900)
    found = shutil.which("chromium")
    if r.returncode != 0 or not found:
        pytest.skip(f"Chromium cannot be installed here: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return found


def render_page(page: Path, screenshot: Path, size: tuple[int, int] = (1280, 6000)) -> tuple[str, str]:
    """Open `page` in headless Chromium: (the DOM after load, the console lines), and a screenshot."""
    import subprocess

    exe = chromium()
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
              "--v=0", "--virtual-time-budget=5000"]
    dom = subprocess.run(common + ["--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                         timeout=120)
    subprocess.run(common + [f"--screenshot={screenshot}", f"--window-size={size[0]},{size[1]}",
                             page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
    return dom.stdout, "\n".join(console)


def map_set(d: Path) -> Path:
    """The reference's map set in folder d: the six images (linked) with reference/map's labels beside them, a
    valid list and coco.data naming COCO's names. Returns the .data file."""
    for n in REF_IMAGES:
        (d / f"{n}.jpg").symlink_to(IMAGES / f"{n}.jpg")
        (d / f"{n}.txt").write_bytes((REF / "map" / "labels" / f"{n}.txt").read_bytes())
    (d / "valid.txt").write_text("".join(f"{d / n}.jpg\n" for n in REF_IMAGES))
    names = SHARED / "darknet" / "coco.names"
    (d / "coco.data").write_text(f"classes = 80\nvalid = {d / 'valid.txt'}\nnames = {names}\n")
    return d / "coco.data"
