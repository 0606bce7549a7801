"""What the heads' losses share: reading the truth rows, the focal class factor, and the loss whose gradient is
the reference's delta (yolo.py, region.py, detection.py)."""
from __future__ import annotations

import torch
from torch import Tensor

from darkcfg.train.iou_grad import XYWH

FOCAL_ALPHA = 0.5  # delta_yolo_class / delta_region_class: alpha of the focal variant


def valid_truths(truths: Tensor) -> Tensor:
    """(B, T) bool: rows before the first x == 0 of each image (the reference's `if (!truth.x) break`)."""
    return torch.cumprod((truths[..., 0] != 0).to(torch.int32), dim=1).bool()


def read_truths(truths: Tensor, classes: int, device: torch.device,
                dtype: torch.dtype) -> tuple[Tensor, XYWH, Tensor, Tensor]:
    """truths (B, T, >=5) rows (x, y, w, h, class) relative to the image -> (truths on device, boxes,
    class ids (B, T) clamped into range, usable (B, T) bool: valid and with a class id in [0, classes))."""
    truths = truths.to(device=device, dtype=dtype)
    box = XYWH(truths[..., 0], truths[..., 1], truths[..., 2], truths[..., 3])
    cls = truths[..., 4].long()  # C's float -> int truncation
    ok = valid_truths(truths) & (cls >= 0) & (cls < classes)
    return truths, box, cls.clamp(0, classes - 1), ok


def focal_class_factor(probs: Tensor, cls: Tensor) -> Tensor:
    """The focal variant's factor on (onehot - probs): probs (N, C), target class cls (N,) -> (N, 1)."""
    pt = probs.gather(1, cls.unsqueeze(1)) + 1e-15
    return FOCAL_ALPHA * -(1 - pt) * (2 * pt * torch.log(pt) + pt - 1)


def delta_loss(x: Tensor, delta: Tensor, cost: float) -> Tensor:
    """The loss whose autograd gradient with respect to the head's input x is exactly -delta (the reference
    passes its delta back unchanged) and whose value is the reference's cost: -sum(delta * x), shifted."""
    surrogate = -(delta * x.float()).sum()
    return surrogate - surrogate.detach() + cost
