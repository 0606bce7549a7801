"""`train --map`: when training measures mAP@0.5 on the valid list (a classifier: top-1 accuracy, as
validate_classifier_single) and how (the reference's schedule: every max(map_epochs epochs, 100) iterations from
burn_in on, and at the end; or every `--map-every` iterations), with the network at its initial size and in eval
mode, then back as it was."""
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
                 start: int, images: int, batch: int, every: Optional[int], epochs: int,
                 classifier: bool = False) -> None:
        self.model, self.paths, self.names, self.init_size = model, list(paths), list(names), init_size
        self.classifier = classifier
        self.every = every or max(int(epochs * images / batch), 100)
        self.next = start + every if every else max(model.net.burn_in, self.every)

    def due(self, iteration: int, end: int) -> bool:
        """Whether to measure after `iteration` (and, if so, schedule the next run)."""
        if iteration >= self.next or iteration == end:
            self.next = iteration + self.every
            return True
        return False

    def measure(self) -> float:
        """mAP@0.5 (validate_detector_map's thresholds), or a classifier's top-1, at the initial network size."""
        size = (self.model.net.width, self.model.net.height)
        self.model.set_size(*self.init_size)
        self.model.eval()
        batch = max(1, self.model.net.mini_batch)
        try:
            with torch.no_grad():
                if self.classifier:
                    return self._top1(batch)
                from darkcfg.eval.runner import compute_map

                return compute_map(self.model, self.paths, self.names, 0.5, 0.25, 0, batch=batch, progress=False).map
        finally:
            self.model.train()
            self.model.set_size(*size)

    def _top1(self, batch: int) -> float:
        from darkcfg.eval.classifier import validate_classifier
        from darkcfg.infer.classify import Classifier

        clf = Classifier(self.model, self.names, 1, batch, len(self.names))
        steps = list(validate_classifier(clf, self.paths, self.names, 1))
        return float(steps[-1].top1) if steps else 0.0
