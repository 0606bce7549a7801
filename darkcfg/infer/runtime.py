"""Who runs a network for inference, and the one assembly of a detector from files.

`Runtime` says how the network runs: PyTorch (on `device`; the fast path folds batch-norm and runs
channels-last; `compile`; `half`: float16/bfloat16 autocast) or OpenVINO (CPU), at a `precision` (fp32, bf16,
the runtime's default, or int8 calibrated on `calibration` images). `prepare` applies it to a built network;
`load_detector` is what `detect`, `serve` and the Python API (`darkcfg.load_detector`) build a Detector with,
and `load_runtime_model` what `map` and `valid` run. Bad combinations are one-line `DarkcfgError`s.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from darkcfg.errors import DarkcfgError
from darkcfg.infer.detector import Detector
from darkcfg.infer.names import names_for
from darkcfg.infer.tiles import Tiling
from darkcfg.model.loading import Size, load, load_trained, load_trained_weights

PathLike = Union[str, Path]
RUNTIMES = ("torch", "openvino")
PRECISIONS = ("fp32", "bf16", "default", "int8")


@dataclass
class Runtime:
    """How a network is run (module docstring). `device` None: CUDA when available, else the CPU."""

    name: str = "torch"
    precision: str = "fp32"
    device: Optional[str] = None
    fast: bool = True
    compile: bool = False
    half: Optional[bool] = None
    calibration: Optional[str] = None

    def check(self) -> None:
        """One line for a combination that cannot run, before anything is loaded."""
        if self.name not in RUNTIMES:
            raise DarkcfgError(f"runtime {self.name!r}: expected one of {', '.join(RUNTIMES)}")
        if self.precision not in PRECISIONS:
            raise DarkcfgError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.precision == "int8":
            if self.name != "openvino":
                raise DarkcfgError("--precision int8 runs on OpenVINO: add --runtime openvino")
            if not self.calibration:
                raise DarkcfgError("--precision int8 needs --calibration (a .data file, an image list or a folder)")
        if self.name == "openvino" and self.device not in (None, "cpu"):
            raise DarkcfgError("--runtime openvino runs on the CPU: leave --device out")
        resolve_device(self.device)


def resolve_device(name: Optional[str]) -> str:
    """`name` (cpu, cuda, cuda:N), or CUDA when available and None; a one-line error for a GPU this PyTorch
    does not see."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DarkcfgError(f"--device {name}: this PyTorch sees no CUDA GPU; use --device cpu")
    return name


def prepare(model: torch.nn.Module, runtime: Runtime, letterbox: Optional[bool] = None) -> torch.nn.Module:
    """The network the detector runs: PyTorch's (fast path, compile, bf16 = half) or OpenVINO's (int8: quantized
    on the calibration images, pre-processed with `letterbox`; None: the cfg's)."""
    runtime.check()
    if runtime.name == "openvino":
        from darkcfg.infer.openvino import OpenVinoModel, calibration_images

        images = calibration_images(runtime.calibration) if runtime.precision == "int8" and runtime.calibration \
            else ()
        return OpenVinoModel(model, runtime.precision, calibration=images, letterbox=letterbox)
    from darkcfg.infer.fast import prepare_for_inference

    half = True if runtime.precision == "bf16" else runtime.half
    return prepare_for_inference(model.to(resolve_device(runtime.device)), runtime.fast, runtime.compile, half)


def load_detector(cfg: PathLike, weights: Optional[PathLike] = None, names: Optional[PathLike] = None,
                  size: Size = None, thresh: float = 0.25, nms: float = 0.45, letterbox: Optional[bool] = None,
                  batch: int = 1, runtime: Optional[Runtime] = None, tiles: Optional[Tiling] = None) -> Detector:
    """A Detector for `cfg` (a .cfg or a .pt checkpoint) with `weights` (default: the .pt's own, else
    weights/<cfg name>.weights), class `names` (a file with one per class; default COCO's for 80 classes),
    `size` overriding the cfg's, the thresholds, letterbox (None: the cfg's), images per forward, the
    runtime and `tiles` (detection on tiles of each image, `darkcfg.infer.tiles`). The names are checked
    before the weights are read."""
    runtime = runtime or Runtime()
    runtime.check()
    model = load(cfg, size=size)
    class_names = names_for(model, names)
    load_trained_weights(model, cfg, weights)
    return Detector(prepare(model, runtime, letterbox), class_names, thresh, nms, letterbox, batch, tiles)


def load_runtime_model(cfg: PathLike, weights: Optional[PathLike] = None, size: Size = None,
                       runtime: Optional[Runtime] = None) -> torch.nn.Module:
    """The trained network (`load_trained`) as `runtime` runs it: what `map` and `valid` measure (their default
    is the plain network, `Runtime(fast=False)`: the reference's numbers)."""
    runtime = runtime or Runtime(fast=False)
    runtime.check()
    model = load_trained(cfg, weights, size, resolve_device(runtime.device) if runtime.name == "torch" else "cpu")
    return prepare(model, runtime)
