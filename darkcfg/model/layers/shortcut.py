"""[shortcut] (shortcut_layer.c, blas.c:shortcut_multilayer_cpu).

out = act(w_0 * prev + sum_i w_{i+1} * from_i), where each from_i is added at the flat (per-sample)
indices below its own size only: fewer channels add to the first channels, more are cut off.
Weights (per_feature: n+1 scalars; per_channel: (n+1)*C, index ch + k*C) are optionally normalised:
relu -> relu(w)/(1e-4 + sum relu(w)), softmax -> exp(w - max)/(1e-4 + sum exp(w - max)).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from darkcfg.model.activations import Activation
from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import Blob, BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register

WEIGHTS_TYPES = {"none": "none", "per_feature": "per_feature", "per_layer": "per_feature",
                 "per_channel": "per_channel"}
NORMALIZATIONS = {"none": "none", "relu": "relu", "avg_relu": "relu", "softmax": "softmax"}


class Shortcut(DarknetLayer):
    ltype = "shortcut"

    def __init__(self, in_shape: Shape, sources: tuple[int, ...], sizes: list[int], activation: str,
                 act_fn: Activation, weights_type: str = "none", weights_normalization: str = "none") -> None:
        super().__init__(in_shape, in_shape, sources)
        self.sizes = sizes
        self.activation, self.act = activation, act_fn
        self.weights_type, self.weights_normalization = weights_type, weights_normalization
        n = len(sources)
        if weights_type == "per_feature":
            self.weight = nn.Parameter(torch.ones(n + 1))
        elif weights_type == "per_channel":
            self.weight = nn.Parameter(torch.ones((n + 1) * in_shape.c))
        else:
            self.weight = None

    @property
    def bflops(self) -> float:
        return self.out_shape.size * len(self.sources) / 1e9

    def _weights(self) -> Tensor:
        """(n+1, C or 1) weights after normalisation; row 0 is the previous layer."""
        w = self.weight.view(len(self.sources) + 1, -1)
        if self.weights_normalization == "relu":
            r = torch.relu(w)
            w = r / (1e-4 + r.sum(dim=0, keepdim=True))
        elif self.weights_normalization == "softmax":
            e = torch.exp(w - w.amax(dim=0, keepdim=True))
            w = e / (1e-4 + e.sum(dim=0, keepdim=True))
        return w

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        b = x.shape[0]
        if self.weight is None and all(outputs[i].shape == x.shape for i in self.sources):
            out = x  # the usual residual: same shapes, no weights; keeps x's memory format (channels-last)
            for i in self.sources:
                out = out + outputs[i]
            return self.act(out)
        w = self._weights() if self.weight is not None else None
        out = (x if w is None else x * w[0].view(1, -1, 1, 1)).reshape(b, -1)
        flat_c = self.out_shape.h * self.out_shape.w
        for k, (idx, size) in enumerate(zip(self.sources, self.sizes)):
            m = min(size, out.shape[1])
            add = outputs[idx].reshape(b, -1)[:, :m]
            if w is not None:
                wk = w[k + 1]
                if wk.numel() > 1:  # per channel of the output: flat index // (h*w)
                    wk = wk.repeat_interleave(flat_c)[:m]
                add = add * wk
            if m == out.shape[1]:
                out = out + add
            else:
                out = torch.cat([out[:, :m] + add, out[:, m:]], dim=1)
        return self.act(out.reshape(b, *self.out_shape))

    def describe(self) -> str:
        src = ", ".join(str(s) for s in self.sources)
        wt = {"none": 0, "per_feature": 1, "per_channel": 2}[self.weights_type]
        wn = {"none": 0, "relu": 1, "softmax": 2}[self.weights_normalization]
        return f"Shortcut Layer: {src},  wt = {wt}, wn = {wn}, outputs:{self.out_shape} {self.bflops:5.3f} BF"

    def darknet_blobs(self, transpose: bool = False) -> list[Blob]:
        return [] if self.weight is None else [Blob(self.weight)]


@register("shortcut")
def build(sec: Section, ctx: BuildContext) -> Shortcut:
    act_name, act = ctx.activation("linear")
    wt = sec.str("weights_type", "none")
    if wt not in WEIGHTS_TYPES:
        raise sec.error(f"weights_type={wt}: expected one of none, per_feature, per_layer, per_channel")
    wn = sec.str("weights_normalization", "none")
    if wn not in NORMALIZATIONS:
        raise sec.error(f"weights_normalization={wn}: expected one of none, relu, avg_relu, softmax")
    sources = ctx.layer_refs("from")
    sizes = [ctx.shapes[i].size for i in sources]
    if ctx.index == 0:
        raise sec.error("[shortcut] cannot be the first layer")
    return Shortcut(ctx.input, tuple(sources), sizes, act_name, act, WEIGHTS_TYPES[wt], NORMALIZATIONS[wn])
