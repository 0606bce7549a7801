"""Darknet: a cfg built into an nn.Module, layer by layer, with Darknet's layer numbering."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from darkcfg.errors import CfgError
from darkcfg.model import budget
from darkcfg.model.cfg import Section, parse_cfg_text, read_cfg, report_unused
from darkcfg.model.layers import BuildContext, DarknetLayer, Shape, get_builder, section_types
from darkcfg.model.netconfig import NetConfig
from darkcfg.model.weights import WeightsHeader

# options every layer section may carry (end of parser.c:parse_network_cfg_custom)
COMMON_INT_KEYS = ("onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn", "dontload",
                   "dontloadscales")


class Darknet(nn.Module):
    """A Darknet network.

    `model(x)` with x (B, channels, height, width) returns the list of outputs of the detection heads
    ([yolo], [Gaussian_yolo], [region]) in network order, or for other networks the last non-[cost]
    layer's output. `model.forward_all(x)` returns every layer's output, index-aligned with Darknet's
    numbering and in Darknet's layout.

    Before building, the cfg is built on the meta device and must fit a memory budget (darkcfg.model.budget):
    `max_memory` (bytes, '32G', or 'off'), else $DARKCFG_MAX_MEMORY, else 3/4 of the machine's memory, at most
    16 GiB. `meta=True` builds on the meta device only: shapes, parameter counts and the layer table, no memory.
    """

    # `detect` runs the inference stage (darkcfg.infer.detector), which registers itself here when it is imported
    # (touching any name of the `darkcfg` facade imports it): the model stage never imports a higher stage.
    detector: ClassVar[Optional[Callable[..., list]]] = None
    streamer: ClassVar[Optional[Callable[..., Iterator]]] = None
    tracker_stream: ClassVar[Optional[Callable[..., Iterator]]] = None  # darkcfg.infer.run.track
    classifier: ClassVar[Optional[Callable[..., list]]] = None  # darkcfg.infer.classify registers itself here

    def __init__(self, cfg_text: str, file: str = "<cfg>", size: Optional[tuple[int, int]] = None,
                 warn_unused: bool = True, max_memory: budget.MemorySize = None, meta: bool = False) -> None:
        super().__init__()
        self.cfg_text, self.cfg_file = cfg_text, file
        self.meta = meta  # built on the meta device: shapes and counts only
        self.memory_budget = budget.Budget(None, "meta=True") if meta else budget.resolve(max_memory)
        sections = parse_cfg_text(cfg_text, file)
        self.net = NetConfig.from_section(sections[0])
        if size is not None:
            w, h = size
            if w <= 0 or h <= 0:
                raise CfgError(f"{file}: input size override {w}x{h}: expected positive width and height")
            self.net.override_size(w, h)
        if not (self.net.width and self.net.height and self.net.channels) and not (
                self.net.inputs > 0 and not (self.net.width or self.net.height or self.net.channels)):
            raise sections[0].error(
                f"width={self.net.width}, height={self.net.height}, channels={self.net.channels}: "
                "expected positive values"
            )
        self.header = WeightsHeader()
        self.loaded_upto: Optional[int] = None  # layers held by the last loaded .weights file
        self.layers = nn.ModuleList()
        self.shapes: list[Shape] = []
        self.sections = sections[1:]
        self._build(sections, warn_unused, size)

    # -- building -----------------------------------------------------------------------------------
    @property
    def input_shape(self) -> Shape:
        """(C, H, W) of the input; a [net] with only `inputs` (the text models) takes (inputs, 1, 1)."""
        if not (self.net.width or self.net.height or self.net.channels):
            return Shape(self.net.inputs, 1, 1)
        return Shape(self.net.channels, self.net.height, self.net.width)

    def _build(self, sections: list[Section], warn_unused: bool, size: Optional[tuple[int, int]]) -> None:
        if self.memory_budget.limit is not None:
            # the same cfg on the meta device first: what it would hold, refused before anything is allocated.
            # Its warnings are the real build's, given once, by the real build.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probe = Darknet(self.cfg_text, self.cfg_file, size, warn_unused=False, meta=True)
            budget.check(probe, self.memory_budget)
        shape = self.input_shape
        layers: list[DarknetLayer] = []
        for sec in sections[1:]:
            builder = get_builder(sec.type)
            if builder is None:
                raise CfgError(f"{sec.file}:{sec.line}: layer {sec.index}: unknown section type [{sec.type}]; "
                               f"expected one of {', '.join('[' + t + ']' for t in section_types())}")
            ctx = BuildContext(sec.index, shape, self.shapes, layers, self.net, sec)
            layer = self._build_layer(builder, sec, ctx)
            if min(layer.out_shape) <= 0:
                raise sec.error(f"output shape {tuple(layer.out_shape)} is empty")
            self._common_options(sec, layer)
            layer.index = sec.index
            layers.append(layer)
            self.layers.append(layer)
            self.shapes.append(layer.out_shape)
            shape = layer.out_shape
        if not layers:
            raise CfgError(f"{sections[0].file}: no layers after [net]")
        if warn_unused:
            report_unused(sections)
        self._plan()

    def _build_layer(self, builder: Callable, sec: Section, ctx: BuildContext) -> DarknetLayer:
        """`builder(sec, ctx)`, on the meta device when this network is a meta one. A builder that needs real values
        there (data-dependent shapes) builds that layer on the CPU instead: small constant tensors, and the layer's
        own limits (`check_count`) still apply."""
        try:
            if self.meta:
                try:
                    with torch.device("meta"):
                        return builder(sec, ctx)
                except CfgError:
                    raise
                except Exception:
                    pass  # built for real just below, which reports a real error as its own
            return builder(sec, ctx)
        except CfgError:
            raise
        except Exception as e:  # a builder bug or an unforeseen value: still one line, with the place
            raise sec.error(f"cannot build this layer: {type(e).__name__}: {e}") from None

    @staticmethod
    def _common_options(sec: Section, layer: DarknetLayer) -> None:
        opts = {k: sec.int(k, 0) for k in COMMON_INT_KEYS}
        layer.clip = sec.float("clip", 0.0)
        layer.learning_rate_scale = sec.float("learning_rate", 1.0)
        layer.stopbackward = opts["stopbackward"]
        layer.train_only_bn = opts["train_only_bn"]
        layer.dont_update = opts["dont_update"]
        layer.dontload = bool(opts["dontload"])
        if hasattr(layer, "dontloadscales"):
            layer.dontloadscales = bool(opts["dontloadscales"])

    def _plan(self) -> None:
        """Which outputs are kept during forward: heads, and each output until its last reader."""
        n = len(self.layers)
        heads = [i for i, m in enumerate(self.layers) if m.is_head]
        if not heads:
            last = n - 1
            while last > 0 and self.layers[last].ltype == "cost":
                last -= 1
            heads = [last]
        self.output_layers = heads
        last_use = list(range(1, n + 1))  # each output is read by the next layer
        for j, m in enumerate(self.layers):
            for s in m.sources:
                last_use[s] = max(last_use[s], j)
        keep = set(heads)
        self._free_after: list[list[int]] = [[] for _ in range(n)]
        for i, j in enumerate(last_use):
            if i not in keep and j < n:
                self._free_after[j].append(i)

    def set_size(self, width: int, height: int) -> None:
        """Change the input size in place, keeping the very same parameter and buffer tensors (an optimiser
        holding them stays valid): multi-scale training. Layers built for each size are cached; `net` stays the
        same object (only its width and height change), so options set on it after loading are kept."""
        if (width, height) == (self.net.width, self.net.height):
            return
        cache = self.__dict__.setdefault("_size_cache", {})
        cache[(self.net.width, self.net.height)] = (self.layers, self.shapes, self._free_after)
        if (width, height) not in cache:
            fresh = Darknet(self.cfg_text, self.cfg_file, (width, height), warn_unused=False,
                            max_memory=self.memory_budget, meta=self.meta)
            ref = next(iter(self.parameters()), None)
            if ref is not None:
                fresh.to(ref.device)
            for old, new in zip(self.layers.modules(), fresh.layers.modules()):
                for k in list(new._parameters):
                    new._parameters[k] = old._parameters[k]
                for k in list(new._buffers):
                    if k not in new._non_persistent_buffers_set:
                        new._buffers[k] = old._buffers[k]
            fresh.layers.train(self.training)
            cache[(width, height)] = (fresh.layers, fresh.shapes, fresh._free_after)
        self.layers, self.shapes, self._free_after = cache[(width, height)]
        self.net.width, self.net.height = width, height
        self.layers.train(self.training)

    # -- running ------------------------------------------------------------------------------------
    @property
    def stateful(self) -> bool:
        """Whether a layer carries state from one forward to the next ([rnn], [lstm], [conv_lstm], ...)."""
        return any(m.stateful for m in self.layers)

    def reset_state(self) -> None:
        """Clear the state recurrent layers carry between forwards (before a new video or sequence), at every
        input size this model has been run at."""
        sizes = self.__dict__.get("_size_cache", {})
        for layers in [self.layers] + [entry[0] for entry in sizes.values()]:
            for m in layers:
                m.reset_state()

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
            c, h, w = self.input_shape
            raise ValueError(f"{self.cfg_file}: expected input (B, {c}, {h}, {w}), got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> list[Tensor]:
        self._check_input(x)
        outputs: list[Optional[Tensor]] = [None] * len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x, outputs)
            outputs[i] = x
            for k in self._free_after[i]:
                outputs[k] = None
        return [outputs[i] for i in self.output_layers]  # type: ignore[misc]

    def forward_heads(self, x: Tensor, cpu_1x1_overwrite: bool = False) -> list[tuple[int, Tensor]]:
        """Training forward: (index, input) of every layer with a training loss (detection heads, a classifier's
        [softmax]), the input being the tensor that enters it (B, C, H, W). A layer with `stopbackward` passes no
        gradient back: its output is detached, so it and every earlier layer get none from the loss
        (backward_network's `break`).

        cpu_1x1_overwrite: reproduce a bug of the reference's CPU backward, for comparing with its numbers
        only. There a 1x1, stride-1 [convolutional] writes the delta of the layer before it instead of adding
        to it, so the gradient that later readers of that layer (a [route] or [shortcut] further on, whose
        backward runs earlier) had already put there is lost. reference/sgd/ was made that way; the GPU
        path, and darkcfg by default, keep every reader's gradient.
        """
        self._check_input(x)
        outputs: list[Optional[Tensor]] = [None] * len(self.layers)
        heads: list[tuple[int, Tensor]] = []
        for i, layer in enumerate(self.layers):
            if layer.is_head or getattr(layer, "has_loss", False):  # a head, or a classifier's [softmax]
                heads.append((i, x))
            x = layer(x, outputs)
            if getattr(layer, "stopbackward", 0):
                x = x.detach()
            if cpu_1x1_overwrite and i > 0 and outputs[i - 1] is not None and layer.ltype == "conv" \
                    and getattr(layer, "size", 0) == 1 and getattr(layer, "stride", None) == (1, 1):
                outputs[i - 1] = outputs[i - 1].detach()  # later readers' gradient is dropped
            outputs[i] = x
            for k in self._free_after[i]:
                outputs[k] = None
        return heads

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """Every layer's output: list index i is Darknet layer i, in the reference's layout."""
        self._check_input(x)
        outputs: list[Tensor] = []
        for layer in self.layers:
            x = layer(x, outputs)
            outputs.append(x)
        return outputs

    def detect(self, images: object, thresh: float = 0.25, nms: float = 0.45, **options: object) -> list:
        """Detect objects like `darknet detector test`: see `darkcfg.infer.detector.detect` for arguments.

        `model.detect("dog.jpg")` -> [Detection(class_id=16, name='dog', confidence=0.81, box=(x1, y1, x2, y2)),
        ...] with the box in pixels; a list of images gives a list of such lists.
        """
        if Darknet.detector is None:
            raise RuntimeError("the inference stage is not loaded: use darkcfg.load, or import darkcfg.infer.detector")
        return Darknet.detector(self, images, thresh, nms, **options)

    def stream(self, source: object, thresh: float = 0.25, nms: float = 0.45, track: bool = False,
               **options: object) -> Iterator:
        """Detect frame by frame on a video, camera index (0) or stream URL (or images): yields (frame index, BGR
        frame, [Detection, ...]); see `darkcfg.infer.detector.stream`. Live sources give the newest frame.
        `track=True` is `model.track(source, ...)`: each Detection gets its `track_id`."""
        if track:
            return self.track(source, thresh, nms, **options)
        if Darknet.streamer is None:
            raise RuntimeError("the inference stage is not loaded: use darkcfg.load, or import darkcfg.infer.detector")
        return Darknet.streamer(self, source, thresh, nms, **options)

    def track(self, source: object, thresh: float = 0.25, nms: float = 0.45, **options: object) -> Iterator:
        """Follow objects through a video, camera, stream or folder of frames: `stream` whose Detections carry a
        `track_id` (the same object keeps its id); see `darkcfg.infer.run.track` (tracker="bytetrack" or
        "darknet", counting lines)."""
        if Darknet.tracker_stream is None:
            raise RuntimeError("the inference stage is not loaded: use darkcfg.load, or import darkcfg.infer.run")
        return Darknet.tracker_stream(self, source, thresh, nms, **options)

    def classify(self, images: object, top: int = 5, **options: object) -> list:
        """Classify like `darknet classifier predict`: see `darkcfg.infer.classify.classify` for arguments.

        `model.classify("dog.jpg")` -> [Prediction(class_id=..., name=..., probability=...), ...], the `top` most
        probable classes; a list of images gives a list of such lists."""
        if Darknet.classifier is None:
            raise RuntimeError("the inference stage is not loaded: use darkcfg.load, or import darkcfg.infer.classify")
        return Darknet.classifier(self, images, top, **options)

    # -- reporting ----------------------------------------------------------------------------------
    @property
    def bflops(self) -> float:
        return sum(m.bflops for m in self.layers if m.bflops > 0)

    def layer_table(self) -> str:
        """The layer table the reference prints while building (index, type, filters, size/stride, in -> out)."""
        lines = ["   layer   filters  size/strd(dil)      input                output"]
        lines += [f"{i:4d} {m.describe()}" for i, m in enumerate(self.layers)]
        lines.append(f"Total BFLOPS {self.bflops:5.3f} ")
        return "\n".join(lines)

    def summary(self) -> str:
        """`darkcfg info`: the layer table, then layers, parameters, the .weights size and the output layers."""
        n_params = sum(p.numel() for p in self.parameters())
        n_floats = sum(b.tensor.numel() for m in self.layers for b in m.darknet_blobs())
        return (f"{self.layer_table()}\nlayers: {len(self.layers)}, parameters: {n_params:,}, floats in .weights: "
                f"{n_floats:,} ({20 + 4 * n_floats:,} bytes), output layers: "
                f"{', '.join(map(str, self.output_layers))}")

    @classmethod
    def from_file(cls, path: Union[str, Path], size: Optional[tuple[int, int]] = None, warn_unused: bool = True,
                  max_memory: budget.MemorySize = None, meta: bool = False) -> Darknet:
        """The network of the cfg file `path` (arguments as `Darknet`'s)."""
        text, name = read_cfg(path)
        return cls(text, name, size, warn_unused, max_memory, meta)

