"""The learning rate of an iteration, as network.c:get_current_rate computes it."""
from __future__ import annotations

import math
import random
from typing import Optional

from darkcfg.model.netconfig import NetConfig


def learning_rate(net: NetConfig, batch_num: int, rng: Optional[random.Random] = None) -> float:
    """The rate used by the update of iteration `batch_num` (= seen / (batch*subdivisions), so 1 in the
    first update), before the reference's multiplication by the number of GPUs.

    Burn-in first: lr * (batch_num/burn_in)^power while batch_num < burn_in; then the [net] policy:
    constant, step (scale^(batch_num//step)), steps (each scale whose step <= batch_num), exp (gamma^n),
    poly ((1 - n/max_batches)^power), sigmoid (1/(1 + e^(gamma (n - step)))), random (U(0,1)^power, drawn
    from `rng`) and sgdr (cosine from lr to learning_rate_min over cycles of sgdr_cycle iterations whose
    length is multiplied by sgdr_mult at each restart).
    """
    lr = net.learning_rate
    if batch_num < net.burn_in:
        return lr * math.pow(batch_num / net.burn_in, net.power)
    p = net.policy
    if p == "step":
        return lr * math.pow(net.scale, batch_num // max(1, net.step))
    if p == "steps":
        for step, scale in zip(net.steps, net.scales):
            if step > batch_num:
                break
            lr *= scale
        return lr
    if p == "exp":
        return lr * math.pow(net.gamma, batch_num)
    if p == "poly":
        return lr * math.pow(max(0.0, 1 - batch_num / max(1, net.max_batches)), net.power)
    if p == "random":
        return lr * math.pow((rng or random).random(), net.power)
    if p == "sigmoid":
        return lr * (1.0 / (1.0 + math.exp(net.gamma * (batch_num - net.step))))
    if p == "sgdr":
        start, cycle = 0, max(1, net.sgdr_cycle)
        while start + cycle < batch_num:
            start += cycle
            cycle *= max(1, net.sgdr_mult)
        return net.learning_rate_min + 0.5 * (lr - net.learning_rate_min) * (
            1.0 + math.cos((batch_num - start) * 3.14159265 / cycle))
    return lr
