"""Writing files so that no reader ever sees half of one: every file darkcfg writes goes through here.

A file is written under a temporary name in its destination's folder and renamed over the destination
only when it is complete (`os.replace` is atomic on one file system), so an interrupted run leaves either
the old file or the new one, never a truncated one. The temporary file is created with mode 0o666 and the
process umask applied by the kernel, as `open()` would create the destination (0644 under the usual umask
022), not with `tempfile.mkstemp`'s private 0600: a trained model or an exported network stays readable
by a colleague or a serving account. `durable=True` also fsyncs the data (and the folder) before and after
the rename: checkpoints, which a crash must not lose.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable, Optional, Union

PathLike = Union[str, Path]


def _create_temp(dest: Path, suffix: str) -> tuple[int, Path]:
    """A new, empty file beside `dest` (O_EXCL, mode 0o666 minus the umask): (fd, path)."""
    for _ in range(100):
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{dest}: no free temporary name beside it")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible everywhere (e.g. Windows): the data itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A file being written to a temporary name; `commit()` renames it over `path`, `discard()` drops it.

    As a context manager it commits when the block ends normally and discards on an exception. `file` is
    the open handle (binary, or text with `text=True`); writers that need a path instead (OpenCV's
    VideoWriter) use `temp` and `own_handle=False` (the handle is closed at once; `suffix` keeps the
    extension such writers look at).
    """

    def __init__(self, path: PathLike, durable: bool = False, text: bool = False, suffix: str = ".tmp",
                 own_handle: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.temp = _create_temp(self.path, suffix)
        self.file: Optional[IO[Any]] = None
        if own_handle:
            self.file = os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8"} if text else {}))
        else:
            os.close(fd)
        self.done = False

    def commit(self) -> Path:
        """Finish the file and move it into place; returns the destination."""
        if self.done:
            return self.path
        if self.file is not None:
            self.file.flush()
            if self.durable:
                os.fsync(self.file.fileno())
            self.file.close()
        elif self.durable:
            with open(self.temp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(self.temp, self.path)
        self.done = True
        if self.durable:
            _fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Drop the temporary file; the destination is left as it was."""
        if self.done:
            return
        self.done = True
        if self.file is not None:
            self.file.close()
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write(path: PathLike, writer: Callable[[IO[bytes]], Any], durable: bool = True) -> Path:
    """Call writer(fh) on a binary temporary file beside `path`, then move it into place (see the module
    docstring). `durable` fsyncs (checkpoints); outputs written by the thousand skip that."""
    with AtomicFile(path, durable=durable) as f:
        writer(f.file)  # type: ignore[arg-type]
    return Path(path)


def write_bytes(path: PathLike, data: bytes, durable: bool = False) -> Path:
    """`data` as the whole content of `path`, atomically."""
    return atomic_write(path, lambda fh: fh.write(data), durable)


def write_text(path: PathLike, text: str, durable: bool = False) -> Path:
    """`text` (UTF-8) as the whole content of `path`, atomically."""
    return write_bytes(path, text.encode("utf-8"), durable)
