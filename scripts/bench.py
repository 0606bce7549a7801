#!/usr/bin/env python3
"""Inference benchmark: darkcfg (eager, fast, compiled, compiled bf16) against OpenCV DNN, side by side.

    python scripts/bench.py [--threads 2] [--repeats 5] [--models yolov4-tiny yolov4-csp yolov4-p5] [--quick]
                            [--isolate [--rounds 3]]

For yolov4-tiny.cfg at 416, yolov4-csp.cfg at 512 and yolov4-p5.cfg at 896 (darkcfg's cfg/, which build the
same networks as the reference's), with the same random weights (written to a .weights file that OpenCV reads)
and the same inputs: the forward's latency at batch 1 and its time per image at batch 8, every mode's runs
interleaved (mode A, B, C, D, then again; a 50 ms pause before each, so that no runtime's idle threads,
still spinning, slow the next), medians printed with their ratio to OpenCV DNN. Modes:
- eager: `Darknet` as built (batch-norm separate, NCHW);
- fast: `InferenceModel` (batch-norm folded, channels-last) - what `darkcfg detect` runs by default;
- compiled: fast + torch.compile (inductor, frozen weights) - `darkcfg detect --compile`;
- bf16: compiled with bfloat16 autocast - `darkcfg detect --compile --half` (not bit-exact);
- openvino / openvino-default / openvino-int8: `darkcfg detect --runtime openvino` (`--precision fp32` / `default`:
  OpenVINO's own choice, bf16 on CPUs that have it / `int8`: NNCF's post-training quantization, calibrated here on
  ../shared/images or, without them, on 8 generated images), the same pipeline on OpenVINO's kernels;
- ort, ov-fp32, ov-default: darkcfg's ONNX export (`darkcfg export`, dynamic batch) run by ONNX Runtime and by
  OpenVINO itself (f32 precision hint, and its default), as a user would run them outside darkcfg;
- OpenCV DNN: cv2.dnn.readNetFromDarknet, DNN_BACKEND_OPENCV, the same thread count.
Then, for yolov4-tiny at batch 1, the cost of decode + NMS + drawing against the forward, and in separate
processes the peak memory of `darkcfg detect`'s model (fast) against the weights + the activations the
network needs at once. Thread count is fixed (--threads) and printed. With --isolate every runtime runs in its
own process, and with --rounds in several rounds of new processes (`bench_isolated`); the verdicts on the
targets (darkcfg's fastest exact and reduced-precision modes against OpenVINO on darkcfg's ONNX export) are
ratios taken within each round (`target_lines`).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import cv2
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import darkcfg  # noqa: E402
from darkcfg.infer.fast import InferenceModel  # noqa: E402
from darkcfg.model.weights import save_weights  # noqa: E402

SIZES = {"yolov4-tiny": 416, "yolov4-csp": 512, "yolov4-p5": 896}


def random_weights(model: darkcfg.Darknet, seed: int = 0) -> None:
    """Uniform weights scaled by fan-in, batch-norm statistics away from 0; the head convolutions x20 with
    objectness biases at -3.5, so that detection finds some tens of boxes (as a trained network finds a few),
    not none and not thousands."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            bn = getattr(layer, "bn", None)
            for b in layer.darknet_blobs():
                t, u = b.tensor, torch.rand(b.tensor.shape, generator=g)
                if bn is not None and (t is bn.running_var or t is bn.weight):
                    t.copy_(u + 0.5)
                elif t.dim() > 1:
                    t.copy_((u * 2 - 1) * (3.0 / t[0].numel()) ** 0.5)
                else:
                    t.copy_(u * 0.2 - 0.1)
        for i in model.output_layers:
            conv = model.layers[i - 1]
            head = model.layers[i]
            if getattr(conv, "conv", None) is not None and conv.conv.bias is not None:
                conv.conv.weight.mul_(20.0)
                conv.conv.bias.view(head.n, -1)[:, 4] = -3.5


def cfg_at(name: str, size: int, out: Path) -> Path:
    text = (REPO / "cfg" / f"{name}.cfg").read_text()
    text = re.sub(r"(?m)^width=\d+", f"width={size}", text)
    text = re.sub(r"(?m)^height=\d+", f"height={size}", text)
    path = out / f"{name}-{size}.cfg"
    path.write_text(text)
    return path


PAUSE_S = 0.05  # between timed calls, untimed: torch's OpenMP workers spin-wait for a few ms after a forward
# and slowed the OpenCV DNN call right after by up to 25 % on these 2 cores (and OpenCV's pool likewise)


def calibration_set(tmp: Path) -> list[str]:
    """Images for the int8 mode: the shared test images when ../shared is beside the checkout, else 8 generated
    ones (random weights make the values meaningless either way; this is about speed)."""
    shared = sorted((REPO.parent / "shared" / "images").glob("*.jpg"))
    if shared:
        return [str(p) for p in shared]
    rng = torch.Generator().manual_seed(0)
    paths = []
    for k in range(8):
        p = tmp / f"calib{k}.png"
        cv2.imwrite(str(p), (torch.rand(480, 640, 3, generator=rng) * 255).byte().numpy())
        paths.append(str(p))
    return paths


def timed(fn) -> float:  # noqa: ANN001
    time.sleep(PAUSE_S)
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def onnx_runners(model: darkcfg.Darknet, path: Path, modes: list[str]) -> dict:
    """darkcfg's ONNX export (dynamic batch) in ONNX Runtime and in OpenVINO, each with torch's thread count."""
    from darkcfg.export import export

    export(model, path, "onnx", dynamic_batch=True)
    threads = torch.get_num_threads()
    out = {}
    if "ort" in modes:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        out["ort"] = lambda x: sess.run(None, {name: x.numpy()})
    for mode, hint in (("ov-fp32", "f32"), ("ov-default", None)):
        if mode in modes:
            from darkcfg.infer.openvino import compile_cpu

            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
            if hint:
                config["INFERENCE_PRECISION_HINT"] = hint
            compiled = compile_cpu(path, config)
            out[mode] = lambda x, c=compiled: c(x.numpy())
    return out


def bench_model(name: str, size: int, tmp: Path, repeats: int, batches: list[int], modes: list[str]) -> dict:
    torch.manual_seed(0)
    model = darkcfg.load(str(REPO / "cfg" / f"{name}.cfg"), size=size).eval()
    random_weights(model)
    wfile = tmp / f"{name}.weights"
    save_weights(model, wfile)
    cfg = cfg_at(name, size, tmp)
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(wfile))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    outs = net.getUnconnectedOutLayersNames()
    runners = {}
    t0 = time.perf_counter()
    onnx_modes = {"ort", "ov-fp32", "ov-default"} & set(modes)
    for mode in modes:
        if mode not in onnx_modes:
            runners[mode] = _runner(mode, model, name, size, tmp)
    if onnx_modes:  # one export for all of them
        runners.update(onnx_runners(model, tmp / f"{name}.onnx", modes))
    build = time.perf_counter() - t0
    res: dict = {"gflop": model.bflops, "compile_s": {}}
    for b in batches:
        g = torch.Generator().manual_seed(b)
        x = torch.rand(b, 3, size, size, generator=g)
        blob = x.numpy()

        def ocv(blob=blob) -> None:  # noqa: ANN001
            net.setInput(blob)
            net.forward(outs)

        calls = {k: (lambda r=r, x=x: r(x)) for k, r in runners.items()}
        calls["opencv"] = ocv
        with torch.inference_mode():
            for k, fn in calls.items():  # warm-up; compiles (first call per shape)
                res["compile_s"][f"{k}@{b}"] = timed(fn)
            times: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(repeats):
                for k, fn in calls.items():
                    times[k].append(timed(fn) / b)
        res[b] = {k: 1000 * statistics.median(v) for k, v in times.items()}
        print(f"  {name} batch {b}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in res[b].items()), flush=True)
    res["build_s"] = build
    return res


def _runner(mode: str, model: darkcfg.Darknet, name: str, size: int, tmp: Path):  # noqa: ANN202
    """One mode's callable x -> outputs (OpenCV's takes the numpy blob)."""
    if mode == "eager":
        return lambda x: model(x)
    if mode in ("fast", "compiled", "bf16"):
        return InferenceModel(model, compile=mode != "fast", half=mode == "bf16")
    if mode.startswith("openvino"):
        from darkcfg.infer.openvino import OpenVinoModel

        precision = {"openvino": "fp32", "openvino-default": "default", "openvino-int8": "int8"}[mode]
        return OpenVinoModel(model, precision, cache=tmp / "ovcache",
                             calibration=calibration_set(tmp) if precision == "int8" else ())
    if mode in ("ort", "ov-fp32", "ov-default"):
        return onnx_runners(model, tmp / f"{name}-{mode}.onnx", [mode])[mode]
    net = cv2.dnn.readNetFromDarknet(str(cfg_at(name, size, tmp)), str(tmp / f"{name}.weights"))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    outs = net.getUnconnectedOutLayersNames()

    def ocv(x: torch.Tensor) -> None:
        net.setInput(x.numpy())
        net.forward(outs)
    return ocv


def worker(name: str, size: int, mode: str, tmp: Path) -> None:
    """`--worker`: one runtime in its own process; reads `run B` lines, answers each with one call's seconds."""
    import warnings

    warnings.simplefilter("ignore")  # random weights overflow in NNCF's calibration statistics: speed only here
    model = darkcfg.load(str(REPO / "cfg" / f"{name}.cfg"), str(tmp / f"{name}.weights"), size=size).eval()
    fn = _runner(mode, model, name, size, tmp)
    print("ready", flush=True)
    inputs: dict[int, torch.Tensor] = {}
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] != "run":
            break
        b = int(parts[1])
        if b not in inputs:
            inputs[b] = torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(b))
        with torch.inference_mode():
            t = time.perf_counter()
            fn(inputs[b])
            print(time.perf_counter() - t, flush=True)


def _call(procs: dict, mode: str, b: int, name: str) -> float:
    """One timed call of batch `b` in `mode`'s worker process (after the untimed pause) -> its seconds."""
    time.sleep(PAUSE_S)
    p = procs[mode]
    try:
        p.stdin.write(f"run {b}\n")
        p.stdin.flush()
        return float(p.stdout.readline())
    except (BrokenPipeError, ValueError):
        raise SystemExit(f"{name} batch {b}: the {mode} process died (exit status {p.wait()}; -9: out of memory "
                         f"with {len(procs)} runtimes resident: run fewer --modes)") from None


def bench_isolated(name: str, size: int, tmp: Path, repeats: int, batches: list[int], modes: list[str],
                   threads: int, batch_repeats: Optional[int] = None, rounds: int = 1) -> dict:
    """As bench_model, but every runtime (OpenCV's too) in its own process with passive OpenMP waiting, so that
    no runtime's thread pool competes with the one being timed; the calls are still interleaved. `rounds` times
    over, each round with new processes: on a virtual machine one process can stay slower than another of the same
    runtime for its whole life (on the README table's machine, yolov4-tiny in OpenVINO fp32 took 54 ms per image in
    one process and 36 in a rerun), which more calls in the same processes do not average out. Within a round the
    batch sizes are interleaved as well as the modes. Each mode's figure is the median of its round medians; the
    ratios `target_lines` prints are taken within each round."""
    import os

    torch.manual_seed(0)
    model = darkcfg.load(str(REPO / "cfg" / f"{name}.cfg"), size=size).eval()
    random_weights(model)
    save_weights(model, tmp / f"{name}.weights")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", KMP_BLOCKTIME="0")
    res: dict = {"gflop": model.bflops, "compile_s": {}, "rounds": {b: [] for b in batches}}
    reps = {b: repeats if b == 1 or batch_repeats is None else batch_repeats for b in batches}
    # the timed calls' batch sizes, interleaved (3 and 2 repeats: 1, 8, 1, 8, 1): their ratio within the same minutes
    schedule = [b for i in range(max(reps.values())) for b in batches if i < reps[b]]
    for r in range(rounds):
        procs = {}
        try:  # the workers already started are closed however a later one's start ends
            for mode in modes + ["opencv"]:
                procs[mode] = p = subprocess.Popen(
                    [sys.executable, __file__, "--worker", name, str(size), mode, str(tmp), "--threads", str(threads)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                while (line := p.stdout.readline()) and line.strip() != "ready":  # type: ignore[union-attr]
                    pass
            for b in batches:
                for mode in procs:  # the first call compiles; timed in the first round's new processes only
                    first = _call(procs, mode, b, name)
                    if r == 0:
                        res["compile_s"][f"{mode}@{b}"] = first
            times = {b: {k: [] for k in procs} for b in batches}
            for b in schedule:
                for mode in procs:
                    times[b][mode].append(_call(procs, mode, b, name) / b)
            for b in batches:
                medians = {k: 1000 * statistics.median(v) for k, v in times[b].items()}
                res["rounds"][b].append(medians)
                print(f"  {name} batch {b} round {r + 1}/{rounds}: " +
                      ", ".join(f"{k} {v:.1f} ms" for k, v in medians.items()), flush=True)
        finally:
            for p in procs.values():
                try:
                    p.stdin.close()  # type: ignore[union-attr]
                except BrokenPipeError:
                    pass
                p.wait()
    for b in batches:
        res[b] = {k: statistics.median(m[k] for m in res["rounds"][b]) for k in res["rounds"][b][0]}
    return res


EXACT = ("eager", "fast", "compiled", "openvino")  # darkcfg's modes that equal the plain network (fp32)
REDUCED = ("bf16", "openvino-default", "openvino-int8")  # darkcfg's reduced-precision modes
# OpenVINO on darkcfg's ONNX, the runtime to beat -> (what darkcfg's side is called, its modes)
AGAINST = {"ov-fp32": ("exact", EXACT), "ov-default": ("reduced-precision", REDUCED)}


def target_lines(name: str, res: dict, batches: list[int]) -> list[str]:
    """Per batch, darkcfg's fastest exact mode against OpenVINO fp32 and its fastest reduced-precision mode against
    OpenVINO's default precision, the ratio taken within each round (the same host, the same minutes), then their
    median; nothing where a side was not run."""
    lines = []
    for b in batches:
        rounds = res.get("rounds", {}).get(b) or [res[b]]
        for other, (kind, ours) in AGAINST.items():
            mine = [k for k in ours if k in rounds[0]]
            if other not in rounds[0] or not mine:
                continue
            ratios = [min(m[k] for k in mine) / m[other] for m in rounds]
            best = min(mine, key=lambda k: res[b][k])
            lines.append(f"{name} batch {b}: darkcfg's fastest {kind} mode / {other}: {statistics.median(ratios):.2f} "
                         f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}; fastest overall: {best})")
    return lines


def pipeline_cost(name: str, repeats: int) -> dict:
    """Batch 1: forward (fast, and compiled) against decode + NMS + drawing on a 768x576 photo. yolov3-tiny
    with its real weights (weights/), any other cfg with `random_weights`."""
    from darkcfg.data.images import bgr_to_image
    from darkcfg.infer.decode import decode
    from darkcfg.infer.detector import Detector
    from darkcfg.infer.draw import draw_detections

    real = REPO / "weights" / f"{name}.weights"
    model = darkcfg.load(str(REPO / "cfg" / f"{name}.cfg"), str(real) if real.is_file() else None).eval()
    if not real.is_file():
        random_weights(model)
    compiled = InferenceModel(model, compile=True)
    det = Detector(InferenceModel(model), thresh=0.25)
    bgr = cv2.resize(cv2.imread(str(REPO / "darkcfg" / "assets" / "grace_hopper.jpg")), (768, 576))
    x = torch.from_numpy(det.prepare(bgr_to_image(bgr)))[None]
    fwd, fwd_c, post, boxes = [], [], [], 0
    with torch.inference_mode():
        det.model(x)
        compiled(x)
        for _ in range(repeats * 4):
            fwd_c.append(timed(lambda: compiled(x)))
            time.sleep(PAUSE_S)
            t = time.perf_counter()
            outs = det.model(x)
            t1 = time.perf_counter()
            d = det.postprocess(decode(det.model, outs, [(768, 576)], det.thresh, det.letterbox)[0])
            draw_detections(bgr, d, det.thresh)  # draws on a copy
            t2 = time.perf_counter()
            fwd.append(t1 - t)
            post.append(t2 - t1)
            boxes = len(d.best_classes(det.thresh))
    f, c, p = (statistics.median(v) * 1000 for v in (fwd, fwd_c, post))
    return {"forward_ms": f, "compiled_ms": c, "post_ms": p, "boxes": boxes}


def _status_kb(key: str) -> int:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(key + ":"))
    return int(line.split()[1])


def memory_probe(name: str, size: int) -> None:
    """Run in a child: RSS before the model, peak RSS over three detection forwards; needed bytes."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) left by the imports
    base = _status_kb("VmRSS") * 1024
    model = darkcfg.load(str(REPO / "cfg" / f"{name}.cfg"), size=size).eval()
    weights = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * 4 for b in model.buffers())
    from darkcfg.infer.fast import prepare_for_inference

    fast = prepare_for_inference(model)  # as `darkcfg detect`: in place
    x = torch.rand(1, 3, size, size)
    # activations alive at once: the input, every output still needed, and the new output (forward's freeing)
    alive: dict[int, int] = {}
    live_max = x.numel() * 4
    cur = x.numel() * 4
    for i, shape in enumerate(model.shapes):
        nbytes = shape.c * shape.h * shape.w * 4
        live_max = max(live_max, cur + nbytes)
        alive[i] = nbytes
        cur += nbytes
        for k in model._free_after[i]:
            cur -= alive.pop(k, 0)
    for _ in range(3):  # the steady state: later forwards reuse, and keep, what the first one allocated
        fast(x)
    peak = _status_kb("VmHWM") * 1024
    print(json.dumps({"weights": weights, "activations": live_max, "used": peak - base}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--modes", nargs="+", default=["eager", "fast", "compiled", "bf16"],
                    choices=["eager", "fast", "compiled", "bf16", "openvino", "openvino-default", "openvino-int8",
                             "ort", "ov-fp32", "ov-default"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--batch-repeats", type=int, default=None, help="repeats for batches above 1 (--isolate)")
    ap.add_argument("--quick", action="store_true", help="2 repeats, batch 1 only")
    ap.add_argument("--isolate", action="store_true",
                    help="each runtime in its own process (passive OpenMP waiting), still interleaved")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --isolate: this many rounds, each with new processes (medians of round medians)")
    ap.add_argument("--memory-probe", nargs=2, metavar=("NAME", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--worker", nargs=4, metavar=("NAME", "SIZE", "MODE", "TMP"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    if a.worker:
        worker(a.worker[0], int(a.worker[1]), a.worker[2], Path(a.worker[3]))
        return 0
    if a.memory_probe:
        memory_probe(a.memory_probe[0], int(a.memory_probe[1]))
        return 0
    if a.quick:
        a.repeats, a.batches = 2, [1]
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        have = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split()
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
                         if f in have)
    except (OSError, StopIteration):
        pass
    versions = f"torch {torch.__version__}, OpenCV {cv2.__version__}"
    for mod in ("openvino", "onnxruntime", "nncf"):
        try:
            versions += f", {mod} {__import__(mod).__version__}"
        except ImportError:
            pass
    print(f"{cpu} ({flags}); {a.threads} threads (every runtime); {versions}; medians of {a.repeats} interleaved "
          f"runs{f' ({a.batch_repeats} above batch 1)' if a.batch_repeats and a.isolate else ''}"
          f"{', each runtime in its own process' if a.isolate else ''}"
          f"{f'; {a.rounds} rounds of new processes, medians of round medians' if a.isolate and a.rounds > 1 else ''}",
          flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for name in a.models:
            if a.isolate:
                results[name] = bench_isolated(name, SIZES[name], Path(d), a.repeats, a.batches, a.modes, a.threads,
                                               a.batch_repeats, a.rounds)
            else:
                results[name] = bench_model(name, SIZES[name], Path(d), a.repeats, a.batches, a.modes)
    cols = a.modes + ["opencv"]
    print("\n| model | GFLOP | batch | " + " | ".join(f"{c} ms/img" for c in cols) + " | " +
          " | ".join(f"{c}/OpenCV" for c in a.modes) + " |")
    print("|" + "---|" * (3 + len(cols) + len(a.modes)))
    for name, r in results.items():
        for b in a.batches:
            row = r[b]
            print(f"| {name} {SIZES[name]} | {r['gflop']:.1f} | {b} | " + " | ".join(f"{row[c]:.1f}" for c in cols)
                  + " | " + " | ".join(f"{row[c] / row['opencv']:.2f}" for c in a.modes) + " |")
    if len(a.batches) > 1:
        for name, r in results.items():
            b1, bn = a.batches[0], a.batches[-1]
            print(f"{name}: batch {bn} per image / batch {b1}: " +
                  ", ".join(f"{c} {r[bn][c] / r[b1][c]:.2f}" for c in cols))
    for name, r in results.items():
        for line in target_lines(name, r, a.batches):
            print(line)
    for name, r in results.items():
        comp = {k: round(v, 1) for k, v in r["compile_s"].items() if k.startswith(("compiled", "bf16"))}
        print(f"{name}: first call (compile) seconds: {comp}")
    print()
    for name in ("yolov4-tiny", "yolov3-tiny"):
        pc = pipeline_cost(name, a.repeats)
        kind = "real weights" if name == "yolov3-tiny" else "random weights"
        print(f"{name} ({kind}) batch 1: forward fast {pc['forward_ms']:.1f} ms, compiled {pc['compiled_ms']:.1f} "
              f"ms; decode + NMS + drawing {pc['post_ms']:.2f} ms ({pc['boxes']} boxes) = "
              f"{100 * pc['post_ms'] / pc['forward_ms']:.1f} % / {100 * pc['post_ms'] / pc['compiled_ms']:.1f} %")
    print()
    for name in a.models:
        out = subprocess.run([sys.executable, __file__, "--memory-probe", name, str(SIZES[name]), "--threads",
                              str(a.threads)], capture_output=True, text=True, check=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        need = m["weights"] + m["activations"]
        print(f"{name} {SIZES[name]} detect (fast) peak memory: {m['used'] / 2**20:.0f} MiB for "
              f"{m['weights'] / 2**20:.0f} MiB weights + {m['activations'] / 2**20:.0f} MiB live activations "
              f"= {m['used'] / need:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
