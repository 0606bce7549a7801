"""Commands for tracking: `track-eval` (HOTA, CLEAR MOT and identity metrics of MOTChallenge files)."""
from __future__ import annotations

import json
from typing import Optional

import click

from darkcfg.cli import main
from darkcfg.cli._common import friendly


@main.command("track-eval")
@click.argument("gt", type=click.Path(exists=True))
@click.argument("pred", type=click.Path(exists=True))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write every figure (fractions, per sequence and combined, HOTA per alpha) to this file.")
@click.option("--iou", "threshold", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="IoU a CLEAR (MOTA) or identity (IDF1) match needs; HOTA averages over IoU 0.05 .. 0.95.")
@click.option("--preproc", type=click.Choice(["none", "mot17", "mot20"]), default="none", show_default=True,
              help="none: class-agnostic, ground-truth rows with conf 0 ignored. mot17/mot20: MOTChallenge's "
                   "pedestrian evaluation (only class 1 counts; predictions on distractor classes are dropped).")
@friendly
def track_eval(gt: str, pred: str, json_path: Optional[str], threshold: float, preproc: str) -> None:
    """Score tracker output PRED against ground truth GT, as TrackEval does: HOTA, DetA, AssA, LocA, MOTA, MOTP,
    IDF1, IDP, IDR, ID switches, FP, FN, ... per sequence and combined (percent).

    GT: a MOTChallenge file (`<seq>.txt`, `<seq>/gt/gt.txt`), a sequence folder, a folder of them
    (`<seq>/gt/gt.txt`, with `<seq>/seqinfo.ini` giving the frame count where present) or a folder of `<seq>.txt`.
    PRED: a file (one sequence) or a folder of `<seq>.txt` (as `darkcfg detect --track --mot` writes), rows
    `frame,id,x,y,w,h,conf,...`.

    \b
    darkcfg track-eval MOT17/train runs/bytetrack --preproc mot17 --json scores.json
    """
    from darkcfg.data.mot import find_sequences
    from darkcfg.eval.tracking import evaluate_tracking, tracking_json, tracking_table
    from darkcfg.files import Sources, write_text

    seqs = find_sequences(gt, pred)
    sources = Sources([p for s in seqs for p in (s.gt, s.pred)])
    if json_path:
        sources.check_dest(json_path)
    result = evaluate_tracking(seqs, preproc, threshold)
    for line in tracking_table(result):
        click.echo(line)
    if json_path:
        write_text(json_path, json.dumps(tracking_json(result), indent=1) + "\n", sources=sources)
        click.echo(f"wrote {json_path}", err=True)
