"""What every command shares: Darknet's single-dash spellings, one-line errors, and the options several commands
take, each defined once here (weights, names, thresholds, size, batch, device, runtime)."""
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
    from darkcfg.infer.runtime import Runtime


def _one_line_warning(message: object, category: type, filename: str, lineno: int, line: object = None) -> str:
    return f"warning: {message}\n"


def friendly(fn: Callable) -> Callable:
    """Bad input -> one line on stderr and exit status 1, never a traceback; every warning one line on stderr."""

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


def parse_size(value: Optional[str]) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        raise click.BadParameter(f"'{value}': expected N or WxH, e.g. 416 or 608x352", param_hint="--size") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise click.BadParameter(f"'{value}': expected N or WxH with positive numbers", param_hint="--size")
    return parts[0], parts[1]


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


def ignored_flags(*names: str) -> Callable:
    """Darknet flags with nothing to do here (darkcfg never opens a window unless --show): accepted, ignored."""
    return click.option(*names, "ignored_flags", is_flag=True, hidden=True, multiple=False, expose_value=False)


def is_weights_file(path: str) -> bool:
    """A Darknet .weights file or a darkcfg checkpoint, by name (or content for a .pt)."""
    from darkcfg.model.loading import is_checkpoint

    return path.endswith(".weights") or (Path(path).is_file() and is_checkpoint(path))


# -- the shared options -------------------------------------------------------------------------------------------
size_option = click.option("--size", default=None, metavar="N|WxH",
                           help="Override the cfg's input width/height (the file is not changed).")
weights_option = click.option("-w", "--weights", type=click.Path(dir_okay=False), default=None,
                              help="Darknet .weights (or darkcfg .pt). Default: weights/<cfg name>.weights.")


def names_option(help: str = "Class names, one per line. Default: COCO's when the cfg has 80 classes.") -> Callable:
    return click.option("-n", "--names", type=click.Path(dir_okay=False), default=None, help=help)


nms_option = click.option("--nms", type=float, default=0.45, show_default=True,
                          help="NMS threshold; 0 turns NMS off.")
device_option = click.option("--device", default=None, help="cpu, cuda or cuda:N. Default: cuda when available.")


def thresh_option(default: float = 0.25, help: str = "Detection threshold (strict >).") -> Callable:
    return click.option("--thresh", "-thresh", type=float, default=default, show_default=True, help=help)


def batch_option(default: int = 1, help: str = "Images per forward.") -> Callable:
    return click.option("-b", "--batch", type=click.IntRange(1), default=default, show_default=True, help=help)


def runtime_options(fn: Callable) -> Callable:
    """--runtime, --precision and --calibration (collected by `runtime_from`)."""
    for option in reversed((
        click.option("--runtime", type=click.Choice(["torch", "openvino"]), default="torch", show_default=True,
                     help="Who runs the network: PyTorch, or OpenVINO (pip install 'darkcfg[openvino]'; CPU; the "
                          "converted model is cached per cfg, weights and size). Pre-processing, decode and NMS are "
                          "darkcfg's either way."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "default", "int8"]), default="fp32",
                     show_default=True,
                     help="Arithmetic: fp32 (equal to the plain network within 1e-4), bf16, the runtime's default "
                          "(OpenVINO: bf16 on CPUs that have it; torch: fp32), or int8 (OpenVINO, quantized by NNCF "
                          "on --calibration images)."),
        click.option("--calibration", type=click.Path(exists=True), default=None, metavar="DATA|LIST|DIR",
                     help="Images that calibrate --precision int8: a .data file (its valid list), an image list or a "
                          "folder (at most 300 are used, evenly spaced)."),
    )):
        fn = option(fn)
    return fn


def runtime_from(runtime: str, precision: str, calibration: Optional[str], device: Optional[str],
                 **torch_options: object) -> Runtime:
    """The Runtime the options name; a combination that cannot run is a usage error (exit status 2)."""
    from darkcfg.infer.runtime import Runtime

    rt = Runtime(runtime, precision, device, calibration=calibration, **torch_options)  # type: ignore[arg-type]
    try:
        rt.check()
    except DarkcfgError as e:
        raise click.UsageError(str(e)) from None
    return rt
