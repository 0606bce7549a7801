"""The dataset tools: `data check`, `data convert coco|voc|yolo` and `data tile`."""
from __future__ import annotations

import sys
from typing import Optional

import click

from darkcfg.cli import main
from darkcfg.cli._common import friendly, parse_size


@main.group()
def data() -> None:
    """Dataset tools: check a dataset (and a cfg against it), convert between COCO, VOC and Darknet labels, cut
    large images into tiles for training."""


@data.command("check")
@click.argument("source", type=click.Path(exists=True))
@click.argument("cfg", type=click.Path(dir_okay=False), required=False)
@click.option("--fix", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write the cfg with classes and filters fixed beside CFG (<name>.fixed.cfg) and a cleaned copy of "
                   "the dataset into the new folder DIR; your files are not changed.")
@click.option("--classes", type=click.IntRange(1), default=None, help="Overrides classes= of the .data file.")
@click.option("--quiet", "-q", is_flag=True, help="Only the summary table.")
@friendly
def data_check(source: str, cfg: Optional[str], fix: Optional[str], classes: Optional[int], quiet: bool) -> None:
    """Report every problem of SOURCE (a .data file, or a folder of images with labels beside them) the way
    `train` and `map` read it, one line each with file:line, then a summary; exit status 1 when something
    blocks training. With CFG, also its heads, filters, masks and anchors against the dataset."""
    from darkcfg.train.preflight import run_check

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
    skipped: list[str] = r.skipped  # type: ignore[attr-defined]
    for line in skipped[:20]:
        click.echo(f"skipped: {line}", err=True)
    if len(skipped) > 20:
        click.echo(f"skipped: ... and {len(skipped) - 20} more", err=True)
    click.echo(f"{r.images} images, {r.boxes} boxes; wrote {', '.join(map(str, r.files))}")  # type: ignore[attr-defined]


out_dir_option = click.option("--out-dir", "-o", "out", type=click.Path(file_okay=False), required=True,
                              help="New folder for the Darknet dataset (images linked, labels, lists, .data).")


@data_convert.command("coco")
@click.argument("instances", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", type=click.Path(exists=True, file_okay=False), required=True, help="The images' folder.")
@out_dir_option
@click.option("--name", default="coco", show_default=True, help="Base name of the .data, .names and list files.")
@friendly
def convert_coco(instances: str, images: str, out: str, name: str) -> None:
    """A COCO instances JSON -> Darknet labels, names, list and .data in OUT (ids kept in OUT/ids.json)."""
    from darkcfg.data.annotations import coco_to_yolo

    _report_conversion(coco_to_yolo(instances, images, out, name))


@data_convert.command("voc")
@click.argument("annotations", type=click.Path(exists=True, file_okay=False))
@click.option("--images", type=click.Path(exists=True, file_okay=False), required=True, help="The JPEGImages folder.")
@out_dir_option
@click.option("-n", "--names", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Class names in order (default: every name found, sorted).")
@click.option("--name", default="voc", show_default=True, help="Base name of the .data, .names and list files.")
@friendly
def convert_voc(annotations: str, images: str, out: str, names: Optional[str], name: str) -> None:
    """Pascal VOC XML files (ANNOTATIONS folder) -> a Darknet dataset in OUT, as voc_label.py converts them."""
    from darkcfg.data.annotations import voc_to_yolo
    from darkcfg.data.names import read_names

    _report_conversion(voc_to_yolo(annotations, images, out, read_names(names) if names else None, name))


@data_convert.command("yolo")
@click.argument("list_file", metavar="LIST", type=click.Path(exists=True))
@click.option("-n", "--names", type=click.Path(exists=True, dir_okay=False), required=True, help="The names file.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True, help="The COCO instances JSON to write.")
@click.option("--ids", type=click.Path(exists=True, dir_okay=False), default=None,
              help="ids.json mapping classes and images to COCO ids (default: the one beside LIST, if any).")
@friendly
def convert_yolo(list_file: str, names: str, out: str, ids: Optional[str]) -> None:
    """Darknet labels of the images in LIST (a list file or a folder of images) -> a COCO instances JSON (what
    `map --coco-gt` reads)."""
    from darkcfg.data.annotations import yolo_to_coco
    from darkcfg.data.names import read_names

    _report_conversion(yolo_to_coco(list_file, read_names(names), out, ids))


@data.command("tile")
@click.argument("source", metavar="DATA", type=click.Path(exists=True))
@click.option("--size", required=True, metavar="N|WxH",
              help="Tile size in pixels of the images, e.g. the network's (416 or 640x480): objects are then "
                   "trained at the scale `detect --tiles auto` sees them.")
@click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Overlap of neighbouring tiles, a fraction of the tile size.")
@click.option("--min-visible", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="A box cut by a tile is kept (clipped) when at least this fraction of its area is inside.")
@click.option("--empty", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of the tiles without boxes that are kept (every 1/F-th; 0: none, 1: all).")
@click.option("--out-dir", "-o", "out", type=click.Path(file_okay=False), required=True,
              help="New folder for the tiled dataset (tile images, labels, lists, names, .data, tiles.json).")
@click.option("--name", default=None, help="Base name of the .data and .names files. Default: DATA's name.")
@friendly
def data_tile(source: str, size: str, overlap: float, min_visible: float, empty: float, out: str,
              name: Optional[str]) -> None:
    """A tiled copy of DATA (a .data file, or a folder of images with labels) for training on large images: every
    image of its train and valid lists cut into overlapping tiles of --size pixels, boxes clipped to each tile,
    written as `data convert` writes a dataset (OUT/images/ with labels beside, train.txt, valid.txt, .names,
    .data) with OUT/tiles.json mapping each tile back to its image. Your files are not changed.

    \b
    darkcfg data tile drone/obj.data --size 416 -o drone-tiles/
    darkcfg train drone-tiles/obj.data cfg/yolov4-tiny-obj.cfg ...   then: darkcfg detect ... --tiles auto
    """
    from darkcfg.data.tile import tile_dataset

    wh = parse_size(size)
    assert wh is not None
    r = tile_dataset(source, out, wh, overlap, min_visible, empty, name)
    click.echo(f"{r.images} images -> {r.tiles} tiles ({r.empty} without boxes; {r.empty_skipped} more left out), "
               f"{r.boxes} boxes ({r.dropped} box parts less than {min_visible:g} visible left out); wrote "
               f"{', '.join(map(str, r.files))}")
