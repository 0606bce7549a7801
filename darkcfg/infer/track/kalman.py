"""A constant-velocity Kalman filter on boxes as (cx, cy, aspect, h), batched over tracks.

The state of a track is (cx, cy, a, h, vcx, vcy, va, vh), a = w / h, in pixels per frame; the measurement is
(cx, cy, a, h). The noise model is DeepSORT's, which ByteTrack keeps: position and velocity standard deviations
proportional to the box height (1/20 and 1/160 of h), a near-constant aspect. Every function works on T tracks
at once (numpy arrays of T rows), so a frame costs a few array operations whatever the number of tracks.
"""
from __future__ import annotations

import numpy as np

F64 = np.float64
W_POS, W_VEL = 1.0 / 20, 1.0 / 160  # standard deviation weights relative to the height


def xyah(boxes: np.ndarray) -> np.ndarray:
    """boxes (N, 4) (cx, cy, w, h) -> (N, 4) (cx, cy, w / h, h); a zero height gives aspect 0."""
    b = np.asarray(boxes, F64)
    h = b[:, 3]
    a = np.divide(b[:, 2], h, out=np.zeros_like(h), where=h > 0)
    return np.stack([b[:, 0], b[:, 1], a, h], 1)


def cxcywh(state: np.ndarray) -> np.ndarray:
    """state (T, >=4) (cx, cy, a, h, ...) -> boxes (T, 4) (cx, cy, w, h)."""
    return np.stack([state[:, 0], state[:, 1], state[:, 2] * state[:, 3], state[:, 3]], 1)


def _diag(std: np.ndarray) -> np.ndarray:
    """(T, K) standard deviations -> (T, K, K) diagonal covariances."""
    t, k = std.shape
    out = np.zeros((t, k, k), F64)
    out[:, np.arange(k), np.arange(k)] = std * std
    return out


def initiate(measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """measured (T, 4) (cx, cy, a, h) -> mean (T, 8) with zero velocity, covariance (T, 8, 8)."""
    z = np.asarray(measured, F64)
    t = len(z)
    mean = np.concatenate([z, np.zeros((t, 4), F64)], 1)
    h = z[:, 3]
    std = np.stack([2 * W_POS * h, 2 * W_POS * h, np.full(t, 1e-2), 2 * W_POS * h,
                    10 * W_VEL * h, 10 * W_VEL * h, np.full(t, 1e-5), 10 * W_VEL * h], 1)
    return mean, _diag(std)


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead: x' = F x, P' = F P F^T + Q, F = [[I, I], [0, I]] (4x4 blocks). mean (T, 8), cov (T, 8, 8)
    -> the same shapes (new arrays)."""
    h = mean[:, 3]
    t = len(mean)
    std = np.stack([W_POS * h, W_POS * h, np.full(t, 1e-2), W_POS * h,
                    W_VEL * h, W_VEL * h, np.full(t, 1e-5), W_VEL * h], 1)
    m = mean.copy()
    m[:, :4] += mean[:, 4:]
    a, b = cov[:, :4, :4], cov[:, :4, 4:]  # P = [[A, B], [C, D]] -> F P F^T = [[A+B+C+D, B+D], [C+D, D]]
    c, d = cov[:, 4:, :4], cov[:, 4:, 4:]
    p = np.empty_like(cov)
    p[:, :4, :4] = a + b + c + d
    p[:, :4, 4:] = b + d
    p[:, 4:, :4] = c + d
    p[:, 4:, 4:] = d
    return m, p + _diag(std)


def project(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The measurement distribution: mean (T, 8), cov (T, 8, 8) -> (T, 4) mean, (T, 4, 4) covariance H P H^T + R."""
    h = mean[:, 3]
    std = np.stack([W_POS * h, W_POS * h, np.full(len(mean), 1e-1), W_POS * h], 1)
    return mean[:, :4], cov[:, :4, :4] + _diag(std)


def update(mean: np.ndarray, cov: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct T tracks with their measurements (T, 4) (cx, cy, a, h): K = P H^T S^-1, x += K (z - H x),
    P -= K S K^T. Returns new mean (T, 8), cov (T, 8, 8)."""
    zm, s = project(mean, cov)  # (T, 4), (T, 4, 4)
    kt = np.linalg.solve(s, cov[:, :4, :])  # (T, 4, 8) = S^-1 H P = K^T (S and P symmetric)
    innovation = np.asarray(measured, F64) - zm  # (T, 4)
    m = mean + np.einsum("tij,ti->tj", kt, innovation)
    p = cov - np.einsum("tik,tij->tkj", kt, cov[:, :4, :])  # K (H P) = K S K^T
    return m, p


def mahalanobis(mean: np.ndarray, cov: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances (T, N) of N measurements (N, 4) (cx, cy, a, h) from T tracks' predicted
    measurement distributions (position only: cx, cy, the DeepSORT gate with 2 degrees of freedom)."""
    zm, s = project(mean, cov)
    d = np.asarray(measured, F64)[None, :, :2] - zm[:, None, :2]  # (T, N, 2)
    inv = np.linalg.inv(s[:, :2, :2])  # (T, 2, 2)
    return np.einsum("tni,tij,tnj->tn", d, inv, d)
