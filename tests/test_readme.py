"""The README's examples, run as a user following it from the top would run them.

Every command line of README.md's ```sh (```bash, ```console) blocks and every ```python block runs, in README
order, in one fresh folder laid out like the checkout (copies of cfg/, weights/, scripts/, darkcfg/assets/), so
later examples use what earlier ones wrote, as the README says they do. The convention, stated in the README:

- `darkcfg ARGS`: run in this process through the click entry point (`darkcfg.cli.main`, what the console
  script calls), so PyTorch is imported once; the exit status must be 0.
- `python ARGS`: run with this interpreter in a subprocess; the exit status must be 0.
- `make TARGET` and `source .venv/bin/activate` (the set-up block): checked against the Makefile, not run.
- A line ending in `# needs: WHAT` (WHAT one of NEEDS) is skipped with that reason; at most MAX_SKIPPED are.
- Any other line, and any shell syntax beyond one command with arguments (pipes, `;`, redirections, `$`), fails.
- A ```python block runs in a fresh namespace after a check that every name it uses is defined in it (a first
  line `# needs: WHAT` would skip the run, not the check).

Run the module as a whole: an example depends on those above it.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
NEEDS = ("download", "camera", "gpu", "server", "minutes")
MAX_SKIPPED = 14
SHELL = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```\s*([\w+-]*)")
MARK = re.compile(r"#\s*needs:\s*([\w-]+)")
SETUP = re.compile(r"^(make \w+|source \.venv/bin/activate)(\s|$)")
# what the examples read, copied (not linked: an example that writes beside an input must not reach the repo)
CHECKOUT = ("cfg", "weights", "scripts", "darkcfg/assets")


@dataclass(frozen=True)
class Example:
    """One example: a shell command line or a whole python block, and the README line it starts on."""

    line: int
    kind: str  # "shell" or "python"
    text: str

    @property
    def need(self) -> Optional[str]:
        """WHAT of a `# needs: WHAT` mark (a shell line's comment, a python block's first line), else None."""
        head = self.text if self.kind == "shell" else self.text.lstrip().split("\n", 1)[0]
        m = MARK.search(head) if "#" in head else None
        return m.group(1) if m else None

    def __str__(self) -> str:
        return f"README.md:{self.line}"


def _shell_lines(body: list[str], first: int, console: bool) -> list[Example]:
    out, pending, start = [], "", first
    for k, raw in enumerate(body):
        line = raw.strip()
        if console:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending:
            start = first + k
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line and not line.startswith("#"):
            out.append(Example(start, "shell", line))
    return out


def readme_examples(text: str) -> list[Example]:
    """Every example of a README text, in order."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, j = m.group(1).lower(), i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        body = lines[i + 1:j]
        if lang in SHELL:
            out += _shell_lines(body, i + 2, lang == "console")
        elif lang == "python":
            out.append(Example(i + 2, "python", "\n".join(body)))
        i = j + 1
    return out


EXAMPLES = readme_examples(README.read_text())


def undefined_names(source: str) -> list[str]:
    """Names a python block loads without defining or importing them (not builtins)."""
    tree = ast.parse(source)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return sorted(used - defined)


def _words(command: str) -> list[str]:
    """The arguments of one command line, refusing what would need a real shell."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    tokens = list(lex)
    bad = [t for t in tokens if set(t) <= set("();<>|&") or "$" in t or "`" in t]
    assert not bad, f"shell syntax {bad} in {command!r}: one command with arguments per line"
    return shlex.split(command, comments=True)


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """A fresh folder laid out like the checkout, made the working directory for the module's examples."""
    ws = tmp_path_factory.mktemp("readme")
    for folder in CHECKOUT:
        dest = ws / folder
        dest.mkdir(parents=True)
        for f in sorted((REPO / folder).iterdir()):
            if f.is_file():
                shutil.copy2(f, dest / f.name)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        mp.setenv("DARKCFG_CACHE", str(ws / ".cache"))
        yield ws


def test_every_shell_line_is_run_or_marked():
    """The convention holds: each line runs, is a set-up line, or carries a known `# needs:` mark; few skip."""
    assert len(EXAMPLES) >= 30 and any(e.kind == "python" for e in EXAMPLES)
    skipped = [e for e in EXAMPLES if e.need]
    assert all(e.need in NEEDS for e in skipped), [(str(e), e.need) for e in skipped if e.need not in NEEDS]
    assert len(skipped) <= MAX_SKIPPED, f"{len(skipped)} examples skipped: {[str(e) for e in skipped]}"
    for e in EXAMPLES:
        if e.kind == "shell" and not e.need:
            assert re.match(r"(darkcfg|python) ", e.text) or SETUP.match(e.text), \
                f"{e}: {e.text!r} is neither run by this test nor marked `# needs: ...`"


def test_set_up_lines_match_the_makefile():
    """`make TARGET` names a target; `source .venv/bin/activate` is the venv `make` creates, and `make demo`
    says so when it ends."""
    makefile = (REPO / "Makefile").read_text()
    setup = [e for e in EXAMPLES if e.kind == "shell" and SETUP.match(e.text)]
    assert {"make demo", "make test"} <= {" ".join(e.text.split()[:2]) for e in setup}
    for e in setup:
        word, arg = e.text.split()[:2]
        if word == "make":
            assert arg in _makefile_targets(), f"{e}: no target {arg!r} in the Makefile"
        else:
            assert re.search(r"^VENV \?= \.venv$", makefile, re.M), "the Makefile's venv is not .venv"
    demo = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert demo and "$(VENV)/bin/activate" in demo.group(1), "`make demo` should end saying to activate the venv"


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "python"], ids=str)
def test_python_blocks_define_what_they_use(example: Example):
    assert not undefined_names(example.text), f"{example}: undefined {undefined_names(example.text)}"


def _run_darkcfg(args: list[str], where: str) -> None:
    from click.testing import CliRunner

    from darkcfg.cli import main

    r = CliRunner().invoke(main, args, prog_name="darkcfg")
    if r.exit_code != 0:
        tb = "".join(traceback.format_exception(*r.exc_info)) if r.exc_info and r.exc_info[0] is not SystemExit \
            else ""
        pytest.fail(f"{where}: `darkcfg {shlex.join(args)}` exited {r.exit_code}\n{r.output[-4000:]}\n{tb}")


def _run_python(args: list[str], where: str) -> None:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{where}: `python {shlex.join(args)}` exited {r.returncode}\n{r.stderr[-4000:]}"


@pytest.mark.parametrize("example", [e for e in EXAMPLES if not (e.kind == "shell" and SETUP.match(e.text))],
                         ids=str)
def test_example_runs(example: Example, workspace: Path):
    if example.need:
        pytest.skip(f"{example} needs: {example.need}")
    if example.kind == "python":
        code = compile(example.text, str(example), "exec")
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, {"__name__": "__readme__"})  # noqa: S102 - the README's own code
        return
    words = _words(example.text)
    if words[0] == "darkcfg":
        _run_darkcfg(words[1:], str(example))
    else:
        _run_python(words[1:], str(example))


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_local_links_resolve(page: Path):
    """Every relative link of the README and docs/ names a file that exists, and a heading there."""
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", dest.read_text(), re.M)
            assert anchor in {_anchor(h) for h in headings}, f"{page.name}: link to {target}: no such heading"
