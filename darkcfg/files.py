"""Writing files so that no reader ever sees half of one: every file darkcfg writes goes through here.

A file is written under a temporary name in its destination's folder and renamed over the destination
only when it is complete (`os.replace` is atomic on one file system), so an interrupted run leaves either
the old file or the new one, never a truncated one. The temporary file is created with mode 0o666 and the
process umask applied by the kernel, as `open()` would create the destination (0644 under the usual umask
022), not with `tempfile.mkstemp`'s private 0600: a trained model or an exported network stays readable
by a colleague or a serving account. `durable=True` also fsyncs the data (and the folder) before and after
the rename: checkpoints, which a crash must not lose.

No command writes over a file it reads. A writer declares what it reads in a `Sources` (the files, and the
folders whose existing files are all the user's) and checks every destination with `Sources.check_dest(path)`
before it writes or unlinks anything: a destination that IS a source (the same path, also through a symlinked
folder or file, or a hard link: the same st_dev/st_ino) or an existing file inside a source folder is refused
with a `SourceError` naming both paths. The writers here take `sources=` and check again just before the
rename, so a writer that forgot the first check still cannot replace a source.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Optional, Union

from darkcfg.errors import DarkcfgError

PathLike = Union[str, Path]


class SourceError(DarkcfgError):
    """A destination that is (or would replace) a file the command reads; the message names both paths."""


def _real(path: PathLike) -> str:
    """The absolute path with every symlinked folder on the way resolved, the last component kept as named
    (os.replace on a symlink replaces the link, not its target; the target is compared by inode)."""
    p = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))


def _inode(path: PathLike) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)  # follows symlinks: a link to a source is that source
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


class Sources:
    """The files (and folders) a command reads: nothing it writes may be one of them.

    `files`: files read, remembered by path and, when they exist, by (st_dev, st_ino), so that a symlink or
    hard link to one is recognised. `folders`: folders whose existing files are all the user's (an image
    folder): a destination that exists inside one is refused, a new file there is not.
    """

    def __init__(self, files: Iterable[PathLike] = (), folders: Iterable[PathLike] = ()) -> None:
        self._inodes: dict[tuple[int, int], str] = {}
        self._paths: dict[str, str] = {}
        self._folders: list[tuple[str, str]] = []
        for f in files:
            self.add(f)
        for d in folders:
            self.add_folder(d)

    def add(self, path: PathLike) -> None:
        """Declare one file the command reads."""
        name = os.fspath(path)
        self._paths.setdefault(_real(name), name)
        self._paths.setdefault(os.path.realpath(name), name)
        key = _inode(name)
        if key is not None:
            self._inodes.setdefault(key, name)

    def add_folder(self, folder: PathLike) -> None:
        """Declare a folder whose existing files (at any depth) are the user's."""
        self._folders.append((os.path.realpath(os.fspath(folder)), os.fspath(folder)))

    def source_of(self, dest: PathLike, allow: Optional[PathLike] = None) -> Optional[str]:
        """The source that writing `dest` would replace (as the user named it), or None. `allow`: a source
        that `dest` may be the same file as (a hard link already in place: nothing to write)."""
        key = _inode(dest)
        if key is not None and allow is not None and key == _inode(allow):
            return None
        if key is not None and key in self._inodes:
            return self._inodes[key]
        real = _real(dest)
        if real in self._paths:
            return self._paths[real]
        if os.path.lexists(real):
            for folder, named in self._folders:
                if real.startswith(folder.rstrip(os.sep) + os.sep):
                    return f"{dest}, a file in the source folder {named}"
        return None

    def check_dest(self, dest: PathLike, allow: Optional[PathLike] = None) -> None:
        """Refuse (SourceError, one line naming both) a destination that is or would replace a source."""
        src = self.source_of(dest, allow)
        if src is not None:
            what = "the source file" if src == os.fspath(dest) else src
            raise SourceError(f"{dest}: is {what}, which this command reads; writing there would destroy it: "
                              "choose another output")

    def check_folder(self, folder: PathLike, what: str = "the output folder") -> None:
        """Refuse an output folder that is, or lies inside, a source folder (its writes would land among the
        user's files)."""
        real = os.path.realpath(os.fspath(folder))
        for src, named in self._folders:
            if real == src or real.startswith(src.rstrip(os.sep) + os.sep):
                raise SourceError(f"{folder}: {what} is {'' if real == src else 'inside '}the source folder {named} "
                                  "(also through a symlink); writing there would replace your files: choose a new "
                                  "folder")


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
    extension such writers look at). `sources`: files the command reads, which `path` must not be (checked
    before the temporary file is created and again before the rename; SourceError).
    """

    def __init__(self, path: PathLike, durable: bool = False, text: bool = False, suffix: str = ".tmp",
                 own_handle: bool = True, sources: Optional[Sources] = None) -> None:
        self.path = Path(path)
        self.durable = durable
        self.sources = sources
        if sources is not None:
            sources.check_dest(self.path)
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
        if self.sources is not None:
            try:
                self.sources.check_dest(self.path)
            except SourceError:
                self.discard()
                raise
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


def atomic_write(path: PathLike, writer: Callable[[IO[bytes]], Any], durable: bool = True,
                 sources: Optional[Sources] = None) -> Path:
    """Call writer(fh) on a binary temporary file beside `path`, then move it into place (see the module
    docstring). `durable` fsyncs (checkpoints); outputs written by the thousand skip that. `sources`: what the
    command reads, which `path` must not be (SourceError before anything is written)."""
    with AtomicFile(path, durable=durable, sources=sources) as f:
        writer(f.file)  # type: ignore[arg-type]
    return Path(path)


def write_bytes(path: PathLike, data: bytes, durable: bool = False, sources: Optional[Sources] = None) -> Path:
    """`data` as the whole content of `path`, atomically (and never over one of `sources`)."""
    return atomic_write(path, lambda fh: fh.write(data), durable, sources)


def write_text(path: PathLike, text: str, durable: bool = False, sources: Optional[Sources] = None) -> Path:
    """`text` (UTF-8) as the whole content of `path`, atomically (and never over one of `sources`)."""
    return write_bytes(path, text.encode("utf-8"), durable, sources)


def link_or_copy(src: PathLike, dest: PathLike, sources: Optional[Sources] = None) -> Path:
    """`dest`: a hard link to `src` where the file system allows (no copy of the bytes), else a copy, put in
    place atomically. A `dest` that already is `src` (the same inode: a previous run's link, or the source
    itself) is left as it is: nothing is unlinked. `sources`: what the command reads; `dest` may be `src`
    itself but no other source (SourceError before anything is written)."""
    dest = Path(dest)
    if sources is not None:
        sources.check_dest(dest, allow=src)
    key = _inode(src)
    if key is not None and key == _inode(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(dest, Path(dest).suffix)
    os.close(fd)
    try:
        os.unlink(tmp)  # os.link needs a free name; the O_EXCL create reserved a fresh random one
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        if sources is not None:
            sources.check_dest(dest, allow=src)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest
