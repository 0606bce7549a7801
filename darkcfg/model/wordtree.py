"""The reference's word tree (tree.c): the class hierarchy of a `tree=` file, read by [softmax] (classifiers,
softmax_layer.c) and [region] (YOLO9000, region_layer.c).

A tree file has one node per line, `name parent` (tree.c:read_tree's `sscanf("%s %d")`: the first word, then the
parent's line index, -1 or absent for a root); blank lines are skipped. The nodes fall into groups, the runs of
consecutive lines with the same parent (each a softmax of its own: softmax_tree), and a node is a leaf unless some
node names it as parent. A node's probability is its own (conditional on its parent) times its ancestors'
(hierarchy_predictions); a file lists parents before their children, as 9k.tree does.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from darkcfg.model.cfg import Section

_INT = re.compile(r"[+-]?\d+")


@dataclass
class WordTree:
    """tree.c:read_tree: each node's `parent` (-1: a root) and `name`, the `groups` (offset, size) in file order,
    `child[i]` (the group whose parent is node i, -1: a leaf, as pjreddie's read_tree fills it); the leaf flags are
    darkcfg.infer.classify.tree_leaves(parent)."""

    parent: list[int]
    name: list[str]
    groups: list[tuple[int, int]]
    child: list[int]

    @classmethod
    def from_lines(cls, lines: list[str]) -> WordTree:
        """Nodes from the file's lines (module docstring)."""
        parent: list[int] = []
        name: list[str] = []
        for line in lines:
            parts = line.split()
            if not parts:
                continue
            m = _INT.match(parts[1]) if len(parts) > 1 else None  # %d reads a leading integer, else leaves -1
            parent.append(int(m.group()) if m else -1)
            name.append(parts[0])
        groups: list[tuple[int, int]] = []  # read_tree: a new group where the parent changes (the first from -1)
        last, size = -1, 0
        for n, p in enumerate(parent):
            if p != last:
                groups.append((n - size, size))
                last, size = p, 0
            size += 1
        groups.append((len(parent) - size, size))
        child = [-1] * len(parent)
        for g, (off, n) in enumerate(groups):
            if n and 0 <= parent[off] < len(parent) and child[parent[off]] < 0:
                child[parent[off]] = g
        return cls(parent, name, groups, child)

    @classmethod
    def read(cls, path: Path) -> WordTree:
        return cls.from_lines(path.read_text(encoding="utf-8", errors="replace").splitlines())

    def problems(self) -> list[str]:
        """What makes the file unusable here: a parent that is not an earlier node (the reference multiplies by
        a parent not yet final, or reads outside the tree)."""
        return [f"line {i + 1} ({self.name[i]}): parent {p} is not an earlier node"
                for i, p in enumerate(self.parent) if p >= i or p < -1][:1]

    def padded_groups(self) -> tuple[Tensor, Tensor]:
        """The groups as one (G, M) index matrix into the nodes (M the largest group; empty groups dropped) and
        its (G, M) mask of real entries; the padding points at node 0."""
        groups = [(o, n) for o, n in self.groups if n]
        m = max((n for _, n in groups), default=1)
        idx = torch.zeros(len(groups), m, dtype=torch.long)
        mask = torch.zeros(len(groups), m, dtype=torch.bool)
        for g, (o, n) in enumerate(groups):
            idx[g, :n] = torch.arange(o, o + n)
            mask[g, :n] = True
        return idx, mask

    def softmax(self, x: Tensor) -> Tensor:
        """softmax_tree over the last dimension (one softmax per group)."""
        return torch.cat([x[..., o:o + n].softmax(-1) for o, n in self.groups], -1)

    def hierarchy(self, p: Tensor) -> Tensor:
        """hierarchy_predictions: each node's probability times its ancestors' (parents come first in the file)."""
        out = p.clone()
        for o, n in self.groups:
            par = self.parent[o] if n else -1
            if par >= 0:
                out[..., o:o + n] = out[..., o:o + n] * out[..., par:par + 1]
        return out

    def top(self, h: Tensor, thresh: float) -> Tensor:
        """hierarchy_top_prediction for rows of conditional probabilities h (N, nodes) -> node index (N,)."""
        idx = []
        for row in h.tolist():
            p, group = 1.0, 0
            while True:
                o, n = self.groups[group]
                seg = row[o:o + n]
                k = max(range(n), key=seg.__getitem__)
                best = o + k
                if p * seg[k] > thresh:
                    p *= seg[k]
                    if self.child[best] < 0:
                        break
                    group = self.child[best]
                elif group == 0:
                    break
                else:
                    best = self.parent[o]
                    break
            idx.append(best)
        return torch.tensor(idx, dtype=torch.long)


def find_beside_cfg(sec: Section, key: str) -> Path:
    """The file a section's `key` names (tree=, map=): as written (the reference opens it from the working
    directory), else beside the cfg, else in the cfg's parent folder (darknet's layout: cfg/ and data/)."""
    name = sec.str(key)
    assert name is not None
    cfg_dir = Path(sec.file).parent
    for cand in (Path(name), cfg_dir / name, cfg_dir.parent / name):
        if cand.is_file():
            return cand
    opt = sec.find(key)
    raise sec.error(f"{key}={name}: no such file (looked in {os.getcwd()}, {cfg_dir} and {cfg_dir.parent})",
                    opt.line if opt else None)


def read_section_tree(sec: Section, nodes: int, what: str) -> WordTree:
    """The WordTree of a section's `tree=`, refused in one line unless it has `nodes` nodes (`what` names that
    count, e.g. "classes=20") and each parent comes before its children."""
    tree = WordTree.read(find_beside_cfg(sec, "tree"))
    opt = sec.find("tree")
    line = opt.line if opt else None
    if len(tree.parent) != nodes:
        raise sec.error(f"tree={sec.str('tree')} has {len(tree.parent)} nodes, expected {what}", line)
    bad = tree.problems()
    if bad:
        raise sec.error(f"tree={sec.str('tree')}: {bad[0]}", line)
    return tree
