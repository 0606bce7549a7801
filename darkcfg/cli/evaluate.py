"""Commands that measure: `map` (`darknet detector map`) and `valid` (`darknet detector valid`)."""
from __future__ import annotations

from typing import Optional

import click

from darkcfg.cli import main
from darkcfg.cli._common import (
    batch_option,
    device_option,
    friendly,
    names_option,
    parse_size,
    runtime_from,
    runtime_options,
    size_option,
    thresh_option,
)
from darkcfg.cli.detect import tile_options, tiling_from

data_argument = click.argument("data", type=click.Path(exists=True))


@main.command("map")
@data_argument
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--iou-thresh", "-iou_thresh", type=float, default=0.5, show_default=True,
              help="IoU for a true positive (strict >).")
@click.option("--points", "-points", type=int, default=0, show_default=True,
              help="0: area under the curve (VOC2010+); 11: VOC2007; 101: COCO.")
@thresh_option(help="Confidence for the printed TP/FP, precision, recall, F1 and average IoU.")
@names_option("Class names, one per line. Default: names= of DATA, else COCO's for 80 classes.")
@click.option("--coco", is_flag=True, help="Also print COCO's AP@[.5:.95], AP50, AP75, APs/m/l and AR (pycocotools).")
@click.option("--plots", type=click.Path(file_okay=False), default=None,
              help="Write pr_curves.png and confusion_matrix.png (at --thresh) into this folder.")
@click.option("--coco-gt", type=click.Path(dir_okay=False), default=None,
              help="A COCO instances_*.json as ground truth for --coco (images matched by file name).")
@click.option("--report", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write an error-analysis page DIR/index.html: TP/FP/FN per class, AP by object size, F1-best "
                   "thresholds, PR curves, confusion matrix and the images with the most errors.")
@tile_options
@batch_option()
@device_option
@size_option
@runtime_options
@friendly
def map_(data: str, cfg: str, weights: Optional[str], iou_thresh: float, points: int, thresh: float,
         names: Optional[str], coco: bool, plots: Optional[str], coco_gt: Optional[str], report: Optional[str],
         batch: int, device: Optional[str], size: Optional[str], runtime: str, precision: str,
         calibration: Optional[str], tiles: Optional[str], tile_overlap: float, tiles_full: bool,
         seam_ios: float) -> None:
    """mAP of CFG + WEIGHTS on the `valid` list of DATA (a .data file, or a folder of images with their labels),
    printed as `darknet detector map` prints it.

    Labels are found by Darknet's rule (images/ -> labels/, JPEGImages/ -> labels/, extension -> .txt), else
    beside the image; `difficult=` in DATA names a parallel list whose labels are difficult truths (ignored).
    With --tiles, each image is detected in tiles as `detect --tiles` does; the TP and FP at --thresh count the
    boxes `detect --tiles --thresh` prints.
    """
    from darkcfg.infer.classify import is_classifier_cfg

    tiling = tiling_from(tiles, tile_overlap, tiles_full, seam_ios)
    if is_classifier_cfg(cfg):  # a classifier has no mAP: its top-1 / top-k, as `classifier-valid` prints them
        if tiling is not None:
            raise click.UsageError(f"--tiles: {cfg} is a classifier; tiles are for detectors")
        from darkcfg.cli.classify import run_classifier_valid_command

        return run_classifier_valid_command(data, cfg, weights, "single", batch, device, size)
    from darkcfg.eval.coco import stats_lines
    from darkcfg.eval.printout import map_lines, map_notes
    from darkcfg.eval.runner import run_map
    from darkcfg.infer.runtime import load_runtime_model

    # the default stays the plain network (no fast path): the reference's numbers
    rt = runtime_from(runtime, precision, calibration or data if precision == "int8" else calibration, device,
                      fast=runtime != "torch" or precision != "fp32")
    model = load_runtime_model(cfg, weights, parse_size(size), rt)
    run = run_map(data, model, names, iou_thresh, thresh, points, batch, coco, coco_gt, plots, report=report,
                  tiles=tiling)
    click.echo("\n".join(map_lines(run.result, run.names)))
    for note in map_notes(run.result):
        click.echo(note, err=True)
    if run.plots:
        click.echo(f"plots: {', '.join(map(str, run.plots))}", err=True)
    if run.report is not None:
        click.echo(f"report: {run.report}", err=True)
    if run.coco_stats is not None:
        click.echo("\nCOCO metrics (pycocotools, the same detections):")
        click.echo("\n".join(stats_lines(run.coco_stats)))


@main.command()
@data_argument
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--eval", "kind", type=click.Choice(["coco", "voc"]), default=None,
              help="Output format. Default: eval= of DATA (voc when absent).")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Results folder. Default: results= of DATA (results/).")
@names_option("Class names, one per line. Default: names= of DATA, else COCO's for 80 classes.")
@tile_options
@batch_option()
@device_option
@size_option
@runtime_options
@friendly
def valid(data: str, cfg: str, weights: Optional[str], kind: Optional[str], out_dir: Optional[str],
          names: Optional[str], batch: int, device: Optional[str], size: Optional[str], runtime: str, precision: str,
          calibration: Optional[str], tiles: Optional[str], tile_overlap: float, tiles_full: bool,
          seam_ios: float) -> None:
    """Write detections on DATA's valid list like `darknet detector valid` (thresh .001, nms .6): COCO
    results JSON (eval=coco) or VOC comp4_det_test_<class>.txt files; with --tiles, detected in tiles."""
    from darkcfg.eval.runner import run_valid
    from darkcfg.infer.runtime import load_runtime_model

    tiling = tiling_from(tiles, tile_overlap, tiles_full, seam_ios)

    rt = runtime_from(runtime, precision, calibration or data if precision == "int8" else calibration, device,
                      fast=runtime != "torch" or precision != "fp32")
    model = load_runtime_model(cfg, weights, parse_size(size), rt)
    images, files = run_valid(data, model, names, kind, out_dir, batch, tiles=tiling)
    click.echo(f"{images} images: wrote {files[0]}" + (f" and {len(files) - 1} more" if len(files) > 1 else ""))
