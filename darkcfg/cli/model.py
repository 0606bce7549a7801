"""Commands on a model's files: `info`, `partial`, `convert`, `export`, `download`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from darkcfg.cli import main
from darkcfg.cli._common import friendly, nms_option, parse_size, size_option, thresh_option


@main.command()
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.option("-w", "--weights", type=click.Path(dir_okay=False), default=None,
              help="Also load this .weights (or .pt) file: a one-line error when it does not fit CFG.")
@size_option
@friendly
def info(cfg: str, weights: Optional[str], size: Optional[str]) -> None:
    """Print CFG's layer table (index, type, filters, size/stride, input -> output, BFLOPs) and totals."""
    from darkcfg.model.loading import load, weights_summary

    model = load(cfg, weights, size=parse_size(size))
    click.echo(model.summary())
    if weights:
        click.echo(weights_summary(model, weights))


@main.command()
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights_in", type=click.Path(dir_okay=False))
@click.argument("weights_out", type=click.Path(dir_okay=False))
@click.argument("n", type=int)
@friendly
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
@friendly
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
              help="Output file. Default: <cfg name>.onnx, .torchscript.pt or .xml beside the weights (without "
                   "WEIGHTS: beside the cfg).")
@click.option("--dynamic-batch", is_flag=True, help="Any batch size (else the one traced, --batch).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size of the export.")
@click.option("--with-decode", is_flag=True, help="Output boxes (B, N, 4) x1y1x2y2 pixels and scores (B, N, C).")
@click.option("--with-nms", is_flag=True, help="Also Darknet's per-class NMS: detections (K, 7).")
@thresh_option(help="Score threshold of --with-nms.")
@nms_option
@size_option
@click.option("--calibration", type=click.Path(exists=True), default=None, metavar="DATA|LIST|DIR",
              help="--format openvino: quantize to int8 on these images (a .data file's valid list, an image list "
                   "or a folder), as --precision int8 does.")
@friendly
def export(cfg: str, weights: Optional[str], fmt: str, out: Optional[str], dynamic_batch: bool, batch: int,
           with_decode: bool, with_nms: bool, thresh: float, nms: float, size: Optional[str],
           calibration: Optional[str]) -> None:
    """Export CFG with WEIGHTS (default weights/<cfg name>.weights) to ONNX, TorchScript or OpenVINO IR.

    \b
    darkcfg export cfg/yolov4-tiny.cfg yolov4-tiny.weights --format onnx --dynamic-batch --with-nms
    darkcfg export cfg/yolov3-tiny.cfg --format torchscript --size 320
    darkcfg export cfg/yolov3-tiny.cfg --format openvino --dynamic-batch --calibration obj.data   # int8
    """
    from darkcfg.export import export_files

    if calibration and fmt != "openvino":
        raise click.UsageError("--calibration quantizes OpenVINO exports: add --format openvino")
    r = export_files(cfg, weights, fmt, out, parse_size(size), dynamic_batch, with_decode, with_nms, thresh, nms,
                     batch, calibration)
    click.echo(f"{cfg} -> {r.path} ({fmt}{', int8' if r.int8 else ''}, input images "
               f"{'N' if dynamic_batch else batch}x{r.channels}x{r.height}x{r.width})")


@main.command()
@click.argument("names", nargs=-1)
@click.option("-d", "--dir", "dest", type=click.Path(file_okay=False), default="weights", show_default=True,
              help="Folder to download into.")
@click.option("--mirror", default=None, metavar="URL",
              help="Fetch the same file names from this base URL (also $DARKCFG_MIRROR).")
@click.option("--list", "list_", is_flag=True, help="List the known weights files and their URLs.")
@friendly
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
