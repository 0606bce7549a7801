"""Training smoke tests on the synthetic shapes set: the loss falls, checkpoints load back with the
reference's `seen`, a resume with the sidecar is exact, a kill then resume continues at the stored
iteration, a NaN loss stops with the last good checkpoint named, Ctrl-C saves `_last`, and two processes
(gloo) end with identical weights."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from oracle import REPO

import darkcfg
from darkcfg.model.network import Darknet
from darkcfg.model.weights import load_weights, save_weights
from darkcfg.train.trainer import Trainer, TrainError, TrainOptions

FAST = {"burn_in": "4", "learning_rate": "0.005"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_shapes_dataset.py"), str(out), "--train", "24",
                    "--valid", "8", "--size", "96", "--seed", "1"], check=True, capture_output=True)
    return out


def _data(shapes: Path, tmp: Path, savelast: int = 100) -> str:
    d = tmp / "s.data"
    d.write_text((shapes / "shapes.data").read_text().replace(f"backup = {shapes / 'backup'}/", f"backup = {tmp}/b/")
                 + f"savelast = {savelast}\n")
    return str(d)


def _opts(shapes: Path, tmp: Path, **kw) -> TrainOptions:
    base = dict(data=_data(shapes, tmp, kw.pop("savelast", 100)), cfg=str(shapes / "yolov4-tiny-shapes.cfg"),
                size=(64, 64), batch=4, workers=kw.pop("workers", 0), progress=False, overrides=dict(FAST))
    base.update(kw)
    return TrainOptions(**base)


def test_loss_falls_and_checkpoints_load(shapes: Path, tmp_path: Path) -> None:
    losses = []
    opts = _opts(shapes, tmp_path, max_batches=30, workers=1, on_iteration=lambda it, loss: losses.append(loss))
    t0 = time.perf_counter()
    r = Trainer(opts).run()
    wall = time.perf_counter() - t0
    assert r.iteration == 30 and r.seen == 120
    # the loop's phases (bench_train.py --profile prints them): each measured, together within the run's time
    assert set(r.profile) == {"data", "forward+loss", "backward", "update", "other"}
    assert r.profile["forward+loss"] > 0 and r.profile["backward"] > 0 and sum(r.profile.values()) <= wall
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:3]) / 3, losses
    b = tmp_path / "b"
    for name in ("last", "final"):
        model = darkcfg.load(opts.cfg, b / f"yolov4-tiny-shapes_{name}.weights", size=64)
        assert model.header.seen == 120
    text = (b / "yolov4-tiny-shapes.log").read_text()
    assert " 30: " in text and "avg loss" in text and "v3 (ciou loss" in text
    rows = (b / "yolov4-tiny-shapes.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,loss") and len(rows) == 31
    assert (b / "chart.png").stat().st_size > 1000


def test_checkpoints_and_chart_get_the_umask_mode(shapes: Path, tmp_path: Path) -> None:
    """Under umask 022 everything in backup/ is 0644 (readable by a colleague or a serving account)."""
    old = os.umask(0o022)
    try:
        Trainer(_opts(shapes, tmp_path, max_batches=2)).run()
    finally:
        os.umask(old)
    b = tmp_path / "b"
    files = sorted(p.name for p in b.iterdir())
    assert {"yolov4-tiny-shapes_last.weights", "yolov4-tiny-shapes_last.state.pt", "yolov4-tiny-shapes_final.weights",
            "chart.png", "yolov4-tiny-shapes.log", "yolov4-tiny-shapes.csv"} <= set(files)
    assert {f: oct((b / f).stat().st_mode & 0o777) for f in files} == {f: oct(0o644) for f in files}


def test_a_folder_trains_on_every_image_detection_reads(tmp_path: Path) -> None:
    """One list of image extensions: training reads a folder as `darkcfg detect` does."""
    from darkcfg.data.dataset import image_list
    from darkcfg.infer.sources import expand_sources

    for name in ("a.jpg", "b.PNG", "c.pgm", "d.webp", "e.jp2", "f.tif", "g.txt"):
        (tmp_path / name).write_bytes(b"")
    detect = [s.path for s in expand_sources([str(tmp_path)])[0]]
    assert image_list(str(tmp_path)) == detect and len(detect) == 6


def test_resume_with_sidecar_is_exact(shapes: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "a", tmp_path / "b0"
    straight.mkdir()
    split.mkdir()
    Trainer(_opts(shapes, straight, max_batches=6)).run()
    Trainer(_opts(shapes, split, max_batches=3)).run()
    last = split / "b" / "yolov4-tiny-shapes_last.weights"
    assert (split / "b" / "yolov4-tiny-shapes_last.state.pt").is_file()
    r = Trainer(_opts(shapes, split, max_batches=6, weights=str(last))).run()
    assert r.iteration == 6 and r.seen == 24
    cfg = str(shapes / "yolov4-tiny-shapes.cfg")
    a = darkcfg.load(cfg, straight / "b" / "yolov4-tiny-shapes_final.weights", size=64).state_dict()
    b = darkcfg.load(cfg, split / "b" / "yolov4-tiny-shapes_final.weights", size=64).state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k


def test_kill_then_resume_continues_at_stored_iteration(shapes: Path, tmp_path: Path) -> None:
    data = _data(shapes, tmp_path, savelast=5)
    cmd = [sys.executable, "-m", "darkcfg", "train", data, str(shapes / "yolov4-tiny-shapes.cfg"), "--size", "64",
           "--batch", "4", "--workers", "0", "--set", "burn_in=4", "--max-batches", "500"]
    last = tmp_path / "b" / "yolov4-tiny-shapes_last.weights"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not last.exists():
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert last.exists(), "no _last checkpoint within 120 s"
    m = Darknet.from_file(shapes / "yolov4-tiny-shapes.cfg", size=(64, 64), warn_unused=False)
    load_weights(m, last)
    stored = m.header.seen // 4
    assert stored >= 5 and stored % 5 == 0
    out = subprocess.run(cmd[:-1] + [str(stored + 2), str(last)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"done: iteration {stored + 2}" in out.stdout
    log = (tmp_path / "b" / "yolov4-tiny-shapes.log").read_text()
    assert f"\n {stored + 1}: " in log


def test_nan_loss_stops_with_last_good_checkpoint(shapes: Path, tmp_path: Path) -> None:
    m = Darknet.from_file(shapes / "yolov4-tiny-shapes.cfg", size=(64, 64), warn_unused=False)
    with torch.no_grad():
        m.layers[0].conv.weight.fill_(float("nan"))
    w = tmp_path / "nan.weights"
    save_weights(m, w)
    with pytest.raises(TrainError, match="iteration 1: the loss is nan .*none written yet"):
        Trainer(_opts(shapes, tmp_path, max_batches=5, weights=str(w))).run()
    assert not (tmp_path / "b" / "yolov4-tiny-shapes_last.weights").exists()


def test_ctrl_c_saves_last(shapes: Path, tmp_path: Path) -> None:
    def interrupt(it: int, loss: float) -> None:
        if it == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(_opts(shapes, tmp_path, max_batches=50, on_iteration=interrupt)).run()
    m = Darknet.from_file(shapes / "yolov4-tiny-shapes.cfg", size=(64, 64), warn_unused=False)
    load_weights(m, tmp_path / "b" / "yolov4-tiny-shapes_last.weights")
    assert m.header.seen == 3 * 4


def test_sigint_mid_iteration_resumes_exactly(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    """SIGINT during the second subdivision of iteration 3: `_last` holds iteration 2 exactly (weights,
    batch-norm statistics, seen, optimiser state), so resuming from it ends where an uninterrupted run does."""
    import darkcfg.train.trainer as trainer_module

    kw = dict(max_batches=6, subdivisions=2)
    straight, split = tmp_path / "a", tmp_path / "b0"
    straight.mkdir()
    split.mkdir()
    Trainer(_opts(shapes, straight, **kw)).run()
    calls = []
    real = trainer_module.network_loss

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * 2 + 2:  # iteration 3, subdivision 2 (after subdivision 1's forward and backward)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "network_loss", interrupting)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even where it was ignored
    try:
        with pytest.raises(KeyboardInterrupt):
            Trainer(_opts(shapes, split, **kw)).run()
    finally:
        signal.signal(signal.SIGINT, before)
    monkeypatch.setattr(trainer_module, "network_loss", real)
    last = split / "b" / "yolov4-tiny-shapes_last.weights"
    m = Darknet.from_file(shapes / "yolov4-tiny-shapes.cfg", size=(64, 64), warn_unused=False)
    load_weights(m, last)
    assert m.header.seen == 2 * 4  # the last completed iteration, not the interrupted one
    r = Trainer(_opts(shapes, split, weights=str(last), **kw)).run()
    assert r.iteration == 6
    cfg = str(shapes / "yolov4-tiny-shapes.cfg")
    a = darkcfg.load(cfg, straight / "b" / "yolov4-tiny-shapes_final.weights", size=64).state_dict()
    b = darkcfg.load(cfg, split / "b" / "yolov4-tiny-shapes_final.weights", size=64).state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k


def test_a_failure_mid_training_saves_the_last_completed_iteration(shapes: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """An error inside iteration 3 (here raised by the loss): one line naming it and the `_last` written, which
    holds iteration 2 (seen 8), not a half-done iteration 3."""
    import darkcfg.train.trainer as trainer_module

    calls = []
    real = trainer_module.network_loss

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * 2 + 2:  # iteration 3, subdivision 2
            raise RuntimeError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "network_loss", failing)
    with pytest.raises(TrainError) as e:
        Trainer(_opts(shapes, tmp_path, max_batches=6, subdivisions=2)).run()
    last = tmp_path / "b" / "yolov4-tiny-shapes_last.weights"
    assert str(e.value) == (f"iteration 3: RuntimeError: out of memory (simulated); saved {last} at iteration 2: "
                            "resume with it as weights")
    m = Darknet.from_file(shapes / "yolov4-tiny-shapes.cfg", size=(64, 64), warn_unused=False)
    load_weights(m, last)
    assert m.header.seen == 2 * 4


EVIL = """
import pathlib, torch
class Evil:
    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path({marker!r}),))
torch.save({{"seen": 0, "optimizer": Evil()}}, {path!r})
"""


def test_a_crafted_sidecar_is_refused_without_running_it(shapes: Path, tmp_path: Path) -> None:
    """A .state.pt whose unpickling would create a file: resuming refuses it in one line, the file never
    appears (the sidecar is read with weights_only=True)."""
    weights = tmp_path / "x_last.weights"
    save_weights(Darknet.from_file(shapes / "yolov4-tiny-shapes.cfg", size=(64, 64), warn_unused=False), weights)
    marker = tmp_path / "pwned"
    subprocess.run([sys.executable, "-c", EVIL.format(marker=str(marker), path=str(tmp_path / "x_last.state.pt"))],
                   check=True)
    with pytest.raises(TrainError) as e:
        Trainer(_opts(shapes, tmp_path, max_batches=2, weights=str(weights)))
    assert not marker.exists()
    assert "x_last.state.pt: refused" in str(e.value) and "\n" not in str(e.value)
    assert "weights_only=False" not in str(e.value)


def _train_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "darkcfg", "train", *args], capture_output=True, text=True, cwd=REPO)


def test_training_failures_are_one_line_and_save_last(shapes: Path, tmp_path: Path) -> None:
    cfg = str(shapes / "yolov4-tiny-shapes.cfg")
    common = ["--size", "64", "--batch", "2", "--max-batches", "3", "--workers", "0", "--backup", str(tmp_path / "b")]
    # a .data without train=
    nodata = tmp_path / "none.data"
    nodata.write_text("classes = 3\n")
    r = _train_cli(str(nodata), cfg, *common)
    assert r.returncode == 1 and "none.data: no 'train' list" in r.stderr and "Traceback" not in r.stderr
    # --map with a names file that does not exist: refused before the first iteration
    text = (shapes / "shapes.data").read_text()
    missing = tmp_path / "missing.data"
    missing.write_text("".join(line + "\n" for line in text.splitlines() if not line.startswith("names"))
                       + f"names = {tmp_path / 'nope.names'}\n")
    r = _train_cli(str(missing), cfg, "--map", *common)
    assert r.returncode == 1 and "nope.names: no such names file (needed by --map)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # every training image unreadable: one line from the loader, nothing to save at iteration 0
    bad = tmp_path / "bad"
    bad.mkdir()
    for k in range(3):
        (bad / f"{k}.jpg").write_bytes(b"not a jpeg")
    r = _train_cli(str(bad), cfg, "--classes", "3", *common, "--workers", "1")
    assert r.returncode == 1 and "none of the 3 training images can be read" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "Error: loading the images of iteration 1:" in r.stderr


def test_a_fresh_run_starts_its_own_log_and_csv(shapes: Path, tmp_path: Path) -> None:
    for _ in range(2):
        Trainer(_opts(shapes, tmp_path, max_batches=2)).run()
    rows = (tmp_path / "b" / "yolov4-tiny-shapes.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("iteration")
    assert (tmp_path / "b" / "yolov4-tiny-shapes.log").read_text().count(" 2: ") == 1


def _free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it), so parallel or repeated runs do not collide."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DDP_SCRIPT = """
import sys, torch
from darkcfg.train.trainer import Trainer, TrainOptions
data, cfg, out = sys.argv[1:4]
t = Trainer(TrainOptions(data=data, cfg=cfg, size=(64, 64), batch=2, max_batches=3, workers=0, progress=False,
                         overrides={"burn_in": "1", "learning_rate": "0.01"}))
t.run()
torch.save({k: v.detach().cpu() for k, v in t.model.named_parameters()}, f"{out}/rank{t.rank}.pt")
"""


def test_two_processes_gloo_identical_weights(shapes: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "DARKCFG_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), str(script), _data(shapes, tmp_path),
                          str(shapes / "yolov4-tiny-shapes.cfg"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    start = Darknet.from_file(shapes / "yolov4-tiny-shapes.cfg", size=(64, 64), warn_unused=False)
    moved = 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k, v in start.named_parameters():
        moved += int(not torch.equal(v.detach(), a[k]))
    assert moved > 0


def test_cli_train_with_map_writes_best_and_csv(shapes: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from darkcfg.cli import main

    data = _data(shapes, tmp_path)
    res = CliRunner().invoke(main, ["train", data, str(shapes / "yolov4-tiny-shapes.cfg"), "--size", "64",
                                    "--batch", "4", "--max-batches", "6", "--workers", "0", "--map",
                                    "--map-every", "3", "--set", "burn_in=2"])
    assert res.exit_code == 0, res.output
    assert "done: iteration 6" in res.output and "best mAP@0.5" in res.output
    b = tmp_path / "b"
    assert (b / "yolov4-tiny-shapes_best.weights").is_file()
    rows = [r.split(",") for r in (b / "yolov4-tiny-shapes.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows if r[5]] == ["3", "6"]  # mAP measured at 3 and 6
    assert "mean_average_precision (mAP@0.50)" in (b / "yolov4-tiny-shapes.log").read_text()
    bad = CliRunner().invoke(main, ["train", str(tmp_path / "none.data"), str(shapes / "yolov4-tiny-shapes.cfg")])
    assert bad.exit_code == 1 and "no such .data file or folder" in bad.output


def test_region_cfg_trains(shapes: Path, tmp_path: Path) -> None:
    """A YOLOv2 cfg ([region] head, darkcfg's cfg/yolov2-tiny.cfg adapted to the set's classes) trains:
    the loss falls, the log has the reference's Region line, and the checkpoint loads back."""
    spec = importlib.util.spec_from_file_location("msd", REPO / "scripts" / "make_shapes_dataset.py")
    msd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(msd)
    classes = len((shapes / "shapes.names").read_text().split())
    cfg = tmp_path / "yolov2-tiny-shapes.cfg"
    cfg.write_text(msd.adapt_cfg((REPO / "cfg" / "yolov2-tiny.cfg").read_text(), classes))
    losses = []
    opts = _opts(shapes, tmp_path, cfg=str(cfg), max_batches=30, overrides={"burn_in": "4", "learning_rate": "0.001"},
                 on_iteration=lambda it, loss: losses.append(loss))
    r = Trainer(opts).run()
    assert r.iteration == 30 and r.seen == 120  # random=1: sizes change, --batch stays
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:5]) / 5, losses
    b = tmp_path / "b"
    assert "Region Avg IOU" in (b / "yolov2-tiny-shapes.log").read_text()
    model = darkcfg.load(str(cfg), b / "yolov2-tiny-shapes_final.weights", size=64)
    assert model.header.seen == 120


def test_set_size_keeps_net_options_and_parameters() -> None:
    model = darkcfg.load(str(REPO / "cfg" / "yolov2-tiny.cfg"), size=64)
    model.net.batch, model.net.subdivisions = 8, 2
    params = [p.data_ptr() for p in model.parameters()]
    model.set_size(96, 128)
    assert (model.net.batch, model.net.mini_batch, model.net.width, model.net.height) == (8, 4, 96, 128)
    assert [p.data_ptr() for p in model.parameters()] == params
    assert model(torch.rand(1, 3, 128, 96))[0].shape[1:3] == (4, 3)
    model.set_size(64, 64)
    assert model.net.batch == 8 and model(torch.rand(1, 3, 64, 64))[0].shape[1:3] == (2, 2)


def _small_cfg(shapes: Path, tmp_path: Path, name: str, body: str, net: str = "") -> str:
    classes = len((shapes / "shapes.names").read_text().split())
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(f"""[net]
batch=4
subdivisions=1
width=64
height=64
channels=3
learning_rate=0.001
burn_in=4
max_batches=100
policy=constant
{net}
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky
""" + body.format(classes=classes, filters=3 * (classes + 5), outputs=4 * 4 * (2 * 5 + classes)))
    return str(cfg)


def test_a_tracking_cfg_trains_on_consecutive_frames(shapes: Path, tmp_path: Path) -> None:
    """track=1, time_steps=3: each forward is 4 sequences x 3 consecutive list images, step-major, through a
    [crnn]; the reference counts mini_batch * time_steps images per forward in `seen`."""
    from darkcfg.train.batches import Sequences, TrainSampler
    sampler = TrainSampler(24, 12, (64, 64), 0, 32, 10, seed=5, sequences=Sequences(4, 3, 2))
    items = next(iter(sampler))
    idx = [it.index for it in items]
    for s in range(4):
        steps = [idx[s + 4 * t] for t in range(3)]
        speed = (steps[1] - steps[0]) % 24
        assert speed in (1, 2) and (steps[2] - steps[1]) % 24 == speed
        assert len({items[s + 4 * t].seed for t in range(3)}) == 1  # one augmentation draw per sequence
    cfg = _small_cfg(shapes, tmp_path, "track", """[crnn]
batch_normalize=1
size=3
pad=1
output=16
hidden=8
activation=leaky
[convolutional]
size=1
filters={filters}
activation=linear
[yolo]
mask=0,1,2
anchors=10,14,23,27,37,58
classes={classes}
num=3
""", net="track=1\ntime_steps=3\naugment_speed=2")
    r = Trainer(_opts(shapes, tmp_path, cfg=cfg, max_batches=3, overrides={})).run()
    assert r.iteration == 3 and r.seen == 3 * 4 * 3


def test_a_yolov1_detection_cfg_trains(shapes: Path, tmp_path: Path) -> None:
    cfg = _small_cfg(shapes, tmp_path, "v1", """[connected]
output={outputs}
activation=linear
[detection]
classes={classes}
coords=4
rescore=1
side=4
num=2
softmax=1
sqrt=1
object_scale=1
noobject_scale=.5
class_scale=1
coord_scale=5
""")
    losses = []
    r = Trainer(_opts(shapes, tmp_path, cfg=cfg, max_batches=40, overrides={"learning_rate": "0.0005"},
                      on_iteration=lambda it, loss: losses.append(loss))).run()
    assert r.iteration == 40
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:3]) / 3, losses
    assert "Detection Avg IOU" in (tmp_path / "b" / "v1.log").read_text()


def test_bench_train_times_the_reference_from_its_own_iteration_lines(shapes: Path, tmp_path: Path) -> None:
    """scripts/bench_train.py --reference: the binary gets the same data, weights and a cfg whose [net] has darkcfg's
    batch, size and schedule; its rate comes from the per-iteration line detector.c's train_detector prints
    (" %d: %f, %f avg loss, %f rate, %lf seconds, %d images, %f hours left"), after the third iteration."""
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "scripts" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lines = [" Used AVX ", " OpenCV isn't used - data augmentation will be slow "] + [
        f"\n {i}: {'-nan' if i == 5 else '5.1'}, 6.2 avg loss, 0.001000 rate, {9.0 if i <= 3 else 4.0:f} seconds, "
        f"{16 * i} images, 0.1 hours left" for i in range(1, 7)]
    printed = "\n".join(lines)
    fake = tmp_path / "darknet"
    fake.write_text(f"#!{sys.executable}\nimport json, pathlib, sys\n"
                    f"pathlib.Path('args.json').write_text(json.dumps(sys.argv[1:]))\nprint({printed!r})\n")
    fake.chmod(0o755)
    data, cfg = Path(_data(shapes, tmp_path)), tmp_path / "c.cfg"
    cfg.write_text((shapes / "yolov4-tiny-shapes.cfg").read_text())
    opts = _opts(shapes, tmp_path, batch=16, size=(96, 64))
    run = bench.reference_rate(fake, data, cfg, tmp_path / "w.conv", opts, 6, tmp_path / "ref.log")
    assert run.rate == pytest.approx(48 / 12) and run.nan_at == 5  # iterations 4-6: 48 images in 12 s
    assert run.build == ["Used AVX", "OpenCV isn't used - data augmentation will be slow"]
    args = json.loads((tmp_path / "args.json").read_text())
    ref_cfg, ref_data = tmp_path / "c-reference.cfg", tmp_path / "s-reference.data"
    assert args == ["detector", "train", str(ref_data), str(ref_cfg), str(tmp_path / "w.conv"), "-dont_show", "-nomap"]
    net = Darknet(ref_cfg.read_text(), str(ref_cfg)).net
    assert (net.batch, net.subdivisions, net.width, net.height, net.max_batches, net.burn_in) == (16, 1, 96, 64, 6, 4)
    assert f"backup = {tmp_path / 'reference-backup'}/" in ref_data.read_text()
