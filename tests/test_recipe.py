"""`train --recipe scaled` (the Scaled-YOLOv4 authors' optimisation on an unchanged cfg) and the anchor check:
the schedule equals its formula, decay reaches convolution weights only, the saved weights are the EMA computed
here independently, and the anchors' best possible recall is the authors' metric."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from oracle import REPO

from darkcfg.model.network import Darknet
from darkcfg.model.weights import load_weights
from darkcfg.train.anchors import best_possible_recall, check_anchors, evolve_anchors
from darkcfg.train.recipe import ScaledOptimizer, ScaledRecipe
from darkcfg.train.trainer import Trainer, TrainOptions


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_shapes_dataset.py"), str(out), "--train", "16",
                    "--valid", "4", "--size", "96", "--seed", "2"], check=True, capture_output=True)
    return out


def _opts(shapes: Path, tmp: Path, **kw) -> TrainOptions:
    data = tmp / "s.data"
    data.write_text((shapes / "shapes.data").read_text().replace(f"backup = {shapes / 'backup'}/",
                                                                   f"backup = {tmp}/b/"))
    base = dict(data=str(data), cfg=str(shapes / "yolov4-tiny-shapes.cfg"), size=(64, 64), batch=4, workers=0,
                progress=False, recipe="scaled", overrides={"learning_rate": "0.005"})
    base.update(kw)
    return TrainOptions(**base)


def test_schedule_is_its_formula():
    r = ScaledRecipe(lr0=0.01, momentum=0.937, decay=0.0005, max_batches=1000, warmup=100)
    lf = lambda x: ((1 + math.cos(x * math.pi / 1000)) / 2) * 0.8 + 0.2  # noqa: E731 - the authors' lf
    for it in (1, 50, 100, 101, 500, 1000):
        lr, bias, mom = r.rates(it)
        x = it - 1
        if x < 100:  # warm-up: np.interp between (0, start) and (warmup, the cosine's value)
            f = x / 100
            assert lr == pytest.approx(f * 0.01 * lf(x)) and mom == pytest.approx(0.9 + f * (0.937 - 0.9))
            assert bias == pytest.approx(0.1 + f * (0.01 * lf(x) - 0.1))
        else:
            assert lr == bias == pytest.approx(0.01 * lf(x)) and mom == 0.937
    assert r.rates(1000)[0] == pytest.approx(0.01 * lf(999))


def test_warm_up_and_ema_ramp_follow_the_run(shapes):
    """The authors' warm-up max(3 epochs, 1000) with the cfg's burn_in for their 1000, at most half the run; the
    EMA ramp their 2000 updates, or a fifth of a run shorter than 10000 iterations."""
    model = Darknet((shapes / "yolov4-tiny-shapes.cfg").read_text(), "t.cfg", (64, 64))
    for burn_in, max_batches, per_epoch, warmup, ramp in ((100, 1200, 25, 100, 240), (1000, 500500, 1849, 5547, 2000),
                                                          (1000, 1200, 10, 600, 240), (0, 1200, 10, 30, 240)):
        model.net.burn_in, model.net.max_batches = burn_in, max_batches
        r = ScaledRecipe.for_run(model, per_epoch)
        assert (r.warmup, r.ema_ramp, r.multi_scale) == (warmup, ramp, False)


def test_multi_scale_draws_sizes_within_half_either_way(shapes, tmp_path):
    """--multi-scale: sizes in [0.5 s, 1.5 s] in steps of the largest stride (32 for yolov4-tiny), both ends drawn;
    without it the recipe trains at the cfg's size (not
    its random=, as the authors' train.py); with the darknet recipe it is refused."""
    model = Darknet((shapes / "yolov4-tiny-shapes.cfg").read_text(), "t.cfg", (128, 128))
    r = ScaledRecipe.for_run(model, 10, multi_scale=True)
    sizes = {r.size_at((128, 128), it, 0) for it in range(300)}
    assert sizes == {(s, s) for s in (64, 96, 128, 160, 192)}
    assert r.size_at((128, 96), 7, 0)[1] % 32 == 0
    cfg = tmp_path / "random.cfg"  # the cfg asks for Darknet's multi-scale, which the recipe does not read
    cfg.write_text(re.sub(r"^random=0", "random=1", (shapes / "yolov4-tiny-shapes.cfg").read_text(), flags=re.M))
    trainer = Trainer(_opts(shapes, tmp_path, max_batches=2, cfg=str(cfg)))
    sampler = trainer._loader().batch_sampler
    assert not trainer.recipe.multi_scale and {sampler.size_at(it) for it in range(300)} == {(64, 64)}
    darknet = Trainer(_opts(shapes, tmp_path, max_batches=300, cfg=str(cfg), recipe="darknet"))
    assert len({darknet._loader().batch_sampler.size_at(it) for it in range(300)}) > 1  # random=1 is read there
    with pytest.raises(Exception, match="--multi-scale: only with --recipe scaled"):
        Trainer(_opts(shapes, tmp_path, recipe="darknet", multi_scale=True))


def test_decay_reaches_convolution_weights_only(shapes):
    model = Darknet((shapes / "yolov4-tiny-shapes.cfg").read_text(), "t.cfg", (64, 64))
    opt = ScaledOptimizer(model, ScaledRecipe.for_run(model, 10))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["kind"]: (g["weight_decay"], [names[id(p)] for p in g["params"]]) for g in opt.opt.param_groups}
    assert groups["conv"][0] == model.net.decay and all(n.endswith("conv.weight") for n in groups["conv"][1])
    assert groups["bias"][0] == 0 and all(n.endswith("bias") for n in groups["bias"][1])
    assert groups["other"][0] == 0 and all(".bn." in n for n in groups["other"][1])
    convs = [n for n, p in model.named_parameters() if p.ndim == 4]
    assert sorted(groups["conv"][1]) == sorted(convs) and opt.opt.defaults["nesterov"]


def test_saved_weights_are_the_ema_of_the_trained_ones(shapes, tmp_path):
    states: list[dict] = []
    trainer = Trainer(_opts(shapes, tmp_path, max_batches=3, calc_map=True, map_every=3))
    model = trainer.model
    floats = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point]
    states.append({k: model.state_dict()[k].detach().clone() for k in floats})
    trainer.opts.on_iteration = lambda it, loss: states.append({k: model.state_dict()[k].detach().clone()
                                                                for k in floats})
    r = trainer.run()
    ema = {k: v.clone() for k, v in states[0].items()}
    ramp = 0.6  # a fifth of this 3-iteration run (the authors' 2000 updates only from 10000 iterations)
    for n, s in enumerate(states[1:], 1):  # the authors' ModelEMA: d = 0.9999 (1 - e^(-updates / ramp))
        d = 0.9999 * (1 - math.exp(-n / ramp))
        for k in floats:
            ema[k] = ema[k] * d + s[k] * (1 - d)
    saved = Darknet((shapes / "yolov4-tiny-shapes.cfg").read_text(), "t.cfg", (64, 64))
    load_weights(saved, r.final)
    got = saved.state_dict()
    for k in floats:
        if k.endswith("num_batches_tracked"):
            continue
        assert torch.allclose(got[k], ema[k].to(got[k].dtype), atol=1e-6), k
    assert not torch.allclose(got[floats[0]], states[-1][floats[0]])  # not simply the last trained weights
    # --map measured the EMA weights, which _best holds: darkcfg's map on that file agrees
    from darkcfg.eval.runner import compute_map

    best = Darknet((shapes / "yolov4-tiny-shapes.cfg").read_text(), "t.cfg", (64, 64))
    load_weights(best, Path(str(r.final).replace("_final", "_best")))
    names = (shapes / "shapes.names").read_text().split()
    paths = trainer.map_runs.paths
    assert compute_map(best.eval(), paths, names, progress=False).map == pytest.approx(r.best_map, abs=1e-9)


def test_anchor_recall_is_the_authors_metric_and_auto_anchors_improves_it(shapes, tmp_path):
    wh = np.array([[10, 10], [40, 12], [100, 100], [3, 30]], float)
    anchors = np.array([[10, 10], [100, 90]], float)
    # a box fits an anchor when each side is within 4x of the anchor's (the ratio min(r, 1/r) above 1/4)
    expect = np.mean([any(min(min(b / a), min(a / b)) > 0.25 for a in anchors) for b in wh])
    assert best_possible_recall(wh, anchors) == pytest.approx(expect)
    refined, fit = evolve_anchors(wh, anchors, generations=200)
    assert best_possible_recall(wh, refined) >= best_possible_recall(wh, anchors)
    text = (shapes / "yolov4-tiny-shapes.cfg").read_text()
    bad = re.sub(r"anchors\s*=.*", "anchors = 1,1, 2,2, 3,3, 4,4, 5,5, 6,6", text)
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(bad)
    model = Darknet(bad, str(cfg), (64, 64))
    paths = sorted(str(p) for p in (shapes / "train").glob("*.jpg")) if (shapes / "train").is_dir() else \
        (shapes / "train.txt").read_text().split()
    c = check_anchors(model, paths, auto=True)
    assert c is not None and c.recall < 0.98 and c.new is not None and c.new_recall > c.recall
    r = Trainer(_opts(shapes, tmp_path, cfg=str(cfg), max_batches=1, recipe="darknet", auto_anchors=True)).run()
    written = tmp_path / "bad.anchors.cfg"
    assert written.is_file() and cfg.read_text() == bad and r.iteration == 1
    assert check_anchors(Darknet(written.read_text(), str(written), (64, 64)), paths).recall == pytest.approx(
        c.new_recall, abs=0.05)


def test_resuming_under_another_recipe_keeps_the_runs_figures(shapes, tmp_path, caplog):
    """A checkpoint of the scaled recipe resumed with the darknet one (or with other recipe values, as after an
    upgrade): the optimiser state is left out, with a note naming why, but the loss history and best mAP carry on."""
    Trainer(_opts(shapes, tmp_path, max_batches=2)).run()
    last = tmp_path / "b" / "yolov4-tiny-shapes_last.weights"
    stored = torch.load(last.with_suffix(".state.pt"), weights_only=True)
    assert stored["history"]
    with caplog.at_level("INFO", logger="darkcfg"):
        resumed = Trainer(_opts(shapes, tmp_path, max_batches=4, recipe="darknet", weights=str(last)))
    assert resumed.history == list(stored["history"]) and resumed.best_map == stored["best_map"]
    assert "made with another recipe (darknet vs scaled)" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="darkcfg"):  # the same recipe, one value changed: the note names it
        resumed = Trainer(_opts(shapes, tmp_path, max_batches=2, weights=str(last), multi_scale=True))
    assert resumed.history == list(stored["history"])
    assert "made with another recipe (multi_scale)" in caplog.text
