"""Darknet's own verbs, for muscle memory and scripts: `darkcfg detector test|demo|map|valid|train|calc_anchors`
and `darkcfg classifier predict|valid|valid10|validfull|validmulti|train`
take the reference's arguments (a .data file first) and run the darkcfg command that does the job."""
from __future__ import annotations

import click

from darkcfg.cli import main

_PASS = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": ["--help"]}}


def _rerun(args: list[str]) -> None:
    """Run `darkcfg ARGS` (this process, its exit status)."""
    main.main(args=args, prog_name="darkcfg")


def _names(data: str) -> list[str]:
    """`--names FILE` from names= of a .data file (none for a folder or a file without it)."""
    from darkcfg.data.dataset import open_data

    dc = open_data(data)
    return ["--names", dc.names] if dc.names else []


@main.group()
def detector() -> None:
    """Darknet's `detector` verbs: test, demo, map, valid, train, calc_anchors (DATA first, as the reference)."""


@detector.command(**_PASS)
@click.argument("data")
@click.argument("cfg")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def test(data: str, cfg: str, args: tuple[str, ...]) -> None:
    """`detector test DATA CFG WEIGHTS IMAGE... [options]`: `darkcfg detect` with names= of DATA."""
    if not [a for a in args if not a.startswith("-")][1:]:
        raise click.UsageError("give the image(s) after the weights: detector test DATA CFG WEIGHTS IMAGE")
    _rerun(["detect", cfg, *args, *_names(data)])


@detector.command(**_PASS)
@click.argument("data")
@click.argument("cfg")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(data: str, cfg: str, args: tuple[str, ...]) -> None:
    """`detector demo DATA CFG WEIGHTS VIDEO|CAMERA [options]`: `darkcfg detect` on the video or stream."""
    _rerun(["detect", cfg, *args, *_names(data)])


def _same(verb: str, command: str) -> None:
    @detector.command(verb, help=f"`detector {verb} ...`: `darkcfg {command}` with the same arguments.", **_PASS)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def run(args: tuple[str, ...]) -> None:
        _rerun([command, *args])


for _verb, _command in (("map", "map"), ("valid", "valid"), ("train", "train"), ("calc_anchors", "calc-anchors")):
    _same(_verb, _command)


@main.group()
def classifier() -> None:
    """Darknet's `classifier` verbs: predict, valid (valid10, validfull, validmulti), train (DATA first, as the
    reference)."""


# options of `darkcfg classify` that take a value (their values are not images)
_CLASSIFY_VALUED = {"-t", "--top", "-b", "--batch", "-w", "--weights", "-n", "--names", "-d", "--data", "-o", "--json",
                    "--device", "--size"}


@classifier.command(**_PASS)
@click.argument("data")
@click.argument("cfg")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def predict(data: str, cfg: str, args: tuple[str, ...]) -> None:
    """`classifier predict DATA CFG WEIGHTS [IMAGE...] [-t K]`: `darkcfg classify` with DATA's names, classes and
    top; without an image, paths are read from stdin as the reference does."""
    values = {k + 1 for k, a in enumerate(args) if a in _CLASSIFY_VALUED}
    positional = [a for k, a in enumerate(args) if not a.startswith("-") and k not in values]
    if not positional:
        raise click.UsageError("give the weights: classifier predict DATA CFG WEIGHTS [IMAGE]")
    _rerun(["classify", cfg, *args, *([] if positional[1:] else ["-"]), "--data", data])


def _valid(verb: str, crops: str) -> None:
    option = ["--crops", crops] if crops != "single" else []

    @classifier.command(verb, help=f"`classifier {verb} DATA CFG WEIGHTS`: `darkcfg classifier-valid "
                                   f"DATA CFG WEIGHTS{' ' if option else ''}{' '.join(option)}`.", **_PASS)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def run(args: tuple[str, ...]) -> None:
        _rerun(["classifier-valid", *args, *option])


for _verb, _crops in (("valid", "single"), ("valid10", "10"), ("validfull", "full"), ("validmulti", "multi")):
    _valid(_verb, _crops)


@classifier.command(**_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args: tuple[str, ...]) -> None:
    """`classifier train DATA CFG [WEIGHTS] [options]`: `darkcfg train` with the same arguments."""
    _rerun(["train", *args])
