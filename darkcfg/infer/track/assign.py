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
    rr, cc = ok.nonzero()  # the candidate pairs, row-major
    if len(rr) == len(set(rr.tolist())) == len(set(cc.tolist())):  # no two share a row or a column: all taken
        pairs = np.array((rr, cc), np.int64).T  # (M, 2), rows ascending
    else:
        rows, cols = ok.any(1).nonzero()[0], ok.any(0).nonzero()[0]
        allowed = ok[rows][:, cols]
        sub = np.where(allowed, cost[rows][:, cols], FORBIDDEN)
        r, c = linear_sum_assignment(sub)
        good = allowed[r, c]  # the solver's pairs within the limit (whatever the limit's size against FORBIDDEN)
        pairs = np.array((rows[r[good]], cols[c[good]]), np.int64).T
    free_rows = np.ones(t, bool)
    free_rows[pairs[:, 0]] = False
    free_cols = np.ones(n, bool)
    free_cols[pairs[:, 1]] = False
    return pairs, free_rows.nonzero()[0], free_cols.nonzero()[0]
