"""Reading Darknet .cfg text: sections, options, and Darknet's number parsing.

Mirrors parser.c:read_cfg / option_list.c:read_option: every space, tab, CR and LF in a line is removed
(`strip`), lines starting with `#` or `;` are comments, `[type]` opens a section, anything else is split
at the first `=`. Option lookup returns the first match. Numbers read like C's atoi/atof (a numeric
prefix; trailing junk such as an inline `#comment` is ignored). Unlike the reference, lines it would
reject or misread (no `=`, an empty value, an option before the first section, a value with no number at
all) are errors, and every option nobody reads is reported as a `CfgWarning` naming file:line.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from darkcfg.errors import CfgError, CfgWarning

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.I)


def atoi(text: str) -> Optional[int]:
    """C atoi on an already stripped string: the integer prefix, or None when there is none."""
    m = _INT_RE.match(text)
    return int(m.group()) if m else None


def atof(text: str) -> Optional[float]:
    """C atof on an already stripped string: the float prefix, or None when there is none."""
    m = _FLOAT_RE.match(text)
    return float(m.group()) if m else None


@dataclass
class Option:
    key: str
    value: str
    line: int
    used: bool = False


@dataclass
class Section:
    """One `[type]` block of a cfg file with its options in file order.

    Lookups mark options as used (first match wins, as option_find does); `unused()` lists the rest.
    Every getter raises `CfgError` naming file:line, layer index and type when a value is unusable.
    """

    type: str
    line: int
    file: str
    options: list[Option] = field(default_factory=list)
    index: int = -1  # Darknet layer index (-1 for [net])

    # -- locating -----------------------------------------------------------------------------------
    def where(self, line: Optional[int] = None) -> str:
        loc = f"{self.file}:{self.line if line is None else line}"
        what = "[net]" if self.index < 0 else f"layer {self.index} [{self.type}]"
        return f"{loc}: {what}"

    def error(self, message: str, line: Optional[int] = None) -> CfgError:
        return CfgError(f"{self.where(line)}: {message}")

    def warn(self, message: str, line: Optional[int] = None) -> None:
        warnings.warn(f"{self.where(line)}: {message}", CfgWarning, stacklevel=3)

    # -- raw access ---------------------------------------------------------------------------------
    def find(self, key: str) -> Optional[Option]:
        """The first option named `key` (marking every option of that name as read), or None."""
        found = None
        for opt in self.options:
            if opt.key == key:
                opt.used = True
                found = found or opt
        return found

    def has(self, key: str) -> bool:
        return any(o.key == key for o in self.options)

    def unused(self) -> list[Option]:
        return [o for o in self.options if not o.used]

    # -- typed getters ------------------------------------------------------------------------------
    def str(self, key: str, default: Optional[str] = None) -> Optional[str]:
        opt = self.find(key)
        return default if opt is None else opt.value

    def int(self, key: str, default: Optional[int] = None) -> Optional[int]:
        opt = self.find(key)
        if opt is None:
            return default
        value = atoi(opt.value)
        if value is None:
            raise self.error(f"option '{key}': expected an integer, got '{opt.value}'", opt.line)
        self._junk(opt, _INT_RE)
        return value

    def float(self, key: str, default: Optional[float] = None) -> Optional[float]:
        opt = self.find(key)
        if opt is None:
            return default
        value = atof(opt.value)
        if value is None:
            raise self.error(f"option '{key}': expected a number, got '{opt.value}'", opt.line)
        self._junk(opt, _FLOAT_RE)
        return value

    def ints(self, key: str, default: Optional[list[int]] = None) -> Optional[list[int]]:
        """A comma-separated integer list (`layers=-1,61`); a `#` ends the list as in parse_yolo_mask."""
        return self._list(key, default, atoi, "integer")

    def floats(self, key: str, default: Optional[list[float]] = None) -> Optional[list[float]]:
        return self._list(key, default, atof, "number")

    def _list(self, key: str, default: Optional[list], conv: object, what: str) -> Optional[list]:
        opt = self.find(key)
        if opt is None:
            return default
        text = opt.value.split("#", 1)[0]
        out = []
        for item in text.split(","):
            value = conv(item)  # type: ignore[operator]
            if value is None:
                raise self.error(
                    f"option '{key}': expected a comma-separated list of {what}s, got '{opt.value}'", opt.line
                )
            out.append(value)
        return out

    def _junk(self, opt: Option, pattern: re.Pattern) -> None:
        rest = opt.value[pattern.match(opt.value).end():]  # type: ignore[union-attr]
        if rest and not rest.startswith("#"):
            self.warn(f"option '{opt.key}': ignoring '{rest}' after the number in '{opt.value}'", opt.line)


def parse_cfg_text(text: str, file: str = "<cfg>") -> list[Section]:
    """Split cfg text into sections, as parser.c:read_cfg does, but strictly.

    Returns:
        the sections in file order; the first is `[net]`/`[network]`, the others get Darknet
        layer indices 0..n-1.
    """
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"[ \t\r\n]", "", raw)  # utils.c:strip removes these anywhere in the line
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(f"{file}:{number}: unparsable section header '{raw.strip()}' (expected '[type]')")
            sections.append(Section(type=line[1:-1], line=number, file=file, index=len(sections) - 1))
            continue
        if not sections:
            raise CfgError(f"{file}:{number}: option '{line}' appears before the first [section]")
        key, sep, value = line.partition("=")
        if not sep or not key or not value:
            raise CfgError(f"{file}:{number}: unparsable line '{raw.strip()}' (expected key=value)")
        sections[-1].options.append(Option(key, value, number))
    if not sections:
        raise CfgError(f"{file}: no sections (expected [net] followed by layers)")
    if sections[0].type not in ("net", "network"):
        first = sections[0]
        raise CfgError(f"{file}:{first.line}: first section must be [net] or [network], got [{first.type}]")
    return sections


def read_cfg(source: Union[str, Path]) -> tuple[str, str]:
    """Read a cfg file; returns (text, display name). Raises CfgError for a missing/unreadable file."""
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CfgError(f"{path}: cannot read cfg file ({e.strerror or e})") from None
    return raw.decode("utf-8-sig", errors="replace"), str(path)  # -sig: a BOM (Windows editors) is dropped


def report_unused(sections: list[Section]) -> None:
    """Warn once per option that no builder read (option_list.c:option_unused)."""
    for sec in sections:
        for opt in sec.unused():
            sec.warn(f"unused option '{opt.key}={opt.value}'", opt.line)


def edit_cfg_text(text: str, file: str, edits: dict[tuple[int, str], str]) -> str:
    """The cfg text with options set: `edits` maps (section position, key) -> value, the position counting
    sections in file order from 0 ([net] is 0, layer i is i + 1). The option's first line (the one the reference
    reads) is replaced; a missing option is added right after its section's header. Every other line, comments
    and line endings included, stays as it was; the file itself is never changed."""
    sections = parse_cfg_text(text, file)
    replace: dict[int, str] = {}
    insert: dict[int, list[str]] = {}
    for (pos, key), value in edits.items():
        if not 0 <= pos < len(sections):
            raise CfgError(f"{file}: no section {pos} to set {key}={value} in (the cfg has {len(sections)})")
        sec = sections[pos]
        opt = next((o for o in sec.options if o.key == key), None)
        if opt is not None:
            replace[opt.line] = f"{key}={value}"
        else:
            insert.setdefault(sec.line, []).append(f"{key}={value}")
    out = []
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        end = "\r\n" if line.endswith("\r\n") else "\n"
        out.append(replace[n] + end if n in replace else line if line.endswith(("\n", "\r")) else line + "\n")
        out += [added + end for added in insert.get(n, [])]
    return "".join(out)
