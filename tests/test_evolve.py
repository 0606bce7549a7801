"""`darkcfg evolve`: a genetic search over cfg hyperparameters that completes, resumes after an interruption
without repeating finished candidates, and writes a best cfg that trains."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from oracle import REPO

from darkcfg.cli import main
from darkcfg.model.cfg import parse_cfg_text
from darkcfg.train.evolve import GENES, evolve, mutate, read_genes, read_results, write_genes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_shapes_dataset.py"), str(out), "--train", "8",
                    "--valid", "4", "--size", "96", "--seed", "3"], check=True, capture_output=True)
    return out


def test_genes_round_trip_through_the_cfg(shapes):
    cfg = shapes / "yolov4-tiny-shapes.cfg"
    text = cfg.read_text()
    genes = read_genes(text, str(cfg))
    import numpy as np

    child = mutate(genes, np.random.default_rng(0))
    assert child != genes and all(g.low <= child[g.key] <= g.high for g in GENES)
    written = write_genes(text, str(cfg), child)
    back = read_genes(written, str(cfg))
    assert all(abs(back[k] - child[k]) <= 1e-4 * max(1, abs(child[k])) for k in child)
    heads = [s for s in parse_cfg_text(written, "c") if s.type == "yolo"]
    assert all(s.float("iou_normalizer") == back["iou_normalizer"] for s in heads) and len(heads) == 2


def test_resumes_without_repeating_finished_candidates(shapes, tmp_path):
    calls = []

    def fake(cfg: str, folder: Path) -> tuple[float, float]:
        calls.append(folder.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        genes = read_genes(Path(cfg).read_text(), cfg)
        return genes["momentum"], genes["momentum"] / 2  # a score the search can climb

    cfg = shapes / "yolov4-tiny-shapes.cfg"
    with pytest.raises(KeyboardInterrupt):
        list(evolve(cfg, tmp_path / "ev", 2, 2, fake))
    assert [(c.generation, c.index) for c in read_results(tmp_path / "ev" / "evolve.csv")] == [(0, 0), (0, 1)]
    first = list(calls)
    done = list(evolve(cfg, tmp_path / "ev", 2, 2, fake))
    assert [(c.generation, c.index) for c in done] == [(1, 0), (1, 1)]
    assert calls[len(first):] == ["g001_c00", "g001_c01"]  # the interrupted candidate again, then the last
    rows = read_results(tmp_path / "ev" / "evolve.csv")
    assert len(rows) == 4 and rows[0].genes == read_genes(cfg.read_text(), str(cfg))  # candidate 0: the cfg
    best = max(rows, key=lambda c: c.fitness)
    assert read_genes((tmp_path / "ev" / "best.cfg").read_text(), "b")["momentum"] == pytest.approx(
        best.genes["momentum"], rel=1e-4)
    assert (tmp_path / "ev" / "evolve.png").stat().st_size > 1000


def test_a_real_run_completes_and_its_best_cfg_trains(shapes, tmp_path):
    data = tmp_path / "s.data"
    data.write_text((shapes / "shapes.data").read_text().replace(f"backup = {shapes / 'backup'}/",
                                                                   f"backup = {tmp_path}/b/"))
    r = CliRunner().invoke(main, ["evolve", str(data), str(shapes / "yolov4-tiny-shapes.cfg"), "--generations", "2",
                                  "--population", "2", "--iterations", "2", "--size", "64", "--batch", "4",
                                  "--workers", "0", "--out-dir", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert len(read_results(tmp_path / "ev" / "evolve.csv")) == 4 and "best cfg:" in r.output
    r = CliRunner().invoke(main, ["train", str(data), str(tmp_path / "ev" / "best.cfg"), "--size", "64",
                                  "--batch", "4", "--max-batches", "1", "--workers", "0", "--backup",
                                  str(tmp_path / "bb")])
    assert r.exit_code == 0, r.output
