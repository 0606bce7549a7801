"""Darknet's own verbs, for muscle memory and scripts: `darkcfg detector test|demo|map|valid|train|calc_anchors`
take the reference's arguments (a .data file first) and run the darkcfg command that does the job."""
from __future__ import annotations

import click

from darkcfg.cli import main

_PASS = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}}


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
    @detector.command(verb, **_PASS)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def run(args: tuple[str, ...]) -> None:
        _rerun([command, *args])

    run.__doc__ = f"`detector {verb} ...`: `darkcfg {command}` with the same arguments."


for _verb, _command in (("map", "map"), ("valid", "valid"), ("train", "train"), ("calc_anchors", "calc-anchors")):
    _same(_verb, _command)


@main.command(**_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def classifier(args: tuple[str, ...]) -> None:
    """Darknet's `classifier predict|train|valid`: not supported yet (darkcfg runs detectors)."""
    raise click.ClickException("classifier cfgs are not supported yet: darkcfg detects, trains and measures "
                               "detectors ([yolo], [region], [detection] heads); `darkcfg info CFG` builds any cfg")
