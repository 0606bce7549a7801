"""The reference's weight update (update_convolutional_layer & co.) and EMA, on torch optimisers.

Darknet accumulates `u += -grad` over the iteration's images, then for weights `u += -decay*B*W`,
`W += lr*lr_scale/B * u`, `u *= momentum`, and the same without decay for biases and batch-norm scales,
with B = batch*subdivisions. That is exactly torch's SGD (momentum, no dampening) on gradients divided by B,
with `weight_decay=decay` on weights only: `DarknetOptimizer` sets that up from [net] and each layer's
`learning_rate` scale, `dont_update`, `burnin_update` and `train_only_bn`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from darkcfg.model.network import Darknet

NO_DECAY_SUFFIXES = ("bias", "bn.weight", "scales")  # biases and batch-norm scales: no decay in the reference


class DarknetOptimizer:
    """SGD (or Adam when [net] adam=1) over a Darknet model, one parameter group per layer and kind.

    `step(iteration, lr)` applies one update with the rate of `schedule.learning_rate`; gradients must be
    the summed loss gradient divided by B = images per iteration (what `Trainer` does).
    """

    def __init__(self, model: Darknet, images_per_iteration: int) -> None:
        net = model.net
        self.model = model
        groups = []
        for i, layer in enumerate(model.layers):
            decay, plain = [], []
            for name, p in layer.named_parameters():
                if not p.requires_grad:
                    continue
                if getattr(layer, "train_only_bn", 0) and ".bn." not in f".{name}":
                    continue  # train_only_bn: the layer's own weights stay fixed
                (plain if name.endswith(NO_DECAY_SUFFIXES) else decay).append(p)
            scale = float(getattr(layer, "learning_rate_scale", 1.0))
            for params, wd in ((decay, net.decay), (plain, 0.0)):
                if params:
                    groups.append({"params": params, "weight_decay": wd, "lr_scale": scale, "layer": i,
                                   "dont_update": int(getattr(layer, "dont_update", 0)),
                                   "burnin_update": int(getattr(layer, "burnin_update", 0))})
        if not groups:
            raise ValueError(f"{model.cfg_file}: the network has no trainable parameters")
        self.params = [p for g in groups for p in g["params"]]
        if net.adam:
            # adam_update: d = -(sum of gradients) - decay*B*W, so the gradient is B times ours: eps / B
            for g in groups:
                g["weight_decay"] = net.decay
            self.opt: torch.optim.Optimizer = torch.optim.Adam(
                groups, lr=net.learning_rate, betas=(net.B1, net.B2), eps=net.eps / images_per_iteration)
        else:
            self.opt = torch.optim.SGD(groups, lr=net.learning_rate, momentum=net.momentum)
        self.burn_in = net.burn_in

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self, iteration: int, lr: float) -> None:
        """Update with rate `lr` (before per-layer scales) at iteration `iteration` (1 for the first)."""
        for p in self.params:  # a layer behind stopbackward still decays, as the reference's update does
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for g in self.opt.param_groups:
            frozen = g["dont_update"] >= iteration or g["burnin_update"] * self.burn_in > iteration
            g["lr"] = 0.0 if frozen else lr * g["lr_scale"]
        self.opt.step()

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)


class EMA:
    """train_network_waitkey's exponential moving average of conv weights, biases and scales.

    From iteration max_batches/2 on: initialised once with the weights, then ema = a*ema + (1-a)*W each
    iteration until max_batches-1000, where the weights are replaced by the average.
    """

    def __init__(self, model: nn.Module, alpha: float, max_batches: int) -> None:
        self.alpha, self.max_batches = alpha, max_batches
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow: list[Tensor] = []

    @property
    def started(self) -> bool:
        return bool(self.shadow)

    @torch.no_grad()
    def update(self, iteration: int) -> None:
        if not self.alpha or iteration < self.max_batches // 2:
            return
        if not self.shadow:
            self.shadow = [p.detach().clone() for p in self.params]
        if iteration < self.max_batches - 1000:
            for s, p in zip(self.shadow, self.params):
                s.mul_(self.alpha).add_(p.detach(), alpha=1 - self.alpha)
        elif iteration == self.max_batches - 1000:
            for s, p in zip(self.shadow, self.params):
                p.copy_(s)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's weights and the average (to save `_ema.weights`, then swap back)."""
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)

    def state_dict(self) -> dict:
        return {"shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        device = self.params[0].device if self.params else "cpu"
        self.shadow = [s.to(device) for s in state.get("shadow", [])]


def channels_last_weights(model: Darknet) -> None:
    """Store every convolution's weights channels-last (NHWC), in place (the same Parameter objects, so set_size's
    cached layers and the optimiser keep them). With a channels-last input oneDNN's CPU convolutions and the
    max-pools run without layout reorders: a yolov3-tiny training step at 224 ~1.2x faster on this CPU. Values
    are unchanged (saved weights are written in the reference's order whatever the layout)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
