"""A cfg's detection heads against a dataset's class count, without building the network (a cfg whose filters do
not match is the usual problem, and building stops at the first one). Every head section is asked through the
layer registry (`layer_class`): its `classes`, what it needs of the layer before it for that count
(`DetectionHead.expected_input`), and what is wrong with the section itself (`section_problems`: masks,
anchors). `fix_cfg_text` sets classes and the layer before's filters (the only two things a class-count change
needs) through the one cfg-text editor, `darkcfg.model.cfg.edit_cfg_text`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from darkcfg.errors import CfgError
from darkcfg.model.cfg import Section, edit_cfg_text, parse_cfg_text
from darkcfg.model.layers import layer_class


@dataclass
class CfgProblem:
    """One problem: the line (file:line), what, and whether `fix_cfg_text` repairs it."""

    where: str
    kind: str
    message: str
    fixable: bool
    blocking: bool = True


def _heads(sections: list[Section]) -> list[tuple[int, Section, type]]:
    """(position, section, head class) of every detection head section."""
    out = []
    for k, sec in enumerate(sections):
        cls = layer_class(sec.type)
        if cls is not None and getattr(cls, "is_head", False):
            out.append((k, sec, cls))
    return out


def check_cfg_heads(text: str, file: str, classes: Optional[int]) -> list[CfgProblem]:
    """Problems of the cfg's heads; `classes` is the dataset's class count (None: only the cfg's own
    consistency is checked)."""
    try:
        sections = parse_cfg_text(text, file)
    except CfgError as e:
        return [CfgProblem(file, "cfg syntax", str(e), False)]
    problems = []
    for k, sec, head in _heads(sections):
        try:
            problems += _check_head(sections, k, sec, head, classes)
        except CfgError as e:
            problems.append(CfgProblem(f"{file}:{sec.line}", "cfg syntax", str(e), False))
    return problems


def _check_head(sections: list[Section], k: int, sec: Section, head: type,
                classes: Optional[int]) -> list[CfgProblem]:
    file, name = sec.file, f"[{sec.type}] layer {sec.index}"
    problems = []
    own = sec.int("classes", head.default_classes)
    cls_opt = sec.find("classes")
    if classes is not None and own != classes:
        problems.append(CfgProblem(f"{file}:{cls_opt.line if cls_opt else sec.line}", "cfg classes",
                                   f"{name} has classes={own}, the dataset {classes}", True))
    want = classes if classes is not None else own
    spec = head.expected_input(sec, want)
    prev = sections[k - 1] if k > 1 else None
    if prev is None or prev.type not in spec.layers:
        before = prev.type if prev else "net"
        problems.append(CfgProblem(f"{file}:{sec.line}", "cfg layer before head", f"{name} follows [{before}], "
                                   f"expected a [{spec.layers[0]}] with {spec.key}={spec.value}", False))
    else:
        have = prev.int(spec.key, 1)
        opt = prev.find(spec.key)
        if have != spec.value:
            problems.append(CfgProblem(f"{file}:{opt.line if opt else prev.line}", f"cfg {spec.key}",
                                       f"[{prev.type}] layer {prev.index} has {spec.key}={have}, expected "
                                       f"{spec.value} for {name} with classes={want}", True))
    for p in head.section_problems(sec):
        problems.append(CfgProblem(f"{file}:{p.line}", p.kind, f"{name}: {p.message}", False, p.blocking))
    return problems


def fix_cfg_text(text: str, file: str, classes: int) -> str:
    """The cfg text with every head's `classes` and the filters/outputs of the layer before it set for `classes`
    (lines are replaced in place; a missing line is added after its section's header)."""
    sections = parse_cfg_text(text, file)
    edits: dict[tuple[int, str], str] = {}
    for k, sec, head in _heads(sections):
        edits[(k, "classes")] = str(classes)
        if k > 1:
            spec = head.expected_input(sec, classes)
            edits[(k - 1, spec.key)] = str(spec.value)
    return edit_cfg_text(text, file, edits)
