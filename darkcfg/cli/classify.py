"""Commands that classify: `classify` (Darknet's `classifier predict`) and `classifier-valid` (`classifier valid`,
`valid10`, `validfull`, `validmulti`)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

import click

from darkcfg.cli import main
from darkcfg.cli._common import (
    batch_option,
    device_option,
    friendly,
    ignored_flags,
    is_weights_file,
    names_option,
    parse_size,
    size_option,
    weights_option,
)

if TYPE_CHECKING:
    from darkcfg.infer.classify import Classifier


@main.command(context_settings={"max_content_width": 110})
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, required=True)
@weights_option
@names_option("Class names, one per output. Default: names= (else labels=) of --data, else the output indices.")
@click.option("-d", "--data", type=click.Path(exists=True), default=None,
              help="A .data file: its names= (else labels=), classes= and top=.")
@click.option("-t", "--top", type=click.IntRange(1), default=None,
              help="Classes to print per image. Default: top= of --data, else 1 (the reference's); at most classes.")
@click.option("-o", "--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a JSON list of {filename, top: [{class_id, name, probability}]} to this file.")
@ignored_flags("-dont_show")
@batch_option()
@device_option
@size_option
@click.option("-q", "--quiet", is_flag=True, help="Do not print the predictions (errors and the summary only).")
@friendly
def classify(cfg: str, sources: tuple[str, ...], weights: Optional[str], names: Optional[str], data: Optional[str],
             top: Optional[int], json_path: Optional[str], batch: int, device: Optional[str], size: Optional[str],
             quiet: bool) -> None:
    """Classify SOURCES with the classifier CFG (or a .pt), printing what `darknet classifier predict` prints:
    `PATH: Predicted in ... milli-seconds.` and the top classes as `name: probability`.

    SOURCES are image files, folders, globs, list files (.txt, one path per line) or videos (each frame); `-`
    asks for image paths on stdin, one per line, as the reference does without an image. A .weights (or .pt)
    file right after CFG is the weights. Pre-processing is the reference's: the short side resized to the
    network width, then the centred network-size crop.

    \b
    darkcfg classify cfg/darknet53.cfg darknet53.weights dog.jpg --data imagenet1k.data
    darkcfg classify tiny.cfg images/ -w tiny.weights -t 5 -n imagenet.shortnames.list -o top5.json -b 16
    """
    from darkcfg.infer.classify import JsonList, classify_sources, load_classifier

    if sources and is_weights_file(sources[0]):  # `classify CFG WEIGHTS IMAGE...`, as classifier predict takes it
        if weights:
            raise click.UsageError(f"weights given twice: {sources[0]} and -w {weights}")
        weights, sources = sources[0], sources[1:]
        if not sources:
            raise click.UsageError("no SOURCES after the weights file")
    clf = load_classifier(cfg, weights, names, data, top, parse_size(size), batch, device)
    if sources == ("-",):
        _interactive(clf)
        return
    results, errors = classify_sources(clf, sources)
    for e in errors:
        click.echo(f"error: {e}", err=True)
    done = failed = 0
    out = JsonList(json_path) if json_path else None
    try:
        for r in results:
            if r.error is not None or r.predictions is None:
                click.echo(f"error: {r.error}", err=True)
                failed += 1
                continue
            done += 1
            if not quiet:
                click.echo(f"{r.frame.name}: Predicted in {r.ms:f} milli-seconds.")
                click.echo("\n".join(clf.lines(r.predictions)))
            if out is not None:
                out.add(r.frame.name, r.predictions)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(130)
    finally:
        if out is not None:
            out.close()
    click.echo(f"{done} image(s) classified" + (f"; {failed} failed" if failed else "")
               + (f"; wrote {json_path}" if json_path else ""), err=True)
    if failed or errors or not done:
        sys.exit(1)


def _interactive(clf: Classifier) -> None:
    """predict_classifier without a file name: `Enter Image Path: ` on stdout, one path per line until EOF."""
    import time

    from darkcfg.data.images import bgr_to_image, read_bgr
    from darkcfg.errors import DarkcfgError

    while True:
        click.echo("Enter Image Path: ", nl=False)
        line = sys.stdin.readline()
        if not line:
            return
        path = line.rstrip("\r\n")
        try:
            x = clf.prepare(bgr_to_image(read_bgr(path)))
        except DarkcfgError as e:
            click.echo(f"error: {e}", err=True)
            continue
        t0 = time.perf_counter()
        preds = clf.run_batch([x])[0]
        click.echo(f"{path}: Predicted in {(time.perf_counter() - t0) * 1000:f} milli-seconds.")
        click.echo("\n".join(clf.lines(preds)))


@main.command("classifier-valid")
@click.argument("data", type=click.Path(exists=True))
@click.argument("cfg", type=click.Path(dir_okay=False))
@click.argument("weights", type=click.Path(dir_okay=False), required=False)
@click.option("--crops", type=click.Choice(["single", "10", "full", "multi"]), default="single", show_default=True,
              help="single: the centred crop (classifier valid); 10: ten shifted and mirrored crops (valid10); full: "
                   "the whole image, the network resized to it (validfull); multi: five sizes and mirrors "
                   "(validmulti).")
@batch_option(help="Images per forward (--crops single; the others resize the network per image).")
@device_option
@size_option
@friendly
def classifier_valid(data: str, cfg: str, weights: Optional[str], crops: str, batch: int, device: Optional[str],
                     size: Optional[str]) -> None:
    """Top-1 and top-k accuracy of the classifier CFG + WEIGHTS on DATA's valid list, printed as `darknet
    classifier valid` prints it after each image: `N: top 1: ..., top K: ...` (running means; K is top= of DATA).

    An image's class is the first name of DATA's labels= (else names=) file that occurs in its path, as the
    reference finds it (a path with no class name counts as wrong).
    """
    run_classifier_valid_command(data, cfg, weights, crops, batch, device, size)


def run_classifier_valid_command(data: str, cfg: str, weights: Optional[str], crops: str = "single", batch: int = 1,
                                 device: Optional[str] = None, size: Optional[str] = None) -> None:
    """What `classifier-valid` (and `map` on a classifier cfg) runs: the lines on stdout, a summary on stderr."""
    from darkcfg.eval.classifier import run_classifier_valid
    from darkcfg.infer.runtime import resolve_device
    from darkcfg.model.loading import load_trained

    model = load_trained(cfg, weights, parse_size(size), resolve_device(device))
    run = run_classifier_valid(data, model, crops, batch)
    last = None
    for step in run.steps:
        click.echo(step.line())
        last = step
    if last is not None:
        click.echo(f"{last.index + 1} images: top 1 {float(last.top1):.2%}, top {last.k} {float(last.topk):.2%}",
                   err=True)
