"""A constant-velocity Kalman filter on boxes as (cx, cy, aspect, h), batched over tracks.

The state of a track is (cx, cy, a, h, vcx, vcy, va, vh), a = w / h, in pixels per frame; the measurement is
(cx, cy, a, h). The noise model is DeepSORT's, which ByteTrack keeps: position and velocity standard deviations
proportional to the box height (1/20 and 1/160 of h), a near-constant aspect. Every function works on T tracks
at once (numpy arrays of T rows), so a frame costs a few array operations whatever the number of tracks.

The transition F, the noises Q and R and the measurement H each tie a coordinate to its own velocity only, and the
covariance starts diagonal, so the filter's 8 x 8 covariance stays made of four independent 2 x 2 blocks, one per
coordinate (its other entries are exact zeros at every step). It is kept as those blocks, cov (T, 3, 4): for
each of (cx, cy, a, h) the position variance, the position-velocity covariance and the velocity variance; the
innovation covariance S is then diagonal and every step is element-wise (the 8 x 8 form's numbers to rounding:
tests/test_track.py checks it against the dense Kalman equations to 1e-9).
"""
from __future__ import annotations

import numpy as np

F64 = np.float64
W_POS, W_VEL = 1.0 / 20, 1.0 / 160  # standard deviation weights relative to the height


def xyah(boxes: np.ndarray) -> np.ndarray:
    """boxes (N, 4) (cx, cy, w, h) -> (N, 4) (cx, cy, w / h, h); a zero height gives aspect 0."""
    out = np.array(boxes, F64)  # a copy
    h = out[:, 3]
    out[:, 2] = np.divide(out[:, 2], h, out=np.zeros_like(h), where=h > 0)
    return out


def cxcywh(state: np.ndarray) -> np.ndarray:
    """state (T, >=4) (cx, cy, a, h, ...) -> boxes (T, 4) (cx, cy, w, h)."""
    out = state[:, :4].copy()
    out[:, 2] *= state[:, 3]
    return out


def _scales(pos: float, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """The standard deviations of (cx, cy, a, h) as h * first + second: pos * h for cx, cy and h, aspect for a."""
    return np.array([pos, pos, 0.0, pos], F64), np.array([0.0, 0.0, aspect, 0.0], F64)


INIT_POS, INIT_VEL = _scales(2 * W_POS, 1e-2), _scales(10 * W_VEL, 1e-5)  # a new track's
NOISE_POS, NOISE_VEL = _scales(W_POS, 1e-2), _scales(W_VEL, 1e-5)  # the process noise Q
MEASURE = _scales(W_POS, 1e-1)  # the measurement noise R


def _var(h: np.ndarray, scales: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(T,) heights, `_scales` -> (T, 4) variances: (pos * h)^2 for cx, cy and h, aspect^2 for a (h * 0 + aspect is
    aspect exactly: the same numbers as setting it)."""
    std = h[:, None] * scales[0] + scales[1]
    return std * std


def initiate(measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """measured (T, 4) (cx, cy, a, h) -> mean (T, 8) with zero velocity, covariance blocks (T, 3, 4) (module
    docstring: position variance, position-velocity covariance, velocity variance of each coordinate)."""
    z = np.asarray(measured, F64)
    t = len(z)
    mean = np.concatenate([z, np.zeros((t, 4), F64)], 1)
    cov = np.zeros((t, 3, 4), F64)
    cov[:, 0] = _var(z[:, 3], INIT_POS)
    cov[:, 2] = _var(z[:, 3], INIT_VEL)
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead: x' = F x, P' = F P F^T + Q with F = [[1, 1], [0, 1]] on each coordinate's (position,
    velocity) block. mean (T, 8), cov (T, 3, 4) -> the same shapes (new arrays)."""
    h = mean[:, 3]
    m = mean.copy()
    m[:, :4] += mean[:, 4:]
    p, q, r = cov[:, 0], cov[:, 1], cov[:, 2]
    out = np.empty_like(cov)
    out[:, 0] = p + q + q + r + _var(h, NOISE_POS)
    out[:, 1] = q + r
    out[:, 2] = r + _var(h, NOISE_VEL)
    return m, out


def project(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The measurement distribution: mean (T, 8), cov (T, 3, 4) -> (T, 4) mean and (T, 4) variances, the diagonal
    of H P H^T + R (its only non-zero entries)."""
    return mean[:, :4], cov[:, 0] + _var(mean[:, 3], MEASURE)


def update(mean: np.ndarray, cov: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct T tracks with their measurements (T, 4) (cx, cy, a, h): K = P H^T S^-1, x += K (z - H x),
    P -= K S K^T = K H P, per coordinate (S is diagonal). Returns new mean (T, 8), cov (T, 3, 4)."""
    zm, s = project(mean, cov)  # (T, 4), (T, 4)
    gain = cov[:, :2] / s[:, None]  # (T, 2, 4): each coordinate's position and velocity gains
    innovation = np.asarray(measured, F64) - zm  # (T, 4)
    m = (mean.reshape(-1, 2, 4) + gain * innovation[:, None]).reshape(-1, 8)  # (position, velocity) + gain x innovation
    out = np.empty_like(cov)
    out[:, :2] = cov[:, :2] - gain[:, :1] * cov[:, :2]  # p - kp p, q - kp q
    out[:, 2] = cov[:, 2] - gain[:, 1] * cov[:, 1]  # r - kv q
    return m, out


def mahalanobis(mean: np.ndarray, cov: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances (T, N) of N measurements (N, 4) (cx, cy, a, h) from T tracks' predicted
    measurement distributions (position only: cx, cy, the DeepSORT gate with 2 degrees of freedom)."""
    zm, s = project(mean, cov)
    d = np.asarray(measured, F64)[None, :, :2] - zm[:, None, :2]  # (T, N, 2)
    var = np.broadcast_to(s[:, None, :2], d.shape)
    return np.divide(d * d, var, out=np.full(d.shape, np.inf), where=var > 0).sum(2)  # no variance: infinitely far
