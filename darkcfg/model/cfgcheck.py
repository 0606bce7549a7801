"""A cfg's detection heads against a dataset's class count, without building the network (a cfg whose filters do
not match is the usual problem, and building stops at the first one): every [yolo], [Gaussian_yolo], [region]
and [detection] section's `classes`, the filters (or [connected] outputs) of the layer before it, `mask`
indices against `num`, and the `anchors` count. `fix_cfg_text` rewrites classes and filters (the only two
things a class-count change needs) line by line, leaving every other line of the file as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from darkcfg.errors import CfgError
from darkcfg.model.cfg import Section, atoi, parse_cfg_text

HEAD_TYPES = ("yolo", "Gaussian_yolo", "region", "detection")
DEFAULT_CLASSES = {"yolo": 20, "Gaussian_yolo": 20, "region": 20, "detection": 1}


@dataclass
class CfgProblem:
    """One problem: the line (file:line), what, and whether `fix_cfg_text` repairs it."""

    where: str
    kind: str
    message: str
    fixable: bool
    blocking: bool = True


def _value(sec: Section, key: str) -> Optional[str]:
    opt = sec.find(key)
    return opt.value if opt else None


def _int(sec: Section, key: str, default: int) -> int:
    v = _value(sec, key)
    n = atoi(v) if v is not None else None
    return default if n is None else n


def _ints(sec: Section, key: str) -> Optional[list[int]]:
    v = _value(sec, key)
    if v is None:
        return None
    out = [atoi(t) for t in v.split("#")[0].split(",") if t != ""]
    return [n for n in out if n is not None]


def expected_outputs(sec: Section, classes: int) -> tuple[str, int]:
    """(the option of the layer before that must match, its value) for a head section with `classes`."""
    num = _int(sec, "num", 1)
    if sec.type in ("yolo", "Gaussian_yolo"):
        mask = _ints(sec, "mask")
        n = len(mask) if mask is not None else num
        return "filters", ((9 if sec.type == "Gaussian_yolo" else 5) + classes) * n
    if sec.type == "region":
        return "filters", num * (_int(sec, "coords", 4) + 1 + classes)
    side = _int(sec, "side", 7)
    return "output", side * side * ((1 + _int(sec, "coords", 1)) * num + classes)


def check_cfg_heads(text: str, file: str, classes: Optional[int]) -> list[CfgProblem]:
    """Problems of the cfg's heads; `classes` is the dataset's class count (None: only the cfg's own
    consistency is checked)."""
    try:
        sections = parse_cfg_text(text, file)
    except CfgError as e:
        return [CfgProblem(file, "cfg syntax", str(e), False)]
    problems = []
    for k, sec in enumerate(sections):
        if sec.type not in HEAD_TYPES:
            continue
        where = f"{file}:{sec.line}"
        own = _int(sec, "classes", DEFAULT_CLASSES[sec.type])
        cls_opt = sec.find("classes")
        if classes is not None and own != classes:
            problems.append(CfgProblem(f"{file}:{cls_opt.line if cls_opt else sec.line}", "cfg classes",
                                       f"[{sec.type}] layer {sec.index} has classes={own}, the dataset {classes}",
                                       True))
        want = classes if classes is not None else own
        key, expected = expected_outputs(sec, want)
        prev = sections[k - 1] if k > 1 else None
        kinds = ("convolutional", "conv") if key == "filters" else ("connected", "conn")
        if prev is None or prev.type not in kinds:
            before = prev.type if prev else "net"
            problems.append(CfgProblem(where, "cfg layer before head", f"[{sec.type}] layer {sec.index} follows "
                                       f"[{before}], expected a [{kinds[0]}] with {key}={expected}", False))
        else:
            have = _int(prev, key, 1)
            opt = prev.find(key)
            if have != expected:
                problems.append(CfgProblem(f"{file}:{opt.line if opt else prev.line}", f"cfg {key}",
                                           f"[{prev.type}] layer {prev.index} has {key}={have}, expected {expected} "
                                           f"for [{sec.type}] layer {sec.index} with classes={want}", True))
        if sec.type in ("yolo", "Gaussian_yolo", "region"):
            num = _int(sec, "num", 1)
            mask = _ints(sec, "mask") if sec.type != "region" else None
            bad = [m for m in (mask or []) if not 0 <= m < num]
            if bad:
                opt = sec.find("mask")
                problems.append(CfgProblem(f"{file}:{opt.line if opt else sec.line}", "cfg mask",
                                           f"[{sec.type}] layer {sec.index}: mask index {bad[0]} is not below "
                                           f"num={num}", False))
            anchors = _value(sec, "anchors")
            count = len([t for t in anchors.split(",") if t]) if anchors else 0
            if anchors and count < 2 * num:
                opt = sec.find("anchors")
                problems.append(CfgProblem(f"{file}:{opt.line if opt else sec.line}", "cfg anchors",
                                           f"[{sec.type}] layer {sec.index}: {count} anchor values for num={num} "
                                           f"(expected {2 * num}; the reference fills the rest with 0.5)", False,
                                           blocking=False))
    return problems


def fix_cfg_text(text: str, file: str, classes: int) -> str:
    """The cfg text with every head's `classes` and the filters/outputs of the layer before it set for `classes`
    (lines are replaced in place; a missing `classes` line is added after the head's header)."""
    sections = parse_cfg_text(text, file)
    lines = text.splitlines(keepends=True)
    replace: dict[int, str] = {}
    insert: dict[int, str] = {}
    for k, sec in enumerate(sections):
        if sec.type not in HEAD_TYPES:
            continue
        opt = sec.find("classes")
        if opt:
            replace[opt.line] = f"classes={classes}"
        else:
            insert[sec.line] = f"classes={classes}"
        key, expected = expected_outputs(sec, classes)
        prev = sections[k - 1] if k > 1 else None
        if prev is not None:
            popt = prev.find(key)
            if popt:
                replace[popt.line] = f"{key}={expected}"
            else:
                insert[prev.line] = f"{key}={expected}"
    out = []
    for n, line in enumerate(lines, 1):
        end = "\r\n" if line.endswith("\r\n") else "\n"
        out.append(replace[n] + end if n in replace else line)
        if n in insert:
            out.append(insert[n] + end)
    return "".join(out)
