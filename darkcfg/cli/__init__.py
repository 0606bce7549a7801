"""The `darkcfg` command line: commands that parse arguments, call the library and format its results.

One module per group of commands (`model`: info, partial, convert, export, download; `detect`: detect, serve,
demo; `evaluate`: map, valid; `train`: train, calc-anchors; `data`: the dataset tools; `darknet`: Darknet's own
verbs, `detector test|map|...`), their shared options in `_common`. Importing it loads click, not PyTorch:
each command imports the library when it runs.
"""
from __future__ import annotations

import click

from darkcfg.cli._common import DarknetCommand


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="darkcfg")
def main() -> None:
    """Run Darknet .cfg models on PyTorch, unchanged. Darknet's own flag spellings work too (-thresh .3,
    -ext_output, -dont_show, -out result.json, -map, -clear, ...), and so do its verbs (darkcfg detector test
    CFG WEIGHTS IMAGE, detector map/train/valid/calc_anchors/demo)."""


main.command_class = DarknetCommand

from darkcfg.cli import classify, darknet, data, detect, evaluate, model, track, train  # noqa: E402,F401  (each adds its commands)

__all__ = ["main"]
