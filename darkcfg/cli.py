"""The `darkcfg` command line: thin wrappers that parse arguments, call the library, format output."""
from __future__ import annotations

import functools
import logging
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import click

from darkcfg.errors import DarkcfgError

REPO = Path(__file__).resolve().parent.parent


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="darkcfg")
def main() -> None:
    """Run Darknet .cfg models on PyTorch, unchanged."""


@main.command()
@click.argument("cfg", type=click.Path(dir_okay=False))
@size_option
@_friendly
def info(cfg: str, size: Optional[str]) -> None:
    """Print CFG's layer table (index, type, filters, size/stride, input -> output, BFLOPs) and totals."""
    from darkcfg.api import load

    model = load(cfg, size=_parse_size(size))
    click.echo(model.layer_table())
    n_params = sum(p.numel() for p in model.parameters())
    n_floats = sum(b.tensor.numel() for m in model.layers for b in m.darknet_blobs())
    click.echo(f"layers: {len(model.layers)}, parameters: {n_params:,}, floats in .weights: {n_floats:,} "
               f"({20 + 4 * n_floats:,} bytes), output layers: {', '.join(map(str, model.output_layers))}")


@main.command()
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights_in", type=click.Path(dir_okay=False))
@click.argument("weights_out", type=click.Path(dir_okay=False))
@click.argument("n", type=int)
@_friendly
def partial(cfg: str, weights_in: str, weights_out: str, n: int) -> None:
    """Save the first N layers of WEIGHTS_IN as WEIGHTS_OUT with seen=0 (like `darknet partial`)."""
    from darkcfg.network import Darknet, WeightsHeader
    from darkcfg.weights import load_weights, save_weights

    model = Darknet.from_file(cfg)
    if not 0 < n <= len(model.layers):
        raise click.BadParameter(f"N={n}: expected 1..{len(model.layers)} (layers in {cfg})")
    report = load_weights(model, weights_in, upto=n)
    save_weights(model, weights_out, upto=n, header=WeightsHeader())
    click.echo(f"{weights_out}: layers 0..{n - 1} ({report.layers_loaded} with weights), seen=0")


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("dest", type=click.Path(dir_okay=False))
@click.option("--cfg", default=None, type=click.Path(dir_okay=False),
              help="The cfg of SOURCE when it is a .weights file.")
@_friendly
def convert(source: str, dest: str, cfg: Optional[str]) -> None:
    """Convert .weights (with --cfg) to a PyTorch checkpoint carrying the cfg text, or back.

    \b
    darkcfg convert yolov4-tiny.weights yolov4-tiny.pt --cfg cfg/yolov4-tiny.cfg
    darkcfg convert yolov4-tiny.pt yolov4-tiny.weights        # byte-identical to the original
    """
    from darkcfg.checkpoint import load_checkpoint, save_checkpoint
    from darkcfg.network import Darknet
    from darkcfg.weights import load_weights, save_weights

    if source.endswith((".pt", ".pth")):
        model = load_checkpoint(source)
        save_weights(model, dest, upto=model.loaded_upto)
    else:
        if cfg is None:
            raise click.UsageError("converting a .weights file needs --cfg CFG")
        model = Darknet.from_file(cfg)
        load_weights(model, source)
        save_checkpoint(model, dest)
    click.echo(f"{source} -> {dest}")


@main.command(context_settings={"max_content_width": 110})
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("-f", "--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True)
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="Output file. Default: <cfg name>.onnx or <cfg name>.torchscript.pt beside the weights.")
@click.option("--dynamic-batch", is_flag=True, help="Any batch size (else the one traced, --batch).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size of the export.")
@click.option("--with-decode", is_flag=True, help="Output boxes (B, N, 4) x1y1x2y2 pixels and scores (B, N, C).")
@click.option("--with-nms", is_flag=True, help="Also Darknet's per-class NMS: detections (K, 7).")
@click.option("--thresh", type=float, default=0.25, show_default=True, help="Score threshold of --with-nms.")
@click.option("--nms", type=float, default=0.45, show_default=True, help="IoU threshold of --with-nms.")
@size_option
@_friendly
def export(cfg: str, weights: Optional[str], fmt: str, out: Optional[str], dynamic_batch: bool, batch: int,
           with_decode: bool, with_nms: bool, thresh: float, nms: float, size: Optional[str]) -> None:
    """Export CFG with WEIGHTS (default weights/<cfg name>.weights) to ONNX or TorchScript.

    \b
    darkcfg export cfg/yolov4-tiny.cfg yolov4-tiny.weights --format onnx --dynamic-batch --with-nms
    darkcfg export cfg/yolov3-tiny.cfg --format torchscript --size 320
    """
    from darkcfg.api import default_weights, load, load_weights_file
    from darkcfg.export import export as export_model

    model = load(cfg, size=_parse_size(size))
    if not cfg.endswith((".pt", ".pth")):
        load_weights_file(model, weights or default_weights(cfg))
    elif weights:
        load_weights_file(model, weights)
    stem = Path(cfg).name.split(".")[0]
    suffix = ".onnx" if fmt == "onnx" else ".torchscript.pt"
    dest = Path(out) if out else Path(weights or cfg).with_name(stem + suffix)
    try:
        export_model(model, dest, fmt, dynamic_batch, with_decode, with_nms, thresh, nms, batch)
    except (RuntimeError, ValueError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    click.echo(f"{cfg} -> {dest} ({fmt}, input images {'N' if dynamic_batch else batch}x{model.net.channels}x"
               f"{model.net.height}x{model.net.width})")


def _device(name: Optional[str]) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise click.BadParameter(f"'{name}': this PyTorch sees no CUDA GPU; use --device cpu", param_hint="--device")
    return name


def _names_for(model: object, data_names: Optional[str], names: Optional[str]) -> list[str]:
    from darkcfg.names import COCO_NAMES, head_classes, read_names

    classes = head_classes(model)
    path = names or data_names
    if path is not None:
        return read_names(path, classes)
    if classes == 80:
        return read_names(COCO_NAMES)
    raise click.ClickException(f"{model.cfg_file} has classes={classes}: give the class names with --names FILE "
                               "(or names= in the .data file)")


@main.command(context_settings={"max_content_width": 110})
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, required=True)
@click.option("-w", "--weights", type=click.Path(dir_okay=False), default=None,
              help="Darknet .weights (or darkcfg .pt). Default: weights/<cfg name>.weights.")
@click.option("-n", "--names", type=click.Path(dir_okay=False), default=None,
              help="Class names, one per line. Default: COCO's when the cfg has 80 classes.")
@click.option("--thresh", type=float, default=0.25, show_default=True, help="Detection threshold (strict >).")
@click.option("--nms", type=float, default=0.45, show_default=True, help="NMS threshold; 0 turns NMS off.")
@click.option("--letterbox/--no-letterbox", default=None,
              help="Letterbox the input (keep the aspect ratio). Default: the cfg's [net] letter_box.")
@click.option("-o", "--out", type=click.Path(file_okay=False), default="predictions", show_default=True,
              help="Folder for annotated images and videos.")
@click.option("--nosave", is_flag=True, help="Do not write annotated images or videos.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the reference's -out JSON (frame_id, filename, objects) to this file.")
@click.option("--save-txt", is_flag=True,
              help="Write YOLO label files (class cx cy w h): into --out, or beside each image with --nosave.")
@click.option("--ext-output", is_flag=True, help="Print each box as (left_x top_y width height) in pixels.")
@click.option("-b", "--batch", type=click.IntRange(1), default=1, show_default=True, help="Images per forward.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")
@size_option
@click.option("--fast/--no-fast", default=True, show_default=True,
              help="Inference fast path: batch-norm folded into the convolutions, channels-last memory.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the network (inductor, frozen weights): faster after a first, slow call.")
@click.option("--half/--no-half", default=None,
              help="float16 autocast (bfloat16 on a CPU). Default: on with a GPU (with CUDA graphs), off on a CPU.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the detections (errors and the summary only).")
@_friendly
def detect(cfg: str, sources: tuple[str, ...], weights: Optional[str], names: Optional[str], thresh: float,
           nms: float, letterbox: Optional[bool], out: str, nosave: bool, json_path: Optional[str], save_txt: bool,
           ext_output: bool, batch: int, device: Optional[str], size: Optional[str], fast: bool, compile_: bool,
           half: Optional[bool], quiet: bool) -> None:
    """Detect objects in SOURCES with CFG (or a .pt from `darkcfg convert`), printing what
    `darknet detector test` prints.

    SOURCES are image files, folders of images, globs ('data/*.jpg'), list files (.txt, one path per line)
    or videos. Unreadable sources are reported on stderr and skipped; the exit status is then 1.

    \b
    darkcfg detect cfg/yolov4-tiny.cfg dog.jpg
    darkcfg detect cfg/yolov4-tiny.cfg images/ --ext-output --json out.json -b 8
    darkcfg detect my.cfg clip.mp4 -w backup/my_best.weights -n obj.names
    """
    from darkcfg.api import default_weights, load, load_weights_file
    from darkcfg.detector import Detector
    from darkcfg.fast import prepare_for_inference
    from darkcfg.outputs import Outputs
    from darkcfg.progress import Progress
    from darkcfg.report import JsonWriter, text_lines
    from darkcfg.sources import expand_sources, iter_frames, video_info

    model = load(cfg, size=_parse_size(size))
    class_names = _names_for(model, None, names)
    if weights:
        load_weights_file(model, weights)
    elif not cfg.endswith((".pt", ".pth")):  # a darkcfg checkpoint carries its weights
        load_weights_file(model, default_weights(cfg))
    model.to(_device(device))
    det = Detector(prepare_for_inference(model, fast, compile_, half), class_names, thresh, nms, letterbox, batch)
    found, errors = expand_sources(sources)
    for e in errors:
        click.echo(f"error: {e}", err=True)
    total = sum(video_info(s.path)[0] or 1 if s.kind == "video" else 1 for s in found)
    outputs = Outputs(None if nosave else Path(out), save_txt, thresh)
    json_out = JsonWriter(json_path) if json_path else None
    failed, done, boxes = len(errors), 0, 0
    show_bar = total > 1 or any(s.kind == "video" for s in found)
    try:
        with Progress(total, "detect", unit="img", enabled=show_bar) as bar:
            for r in det.stream(iter_frames(found)):
                if r.error is not None or r.detections is None or r.image is None:
                    failed += 1
                    bar.write(f"error: {r.error}", stream=sys.stderr)
                    bar.update(1)
                    continue
                d = r.detections
                lines = text_lines(d, thresh, ext_output)
                boxes += len(lines)
                if not quiet:
                    bar.write("\n".join([f"{r.frame.name}: Predicted in {r.ms:f} milli-seconds."] + lines))
                if json_out is not None:
                    json_out.add(d, r.frame.source.path)
                outputs.add(r.frame.source, r.frame.index, r.image, d)
                done += 1
                bar.update(1)
    finally:
        outputs.close()
        if json_out is not None:
            json_out.close()
    where = f"; annotated in {out}/" if not nosave and done else ""
    click.echo(f"{done} image(s), {boxes} labelled box(es){where}" + (f"; {failed} failed" if failed else ""),
               err=True)
    if failed or not found:
        sys.exit(1)


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
@click.option("--map", "calc_map", is_flag=True, help="Measure mAP@0.5 on valid= as it trains; save _best.weights.")
@click.option("--map-every", type=click.IntRange(1), default=None,
              help="Iterations between mAP runs (default: the reference's max(4 epochs, 100)).")
@click.option("--clear", is_flag=True, help="Start from iteration 0 even if WEIGHTS has a `seen` count.")
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
def train(data: str, cfg: str, weights: Optional[str], calc_map: bool, map_every: Optional[int], clear: bool,
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
    from darkcfg.trainer import Trainer, TrainOptions

    dev = _device(device)
    opts = TrainOptions(data=data, cfg=cfg, weights=weights, clear=clear, size=_parse_size(size), batch=batch,
                        subdivisions=subdivisions, max_batches=max_batches, backup=backup, device=dev,
                        workers=workers, seed=seed, calc_map=calc_map, map_every=map_every, amp=amp,
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
@click.argument("data", type=click.Path(dir_okay=False))
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--iou-thresh", type=float, default=0.5, show_default=True, help="IoU for a true positive (strict >).")
@click.option("--points", type=int, default=0, show_default=True,
              help="0: area under the curve (VOC2010+); 11: VOC2007; 101: COCO.")
@click.option("--thresh", type=float, default=0.25, show_default=True,
              help="Confidence for the printed TP/FP, precision, recall, F1 and average IoU.")
@click.option("-n", "--names", type=click.Path(dir_okay=False), default=None, help="Overrides names= of DATA.")
@click.option("--coco", is_flag=True, help="Also print COCO's AP@[.5:.95], AP50, AP75, APs/m/l and AR (pycocotools).")
@click.option("--plots", type=click.Path(file_okay=False), default=None,
              help="Write pr_curves.png and confusion_matrix.png (at --thresh) into this folder.")
@click.option("--coco-gt", type=click.Path(dir_okay=False), default=None,
              help="A COCO instances_*.json as ground truth for --coco (images matched by file name).")
@click.option("-b", "--batch", type=click.IntRange(1), default=1, show_default=True, help="Images per forward.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")
@size_option
@_friendly
def map_(data: str, cfg: str, weights: Optional[str], iou_thresh: float, points: int, thresh: float,
         names: Optional[str], coco: bool, plots: Optional[str], coco_gt: Optional[str], batch: int,
         device: Optional[str], size: Optional[str]) -> None:
    """mAP of CFG + WEIGHTS on the `valid` list of DATA, printed as `darknet detector map` prints it.

    Labels are found by Darknet's rule (images/ -> labels/, JPEGImages/ -> labels/, extension -> .txt);
    `difficult=` in DATA names a parallel list whose labels are difficult truths (ignored).
    """
    from darkcfg.api import default_weights, load, load_weights_file
    from darkcfg.dataset import read_data_cfg, read_list
    from darkcfg.report import map_lines
    from darkcfg.validation import check_paths, compute_map

    dc = read_data_cfg(data)
    paths = read_list(dc.valid_list())
    check_paths(paths, dc.valid_list())
    difficult = read_list(dc.difficult) if dc.difficult else None
    if difficult is not None and len(difficult) != len(paths):
        raise click.ClickException(f"{dc.difficult}: {len(difficult)} lines, expected one per image of "
                                   f"{dc.valid_list()} ({len(paths)})")
    model = load(cfg, size=_parse_size(size))
    class_names = _names_for(model, dc.names, names)
    if weights:
        load_weights_file(model, weights)
    elif not cfg.endswith((".pt", ".pth")):
        load_weights_file(model, default_weights(cfg))
    model.to(_device(device))
    collector = None
    if coco or coco_gt:
        from darkcfg.coco import CocoCollector, read_coco_gt

        collector = CocoCollector(class_names, read_coco_gt(coco_gt) if coco_gt else None)
    res = compute_map(model, paths, class_names, iou_thresh, thresh, points, batch, difficult, coco=collector)
    click.echo("\n".join(map_lines(res, class_names)))
    if plots:
        from darkcfg.plots import confusion_matrix, pr_curves

        pr_curves(res, class_names, Path(plots) / "pr_curves.png")
        assert res.confusion is not None
        confusion_matrix(res.confusion, class_names, Path(plots) / "confusion_matrix.png")
        click.echo(f"plots: {Path(plots) / 'pr_curves.png'}, {Path(plots) / 'confusion_matrix.png'}", err=True)
    if collector is not None:
        from darkcfg.coco import stats_lines

        click.echo("\nCOCO metrics (pycocotools, the same detections):")
        click.echo("\n".join(stats_lines(collector.evaluate())))


@main.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--eval", "kind", type=click.Choice(["coco", "voc"]), default=None,
              help="Output format. Default: eval= of DATA (voc when absent).")
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Results folder. Default: results= of DATA (results/).")
@click.option("-n", "--names", type=click.Path(dir_okay=False), default=None, help="Overrides names= of DATA.")
@click.option("-b", "--batch", type=click.IntRange(1), default=1, show_default=True, help="Images per forward.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")
@_friendly
def valid(data: str, cfg: str, weights: Optional[str], kind: Optional[str], out: Optional[str],
          names: Optional[str], batch: int, device: Optional[str]) -> None:
    """Write detections on DATA's valid list like `darknet detector valid` (thresh .001, nms .6): COCO
    results JSON (eval=coco) or VOC comp4_det_test_<class>.txt files."""
    from darkcfg.api import default_weights, load, load_weights_file
    from darkcfg.dataset import read_data_cfg, read_list
    from darkcfg.validation import check_paths, write_valid

    dc = read_data_cfg(data)
    paths = read_list(dc.valid_list())
    check_paths(paths, dc.valid_list())
    model = load(cfg)
    class_names = _names_for(model, dc.names, names)
    load_weights_file(model, weights if weights else default_weights(cfg))
    model.to(_device(device))
    files = write_valid(model, paths, class_names, kind or dc.eval, Path(out or dc.results), batch)
    click.echo(f"{len(paths)} images: wrote {files[0]}" + (f" and {len(files) - 1} more" if len(files) > 1 else ""))


@main.command("calc-anchors")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--num", "num", type=click.IntRange(1), default=5, show_default=True, help="Number of anchors.")
@click.option("--width", type=click.IntRange(1), required=True, help="Network input width (the cfg's).")
@click.option("--height", type=click.IntRange(1), required=True, help="Network input height.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the k-means++ start.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="anchors.txt", show_default=True,
              help="File for the anchors line.")
@_friendly
def calc_anchors(data: str, num: int, width: int, height: int, seed: int, out: str) -> None:
    """k-means anchors (IoU distance) over the labels of DATA's train list, like `detector calc_anchors`."""
    import numpy as np

    from darkcfg.anchors import anchors_line, kmeans_anchors
    from darkcfg.dataset import label_path, read_data_cfg, read_labels, read_list
    from darkcfg.outputs import write_file
    from darkcfg.progress import Progress

    dc = read_data_cfg(data)
    if dc.train is None:
        raise click.ClickException(f"{data}: no 'train' list")
    paths = read_list(dc.train)
    click.echo(f" num_of_clusters = {num}, width = {width}, height = {height} ")
    boxes = []
    with Progress(len(paths), "labels", unit="img", enabled=len(paths) > 1) as bar:
        for p in paths:
            lab = read_labels(label_path(p), dc.classes)
            boxes.append(lab[:, 3:5] * [width, height])
            bar.update(1)
    wh = np.concatenate(boxes) if boxes else np.zeros((0, 2))
    if len(wh) < num:
        raise click.ClickException(f"{dc.train}: {len(wh)} labelled boxes, need at least --num {num}")
    anchors, iou = kmeans_anchors(wh, num, seed)
    line = anchors_line(anchors, width)
    click.echo(f" read labels from {len(paths)} images, {len(wh)} boxes")
    click.echo(f"\n avg IoU = {iou * 100:2.2f} % \n")
    write_file(Path(out), line.encode())
    click.echo(f"Saving anchors to the file: {out} ")
    click.echo(f"anchors = {line}")


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
    from darkcfg.download import RELEASES
    from darkcfg.download import download as fetch

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
    image = Path(__file__).resolve().parent / "data" / "grace_hopper.jpg"
    ctx.invoke(detect, cfg=str(REPO / "cfg" / "yolov3-tiny.cfg"), sources=(str(image),),
               weights=str(REPO / "weights" / "yolov3-tiny.weights"), out=out, ext_output=True)


if __name__ == "__main__":  # pragma: no cover
    main()
