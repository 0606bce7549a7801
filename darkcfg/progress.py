"""A small progress bar for long work: count, rate, ETA and a few live values, on stderr.

On a terminal it redraws one line; elsewhere (logs, CI) it writes a plain line at most every
`log_every` seconds and at the end, so long runs still show progress without flooding a log. While a bar is open,
warnings (the `warnings` module, darkcfg's one route for them) are printed above it, not through it.
"""
from __future__ import annotations

import sys
import time
import warnings
from typing import IO, Any, Optional


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(seconds)
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Usage: `with Progress(total, "detect", unit="img") as bar: ... bar.update(1, loss=f"{x:.3f}")`.

    total None means unknown (a video without a frame count): the bar then shows count and rate only.
    """

    def __init__(self, total: Optional[int], desc: str = "", unit: str = "it", stream: Optional[IO[str]] = None,
                 enabled: bool = True, log_every: float = 10.0, width: int = 24, scale: float = 1.0) -> None:
        self.total, self.desc, self.unit, self.scale = total, desc, unit, scale
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every, self.width = log_every, width
        self.n = 0
        self.start = time.perf_counter()
        self._last_draw = self.start  # off a terminal, the first line comes after log_every seconds
        self._postfix = ""
        self._shown = False

    def __enter__(self) -> Progress:
        self._showwarning = warnings.showwarning
        if self.enabled:
            warnings.showwarning = self._show_warning  # type: ignore[assignment]
        return self

    def _show_warning(self, message: Any, category: type, filename: str, lineno: int, file: Any = None,
                      line: Optional[str] = None) -> None:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        self.write(text.rstrip("\n"), stream=file if file is not None else sys.stderr)

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.start
        return self.n / dt if dt > 0 else 0.0

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.rate
        parts = [self.desc] if self.desc else []
        count = self._num(self.n)
        per_s = f"{rate / self.scale:.2f} {self.unit}/s"
        if self.total:
            frac = min(self.n / self.total, 1.0)
            fill = int(frac * self.width)
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            parts.append(f"{frac * 100:3.0f}%|{'#' * fill}{'.' * (self.width - fill)}| {count}/{self._num(self.total)}"
                         + (f" {self.unit}" if self.scale != 1 else ""))
            parts.append(f"[{_clock(elapsed)}<{_clock(eta)}, {per_s}]")
        else:
            parts.append(f"{count} {self.unit} [{_clock(elapsed)}, {per_s}]")
        if self._postfix:
            parts.append(self._postfix)
        return " ".join(parts)

    def _num(self, v: float) -> str:
        return f"{v / self.scale:.1f}" if self.scale != 1 else str(v)

    def update(self, n: int = 1, **values: object) -> None:
        self.n += n
        if values:
            self._postfix = " ".join(f"{k}={v}" for k, v in values.items())
        now = time.perf_counter()
        done = self.total is not None and self.n >= self.total
        if not self.enabled:
            return
        if self.tty and (now - self._last_draw > 0.1 or done):
            self._draw()
        elif not self.tty and (now - self._last_draw > self.log_every) and not done:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last_draw = now

    def _draw(self) -> None:
        self.stream.write("\r" + self.line() + "\033[K")
        self.stream.flush()
        self._last_draw = time.perf_counter()
        self._shown = True

    def write(self, text: str, stream: Optional[IO[str]] = None) -> None:
        """Print a line above the bar (to `stream`, default stdout) without breaking it."""
        out = stream if stream is not None else sys.stdout
        if self.enabled and self.tty and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
        out.write(text if text.endswith("\n") else text + "\n")
        out.flush()
        if self.enabled and self.tty and self._shown:
            self._draw()

    def close(self) -> None:
        if getattr(self, "_showwarning", None) is not None:
            warnings.showwarning = self._showwarning  # type: ignore[assignment]
            self._showwarning = None
        if not self.enabled:
            return
        if self.n == 0 and not self._shown:  # nothing was done (a source that failed to open): no bar at all
            self.enabled = False
            return
        if self.tty:
            self._draw()
            self.stream.write("\n")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
        self.enabled = False
