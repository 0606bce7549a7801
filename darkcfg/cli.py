"""The `darkcfg` command line: thin wrappers that parse arguments, call the library, format output."""
from __future__ import annotations

import functools
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import click

from darkcfg.errors import DarkcfgError

if TYPE_CHECKING:
    import torch


def _one_line_warning(message: object, category: type, filename: str, lineno: int, line: object = None) -> str:
    return f"warning: {message}\n"


def _friendly(fn: Callable) -> Callable:
    """Bad input -> one line on stderr and exit status 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            return fn(*args, **kwargs)
        except DarkcfgError as e:
            raise click.ClickException(str(e)) from None
        except (ValueError, OSError) as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from None

    return wrapper


def _parse_size(value: Optional[str]) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        raise click.BadParameter(f"'{value}': expected N or WxH, e.g. 416 or 608x352") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise click.BadParameter(f"'{value}': expected N or WxH with positive numbers")
    return parts[0], parts[1]


size_option = click.option("--size", default=None, metavar="N|WxH",
                           help="Override the cfg's input width/height (the file is not changed).")


def _is_number(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


class DarknetCommand(click.Command):
    """A command that takes Darknet's single-dash spellings (`-thresh .3`, `-ext_output`, declared as
    aliases) and never splits an unknown single-dash word into short options (`-out r.json` as `-o ut`):
    such a word is an error naming it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names = {n for p in self.params if isinstance(p, click.Option) for n in p.opts + p.secondary_opts}
        names |= set(ctx.help_option_names)
        for word in args:
            if word == "--":
                break
            if word.startswith("-") and not word.startswith("--") and len(word) > 2 \
                    and word.split("=", 1)[0] not in names and not _is_number(word):
                raise click.UsageError(f"no such option: {word} (single-dash options are not combined: write "
                                       f"'{word[:2]} {word[2:]}' with a space, or the --long spelling)", ctx)
        return super().parse_args(ctx, args)


def _ignored_flags(*names: str) -> Callable:
    """Darknet flags with nothing to do here (darkcfg never opens a window): accepted, ignored."""
    return click.option(*names, "ignored_flags", is_flag=True, hidden=True, multiple=False, expose_value=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="darkcfg")
def main() -> None:
    """Run Darknet .cfg models on PyTorch, unchanged. Darknet's own flag spellings work too (-thresh .3,
    -ext_output, -dont_show, -out result.json, -map, -clear, ...)."""


main.command_class = DarknetCommand


@main.command()
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.option("-w", "--weights", type=click.Path(dir_okay=False), default=None,
              help="Also load this .weights (or .pt) file: a one-line error when it does not fit CFG.")
@size_option
@_friendly
def info(cfg: str, weights: Optional[str], size: Optional[str]) -> None:
    """Print CFG's layer table (index, type, filters, size/stride, input -> output, BFLOPs) and totals."""
    from darkcfg.model.loading import load

    model = load(cfg, weights, size=_parse_size(size))
    click.echo(model.summary())
    if weights:
        h, n = model.header, model.loaded_upto
        last = max((i for i, m in enumerate(model.layers) if m.darknet_blobs()), default=-1)
        held = f"a prefix: layers 0..{n - 1} of {len(model.layers)}" if n is not None and n <= last else \
            f"all {len(model.layers)} layers"
        click.echo(f"weights: {weights} fits: {held}, version {h.major}.{h.minor}.{h.revision}, seen {h.seen:,} images")


@main.command()
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights_in", type=click.Path(dir_okay=False))
@click.argument("weights_out", type=click.Path(dir_okay=False))
@click.argument("n", type=int)
@_friendly
def partial(cfg: str, weights_in: str, weights_out: str, n: int) -> None:
    """Save the first N layers of WEIGHTS_IN as WEIGHTS_OUT with seen=0 (like `darknet partial`)."""
    from darkcfg.model.convert import save_prefix

    report = save_prefix(cfg, weights_in, weights_out, n)
    click.echo(f"{weights_out}: layers 0..{n - 1} ({report.layers_loaded} with weights), seen=0")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--cfg", default=None, type=click.Path(dir_okay=False),
              help="The cfg of SOURCE when it is a .weights file.")
@_friendly
def convert(source: str, dest: str, cfg: Optional[str]) -> None:
    """Convert .weights (with --cfg) to a PyTorch checkpoint carrying the cfg text, or back. The direction
    comes from SOURCE's content, not its name; DEST may not be SOURCE.

    \b
    darkcfg convert yolov4-tiny.weights yolov4-tiny.pt --cfg cfg/yolov4-tiny.cfg
    darkcfg convert yolov4-tiny.pt yolov4-tiny.weights        # byte-identical to the original
    """
    from darkcfg.model.convert import convert as convert_file
    from darkcfg.model.loading import is_checkpoint

    if cfg is None and Path(source).is_file() and not is_checkpoint(source):
        raise click.UsageError("converting a .weights file needs --cfg CFG")
    convert_file(source, dest, cfg)
    click.echo(f"{source} -> {dest}")


@main.command(context_settings={"max_content_width": 110})
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("-f", "--format", "fmt", type=click.Choice(["onnx", "torchscript", "openvino"]), default="onnx",
              show_default=True, help="openvino: an IR .xml and its .bin (pip install 'darkcfg[openvino]').")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="Output file. Default: <cfg name>.onnx, .torchscript.pt or .xml beside the weights.")
@click.option("--dynamic-batch", is_flag=True, help="Any batch size (else the one traced, --batch).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size of the export.")
@click.option("--with-decode", is_flag=True, help="Output boxes (B, N, 4) x1y1x2y2 pixels and scores (B, N, C).")
@click.option("--with-nms", is_flag=True, help="Also Darknet's per-class NMS: detections (K, 7).")
@click.option("--thresh", type=float, default=0.25, show_default=True, help="Score threshold of --with-nms.")
@click.option("--nms", type=float, default=0.45, show_default=True, help="IoU threshold of --with-nms.")
@size_option
@click.option("--calibration", type=click.Path(exists=True), default=None, metavar="DATA|LIST|DIR",
              help="--format openvino: quantize to int8 on these images (a .data file's valid list, an image list "
                   "or a folder), as --precision int8 does.")
@_friendly
def export(cfg: str, weights: Optional[str], fmt: str, out: Optional[str], dynamic_batch: bool, batch: int,
           with_decode: bool, with_nms: bool, thresh: float, nms: float, size: Optional[str],
           calibration: Optional[str]) -> None:
    """Export CFG with WEIGHTS (default weights/<cfg name>.weights) to ONNX, TorchScript or OpenVINO IR.

    \b
    darkcfg export cfg/yolov4-tiny.cfg yolov4-tiny.weights --format onnx --dynamic-batch --with-nms
    darkcfg export cfg/yolov3-tiny.cfg --format torchscript --size 320
    darkcfg export cfg/yolov3-tiny.cfg --format openvino --dynamic-batch --calibration obj.data   # int8
    """
    from darkcfg.export import export as export_model
    from darkcfg.model.loading import load_trained

    model = load_trained(cfg, weights, _parse_size(size))
    stem = Path(cfg).name.split(".")[0]
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "openvino": ".xml"}[fmt]
    dest = Path(out) if out else Path(weights or cfg).with_name(stem + suffix)
    if calibration and fmt != "openvino":
        raise click.UsageError("--calibration quantizes OpenVINO exports: add --format openvino")
    images = ()
    if calibration:
        from darkcfg.infer.openvino import calibration_images

        images = calibration_images(calibration)
    try:
        dest = export_model(model, dest, fmt, dynamic_batch, with_decode, with_nms, thresh, nms, batch, images)
    except (RuntimeError, ValueError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    click.echo(f"{cfg} -> {dest} ({fmt}{', int8' if images else ''}, input images "
               f"{'N' if dynamic_batch else batch}x{model.net.channels}x{model.net.height}x{model.net.width})")


runtime_option = click.option(
    "--runtime", type=click.Choice(["torch", "openvino"]), default="torch", show_default=True,
    help="Who runs the network: PyTorch, or OpenVINO (pip install 'darkcfg[openvino]'; CPU; the converted model "
         "is cached per cfg, weights and size). Pre-processing, decode and NMS are darkcfg's either way.")
precision_option = click.option(
    "--precision", type=click.Choice(["fp32", "bf16", "default", "int8"]), default="fp32", show_default=True,
    help="Arithmetic: fp32 (equal to the plain network within 1e-4), bf16, the runtime's default (OpenVINO: "
         "bf16 on CPUs that have it; torch: fp32), or int8 (OpenVINO, quantized by NNCF on --calibration images).")
calibration_option = click.option(
    "--calibration", type=click.Path(exists=True), default=None, metavar="DATA|LIST|DIR",
    help="Images that calibrate --precision int8: a .data file (its valid list), an image list or a folder "
         "(at most 300 are used, evenly spaced).")


def _runtime_model(model: torch.nn.Module, runtime: str, precision: str, device: Optional[str], fast: bool = True,
                   compile_: bool = False, half: Optional[bool] = None, calibration: Optional[str] = None,
                   letterbox: Optional[bool] = None) -> torch.nn.Module:
    """The network the pipeline runs: PyTorch's fast path (bf16 = --half) or OpenVINO (int8: quantized on the
    calibration images, pre-processed with `letterbox`)."""
    if precision == "int8":
        if runtime != "openvino":
            raise click.UsageError("--precision int8 runs on OpenVINO: add --runtime openvino")
        if not calibration:
            raise click.UsageError("--precision int8 needs --calibration (a .data file, an image list or a folder)")
    if runtime == "openvino":
        if device not in (None, "cpu"):
            raise click.UsageError("--runtime openvino runs on the CPU: leave --device out")
        from darkcfg.infer.openvino import OpenVinoModel, calibration_images

        images = calibration_images(calibration) if precision == "int8" and calibration else ()
        return OpenVinoModel(model, precision, calibration=images, letterbox=letterbox)
    from darkcfg.infer.fast import prepare_for_inference

    if precision == "bf16":
        half = True
    return prepare_for_inference(model.to(_device(device)), fast, compile_, half)


def _device(name: Optional[str]) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise click.BadParameter(f"'{name}': this PyTorch sees no CUDA GPU; use --device cpu", param_hint="--device")
    return name


@main.command(context_settings={"max_content_width": 110})
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, required=True)
@click.option("-w", "--weights", type=click.Path(dir_okay=False), default=None,
              help="Darknet .weights (or darkcfg .pt). Default: weights/<cfg name>.weights.")
@click.option("-n", "--names", type=click.Path(dir_okay=False), default=None,
              help="Class names, one per line. Default: COCO's when the cfg has 80 classes.")
@click.option("--thresh", "-thresh", type=float, default=0.25, show_default=True,
              help="Detection threshold (strict >).")
@click.option("--nms", type=float, default=0.45, show_default=True, help="NMS threshold; 0 turns NMS off.")
@click.option("--letterbox/--no-letterbox", "-letter_box", default=None,
              help="Letterbox the input (keep the aspect ratio). Default: the cfg's [net] letter_box.")
@click.option("-o", "--out", type=click.Path(file_okay=False), default="predictions", show_default=True,
              help="Folder for annotated images and videos.")
@click.option("--nosave", is_flag=True, help="Do not write annotated images or videos.")
@click.option("--json", "-out", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the reference's -out JSON (frame_id, filename, objects) to this file.")
@click.option("--save-txt", "-save_labels", is_flag=True,
              help="Write YOLO label files (class cx cy w h): into --out, or beside each image with --nosave.")
@click.option("--overwrite", is_flag=True, help="With --save-txt --nosave: replace label files already beside images.")
@click.option("--ext-output", "-ext_output", is_flag=True,
              help="Print each box as (left_x top_y width height) in pixels.")
@_ignored_flags("-dont_show", "-show_imgs")
@click.option("--json-port", "-json_port", type=click.IntRange(0, 65535), default=0,
              help="Serve each frame's detections as the reference's -json_port does, to every client.")
@click.option("--mjpeg-port", "-mjpeg_port", type=click.IntRange(0, 65535), default=0,
              help="Serve the annotated frames as an MJPEG stream a browser shows (multipart/x-mixed-replace).")
@click.option("--mjpeg-quality", type=click.IntRange(1, 100), default=80, show_default=True,
              help="JPEG quality of the --mjpeg-port frames.")
@click.option("--show", is_flag=True, help="Show the annotated frames in a window (when a display exists).")
@click.option("--no-drop", is_flag=True,
              help="Live sources: detect on every frame (default: the newest one, dropping what came meanwhile).")
@click.option("--retries", type=int, default=-1, show_default=True,
              help="Live sources: reconnect attempts after the stream drops (negative: forever).")
@click.option("--frames", "max_frames", type=click.IntRange(1), default=None,
              help="Live sources: stop after this many frames.")
@click.option("-b", "--batch", type=click.IntRange(1), default=1, show_default=True, help="Images per forward.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")
@size_option
@click.option("--fast/--no-fast", default=True, show_default=True,
              help="Inference fast path: batch-norm folded into the convolutions, channels-last memory.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the network (inductor, frozen weights): faster after a first, slow call.")
@click.option("--half/--no-half", default=None,
              help="float16 autocast (bfloat16 on a CPU). Default: on with a GPU (with CUDA graphs), off on a CPU.")
@runtime_option
@precision_option
@calibration_option
@click.option("-q", "--quiet", is_flag=True, help="Do not print the detections (errors and the summary only).")
@_friendly
def detect(cfg: str, sources: tuple[str, ...], weights: Optional[str], names: Optional[str], thresh: float,
           nms: float, letterbox: Optional[bool], out: str, nosave: bool, json_path: Optional[str], save_txt: bool,
           overwrite: bool, ext_output: bool, json_port: int, mjpeg_port: int, mjpeg_quality: int, show: bool,
           no_drop: bool, retries: int, max_frames: Optional[int], batch: int, device: Optional[str],
           size: Optional[str], fast: bool, compile_: bool, half: Optional[bool], runtime: str, precision: str,
           calibration: Optional[str], quiet: bool) -> None:
    """Detect objects in SOURCES with CFG (or a .pt from `darkcfg convert`), printing what
    `darknet detector test` prints.

    SOURCES are image files, folders of images, globs ('data/*.jpg'), list files (.txt, one path per line),
    videos, camera indices (0) or stream URLs (rtsp://, http(s)://, udp://, tcp://, rtmp://). Unreadable
    sources are reported on stderr and skipped; the exit status is then 1. As with `darknet detector test`, a
    .weights (or .pt) file right after CFG is the weights. Ctrl-C stops cleanly, keeping what was written.

    \b
    darkcfg detect cfg/yolov4-tiny.cfg dog.jpg
    darkcfg detect cfg/yolov4-tiny.cfg images/ --ext-output --json out.json -b 8
    darkcfg detect my.cfg clip.mp4 -w backup/my_best.weights -n obj.names
    darkcfg detect cfg/yolov4-tiny.cfg rtsp://cam/stream --mjpeg-port 8090 --json-port 8070 --nosave
    """
    from darkcfg.infer.names import names_for
    from darkcfg.infer.pipeline import Detector, run_detection
    from darkcfg.model.loading import load, load_trained_weights

    if sources and _is_weights_file(sources[0]):  # `detect CFG WEIGHTS IMAGE...`, as detector test takes it
        if weights:
            raise click.UsageError(f"weights given twice: {sources[0]} and -w {weights}")
        weights, sources = sources[0], sources[1:]
        if not sources:
            raise click.UsageError("no SOURCES after the weights file")
    model = load(cfg, size=_parse_size(size))
    class_names = names_for(model, names)  # checked before the weights are read
    load_trained_weights(model, cfg, weights)
    det = Detector(_runtime_model(model, runtime, precision, device, fast, compile_, half, calibration, letterbox),
                   class_names, thresh, nms, letterbox, batch)
    from darkcfg.infer.pipeline import LiveOutputs
    from darkcfg.infer.sources import LiveOptions

    ports = LiveOutputs(json_port, mjpeg_port, mjpeg_quality, show) if json_port or mjpeg_port or show else None
    try:
        run = run_detection(det, sources, None if nosave else out, save_txt, json_path, ext_output, quiet,
                            overwrite=overwrite, live=LiveOptions(no_drop, retries, max_frames), outputs_live=ports)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: what was written is complete (a video holds the frames done so far)", err=True)
        sys.exit(130)
    where = f"; annotated in {out}/" if not nosave and run.done else ""
    click.echo(f"{run.done} image(s), {run.boxes} labelled box(es){where}"
               + (f"; {run.failed} failed" if run.failed else ""), err=True)
    if run.failed or not run.sources:
        sys.exit(1)


@main.command(cls=DarknetCommand, context_settings={"max_content_width": 110})
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("-n", "--names", type=click.Path(dir_okay=False), default=None,
              help="Class names, one per line. Default: COCO's when the cfg has 80 classes.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--thresh", type=float, default=0.25, show_default=True, help="Default detection threshold.")
@click.option("--nms", type=float, default=0.45, show_default=True, help="Default NMS threshold.")
@click.option("-b", "--batch", type=click.IntRange(1), default=8, show_default=True,
              help="Most images per forward when requests arrive together.")
@click.option("--batch-wait-ms", type=click.FloatRange(0), default=5.0, show_default=True,
              help="How long the first request of a batch waits for others.")
@click.option("--max-mb", type=click.FloatRange(0, min_open=True), default=20.0, show_default=True,
              help="Largest request body accepted (413 above).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")
@size_option
@runtime_option
@precision_option
@calibration_option
@_friendly
def serve(cfg: str, weights: Optional[str], names: Optional[str], host: str, port: int, thresh: float, nms: float,
          batch: int, batch_wait_ms: float, max_mb: float, device: Optional[str], size: Optional[str], runtime: str,
          precision: str, calibration: Optional[str]) -> None:
    """Serve detection over HTTP: POST an image to /detect (raw body or multipart; ?thresh=&nms=&ext=1) for the
    JSON `detect --json` writes; GET /health. Concurrent requests are batched.

    \b
    darkcfg serve cfg/yolov4-tiny.cfg --port 8080
    curl --data-binary @dog.jpg 'http://127.0.0.1:8080/detect?thresh=0.3'
    """
    from darkcfg.infer.names import names_for
    from darkcfg.infer.pipeline import Detector
    from darkcfg.infer.serve import make_server
    from darkcfg.model.loading import load, load_trained_weights

    model = load(cfg, size=_parse_size(size))
    class_names = names_for(model, names)
    load_trained_weights(model, cfg, weights)
    det = Detector(_runtime_model(model, runtime, precision, device, calibration=calibration), class_names, thresh,
                   nms, None, batch)
    try:
        server = make_server(det, host, port, batch, batch_wait_ms / 1000, int(max_mb * 1024 * 1024))
    except OSError as e:
        raise DarkcfgError(f"{host}:{port}: cannot listen ({e.strerror or e})") from None
    click.echo(f"serving {cfg} on http://{host}:{server.server_address[1]}/detect (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("\nstopped", err=True)
    finally:
        server.server_close()


def _is_weights_file(path: str) -> bool:
    """A Darknet .weights file or a darkcfg checkpoint, by name (or content for a .pt)."""
    from darkcfg.model.loading import is_checkpoint

    return path.endswith(".weights") or (Path(path).is_file() and is_checkpoint(path))


def _key_values(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise click.BadParameter(f"'{item}': expected KEY=VALUE, e.g. burn_in=100", param_hint="--set")
        out[key.strip()] = value.strip()
    return out


@main.command(context_settings={"max_content_width": 110})
@click.argument("data", type=click.Path())
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--map", "-map", "calc_map", is_flag=True,
              help="Measure mAP@0.5 on valid= as it trains; save _best.weights.")
@click.option("--map-every", type=click.IntRange(1), default=None,
              help="Iterations between mAP runs (default: the reference's max(--map-epochs epochs, 100)).")
@click.option("--map-epochs", "-mAP_epochs", type=click.IntRange(1), default=4, show_default=True,
              help="Epochs between mAP runs when --map-every is not given.")
@click.option("--clear", "-clear", is_flag=True, help="Start from iteration 0 even if WEIGHTS has a `seen` count.")
@_ignored_flags("-dont_show", "-show_imgs")
@click.option("--batch", type=click.IntRange(1), default=None, help="Override [net] batch (the cfg is not changed).")
@click.option("--subdivisions", type=click.IntRange(1), default=None, help="Override [net] subdivisions.")
@click.option("--max-batches", type=click.IntRange(1), default=None, help="Override [net] max_batches.")
@click.option("--backup", type=click.Path(file_okay=False), default=None, help="Overrides backup= of DATA.")
@click.option("--classes", type=click.IntRange(1), default=None, help="Classes, when DATA is a folder.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True,
              help="Data-loading processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw (augmentation, order).")
@click.option("--amp/--no-amp", default=None, help="bfloat16 mixed precision (default: on with CUDA).")
@click.option("--no-augment", is_flag=True, help="Plain resize, no random transforms (for checks).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Set a [net] key for this run (e.g. --set burn_in=100); the cfg file is not changed.")
@size_option
@_friendly
def train(data: str, cfg: str, weights: Optional[str], calc_map: bool, map_every: Optional[int], map_epochs: int,
          clear: bool,
          batch: Optional[int], subdivisions: Optional[int], max_batches: Optional[int], backup: Optional[str],
          classes: Optional[int], device: Optional[str], workers: int, seed: int, amp: Optional[bool],
          no_augment: bool, overrides: tuple[str, ...], size: Optional[str]) -> None:
    """Train CFG on DATA like `darknet detector train DATA CFG [WEIGHTS]`.

    DATA is a .data file (train=, valid=, names=, backup=, saveweights=, savelast=) or a folder of images
    with their .txt labels beside them. WEIGHTS may be a prefix (e.g. yolov4-tiny.conv.29 from
    `darkcfg partial`) or a checkpoint to resume (backup/x_last.weights resumes at its iteration, exactly
    when its .state.pt sidecar is beside it). Several GPUs or machines: `torchrun --nproc_per_node N -m
    darkcfg train ...` (the learning rate is multiplied by N, as the reference does with -gpus).
    """
    from darkcfg.train.trainer import Trainer, TrainOptions

    dev = _device(device)
    opts = TrainOptions(data=data, cfg=cfg, weights=weights, clear=clear, size=_parse_size(size), batch=batch,
                        subdivisions=subdivisions, max_batches=max_batches, backup=backup, device=dev,
                        workers=workers, seed=seed, calc_map=calc_map, map_every=map_every, map_epochs=map_epochs,
                        amp=amp,
                        augment=not no_augment, classes=classes, overrides=_key_values(overrides))
    trainer = Trainer(opts)
    try:
        r = trainer.run()
    except KeyboardInterrupt:
        sys.exit(130)
    if r.final is not None:
        best = f", best mAP@0.5 {r.best_map * 100:.2f} %" if opts.calc_map else ""
        click.echo(f"done: iteration {r.iteration}, avg loss {r.avg_loss:.4f}{best}; {r.final}")


@main.command("map")
@click.argument("data", type=click.Path())
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--iou-thresh", "-iou_thresh", type=float, default=0.5, show_default=True,
              help="IoU for a true positive (strict >).")
@click.option("--points", "-points", type=int, default=0, show_default=True,
              help="0: area under the curve (VOC2010+); 11: VOC2007; 101: COCO.")
@click.option("--thresh", "-thresh", type=float, default=0.25, show_default=True,
              help="Confidence for the printed TP/FP, precision, recall, F1 and average IoU.")
@click.option("-n", "--names", type=click.Path(dir_okay=False), default=None, help="Overrides names= of DATA.")
@click.option("--coco", is_flag=True, help="Also print COCO's AP@[.5:.95], AP50, AP75, APs/m/l and AR (pycocotools).")
@click.option("--plots", type=click.Path(file_okay=False), default=None,
              help="Write pr_curves.png and confusion_matrix.png (at --thresh) into this folder.")
@click.option("--coco-gt", type=click.Path(dir_okay=False), default=None,
              help="A COCO instances_*.json as ground truth for --coco (images matched by file name).")
@click.option("--report", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write an error-analysis page DIR/index.html: TP/FP/FN per class, AP by object size, F1-best "
                   "thresholds, PR curves, confusion matrix and the images with the most errors.")
@click.option("-b", "--batch", type=click.IntRange(1), default=1, show_default=True, help="Images per forward.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")
@size_option
@runtime_option
@precision_option
@calibration_option
@_friendly
def map_(data: str, cfg: str, weights: Optional[str], iou_thresh: float, points: int, thresh: float,
         names: Optional[str], coco: bool, plots: Optional[str], coco_gt: Optional[str], report: Optional[str],
         batch: int, device: Optional[str], size: Optional[str], runtime: str, precision: str,
         calibration: Optional[str]) -> None:
    """mAP of CFG + WEIGHTS on the `valid` list of DATA, printed as `darknet detector map` prints it.

    Labels are found by Darknet's rule (images/ -> labels/, JPEGImages/ -> labels/, extension -> .txt);
    `difficult=` in DATA names a parallel list whose labels are difficult truths (ignored).
    """
    from darkcfg.eval.report import map_lines
    from darkcfg.eval.runner import run_map
    from darkcfg.model.loading import load_trained

    model = load_trained(cfg, weights, _parse_size(size), _device(device))
    if runtime != "torch" or precision != "fp32":  # the default stays the plain network: the reference's numbers
        model = _runtime_model(model, runtime, precision, device, calibration=calibration or data)
    run = run_map(data, model, names, iou_thresh, thresh, points, batch, coco, coco_gt, plots, report=report)
    click.echo("\n".join(map_lines(run.result, run.names)))
    if run.plots:
        click.echo(f"plots: {', '.join(map(str, run.plots))}", err=True)
    if run.report is not None:
        click.echo(f"report: {run.report}", err=True)
    if run.coco_stats is not None:
        from darkcfg.eval.coco import stats_lines

        click.echo("\nCOCO metrics (pycocotools, the same detections):")
        click.echo("\n".join(stats_lines(run.coco_stats)))


@main.command()
@click.argument("data", type=click.Path())
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--eval", "kind", type=click.Choice(["coco", "voc"]), default=None,
              help="Output format. Default: eval= of DATA (voc when absent).")
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Results folder. Default: results= of DATA (results/).")
@click.option("-n", "--names", type=click.Path(dir_okay=False), default=None, help="Overrides names= of DATA.")
@click.option("-b", "--batch", type=click.IntRange(1), default=1, show_default=True, help="Images per forward.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")
@size_option
@_friendly
def valid(data: str, cfg: str, weights: Optional[str], kind: Optional[str], out: Optional[str],
          names: Optional[str], batch: int, device: Optional[str], size: Optional[str] = None) -> None:
    """Write detections on DATA's valid list like `darknet detector valid` (thresh .001, nms .6): COCO
    results JSON (eval=coco) or VOC comp4_det_test_<class>.txt files."""
    from darkcfg.eval.runner import run_valid
    from darkcfg.model.loading import load_trained

    model = load_trained(cfg, weights, _parse_size(size), _device(device))
    images, files = run_valid(data, model, names, kind, out, batch)
    click.echo(f"{images} images: wrote {files[0]}" + (f" and {len(files) - 1} more" if len(files) > 1 else ""))


@main.group()
def data() -> None:
    """Dataset tools: check a dataset (and a cfg against it), convert between COCO, VOC and Darknet labels."""


@data.command("check")
@click.argument("source", type=click.Path(exists=True))
@click.argument("cfg", type=click.Path(dir_okay=False), required=False)
@click.option("--fix", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write the cfg with classes and filters fixed beside CFG (<name>.fixed.cfg) and a cleaned copy of "
                   "the dataset into the new folder DIR; your files are not changed.")
@click.option("--classes", type=click.IntRange(1), default=None, help="Overrides classes= of the .data file.")
@click.option("--quiet", "-q", is_flag=True, help="Only the summary table.")
@_friendly
def data_check(source: str, cfg: Optional[str], fix: Optional[str], classes: Optional[int], quiet: bool) -> None:
    """Report every problem of SOURCE (a .data file, or a folder of images with labels beside them) the way
    `train` and `map` read it, one line each with file:line, then a summary; exit status 1 when something
    blocks training. With CFG, also its heads, filters, masks and anchors against the dataset."""
    from darkcfg.train.datacheck import run_check

    run = run_check(source, cfg, fix, classes, progress=not quiet)
    if not quiet:
        for p in run.problems:
            click.echo(p.line())
    click.echo(run.dataset.summary())
    if run.anchors is not None:
        a = run.anchors
        click.echo(f"\nanchors: the boxes' mean best IoU with the cfg's anchors {a.mean_iou * 100:.2f} %, with "
                   f"{len(a.kmeans)} k-means anchors {a.kmeans_iou * 100:.2f} % ({a.boxes} boxes)")
    if run.fixed_cfg is not None:
        click.echo(f"fixed cfg: {run.fixed_cfg}")
    if run.clean is not None:
        click.echo(f"cleaned copy: {run.clean.data_file} ({run.clean.images} images, {run.clean.rows} boxes)")
    blocking = sum(p.blocking for p in run.problems)
    click.echo(f"\n{blocking} problem(s) block training, {len(run.problems) - blocking} warning(s)")
    if blocking:
        sys.exit(1)


@data.group("convert")
def data_convert() -> None:
    """Convert annotations: COCO JSON or Pascal VOC XML to Darknet labels, Darknet labels to COCO JSON."""


def _report_conversion(r: object) -> None:
    for line in r.skipped[:20]:  # type: ignore[attr-defined]
        click.echo(f"skipped: {line}", err=True)
    if len(r.skipped) > 20:  # type: ignore[attr-defined]
        click.echo(f"skipped: ... and {len(r.skipped) - 20} more", err=True)  # type: ignore[attr-defined]
    click.echo(f"{r.images} images, {r.boxes} boxes; wrote {', '.join(map(str, r.files))}")  # type: ignore[attr-defined]


@data_convert.command("coco")
@click.argument("instances", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", type=click.Path(exists=True, file_okay=False), required=True, help="The images' folder.")
@click.option("-o", "--out", type=click.Path(file_okay=False), required=True, help="Folder for the Darknet dataset.")
@click.option("--name", default="coco", show_default=True, help="Base name of the .data, .names and list files.")
@_friendly
def convert_coco(instances: str, images: str, out: str, name: str) -> None:
    """A COCO instances JSON -> Darknet labels, names, list and .data in OUT (ids kept in OUT/ids.json)."""
    from darkcfg.data.convert import coco_to_yolo

    _report_conversion(coco_to_yolo(instances, images, out, name))


@data_convert.command("voc")
@click.argument("annotations", type=click.Path(exists=True, file_okay=False))
@click.option("--images", type=click.Path(exists=True, file_okay=False), required=True, help="The JPEGImages folder.")
@click.option("-o", "--out", type=click.Path(file_okay=False), required=True, help="Folder for the Darknet dataset.")
@click.option("-n", "--names", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Class names in order (default: every name found, sorted).")
@click.option("--name", default="voc", show_default=True, help="Base name of the .data, .names and list files.")
@_friendly
def convert_voc(annotations: str, images: str, out: str, names: Optional[str], name: str) -> None:
    """Pascal VOC XML files (ANNOTATIONS folder) -> a Darknet dataset in OUT, as voc_label.py converts them."""
    from darkcfg.data.convert import voc_to_yolo
    from darkcfg.data.names import read_names

    _report_conversion(voc_to_yolo(annotations, images, out, read_names(names) if names else None, name))


@data_convert.command("yolo")
@click.argument("list_file", metavar="LIST", type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "--names", type=click.Path(exists=True, dir_okay=False), required=True, help="The names file.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True, help="The COCO instances JSON to write.")
@click.option("--ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="ids.json mapping classes and images to COCO ids (default: the one beside LIST, if any).")
@_friendly
def convert_yolo(list_file: str, names: str, out: str, ids: Optional[str]) -> None:
    """Darknet labels of the images in LIST -> a COCO instances JSON (what `map --coco-gt` reads)."""
    from darkcfg.data.convert import yolo_to_coco
    from darkcfg.data.names import read_names

    _report_conversion(yolo_to_coco(list_file, read_names(names), out, ids))


@main.command("calc-anchors")
@click.argument("data", type=click.Path())
@click.option("--num", "-num_of_clusters", "num", type=click.IntRange(1), default=None,
              help="Number of anchors. Default: the cfg's num (--cfg), else 5.")
@click.option("--width", "-width", type=click.IntRange(1), default=None,
              help="Network input width (default: the cfg's).")
@click.option("--height", "-height", type=click.IntRange(1), default=None, help="Network input height.")
@click.option("--cfg", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A cfg: its size, letter_box and num by default, and the mean IoU of its current anchors.")
@click.option("--letterbox/--no-letterbox", default=None,
              help="Measure boxes as the network sees letterboxed images (default: the cfg's letter_box; the "
                   "reference always stretches).")
@_ignored_flags("-show")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the k-means++ start.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="anchors.txt", show_default=True,
              help="File for the anchors line.")
@_friendly
def calc_anchors(data: str, num: Optional[int], width: Optional[int], height: Optional[int], cfg: Optional[str],
                 letterbox: Optional[bool], seed: int, out: str) -> None:
    """k-means anchors (IoU distance) over the labels of DATA's train list, like `detector calc_anchors`."""
    from darkcfg.train.anchors import calc_anchors as compute
    from darkcfg.train.anchors import cfg_anchors

    current = None
    if cfg is not None:
        from darkcfg.model.heads import head_layers
        from darkcfg.model.network import Darknet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Darknet.from_file(cfg, size=(width, height) if width and height else None, warn_unused=False)
        width, height = width or model.net.width, height or model.net.height
        letterbox = bool(model.net.letter_box) if letterbox is None else letterbox
        current = cfg_anchors(head_layers(model), width, height)
        if current is not None:
            num = num or len(current)
    if width is None or height is None:
        raise click.UsageError("give --width and --height, or --cfg")
    num = num or 5
    click.echo(f" num_of_clusters = {num}, width = {width}, height = {height} ")
    r = compute(data, num, width, height, seed, out, letterbox=bool(letterbox), current=current)
    click.echo(f" read labels from {r.images} images, {r.boxes} boxes" + (" (letterboxed)" if letterbox else ""))
    click.echo(f"\n avg IoU = {r.avg_iou * 100:2.2f} % \n")
    if r.current_iou is not None:
        click.echo(f" avg IoU with the cfg's current anchors = {r.current_iou * 100:2.2f} % \n")
    click.echo(f"Saving anchors to the file: {out} ")
    click.echo(f"anchors = {r.line}")


@main.command()
@click.argument("names", nargs=-1)
@click.option("-d", "--dir", "dest", type=click.Path(file_okay=False), default="weights", show_default=True,
              help="Folder to download into.")
@click.option("--mirror", default=None, metavar="URL",
              help="Fetch the same file names from this base URL (also $DARKCFG_MIRROR).")
@click.option("--list", "list_", is_flag=True, help="List the known weights files and their URLs.")
@_friendly
def download(names: tuple[str, ...], dest: str, mirror: Optional[str], list_: bool) -> None:
    """Download official Darknet weights (e.g. yolov4-tiny, yolov4-csp, yolov4-p5, yolov4.conv.137) into
    weights/, resuming an interrupted download and checking size and, where known, SHA-256."""
    from darkcfg.model.download import RELEASES
    from darkcfg.model.download import download as fetch

    if list_ or not names:
        for key, r in RELEASES.items():
            click.echo(f"{key:22s} {r.url}")
        if not names:
            return
    for name in names:
        path = fetch(name, Path(dest), mirror)
        click.echo(f"{path}: {path.stat().st_size:,} bytes, checked")


@main.command()
@click.option("-o", "--out", type=click.Path(file_okay=False), default="predictions", show_default=True,
              help="Folder for the annotated image.")
@click.pass_context
def demo(ctx: click.Context, out: str) -> None:
    """Run the embedded default: yolov3-tiny with its shipped weights on the shipped sample image.

    The same as `darkcfg detect cfg/yolov3-tiny.cfg darkcfg/data/grace_hopper.jpg --ext-output`.
    """
    from darkcfg.model.loading import shipped

    image = Path(__file__).resolve().parent / "assets" / "grace_hopper.jpg"
    ctx.invoke(detect, cfg=str(shipped("cfg", "yolov3-tiny.cfg")), sources=(str(image),),
               weights=str(shipped("weights", "yolov3-tiny.weights")), out=out, ext_output=True)


if __name__ == "__main__":  # pragma: no cover
    main()
