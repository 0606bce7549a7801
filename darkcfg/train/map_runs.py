"""`train --map`: when training measures mAP@0.5 on the valid list and how (the reference's schedule: every
max(map_epochs epochs, 100) iterations from burn_in on, and at the end; or every `--map-every` iterations), with
the network at its initial size and in eval mode, then back as it was."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

from darkcfg.model.network import Darknet


class MapRuns:
    """The mAP schedule of a run and the measurement itself.

    every: iterations between runs (`--map-every`), else the reference's max(map_epochs * images / batch, 100)
    with the first run at max(burn_in, that); paths, names: the valid images and class names."""

    def __init__(self, model: Darknet, paths: Sequence[str], names: Sequence[str], init_size: tuple[int, int],
                 start: int, images: int, batch: int, every: Optional[int], epochs: int) -> None:
        self.model, self.paths, self.names, self.init_size = model, list(paths), list(names), init_size
        self.every = every or max(int(epochs * images / batch), 100)
        self.next = start + every if every else max(model.net.burn_in, self.every)

    def due(self, iteration: int, end: int) -> bool:
        """Whether to measure after `iteration` (and, if so, schedule the next run)."""
        if iteration >= self.next or iteration == end:
            self.next = iteration + self.every
            return True
        return False

    def measure(self) -> float:
        """mAP@0.5 (validate_detector_map's thresholds) at the initial network size."""
        from darkcfg.eval.runner import compute_map

        size = (self.model.net.width, self.model.net.height)
        self.model.set_size(*self.init_size)
        self.model.eval()
        try:
            with torch.no_grad():
                res = compute_map(self.model, self.paths, self.names, 0.5, 0.25, 0,
                                  batch=max(1, self.model.net.mini_batch), progress=False)
        finally:
            self.model.train()
            self.model.set_size(*size)
        return res.map
