"""Optimal one-to-one assignment under a cost limit (scipy's linear_sum_assignment, Jonker-Volgenant)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

FORBIDDEN = 1e6  # the cost of a pair above the limit: the solver takes it only when nothing else is left


def assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The assignment of rows to columns with the least total cost among pairs of cost <= limit.

    cost (T, N) -> matched pairs (M, 2) of (row, column), the unmatched rows (T - M,) and columns (N - M,), each
    ascending. Pairs above the limit are never matched; among the rest the solver takes as many as it can, then
    the cheapest.
    """
    t, n = cost.shape
    if not t or not n:
        return np.zeros((0, 2), np.int64), np.arange(t), np.arange(n)
    ok = cost <= limit  # (T, N)
    rows = np.flatnonzero(ok.any(1))
    cols = np.flatnonzero(ok.any(0))
    pairs = np.zeros((0, 2), np.int64)
    if len(rows) and len(cols):
        sub = np.where(ok[np.ix_(rows, cols)], cost[np.ix_(rows, cols)], FORBIDDEN)
        r, c = linear_sum_assignment(sub)
        good = sub[r, c] <= limit
        pairs = np.stack([rows[r[good]], cols[c[good]]], 1).astype(np.int64)
    free_rows = np.ones(t, bool)
    free_rows[pairs[:, 0]] = False
    free_cols = np.ones(n, bool)
    free_cols[pairs[:, 1]] = False
    return pairs, np.flatnonzero(free_rows), np.flatnonzero(free_cols)
