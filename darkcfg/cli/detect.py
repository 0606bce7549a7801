"""Commands that detect: `detect` (Darknet's `detector test` and `detector demo`), `serve`, `demo`."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import click

from darkcfg.cli import main
from darkcfg.cli._common import (
    DarknetCommand,
    batch_option,
    device_option,
    friendly,
    ignored_flags,
    is_weights_file,
    names_option,
    nms_option,
    parse_size,
    runtime_from,
    runtime_options,
    size_option,
    thresh_option,
    weights_option,
)
from darkcfg.errors import DarkcfgError

if TYPE_CHECKING:
    from darkcfg.infer.run import TrackOptions
    from darkcfg.infer.tiles import Tiling

letterbox_option = click.option(
    "--letterbox/--no-letterbox", "-letter_box", default=None,
    help="Letterbox the input (keep the aspect ratio). Default: the cfg's [net] letter_box.")


def tile_options(fn: Callable) -> Callable:
    """--tiles, --tile-overlap, --tiles-full and --seam-ios (collected by `tiling_from`): detect, map, valid."""
    for option in reversed((
        click.option("--tiles", default=None, metavar="auto|RxC|Npx",
                     help="Detect on overlapping tiles of each image, for small objects in large images: auto (tiles "
                          "of the network's size, each seen at its native scale), RxC (a grid of rows x columns, "
                          "e.g. 2x3) or a tile size in pixels (640px, 640x480px). Each image's tiles go through the "
                          "network together; their boxes are mapped back, merged across seams and suppressed with "
                          "the cfg's NMS kind: one result per image."),
        click.option("--tile-overlap", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
                     help="With --tiles: overlap of neighbouring tiles, a fraction of the tile size."),
        click.option("--tiles-full", is_flag=True,
                     help="With --tiles: also detect on the whole image, for objects larger than a tile."),
        click.option("--seam-ios", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                     help="With --tiles: a box cut by a tile seam joins its other half when their intersection over "
                          "the smaller box, inside the region both tiles see, is above this (1: no seam merge)."),
    )):
        fn = option(fn)
    return fn


def track_options(fn: Callable) -> Callable:
    """--track, --tracker, --track-appearance, --track-buffer, --mot and --count-line (collected by `track_from`)."""
    for option in reversed((
        click.option("--track", is_flag=True,
                     help="Follow objects from frame to frame: each box gets an id (printed `car: 81% (id: 7)`, "
                          "\"track_id\" in the JSON and --json-port, drawn `id 7 car 81%` in the track's colour). "
                          "Each video, stream, folder or list is one sequence with its own tracker (images in "
                          "name/list order; image files named one after another on the command line are one)."),
        click.option("--tracker", type=click.Choice(["bytetrack", "darknet"]), default=None,
                     help="With --track: bytetrack (default: motion and IoU, using the low-score boxes too), or "
                          "darknet (the reference's demo tracker, for cfgs whose [yolo] has embedding_layer)."),
        click.option("--track-appearance", is_flag=True,
                     help="With --tracker bytetrack: also match on appearance (the network's own feature map pooled "
                          "in each box) to find objects again after an occlusion; PyTorch runtime only. Off by "
                          "default (docs/benchmarks.md#tracking says what it gained and cost)."),
        click.option("--track-buffer", type=int, default=None, metavar="FRAMES",
                     help="With --tracker bytetrack (implies --track): frames (at 30 fps; scaled by the source's "
                          "rate) a lost object's track waits to be found again before a return counts as a new "
                          "object. Default 45 (1.5 s when every frame is tracked): raise it for objects hidden "
                          "longer."),
        click.option("--mot", "mot_path", type=click.Path(), default=None,
                     help="With --track: write MOTChallenge text (frame,id,x,y,w,h,conf,-1,-1,-1; frames from 1). "
                          "Several sequences: FILE_<sequence>.txt each; a folder (ending in /): <folder>/<sequence>"
                          ".txt each, as `darkcfg track-eval` reads them."),
        click.option("--count-line", "count_lines", multiple=True, metavar="X1,Y1,X2,Y2",
                     help="With --track: count the tracks crossing this line (pixels; repeatable) per class and "
                          "direction: drawn on the frames, in the JSON (\"counts\") and printed at the end."),
    )):
        fn = option(fn)
    return fn


def parse_line(text: str) -> tuple[float, float, float, float]:
    """`x1,y1,x2,y2` (pixels) -> the four numbers; a usage error naming the option otherwise."""
    import math

    parts = text.replace(" ", "").split(",")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[:2] == vals[2:]:
        raise click.BadParameter(f"{text!r}: expected x1,y1,x2,y2 in pixels, two distinct points (e.g. "
                                 "0,240,640,240)", param_hint="--count-line")
    return vals  # type: ignore[return-value]


# libgomp (PyTorch's CPU threads) keeps its workers spinning for GOMP_SPINCOUNT pause loops after a parallel region
# (300000 by default, about 3 ms on this project's 2-core Xeon), then puts them to sleep until the next. Measured on
# the generated videos (yolov4-tiny at 256, 55 frames/s, docs/benchmarks.md#tracking): by default tracking cost 2.7 to
# 5.8 % of detect's frames/s, and a plain 0.35 ms wait in place of the update cost as much (4.1 to 5.7 %), over twice
# its own time: not the update's work but the pause it adds between forwards (2.5 ms without it; most likely more
# pauses then outlast the spin and the next forward waits for the workers to wake). Spinning 100 times longer,
# tracking cost 1.5 to 3.0 % and detect alone ran as fast as before. Files only: on a live source the workers would
# spin through the gaps the camera leaves between frames.
TRACKING_SPINCOUNT = "30000000"


def spin_for_tracking(sources: tuple[str, ...], tracked: bool) -> None:
    """Before PyTorch loads: a longer libgomp spin (`TRACKING_SPINCOUNT`) for a tracked run on files only (no
    camera or stream: `is_live`), unless GOMP_SPINCOUNT is set already."""
    from darkcfg.infer.live import is_live  # no PyTorch

    if tracked and not any(is_live(s) for s in sources) and "torch" not in sys.modules:
        os.environ.setdefault("GOMP_SPINCOUNT", TRACKING_SPINCOUNT)


def wants_tracking(track: bool, tracker: Optional[str], mot_path: Optional[str], count_lines: tuple[str, ...],
                   appearance: bool = False, track_buffer: Optional[int] = None) -> bool:
    """Whether the options ask for tracking: --track, or --tracker, --mot, --count-line, --track-appearance or
    --track-buffer, which imply it."""
    return bool(track or tracker or mot_path or count_lines or appearance or track_buffer is not None)


def track_from(track: bool, tracker: Optional[str], mot_path: Optional[str],
               count_lines: tuple[str, ...], appearance: bool = False,
               track_buffer: Optional[int] = None) -> Optional[TrackOptions]:
    """The TrackOptions the options ask for (None: no tracking); --tracker, --mot, --count-line,
    --track-appearance and --track-buffer imply --track."""
    from darkcfg.infer.run import TrackOptions

    if not wants_tracking(track, tracker, mot_path, count_lines, appearance, track_buffer):
        return None
    opts = TrackOptions(tracker or "bytetrack", [parse_line(t) for t in count_lines], appearance, track_buffer)
    if reason := opts.conflict():  # refused before anything loads
        raise click.UsageError(reason)
    return opts


def tiling_from(tiles: Optional[str], overlap: float, full: bool, seam_ios: float) -> Optional[Tiling]:
    """The Tiling the options name (None without --tiles); a usage error for a bad spec or a tile option
    without --tiles."""
    if tiles is None:
        if full or overlap != 0.2 or seam_ios != 0.5:
            raise click.UsageError("--tile-overlap, --tiles-full and --seam-ios go with --tiles (e.g. --tiles auto)")
        return None
    from darkcfg.infer.tiles import Tiling

    try:
        return Tiling.parse(tiles, overlap, full, seam_ios=seam_ios)
    except DarkcfgError as e:
        raise click.BadParameter(str(e).removeprefix("tiles").lstrip(": "), param_hint="--tiles") from None


@main.command(context_settings={"max_content_width": 110})
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, required=True)
@weights_option
@names_option()
@thresh_option()
@nms_option
@letterbox_option
@click.option("-o", "--out", "-out", "--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the reference's -out JSON (frame_id, filename, objects) to this file.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="predictions", show_default=True,
              help="Folder for annotated images and videos.")
@click.option("--nosave", is_flag=True, help="Do not write annotated images or videos.")
@click.option("--save-txt", "-save_labels", is_flag=True,
              help="Write YOLO label files (class cx cy w h): into --out-dir, or beside each image with --nosave.")
@click.option("--overwrite", is_flag=True, help="With --save-txt --nosave: replace label files already beside images.")
@click.option("--ext-output", "-ext_output", is_flag=True,
              help="Print each box as (left_x top_y width height) in pixels.")
@ignored_flags("-dont_show", "-show_imgs")
@click.option("--json-port", "-json_port", type=click.IntRange(0, 65535), default=0,
              help="Serve each frame's detections as the reference's -json_port does, to every client.")
@click.option("--mjpeg-port", "-mjpeg_port", type=click.IntRange(0, 65535), default=0,
              help="Serve the annotated frames as an MJPEG stream a browser shows (multipart/x-mixed-replace).")
@click.option("--mjpeg-quality", type=click.IntRange(1, 100), default=80, show_default=True,
              help="JPEG quality of the --mjpeg-port frames.")
@click.option("--port-host", default="0.0.0.0", show_default=True,
              help="Address --json-port and --mjpeg-port listen on: all interfaces (0.0.0.0) as the reference's; "
              "127.0.0.1 for this machine only.")
@click.option("--show", is_flag=True, help="Show the annotated frames in a window (when a display exists).")
@click.option("--no-drop", is_flag=True,
              help="Live sources: detect on every frame (default: the newest one, dropping what came meanwhile).")
@click.option("--retries", type=int, default=-1, show_default=True,
              help="Live sources: reconnect attempts after the stream drops (negative: forever).")
@click.option("--frames", "max_frames", type=click.IntRange(1), default=None,
              help="Live sources: stop after this many frames.")
@track_options
@tile_options
@batch_option()
@device_option
@size_option
@click.option("--fast/--no-fast", default=True, show_default=True,
              help="Inference fast path: batch-norm folded into the convolutions, channels-last memory.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the network (inductor, frozen weights): faster after a first, slow call.")
@click.option("--half/--no-half", default=None,
              help="float16 autocast (bfloat16 on a CPU). Default: on with a GPU (with CUDA graphs), off on a CPU.")
@runtime_options
@click.option("-q", "--quiet", is_flag=True, help="Do not print the detections (errors and the summary only).")
@friendly
def detect(cfg: str, sources: tuple[str, ...], weights: Optional[str], names: Optional[str], thresh: float,
           nms: float, letterbox: Optional[bool], json_path: Optional[str], out_dir: str, nosave: bool,
           save_txt: bool, overwrite: bool, ext_output: bool, json_port: int, mjpeg_port: int, mjpeg_quality: int,
           show: bool, no_drop: bool, retries: int, max_frames: Optional[int], batch: int, device: Optional[str],
           size: Optional[str], fast: bool, compile_: bool, half: Optional[bool], runtime: str, precision: str,
           calibration: Optional[str], quiet: bool, port_host: str, tiles: Optional[str], tile_overlap: float,
           tiles_full: bool, seam_ios: float, track: bool, tracker: Optional[str], track_appearance: bool,
           track_buffer: Optional[int], mot_path: Optional[str], count_lines: tuple[str, ...]) -> None:
    """Detect objects in SOURCES with CFG (or a .pt from `darkcfg convert`), printing what
    `darknet detector test` prints.

    SOURCES are image files, folders of images, globs ('data/*.jpg'), list files (.txt, one path per line),
    videos, camera indices (0) or stream URLs (rtsp://, http(s)://, udp://, tcp://, rtmp://). Unreadable
    sources are reported on stderr and skipped; the exit status is then 1. As with `darknet detector test`, a
    .weights (or .pt) file right after CFG is the weights. Ctrl-C stops cleanly, keeping what was written.

    \b
    darkcfg detect cfg/yolov4-tiny.cfg dog.jpg
    darkcfg detect cfg/yolov4-tiny.cfg images/ --ext-output -o result.json -b 8
    darkcfg detect my.cfg clip.mp4 -w backup/my_best.weights -n obj.names --out-dir annotated
    darkcfg detect cfg/yolov4-tiny.cfg rtsp://cam/stream --mjpeg-port 8090 --json-port 8070 --nosave
    darkcfg detect cfg/yolov4-tiny.cfg drone/ --tiles auto --tiles-full   # small objects in large images
    darkcfg detect cfg/yolov4-tiny.cfg road.mp4 --track --count-line 0,300,1280,300 --mot road.txt
    """
    spin_for_tracking(sources, wants_tracking(track, tracker, mot_path, count_lines, track_appearance, track_buffer))
    from darkcfg.infer.run import LiveOutputs, run_detection
    from darkcfg.infer.runtime import load_detector
    from darkcfg.infer.sources import LiveOptions

    if sources and is_weights_file(sources[0]):  # `detect CFG WEIGHTS IMAGE...`, as detector test takes it
        if weights:
            raise click.UsageError(f"weights given twice: {sources[0]} and -w {weights}")
        weights, sources = sources[0], sources[1:]
        if not sources:
            raise click.UsageError("no SOURCES after the weights file")
    tiling = tiling_from(tiles, tile_overlap, tiles_full, seam_ios)
    tracking = track_from(track, tracker, mot_path, count_lines, track_appearance, track_buffer)
    if tracking is not None and tracking.embeddings() and (runtime != "torch" or compile_):
        what = ("--tracker darknet reads the cfg's embedding layer" if tracking.tracker == "darknet" else
                "--track-appearance reads the network's feature map")
        raise click.UsageError(f"{what} while the network runs: it needs --runtime torch without --compile")
    rt = runtime_from(runtime, precision, calibration, device, fast=fast, compile=compile_, half=half)
    det = load_detector(cfg, weights, names, parse_size(size), thresh, nms, letterbox, batch, rt, tiling)
    ports = (LiveOutputs(json_port, mjpeg_port, mjpeg_quality, show, port_host=port_host)
             if json_port or mjpeg_port or show else None)
    try:
        run = run_detection(det, sources, None if nosave else out_dir, save_txt, json_path, ext_output, quiet,
                            overwrite=overwrite, live=LiveOptions(no_drop, retries, max_frames), outputs_live=ports,
                            track=tracking, mot_path=mot_path)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: what was written is complete (a video holds the frames done so far)", err=True)
        sys.exit(130)
    from darkcfg.infer.printout import count_report

    for name, counts in run.counts:
        click.echo("\n".join(count_report(name, counts)))
    where = f"; annotated in {out_dir}/" if not nosave and run.done else ""
    click.echo(f"{run.done} image(s), {run.boxes} labelled box(es){where}"
               + (f"; {run.failed} failed" if run.failed else ""), err=True)
    if run.failed or not run.sources:
        sys.exit(1)


@main.command(cls=DarknetCommand, context_settings={"max_content_width": 110})
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@names_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@thresh_option(help="Default detection threshold (strict >).")
@nms_option
@batch_option(8, "Most images per forward when requests arrive together.")
@click.option("--batch-wait-ms", type=click.FloatRange(0), default=5.0, show_default=True,
              help="How long the first request of a batch waits for others.")
@click.option("--max-mb", type=click.FloatRange(0, min_open=True), default=20.0, show_default=True,
              help="Largest request body accepted (413 above).")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Largest image (width x height) decoded, read from its header first (413 above). "
                   "[default: $DARKCFG_MAX_PIXELS (WxH or pixels; every command reads it), else 7680x4320]")
@click.option("--max-boxes", type=click.IntRange(1), default=1000, show_default=True,
              help="Candidate boxes per image into NMS (the highest objectness), and objects per answer.")
@click.option("--max-connections", type=click.IntRange(1), default=1024, show_default=True,
              help="Open connections at most: beyond, a new one replaces the longest idle, else gets 503.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Threads that decode images and wait for detections. [default: 2 x --batch]")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Seconds for a request's head to arrive (and for an idle kept-alive connection).")
@click.option("--body-timeout", type=click.FloatRange(0, min_open=True), default=60.0, show_default=True,
              help="Seconds for a request's body to arrive.")
@click.option("--tracker", type=click.Choice(["bytetrack", "darknet"]), default="bytetrack", show_default=True,
              help="The tracker of each stream POSTed as /detect?stream=NAME&track=1 (as detect --tracker).")
@click.option("--track-buffer", type=int, default=None, metavar="FRAMES",
              help="Each tracked stream's ByteTrack buffer (as detect --track-buffer). [default: 45]")
@click.option("--max-streams", type=click.IntRange(1), default=64, show_default=True,
              help="Tracked streams kept at once: a new one replaces the least recently used idle one (503 when "
                   "every stream has a request in progress).")
@click.option("--stream-timeout", type=click.FloatRange(0, min_open=True), default=300.0, show_default=True,
              help="Seconds a tracked stream is kept without a frame.")
@device_option
@size_option
@runtime_options
@tile_options
@friendly
def serve(cfg: str, weights: Optional[str], names: Optional[str], host: str, port: int, thresh: float, nms: float,
          batch: int, batch_wait_ms: float, max_mb: float, max_pixels: Optional[int], max_boxes: int,
          max_connections: int, workers: Optional[int], timeout: float, body_timeout: float, device: Optional[str],
          size: Optional[str], runtime: str, precision: str, calibration: Optional[str], tiles: Optional[str],
          tile_overlap: float, tiles_full: bool, seam_ios: float, tracker: str, track_buffer: Optional[int],
          max_streams: int, stream_timeout: float) -> None:
    """Serve detection over HTTP: POST an image to /detect (raw body or multipart; ?thresh=&nms=&ext=1) for the
    JSON `detect --json` writes; GET /health. Concurrent requests are batched. Built to face a network: bounded
    connections, threads, memory and time per request (see darkcfg.infer.http_server); thresh >= 0.001.
    POST a video's frames as /detect?stream=NAME&track=1 to follow objects: each object gets its track_id.

    \b
    darkcfg serve cfg/yolov4-tiny.cfg --port 8080
    curl --data-binary @dog.jpg 'http://127.0.0.1:8080/detect?thresh=0.3'
    curl --data-binary @frame1.jpg 'http://127.0.0.1:8080/detect?stream=cam1&track=1'
    """
    from darkcfg.infer.runtime import load_detector
    from darkcfg.infer.serve import MIN_THRESH, make_server

    if not MIN_THRESH <= thresh <= 1:
        raise click.BadParameter(f"{thresh:g}: expected a value in [{MIN_THRESH:g}, 1]", param_hint="--thresh")
    from darkcfg.infer.run import TrackOptions

    conflict = TrackOptions(tracker, track_buffer=track_buffer).conflict()
    if conflict:  # refused before anything loads
        raise click.UsageError(conflict)
    if tracker == "darknet" and runtime != "torch":
        raise click.UsageError("--tracker darknet reads the cfg's embedding layer while the network runs: it needs "
                               "--runtime torch")
    rt = runtime_from(runtime, precision, calibration, device)
    tiling = tiling_from(tiles, tile_overlap, tiles_full, seam_ios)
    det = load_detector(cfg, weights, names, parse_size(size), thresh, nms, None, batch, rt, tiling)
    try:
        server = make_server(det, host, port, batch, batch_wait_ms / 1000, int(max_mb * 1024 * 1024),
                             max_pixels=max_pixels, max_boxes=max_boxes, workers=workers,
                             max_connections=max_connections, timeout=timeout, body_timeout=body_timeout,
                             tracker=tracker, max_streams=max_streams, stream_timeout=stream_timeout,
                             track_buffer=track_buffer)
    except OSError as e:
        raise DarkcfgError(f"{host}:{port}: cannot listen ({e.strerror or e})") from None
    click.echo(f"serving {cfg} on http://{host}:{server.server_address[1]}/detect (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("\nstopped", err=True)
    finally:
        server.server_close()


@main.command()
@click.option("--out-dir", type=click.Path(file_okay=False), default="predictions", show_default=True,
              help="Folder for the annotated image.")
@click.pass_context
def demo(ctx: click.Context, out_dir: str) -> None:
    """Run the shipped default: yolov3-tiny with its shipped weights on the shipped sample image.

    The same as `darkcfg detect cfg/yolov3-tiny.cfg darkcfg/assets/grace_hopper.jpg --ext-output`.
    """
    from darkcfg.model.loading import shipped

    image = Path(__file__).resolve().parents[1] / "assets" / "grace_hopper.jpg"
    ctx.invoke(detect, cfg=str(shipped("cfg", "yolov3-tiny.cfg")), sources=(str(image),),
               weights=str(shipped("weights", "yolov3-tiny.weights")), out_dir=out_dir, ext_output=True)
