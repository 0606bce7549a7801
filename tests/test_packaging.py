"""A wheel built from the checkout, installed into a fresh virtual environment: `darkcfg demo` works from
any folder (cfg/ and the shipped weights travel in the wheel as data files), and `valid` takes a .pt."""
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (no dependencies downloaded: the project venv's site-packages
    is visible to it through a .pth file, so this runs offline)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # built from a copy: an in-tree build/ folder left by an earlier build would put stale modules in the wheel
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", "build", "*.egg-info", ".git", "__pycache__",
                                                             ".hypothesis", ".pytest_cache", ".ruff_cache", "runs"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp / "dist"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wheel = next((tmp / "dist").glob("darkcfg-*.whl"))
    env = tmp / "venv"
    venv.create(env, with_pip=False)
    py = env / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, numpy, cv2, click ...
    # pip runs for the new interpreter (--python): scripts and data files land in the new venv
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return env


def test_demo_runs_from_an_installed_wheel(installed, tmp_path):
    env = dict(os.environ, PYTHONPATH="")
    r = subprocess.run([str(installed / "bin" / "darkcfg"), "demo", "--out-dir", str(tmp_path / "pred")], cwd=tmp_path,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "Predicted in" in r.stdout and "(left_x:" in r.stdout
    assert (tmp_path / "pred" / "grace_hopper.jpg").is_file()
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import darkcfg; print(darkcfg.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, env=env).stdout
    assert str(installed) in where  # the installed copy ran, not the checkout
