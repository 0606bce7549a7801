"""The package's layout rules, read from the source: a lower stage never imports a higher one, and no module
outside a head's own files asks what kind of head a layer is (they ask darkcfg.model.heads)."""
import ast
import re
from pathlib import Path

from oracle import REPO

PACKAGE = REPO / "darkcfg"

# stage -> the stages its modules may import (besides the base modules: errors, files, memory, progress, registry)
ALLOWED = {
    "base": set(),
    "model": {"model"},
    "data": {"data"},
    "infer": {"model", "data", "infer"},
    "eval": {"model", "data", "infer", "eval"},
    "train": {"model", "data", "infer", "eval", "train"},
    "export": {"model", "infer", "export"},
}
BASE = {"errors", "files", "memory", "progress", "registry"}
# ways of asking "what kind of head is this layer?" that the head interface replaces
TYPE_TESTS = (r'ltype (==|in) [(]?"(yolo|Gaussian_yolo|region|detection)', r"OUTPUT_TYPES", r"\.gaussian\b",
              r"isinstance\([^)]*(Yolo|Region)",
              # a head's section name as a string literal (`sec.type in ("yolo", ...)`, a list of head types)
              r"""(?<!command\()["'](yolo|Gaussian_yolo|region|detection)["']""")
TOP = {"__init__", "__main__", "cli"}  # the facade and the command line sit above every stage


def _stage(module: str) -> str:
    """darkcfg.<first part>...: its stage name, 'base' for the base modules."""
    first = module.split(".")[1] if "." in module else "__init__"
    return "base" if first in BASE else first


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every darkcfg import in a file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("darkcfg"):
            out += [(node.lineno, node.module)] if node.module != "darkcfg" else \
                [(node.lineno, f"darkcfg.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("darkcfg")]
    return out


def _modules() -> list[tuple[Path, str]]:
    return [(p, ".".join(p.relative_to(REPO).with_suffix("").parts)) for p in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_belongs_to_a_stage():
    stages = set(ALLOWED) | TOP
    for path, module in _modules():
        assert _stage(module) in stages, f"{path}: not in a stage folder ({', '.join(sorted(ALLOWED))})"


def test_a_lower_stage_never_imports_a_higher_one():
    bad = []
    for path, module in _modules():
        stage = _stage(module)
        if stage in TOP:
            continue
        for line, imported in _imports(path):
            target = _stage(imported)
            if target != "base" and target not in ALLOWED[stage]:
                bad.append(f"{path.relative_to(REPO)}:{line}: [{stage}] imports {imported} [{target}]")
    assert not bad, "\n".join(bad)


def test_only_a_heads_own_files_name_its_layer_class():
    """Decode, NMS, export, the trainer, augmentation and names ask the head interface; importing a head's
    layer module is for its loss file (and the layers package itself)."""
    head_modules = {"darkcfg.model.layers.yolo": "darkcfg.train.losses.yolo",
                    "darkcfg.model.layers.region": "darkcfg.train.losses.region",
                    "darkcfg.model.layers.detection": "darkcfg.train.losses.detection"}
    bad = []
    for path, module in _modules():
        for line, imported in _imports(path):
            if imported in head_modules and module not in (head_modules[imported], imported):
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {imported}")
        text = path.read_text()
        for needle in TYPE_TESTS:
            if re.search(needle, text) and not module.startswith("darkcfg.model.layers"):
                bad.append(f"{path.relative_to(REPO)}: tests the layer type ({needle})")
    assert not bad, "\n".join(bad)
