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


@main.command()
@_friendly
def demo() -> None:
    """Run the embedded default: yolov3-tiny with its shipped weights on a generated image."""
    import torch

    from darkcfg.api import load

    cfg, weights = REPO / "cfg" / "yolov3-tiny.cfg", REPO / "weights" / "yolov3-tiny.weights"
    model = load(cfg, weights)
    click.echo(model.layer_table())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, *model.input_shape, generator=g)
    with torch.inference_mode():
        outs = model(x)
    for i, o in zip(model.output_layers, outs):
        obj = o.view(o.shape[0], 3, -1, *o.shape[-2:])[:, :, 4]
        click.echo(f"layer {i} [yolo]: output {tuple(o.shape)}, max objectness {obj.max().item():.3f}")


if __name__ == "__main__":  # pragma: no cover
    main()
