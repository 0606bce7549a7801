"""`train --recipe scaled`: the optimisation the Scaled-YOLOv4 authors trained with (their PyTorch train.py), on an
unchanged Darknet cfg. The network, heads and loss options (iou_normalizer, new_coords, scale_x_y, ...) stay the
cfg's and the loss stays the reference's; what changes:

- three parameter groups: convolution weights (with the cfg's `decay`), biases and everything else (batch-norm
  scales: no decay); SGD with Nesterov momentum. The gradient is the iteration's mean over its images, as for
  the reference's update, so `learning_rate` and `decay` mean what they mean in the cfg;
- the rate: one-cycle cosine from the cfg's `learning_rate` (lr0) down to `final_lr` x lr0 over max_batches
  (lf(x) = ((1 + cos(pi x / max_batches)) / 2) * (1 - final_lr) + final_lr), after a warm-up of
  max(3 epochs, burn_in) iterations (at most half the run) in which the biases' rate falls linearly from
  `warmup_bias_lr` x lr0 (their 0.1 for lr0 = 0.01) and every other rate rises from 0, and the momentum rises
  from `warmup_momentum` to the cfg's `momentum`. The authors' rule is max(3 epochs, 1000): their 1000 is the
  burn_in of the yolov4 cfgs, and a fixed 1000 would be half of a short run (capped so; on the shapes benchmark,
  1200 iterations, it cost 3.2 points of mAP@0.5:0.95), so the cfg's `burn_in` stands in for it;
- a model EMA of every float tensor of the state (weights and batch-norm statistics), decay
  0.9999 x (1 - exp(-updates / ramp)) with the authors' ramp of 2000 updates, or a fifth of the run when the run
  is shorter than 10000 iterations (with 2000 a short run's average never reaches past its last few updates);
  the EMA is what `_best` and `_final` save (as .weights the reference reads);
- multi-scale (`--multi-scale`, off by default as in the authors' training commands, where train.py's
  `--multi-scale` is opt-in): each iteration a size drawn uniformly in [0.5 s, 1.5 s + stride) and floored to a
  multiple of the largest stride (s: the larger side of the cfg's size), the other side scaled alike and rounded
  up to the stride; evaluation stays at the cfg's size. Without it the recipe trains at the cfg's size (the cfg's
  `random=` is Darknet's multi-scale, which the authors' train.py does not read);
- mixed precision on a GPU (the trainer's --amp default).
Every value is printed at start-up and stored in the checkpoint's sidecar.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from darkcfg.model.network import Darknet

RECIPES = ("darknet", "scaled")


@dataclass
class ScaledRecipe:
    """The recipe's values (module docstring)."""

    lr0: float
    momentum: float
    decay: float
    max_batches: int
    warmup: int
    final_lr: float = 0.2
    warmup_bias_lr: float = 10.0  # x lr0: their 0.1 for lr0 = 0.01
    warmup_momentum: float = 0.9
    ema_decay: float = 0.9999
    ema_ramp: float = 2000.0
    scale_low: float = 0.5
    scale_high: float = 1.5
    stride: int = 32
    multi_scale: bool = False

    @classmethod
    def for_run(cls, model: Darknet, iterations_per_epoch: float, multi_scale: bool = False) -> ScaledRecipe:
        """The values for training `model` (its [net]) with `iterations_per_epoch` (module docstring)."""
        net = model.net
        warmup = int(min(max(3 * iterations_per_epoch, net.burn_in), net.max_batches / 2))
        return cls(net.learning_rate, net.momentum, net.decay, net.max_batches, warmup,
                   ema_ramp=min(2000.0, net.max_batches / 5), stride=largest_stride(model), multi_scale=multi_scale)

    def lines(self) -> list[str]:
        """The values, printed at start-up."""
        return [f"recipe scaled: {k} = {v:g}" if isinstance(v, float) else f"recipe scaled: {k} = {v}"
                for k, v in asdict(self).items() if k not in ("scale_low", "scale_high") or self.multi_scale]

    def as_dict(self) -> dict:
        return asdict(self)

    def cosine(self, iteration: int) -> float:
        """lf(iteration) of the one-cycle cosine (1 at the start, final_lr at max_batches)."""
        x = min(max(iteration, 0), self.max_batches)
        return ((1 + math.cos(x * math.pi / self.max_batches)) / 2) * (1 - self.final_lr) + self.final_lr

    def rates(self, iteration: int) -> tuple[float, float, float]:
        """(rate of weights and the rest, rate of biases, momentum) of the update of `iteration` (1 = the first)."""
        lr = self.lr0 * self.cosine(iteration - 1)
        if iteration - 1 >= self.warmup or self.warmup <= 0:
            return lr, lr, self.momentum
        f = (iteration - 1) / self.warmup
        bias = float(np.interp(f, [0, 1], [self.warmup_bias_lr * self.lr0, lr]))
        return float(np.interp(f, [0, 1], [0.0, lr])), bias, float(np.interp(f, [0, 1], [self.warmup_momentum,
                                                                                       self.momentum]))

    def size_at(self, init: tuple[int, int], iteration: int, seed: int) -> tuple[int, int]:
        """The network size of `iteration` (module docstring)."""
        from darkcfg.train.batches import _seed

        rng = np.random.default_rng(_seed(seed, 0x5CA1ED, iteration))
        big, gs = max(init), self.stride
        lo, hi = int(big * self.scale_low), int(big * self.scale_high + gs)
        size = int(rng.integers(lo, max(lo + 1, hi))) // gs * gs
        sf = size / big
        return tuple(max(gs, math.ceil(d * sf / gs) * gs) for d in init)  # type: ignore[return-value]


def largest_stride(model: Darknet) -> int:
    """The largest stride of the network's heads (the input size over the coarsest head's grid), at least 1."""
    strides = [model.net.width // max(1, m.in_shape.w) for m in model.layers if m.is_head]
    return max(strides, default=32) or 32


class ScaledOptimizer:
    """SGD with Nesterov momentum over the recipe's three groups; `step(iteration)` sets the iteration's rates and
    momentum (warm-up, cosine) and updates. The same interface as DarknetOptimizer."""

    def __init__(self, model: Darknet, recipe: ScaledRecipe) -> None:
        self.recipe = recipe
        conv, bias, other = [], [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if name.endswith("bias"):
                bias.append(p)
            elif name.endswith("conv.weight") or (p.ndim == 4 and "bn" not in name):
                conv.append(p)
            else:
                other.append(p)
        groups = [{"params": other, "weight_decay": 0.0, "kind": "other"},
                  {"params": conv, "weight_decay": recipe.decay, "kind": "conv"},
                  {"params": bias, "weight_decay": 0.0, "kind": "bias"}]
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError(f"{model.cfg_file}: the network has no trainable parameters")
        self.params = [p for g in groups for p in g["params"]]
        self.opt = torch.optim.SGD(groups, lr=recipe.lr0, momentum=recipe.momentum, nesterov=True)

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def rate(self, iteration: int) -> float:
        return self.recipe.rates(iteration)[0]

    def step(self, iteration: int, lr: Optional[float] = None) -> None:
        """Update with the recipe's rates of `iteration` (`lr` is ignored: the recipe sets it)."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        rate, bias, momentum = self.recipe.rates(iteration)
        for g in self.opt.param_groups:
            g["lr"] = bias if g["kind"] == "bias" else rate
            g["momentum"] = momentum
        self.opt.step()

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)


class ModelEMA:
    """The recipe's EMA of every float tensor of the model's state (parameters and batch-norm statistics), updated
    after each optimiser step with decay d = ema_decay (1 - exp(-updates / ema_ramp)). `swap()` exchanges it with
    the model's (to save it); the same interface as the reference's EMA."""

    def __init__(self, model: nn.Module, recipe: ScaledRecipe) -> None:
        self.decay, self.ramp = recipe.ema_decay, recipe.ema_ramp
        self.tensors = [t for t in model.state_dict(keep_vars=True).values() if t.dtype.is_floating_point]
        self.shadow = [t.detach().clone() for t in self.tensors]
        self.updates = 0

    @property
    def started(self) -> bool:
        return self.updates > 0

    def d(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, iteration: int) -> None:
        self.updates += 1
        d = self.d()
        for s, t in zip(self.shadow, self.tensors):
            s.mul_(d).add_(t.detach(), alpha=1 - d)

    @torch.no_grad()
    def swap(self) -> None:
        for s, t in zip(self.shadow, self.tensors):
            tmp = t.detach().clone()
            t.data.copy_(s)
            s.copy_(tmp)

    def state_dict(self) -> dict:
        return {"shadow": [s.cpu() for s in self.shadow], "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        shadow = state.get("shadow", [])
        if len(shadow) == len(self.shadow):
            self.shadow = [s.to(t.device) for s, t in zip(shadow, self.tensors)]
            self.updates = int(state.get("updates", 0))
