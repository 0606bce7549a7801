"""`darkcfg track-eval` against TrackEval (HOTA, CLEAR, Identity; its MOTChallenge reader on the same files) and
motmetrics (MOTA, IDF1): ground truth from scripts/make_track_video.py, predictions = the ground truth jittered,
with boxes dropped, ids swapped and fragmented, and false positives; per sequence and combined."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from darkcfg.cli import main
from darkcfg.data.mot import find_sequences, parse_mot, seqinfo_text
from darkcfg.errors import DarkcfgError
from darkcfg.eval.track_data import box_iou_xywh
from darkcfg.eval.tracking import evaluate_tracking

REPO = Path(__file__).resolve().parent.parent
SEQS = ("shapes-01", "shapes-02", "shapes-03")
FRAMES = 70


def _generator():
    spec = importlib.util.spec_from_file_location("make_track_video", REPO / "scripts" / "make_track_video.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def perturb(rows: np.ndarray, rng: np.random.Generator, width: int = 320, height: int = 240) -> np.ndarray:
    """A tracker's plausible output from ground truth (N, 9): jitter, 12 % of boxes dropped, two ids swapped from
    mid-sequence, one id split in two, false positives (short tracks and single boxes); ids offset by 100."""
    out = rows[:, :7].copy()
    out[:, 6] = rng.uniform(0.3, 1.0, len(out))
    out[:, 2:4] += rng.normal(0, 3, (len(out), 2))
    out[:, 4:6] *= rng.uniform(0.85, 1.15, (len(out), 2))
    out = out[rng.uniform(size=len(out)) > 0.12]
    ids = np.unique(out[:, 1])
    mid = int(np.median(out[:, 0]))
    a, b = rng.choice(ids, 2, replace=False)
    late = out[:, 0] > mid
    swap_a, swap_b = late & (out[:, 1] == a), late & (out[:, 1] == b)
    out[swap_a, 1], out[swap_b, 1] = b, a
    c = rng.choice(ids)
    out[(out[:, 1] == c) & (out[:, 0] > mid - 10), 1] = 99  # a fragment: c goes on under a new id
    fps = []
    frames = int(rows[:, 0].max())
    for k in range(4):  # false tracks of 3..10 frames
        f0 = int(rng.integers(1, frames - 10))
        x, y = rng.uniform(0, width - 40), rng.uniform(0, height - 40)
        fps += [[f, 50 + k, x + 2 * (f - f0), y, 30, 30, 0.4] for f in range(f0, f0 + int(rng.integers(3, 11)))]
    for _ in range(10):  # single boxes
        fps.append([int(rng.integers(1, frames + 1)), 300 + len(fps), rng.uniform(0, width - 30),
                    rng.uniform(0, height - 30), 25, 25, 0.2])
    out = np.vstack([out, np.asarray(fps)])
    out[:, 1] += 100
    return out[np.argsort(out[:, 0], kind="stable")]


def _write_rows(path: Path, rows: np.ndarray, gt: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in rows:
        tail = f"{int(r[6])},{int(r[7])},{r[8]:.3f}" if gt else f"{r[6]:.4f},-1,-1,-1"
        lines.append(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{tail}\n")
    path.write_text("".join(lines))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """GT/<seq>/gt/gt.txt + seqinfo.ini and TRACKERS/t/data/<seq>.txt for three generated sequences."""
    gen = _generator()
    root = tmp_path_factory.mktemp("track_eval")
    rng = np.random.default_rng(7)
    for k, name in enumerate(SEQS):
        _, _, rows = gen.sequence(100 + k, frames=FRAMES)
        gt = np.asarray(rows, np.float64)
        # a few rows MOT marks "do not evaluate" (conf 0): they must be left out of every count
        gt[rng.uniform(size=len(gt)) < 0.03, 6] = 0
        _write_rows(root / "gt" / name / "gt" / "gt.txt", gt, gt=True)
        (root / "gt" / name / "seqinfo.ini").write_text(seqinfo_text(name, FRAMES, 320, 240, 30))
        _write_rows(root / "trackers" / "t" / "data" / f"{name}.txt", perturb(gt, rng), gt=False)
    return root


def _trackeval(root: Path, benchmark: str = "MOT15", preproc: bool = False, tracker: str = "t") -> dict:
    trackeval = pytest.importorskip("trackeval", reason="TrackEval (the oracle) is not installed")
    config = {"GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"), "TRACKERS_TO_EVAL": [tracker],
              "BENCHMARK": benchmark, "SKIP_SPLIT_FOL": True, "SEQ_INFO": {s: None for s in SEQS},
              "DO_PREPROC": preproc, "PRINT_CONFIG": False, "OUTPUT_FOLDER": str(root / "trackeval_out")}
    quiet = {"PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False,
             "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "DISPLAY_LESS_PROGRESS": True, "LOG_ON_ERROR": None}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = trackeval.Evaluator(quiet)
        dataset = trackeval.datasets.MotChallenge2DBox(config)
        metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
                   trackeval.metrics.Identity({"PRINT_CONFIG": False})]
        res, _ = evaluator.evaluate([dataset], metrics)
    return {seq: r["pedestrian"] for seq, r in res["MotChallenge2DBox"][tracker].items()}


def _compare(ours: dict, theirs: dict) -> None:
    for key, metric in (("HOTA", "HOTA"), ("DetA", "HOTA"), ("AssA", "HOTA"), ("LocA", "HOTA"), ("DetRe", "HOTA"),
                        ("AssPr", "HOTA")):
        assert ours[key] == pytest.approx(float(np.mean(theirs[metric][key])), abs=1e-6), key
    for key in ("MOTA", "MOTP", "MODA"):
        assert ours[key] == pytest.approx(float(theirs["CLEAR"][key]), abs=1e-6), key
    for key in ("IDSW", "CLR_TP", "CLR_FN", "CLR_FP", "MT", "PT", "ML", "Frag"):
        assert ours[key] == int(theirs["CLEAR"][key]), key
    for key in ("IDF1", "IDP", "IDR"):
        assert ours[key] == pytest.approx(float(theirs["Identity"][key]), abs=1e-6), key
    assert ours["IDTP"] == int(theirs["Identity"]["IDTP"])


def test_equals_trackeval_per_sequence_and_combined(bench):
    theirs = _trackeval(bench)
    result = evaluate_tracking(find_sequences(bench / "gt", bench / "trackers" / "t"))
    assert [s.name for s in result.sequences] == list(SEQS)
    for s in result.sequences:
        ours = s.summary()
        assert 0.3 < ours["HOTA"] < 0.95 and ours["IDSW"] > 0  # the perturbation leaves something to measure
        _compare(ours, theirs[s.name])
    _compare(result.combined.summary(), theirs["COMBINED_SEQ"])


def test_empty_and_partial_predictions_equal_trackeval(bench):
    """A sequence without predictions, one with predictions in its first 20 frames only, one as before."""
    data = bench / "trackers" / "t" / "data"
    empty = bench / "trackers" / "e" / "data"
    empty.mkdir(parents=True, exist_ok=True)
    (empty / f"{SEQS[0]}.txt").write_text("")
    rows = np.loadtxt(data / f"{SEQS[1]}.txt", delimiter=",")
    _write_rows(empty / f"{SEQS[1]}.txt", rows[rows[:, 0] <= 20], gt=False)
    (empty / f"{SEQS[2]}.txt").write_text((data / f"{SEQS[2]}.txt").read_text())
    theirs = _trackeval(bench, tracker="e")
    result = evaluate_tracking(find_sequences(bench / "gt", empty))
    for s in result.sequences:
        _compare(s.summary(), theirs[s.name])
    _compare(result.combined.summary(), theirs["COMBINED_SEQ"])
    assert result.sequences[0].summary()["CLR_FN"] == result.sequences[0].gt_dets


def test_mot17_preprocessing_equals_trackeval(tmp_path, bench):
    """MOT17's distractor removal: ground truth given MOT classes (mostly pedestrians, some distractors)."""
    rng = np.random.default_rng(3)
    root = tmp_path
    for name in SEQS:
        gt = np.loadtxt(bench / "gt" / name / "gt" / "gt.txt", delimiter=",")
        classes = rng.choice([1, 1, 1, 1, 2, 3, 7, 8, 12], size=int(gt[:, 1].max()) + 1)
        gt[:, 7] = classes[gt[:, 1].astype(int)]
        _write_rows(root / "gt" / name / "gt" / "gt.txt", gt, gt=True)
        (root / "gt" / name / "seqinfo.ini").write_text((bench / "gt" / name / "seqinfo.ini").read_text())
        pred = np.loadtxt(bench / "trackers" / "t" / "data" / f"{name}.txt", delimiter=",")
        _write_rows(root / "trackers" / "t" / "data" / f"{name}.txt", pred, gt=False)
    theirs = _trackeval(root, "MOT17", preproc=True)
    result = evaluate_tracking(find_sequences(root / "gt", root / "trackers" / "t"), preproc="mot17")
    for s in result.sequences:
        _compare(s.summary(), theirs[s.name])
    _compare(result.combined.summary(), theirs["COMBINED_SEQ"])


@pytest.mark.filterwarnings("ignore:Operation with tuple is deprecated")  # motmetrics 1.4 on pandas 3
def test_mota_idf1_equal_motmetrics(bench, monkeypatch):
    mm = pytest.importorskip("motmetrics", reason="motmetrics (the second oracle) is not installed")
    if not hasattr(np, "asfarray"):  # motmetrics 1.4's IoU calls it; NumPy 2 removed it (same meaning below)
        monkeypatch.setattr(np, "asfarray", lambda a, dtype=np.float64: np.asarray(a, dtype=dtype), raising=False)
    result = evaluate_tracking(find_sequences(bench / "gt", bench / "trackers" / "t"))
    accs = []
    for s in result.sequences:
        gt = mm.io.loadtxt(str(bench / "gt" / s.name / "gt" / "gt.txt"), fmt="mot15-2D", min_confidence=1)
        pred = mm.io.loadtxt(str(bench / "trackers" / "t" / "data" / f"{s.name}.txt"), fmt="mot15-2D")
        accs.append(mm.utils.compare_to_groundtruth(gt, pred, "iou", distth=0.5))
    mh = mm.metrics.create()
    names = [s.name for s in result.sequences]
    summary = mh.compute_many(accs, names=names, metrics=["mota", "idf1", "num_switches"], generate_overall=True)
    for s in [*result.sequences, result.combined]:
        row = summary.loc["OVERALL" if s is result.combined else s.name]
        ours = s.summary()
        assert ours["MOTA"] == pytest.approx(row["mota"], abs=1e-6)
        assert ours["IDF1"] == pytest.approx(row["idf1"], abs=1e-6)
        assert ours["IDSW"] == row["num_switches"]


def test_iou_matches_a_direct_transcription():
    """box_iou_xywh against IoU written out box by box (intersection of the corner ranges over the union)."""
    rng = np.random.default_rng(0)
    a = np.c_[rng.uniform(0, 50, (20, 2)), rng.uniform(0, 30, (20, 2))]
    b = np.c_[rng.uniform(0, 50, (15, 2)), rng.uniform(0, 30, (15, 2))]
    b[3, 2] = 0  # a box of zero width
    got = box_iou_xywh(a, b)
    for i, (x, y, w, h) in enumerate(a):
        for j, (u, v, s, t) in enumerate(b):
            iw = max(0.0, min(x + w, u + s) - max(x, u))
            ih = max(0.0, min(y + h, v + t) - max(y, v))
            union = w * h + s * t - iw * ih
            assert got[i, j] == pytest.approx(iw * ih / union if w * h > 0 and s * t > 0 else 0.0, abs=1e-12)


def test_cli_prints_the_table_and_writes_json(bench, tmp_path):
    out = tmp_path / "scores.json"
    r = CliRunner().invoke(main, ["track-eval", str(bench / "gt"), str(bench / "trackers" / "t"), "--json", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split()[:8] == ["Sequence", "HOTA", "DetA", "AssA", "LocA", "MOTA", "MOTP", "IDF1"]
    assert [ln.split()[0] for ln in lines[1:]] == [*SEQS, "COMBINED"]
    data = json.loads(out.read_text())
    assert set(data["sequences"]) == set(SEQS) and len(data["alphas"]) == 19
    result = evaluate_tracking(find_sequences(bench / "gt", bench / "trackers" / "t"))
    assert data["combined"]["HOTA"] == pytest.approx(result.combined.summary()["HOTA"], abs=1e-12)
    assert f"{data['combined']['MOTA'] * 100:.3f}" == lines[-1].split()[5]
    # a single file pair: one sequence, no combined row
    r = CliRunner().invoke(main, ["track-eval", str(bench / "gt" / SEQS[0] / "gt" / "gt.txt"),
                                  str(bench / "trackers" / "t" / "data" / f"{SEQS[0]}.txt")])
    assert r.exit_code == 0 and [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == [SEQS[0]]


def test_cli_one_line_errors(bench, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in SEQS[:2]:
        (pred / f"{name}.txt").write_text((bench / "trackers" / "t" / "data" / f"{name}.txt").read_text())
    r = CliRunner().invoke(main, ["track-eval", str(bench / "gt"), str(pred)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{SEQS[2]}.txt: missing: no predictions for sequence {SEQS[2]}" in r.output
    assert len(r.output.strip().splitlines()) == 1
    (pred / f"{SEQS[2]}.txt").write_text("1,1,10,10,20,20,1,-1,-1,-1\n2,1,10,ten,20,20,1,-1,-1,-1\n")
    r = CliRunner().invoke(main, ["track-eval", str(bench / "gt"), str(pred)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert f"{SEQS[2]}.txt:2: expected `frame,id,x,y,w,h,conf,...` numbers" in r.output
    (pred / f"{SEQS[2]}.txt").write_text("1,1,10,10,20,20,1\n1,1,40,10,20,20,1\n")
    r = CliRunner().invoke(main, ["track-eval", str(bench / "gt"), str(pred)])
    assert r.exit_code == 1 and "frame 1: id 1 occurs 2 times" in r.output
    (pred / f"{SEQS[2]}.txt").write_text(f"{FRAMES + 1},1,10,10,20,20,1\n")
    r = CliRunner().invoke(main, ["track-eval", str(bench / "gt"), str(pred)])
    assert r.exit_code == 1 and f"frame {FRAMES + 1}: the sequence has {FRAMES} frames" in r.output


@pytest.mark.parametrize("text, message", [
    ("1,2,3,4,5\n", "expected 6 to 10 comma-separated values"),
    ("0,1,1,1,1,1,1\n", "expected a whole frame number from 1"),
    ("1,1.5,1,1,1,1,1\n", "id 1.5: expected a whole number"),
    ("1,1,1,1,-2,1,1\n", "expected w, h >= 0"),
    ("1,1,1,1,nan,1,1\n", "not a finite number"),
])
def test_malformed_rows_name_the_line(text, message):
    with pytest.raises(DarkcfgError, match=message) as e:
        parse_mot("1,1,1,1,1,1,1\n" + text, "p.txt")
    assert str(e.value).startswith("p.txt:2: ")


def test_generator_is_deterministic_and_has_gaps_entries_and_exits():
    gen = _generator()
    _, images, rows = gen.sequence(5, frames=120)
    _, images2, rows2 = gen.sequence(5, frames=120)
    assert rows == rows2 and all(np.array_equal(a, b) for a, b in zip(images, images2))
    gt = np.asarray(rows, np.float64)
    assert (gt[:, 2] >= 0).all() and (gt[:, 2] + gt[:, 4] <= 320 + 1e-6).all() and (gt[:, 8] > 0).all()
    spans = {int(i): gt[gt[:, 1] == i, 0] for i in np.unique(gt[:, 1])}
    assert any(f.max() - f.min() + 1 > len(f) for f in spans.values())  # hidden for a while (behind the bar)
    assert any(f.min() > 1 for f in spans.values()) and any(f.max() < 120 for f in spans.values())
