"""The inference fast path: a Darknet network prepared once for running, not training.

`InferenceModel(model)` copies the network and, at build time:
- folds every batch-norm into its convolution (w' = w * g / sqrt(var + eps), b' = beta - mean * g / sqrt(...)),
  so a [convolutional] is one conv + its activation;
- stores the convolution weights channels-last (NHWC) and feeds the input channels-last, where oneDNN's
  CPU convolutions (and cuDNN's tensor-core ones) are fastest; head outputs come back contiguous, in the
  reference's layout;
- runs under `torch.inference_mode`;
- optionally (`compile=True`) hands the forward to `torch.compile` (inductor, frozen weights: constant
  folding, fused activations, its own convolution choices). The first call per input shape compiles.
- on a CPU, keeps freed memory in the process (`darkcfg.memory.keep_freed_memory`), so each forward
  reuses the last one's activation buffers instead of page-faulting fresh ones in;
- optionally (`half=True`, GPU) runs in float16 autocast (bfloat16 on a CPU), and with `cuda_graphs=True`
  replays a captured CUDA graph per input shape.

It quacks like a `Darknet` for the detection pipeline (`net`, `layers`, `output_layers`, `cfg_file`,
`parameters()`), so `Detector(InferenceModel(model))` runs the same decode and NMS.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

from darkcfg.memory import keep_freed_memory, release_free_memory
from darkcfg.model.activations import ACTIVATIONS, INPLACE_ACTIVATIONS
from darkcfg.model.layers.convolutional import Convolutional
from darkcfg.model.network import Darknet


def fold_batchnorm(model: Darknet, memory_format: torch.memory_format = torch.contiguous_format) -> int:
    """Fold every [convolutional]'s batch-norm (eval statistics) into its conv weights, in place, and store
    every conv weight in `memory_format`.

    Returns the number of layers folded. Layers that share another's weights (share_index) follow their
    owner, which is folded once. Each weight is written once, straight into its new layout (no second
    temporary copy: the peak during preparation is the weights plus one layer's).
    """
    n = 0
    with torch.no_grad():
        for layer in model.layers:
            if not isinstance(layer, Convolutional) or layer.share:
                continue
            bn, conv = layer.bn, layer.conv
            if bn is None and conv.weight.is_contiguous(memory_format=memory_format):
                continue  # nothing to fold, already in its layout
            w = torch.empty_like(conv.weight, memory_format=memory_format)
            if bn is None:
                w.copy_(conv.weight)
            else:
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
                torch.mul(conv.weight, scale.view(-1, 1, 1, 1), out=w)
                conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
                layer.bn = None
                n += 1
            conv.weight = nn.Parameter(w, requires_grad=False)
    for layer in model.layers:  # sharers read the owner's conv and bn at run time
        if isinstance(layer, Convolutional) and layer.share and layer.bn is not None:
            layer.bn = None
    return n


def _inplace_activations(model: Darknet) -> None:
    """[convolutional] activations that write into the conv output (a fresh tensor): one activation-sized
    tensor per layer instead of two."""
    for layer in model.layers:
        if isinstance(layer, Convolutional) and layer.act is ACTIVATIONS.get(layer.activation) \
                and layer.activation in INPLACE_ACTIVATIONS:
            layer.act = INPLACE_ACTIVATIONS[layer.activation]


def _to_channels_last(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)


class DarknetView:
    """What the detection pipeline reads from a `Darknet`, delegated to the wrapped network `self.darknet`: for
    runtimes that run it their own way (`InferenceModel`, `darkcfg.infer.openvino.OpenVinoModel`)."""

    darknet: Darknet

    @property
    def net(self):  # noqa: ANN201 - NetConfig
        return self.darknet.net

    @property
    def layers(self) -> nn.ModuleList:
        return self.darknet.layers

    @property
    def output_layers(self) -> list[int]:
        return self.darknet.output_layers

    @property
    def cfg_file(self) -> str:
        return self.darknet.cfg_file

    @property
    def header(self):  # noqa: ANN201 - WeightsHeader
        return self.darknet.header

    @property
    def stateful(self) -> bool:
        return self.darknet.stateful

    def reset_state(self) -> None:
        self.darknet.reset_state()


class InferenceModel(DarknetView, nn.Module):
    """A copy of `model` prepared for inference (see the module docstring); `inplace=True` converts `model`
    itself instead (no second copy of the weights; `model` is then for inference only). `reuse_memory`
    applies `keep_freed_memory` (process-wide) when the model is on the CPU.

    forward(x): x (B, C, H, W) float -> the head outputs as `Darknet.forward` gives them (float32,
    contiguous, the reference's layout).
    """

    def __init__(self, model: Darknet, channels_last: bool = True, fold_bn: bool = True, compile: bool = False,
                 half: bool = False, cuda_graphs: bool = False, inplace: bool = False,
                 reuse_memory: bool = True) -> None:
        super().__init__()
        net = (model if inplace else copy.deepcopy(model)).eval()
        p = next(net.parameters(), None)
        if reuse_memory and (p is None or not p.is_cuda):
            keep_freed_memory()
        net.__dict__.pop("_size_cache", None)
        for p in net.parameters():
            p.requires_grad_(False)
        self.channels_last = channels_last
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.folded = fold_batchnorm(net, fmt) if fold_bn else 0
        if not fold_bn and channels_last:
            _to_channels_last(net)
        _inplace_activations(net)
        release_free_memory()  # the replaced weights' memory, kept by keep_freed_memory, back to the system
        self.darknet = net
        self.half = half
        self._run = net.forward
        if compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # weights are constants: folded and pre-packed at compile time
            # dynamo keeps its compiled graphs per code object (Darknet.forward), guarded per model, input
            # shape and autocast state: several models in one process (the benchmark) pass the default 8
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            self._run = torch.compile(net.forward, backend="inductor", dynamic=False)
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, tuple] = {}

    # -- running ------------------------------------------------------------------------------------------
    def _autocast(self, device: torch.device):  # noqa: ANN202
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype, enabled=self.half)

    def _forward(self, x: Tensor) -> list[Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast(x.device):
            outs = self._run(x)
        return [o.float().contiguous() for o in outs]

    @torch.inference_mode()
    def forward(self, x: Tensor) -> list[Tensor]:
        if self.cuda_graphs and x.is_cuda:
            return self._graph_forward(x)
        return self._forward(x)

    def _graph_forward(self, x: Tensor) -> list[Tensor]:
        """Capture once per (shape, dtype), then replay: no per-kernel launch cost."""
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            static_in = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up: cuDNN picks its algorithms outside the capture
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return [o.clone() for o in static_out]


def prepare_for_inference(model: Darknet, fast: bool = True, compile: bool = False, half: Optional[bool] = None,
                          cuda_graphs: Optional[bool] = None) -> nn.Module:
    """What `darkcfg detect` runs: the plain network (fast=False) or an `InferenceModel` made from `model`
    in place (`model` is not for training afterwards).

    half and cuda_graphs default to on when the model is on a GPU (float16 autocast; graphs replayed per
    input shape), off on a CPU (`half=True` there means bfloat16).
    """
    if not fast and not compile and not half:
        return model
    p = next(model.parameters(), None)
    on_gpu = p is not None and p.is_cuda
    if model.stateful:  # recurrent state lives in Python between forwards: no captured graphs, no compile
        compile, cuda_graphs = False, False
    return InferenceModel(model, compile=compile, half=on_gpu if half is None else half,
                          cuda_graphs=on_gpu if cuda_graphs is None else cuda_graphs, inplace=True)
