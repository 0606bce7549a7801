"""Three SGD iterations against the reference (reference/sgd/) and the learning-rate schedule.

From step_0.weights, darkcfg's loss, back-propagation, burn-in/steps schedule and SGD update (momentum,
decay on weights only) on the stored batch must land on step_1/2/3.weights, with the reference's losses,
learning rates and `seen`. The reference's CPU backward drops the gradient that a [route] sends to a layer
also read by a 1x1 convolution (see Darknet.forward_heads); the exact comparison reproduces that, and a
second test shows that the default (the GPU path's full gradient) differs only behind that route.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from oracle import CFG_DIR, REF, needs_shared

from darkcfg.model.network import Darknet
from darkcfg.model.weights import load_weights, save_weights
from darkcfg.train.losses import network_loss
from darkcfg.train.optim import DarknetOptimizer, channels_last_weights
from darkcfg.train.schedule import learning_rate

SGD = REF / "sgd"


def _load(step: int) -> Darknet:
    m = Darknet.from_file(SGD / "tiny-sgd.cfg")
    load_weights(m, SGD / f"step_{step}.weights")
    return m


def _reference_steps() -> list[tuple[float, float]]:
    rows = [line.split() for line in (SGD / "steps.txt").read_text().splitlines() if line.startswith("step")]
    return [(float(r[3]), float(r[7])) for r in rows]  # (loss, lr_used)


def _iterate(model: Darknet, steps: int, quirk: bool, channels_last: bool = False) -> list[tuple[float, float, int]]:
    batch = np.load(SGD / "batch.npz")
    x, truths = torch.tensor(batch["input"]), torch.tensor(batch["truths"])
    if channels_last:  # as the trainer runs on a CPU
        channels_last_weights(model)
        x = x.contiguous(memory_format=torch.channels_last)
    net = model.net
    images = net.mini_batch * net.subdivisions
    opt = DarknetOptimizer(model, images)
    model.train()
    out, seen = [], 0
    for it in range(1, steps + 1):
        opt.zero_grad()
        total = 0.0
        for s in range(net.subdivisions):
            part = slice(s * net.mini_batch, (s + 1) * net.mini_batch)
            seen += net.mini_batch
            r = network_loss(model, x[part], truths[part], cpu_1x1_overwrite=quirk)
            (r.loss / images).backward()
            total += r.cost
        lr = learning_rate(net, seen // images)
        opt.step(it, lr)
        out.append((total / images, lr, seen))
    return out


@needs_shared
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_three_iterations_land_on_reference_weights(channels_last: bool, tmp_path) -> None:  # noqa: ANN001
    model = _load(0)
    got = _iterate(model, 3, quirk=True, channels_last=channels_last)
    ref_steps = _reference_steps()
    assert len(ref_steps) == len(got) == 3, f"steps.txt has {len(ref_steps)} steps, expected 3"
    for k, ((loss, lr, seen), (ref_loss, ref_lr)) in enumerate(zip(got, ref_steps), start=1):
        assert loss == pytest.approx(ref_loss, rel=1e-5), f"iteration {k}: loss {loss} vs {ref_loss}"
        assert lr == pytest.approx(ref_lr, rel=1e-6), f"iteration {k}: learning rate {lr} vs {ref_lr}"
        assert seen == 2 * k
    # after the third update the weights must equal step_3 (earlier steps are pinned via the losses)
    for k in (3,):
        ref = _load(k)
        assert ref.header.seen == 2 * k
        for (name, p), (_, q) in zip(model.state_dict().items(), ref.state_dict().items()):
            err = float((p - q).abs().max() / q.abs().max().clamp_min(1e-12))
            assert err < 1e-4, f"step {k}: {name} differs by {err:.2e} (relative to its largest value)"
    if channels_last:  # the file is written in the reference's order whatever the layout in memory
        save_weights(model, tmp_path / "cl.weights")
        plain = _load(0)
        plain.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
        save_weights(plain, tmp_path / "plain.weights")
        assert (tmp_path / "cl.weights").read_bytes() == (tmp_path / "plain.weights").read_bytes()


@needs_shared
@pytest.mark.parametrize("k", [1, 2])
def test_intermediate_weights(k: int) -> None:
    model = _load(0)
    _iterate(model, k, quirk=True)
    ref = _load(k)
    for (name, p), (_, q) in zip(model.state_dict().items(), ref.state_dict().items()):
        err = float((p - q).abs().max() / q.abs().max().clamp_min(1e-12))
        assert err < 1e-4, f"step {k}: {name} differs by {err:.2e}"


@needs_shared
def test_full_gradient_differs_only_behind_the_dropped_route() -> None:
    model = _load(0)
    _iterate(model, 1, quirk=False)
    ref = _load(1)
    sd, rd = model.state_dict(), ref.state_dict()
    for i in (4, 9):  # the two head convolutions: their gradient does not pass through layer 3
        for t in ("weight", "bias"):
            key = f"layers.{i}.conv.{t}"
            assert torch.allclose(sd[key], rd[key], rtol=0, atol=1e-6), key
    # layer 3 is read by the 1x1 conv 4 and by route 6: the full gradient moves it differently
    assert not torch.allclose(sd["layers.3.conv.weight"], rd["layers.3.conv.weight"], rtol=0, atol=1e-5)


def _c_rate(lr: float, burn_in: int, power: float, steps: list[int], scales: list[float], n: int) -> float:
    """get_current_rate for policy=steps, in the C's float32 arithmetic."""
    f = np.float32
    if n < burn_in:
        return float(f(lr) * f(math.pow(float(f(n) / f(burn_in)), power)))
    rate = f(lr)
    for s, sc in zip(steps, scales):
        if s > n:
            break
        rate = f(rate * f(sc))
    return float(rate)


@needs_shared
@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov4-p5"])
def test_schedule_first_1200_iterations(name: str) -> None:
    net = Darknet.from_file(CFG_DIR / f"{name}.cfg", size=(64, 64), warn_unused=False).net
    assert net.policy == "steps" and net.burn_in == 1000 and net.power == 4
    for n in range(1, 1201):
        want = _c_rate(net.learning_rate, net.burn_in, net.power, net.steps, net.scales, n)
        assert learning_rate(net, n) == pytest.approx(want, rel=1e-6), n
    assert learning_rate(net, 500) == pytest.approx(net.learning_rate / 16)
    assert learning_rate(net, 1000) == pytest.approx(net.learning_rate)
    assert learning_rate(net, net.steps[0]) == pytest.approx(net.learning_rate * net.scales[0])
