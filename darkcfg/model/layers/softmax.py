"""[softmax] / [soft] (softmax_layer.c): softmax(x / temperature) over each of `groups` flat slices, or across
channels per pixel with `spatial=1`; with `tree=FILE` (a word tree, `darkcfg.model.wordtree`) one softmax per
group of the tree's nodes instead (softmax_tree), and the network's hierarchy is that tree (parser.c:
net.hierarchy, what `classify` and `classifier-valid` multiply the probabilities through). Output shape = input
shape.

PyTorch's softmax: within a unit in the last place of the reference's blas.c:softmax (its float order differs).
A tree's file is looked for as written, beside the cfg, then in its parent folder; it must have one
node per input. Training with a tree is not supported (the reference's CPU training does not mask the groups
without a truth).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from darkcfg.model.cfg import Section
from darkcfg.model.layers._base import BuildContext, DarknetLayer, Shape
from darkcfg.model.layers._registry import register
from darkcfg.model.wordtree import WordTree, read_section_tree


class Softmax(DarknetLayer):
    ltype = "softmax"

    def __init__(self, in_shape: Shape, groups: int = 1, temperature: float = 1.0, spatial: bool = False,
                 noloss: bool = False, tree: Optional[WordTree] = None) -> None:
        super().__init__(in_shape, in_shape)
        self.groups, self.temperature, self.spatial = groups, temperature, spatial
        self.has_loss = not noloss  # training: the classifier's loss (darkcfg.train.losses.softmax)
        self.tree = tree
        if tree is not None:
            idx, mask = tree.padded_groups()  # (G, M): the tree's groups, padded to the largest
            self.register_buffer("group_index", idx, persistent=False)
            self.register_buffer("group_mask", mask, persistent=False)
            self.untrainable = "training a [softmax] with a word tree (tree=) is not supported"

    def forward(self, x: Tensor, outputs: list) -> Tensor:
        if self.spatial and self.tree is None:
            return (x / self.temperature if self.temperature != 1 else x).softmax(dim=1)
        b = x.shape[0]
        flat = x.reshape(b, -1)  # (B, N)
        if self.tree is not None:
            return self._tree_softmax(flat).reshape(b, *self.out_shape)
        rows = flat.reshape(b, self.groups, -1)  # (B, groups, N / groups)
        rows = rows / self.temperature if self.temperature != 1 else rows
        return rows.softmax(dim=-1).reshape(b, *self.out_shape)

    def _tree_softmax(self, flat: Tensor) -> Tensor:
        """softmax_tree: flat (B, N) -> (B, N), each group of the tree (padded rows of group_index) on its own."""
        idx, mask = self.group_index, self.group_mask  # (G, M)
        rows = flat[:, idx].masked_fill(~mask, float("-inf"))  # (B, G, M); padding -inf: exp gives 0 there
        soft = (rows / self.temperature if self.temperature != 1 else rows).softmax(dim=-1)
        out = torch.zeros_like(flat)
        out[:, idx[mask]] = soft[:, mask]
        return out

    def describe(self) -> str:
        return f"softmax{'':40s}{self.in_shape.size:4d}"


@register("softmax", "soft", layer=Softmax)
def build(sec: Section, ctx: BuildContext) -> Softmax:
    groups = ctx.positive("groups", sec.int("groups", 1))
    temperature = float(np.float32(sec.float("temperature", 1.0)))  # the reference keeps it as a float
    spatial = bool(sec.float("spatial", 0))
    noloss = bool(sec.int("noloss", 0))
    tree = None
    if sec.str("tree") is not None:
        tree = read_section_tree(sec, ctx.input.size, f"one per input ({ctx.input.size})")
    elif ctx.input.size % groups:
        raise sec.error(f"groups={groups} does not divide the {ctx.input.size} inputs")
    if temperature == 0:
        raise sec.error("temperature=0: expected a non-zero temperature")
    return Softmax(ctx.input, groups, temperature, spatial, noloss, tree)
