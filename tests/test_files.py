"""darkcfg.files: every output is written whole or not at all, with the mode the umask gives (as `open()`
would create it), by the library and by the commands."""
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from darkcfg.cli import main
from darkcfg.files import AtomicFile, atomic_write, write_text

REPO = Path(__file__).resolve().parent.parent
CFG = REPO / "cfg" / "yolov3-tiny.cfg"
WEIGHTS = REPO / "weights" / "yolov3-tiny.weights"
SAMPLE = REPO / "darkcfg" / "assets" / "grace_hopper.jpg"


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_get_the_mode_the_umask_gives(tmp_path, umask):
    for mask, expected in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        umask(mask)
        p = write_text(tmp_path / f"u{mask:o}.txt", "x")
        assert mode(p) == expected, oct(mode(p))
        q = atomic_write(tmp_path / f"d{mask:o}.bin", lambda fh: fh.write(b"x"), durable=True)
        assert mode(q) == expected, oct(mode(q))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    dest = tmp_path / "out.weights"
    dest.write_bytes(b"old")

    def fail(fh):
        fh.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(dest, fail)
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.weights"]
    with AtomicFile(dest, text=True) as f:
        f.file.write("new")
        assert dest.read_bytes() == b"old"  # not in place before the end
    assert dest.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.weights"]


def test_command_outputs_get_the_umask_mode(tmp_path, umask):
    """convert (both ways), detect (--json, annotated image, --save-txt) and export under umask 022: 0644."""
    run = CliRunner().invoke
    r = run(main, ["convert", str(WEIGHTS), str(tmp_path / "m.pt"), "--cfg", str(CFG)])
    assert r.exit_code == 0, r.output
    r = run(main, ["convert", str(tmp_path / "m.pt"), str(tmp_path / "back.weights")])
    assert r.exit_code == 0, r.output
    r = run(main, ["detect", str(CFG), str(SAMPLE), "-o", str(tmp_path / "r.json"), "--out-dir",
                   str(tmp_path / "pred"), "--save-txt", "-q"])
    assert r.exit_code == 0, r.output
    r = run(main, ["export", str(CFG), "-f", "torchscript", "--size", "128", "-o", str(tmp_path / "m.ts.pt")])
    assert r.exit_code == 0, r.output
    written = ["m.pt", "back.weights", "r.json", "pred/grace_hopper.jpg", "pred/grace_hopper.txt", "m.ts.pt"]
    assert {f: oct(mode(tmp_path / f)) for f in written} == {f: oct(0o644) for f in written}
