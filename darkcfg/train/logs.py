"""What training writes for people to read, in `backup`: `<base>.log` (the reference's per-iteration lines),
`<base>.csv` (iteration, loss, average loss, rate, images/s, mAP) and `chart.png` (the average loss and mAP
against iterations, as the reference's chart). A run from iteration 0 starts them afresh; a resumed run
appends."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

CSV_HEADER = ["iteration", "loss", "avg_loss", "lr", "images_per_s", "map50"]


class TrainLog:
    """The log, CSV and chart of the run named `base` in `folder`."""

    def __init__(self, folder: Path, base: str) -> None:
        self.folder, self.base = folder, base
        self.log_file = folder / f"{base}.log"
        self.csv_file = folder / f"{base}.csv"

    def start(self, resumed: bool) -> None:
        """A new run removes the previous run's log and CSV; a resumed one keeps them."""
        if not resumed:
            for f in (self.log_file, self.csv_file):
                f.unlink(missing_ok=True)

    def write(self, text: str) -> None:
        with open(self.log_file, "a") as fh:
            fh.write(text)

    def row(self, iteration: int, loss: float, avg_loss: float, lr: float, images_per_s: float,
            map50: Optional[float]) -> None:
        new = not self.csv_file.exists()
        with open(self.csv_file, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(CSV_HEADER)
            w.writerow([iteration, f"{loss:.6f}", f"{avg_loss:.6f}", f"{lr:.8g}", f"{images_per_s:.2f}",
                        "" if map50 is None else f"{map50:.6f}"])

    def chart(self, history: list[tuple[int, float]], maps: list[tuple[int, float]], max_batches: int,
              top: float, title: str) -> None:
        from darkcfg.train.chart import training_chart

        training_chart([i for i, _ in history], [v for _, v in history], max_batches, self.folder / "chart.png",
                       maps, max(top, 1e-3), title)
