"""The notebook's LaTeX macros, so that feedback pages render answers as the notebook does.

The one place they are defined is the first cell of the source notebook
(``source/hw2/Part4_CNN.py``), as in the course's own notebook: ``\\newcommand`` lines inside
``$$ ... $$``. MathJax in Jupyter reads them there; latex2mathml knows no ``\\newcommand``,
so the feedback pages expand each macro in the TeX before converting it.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SOURCE_NOTEBOOK = Path(__file__).resolve().parents[2] / "source" / "hw2" / "Part4_CNN.py"
_NEWCOMMAND = re.compile(r"\\(?:re)?newcommand\s*\{\\([A-Za-z]+)\}\s*(?:\[(\d)\])?\s*")
_MAX_PASSES = 8  # nested macros (a macro whose body uses another) expand in a few passes


@dataclass(frozen=True)
class Macro:
    """One ``\\newcommand{\\name}[nargs]{body}``."""

    name: str
    nargs: int
    body: str


def _group(text: str, start: int) -> tuple[str, int] | None:
    """The balanced ``{...}`` group starting at ``text[start]``: its content and end index."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "\\":
            continue
        if text[i] == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def parse_macros(tex: str) -> dict[str, Macro]:
    """Every ``\\newcommand`` of ``tex`` by name."""
    macros = {}
    for m in _NEWCOMMAND.finditer(tex):
        group = _group(tex, m.end())
        if group is not None:
            macros[m.group(1)] = Macro(m.group(1), int(m.group(2) or 0), group[0])
    return macros


def _first_markdown_cell(source: str) -> str:
    """The text of the first markdown cell of a jupytext percent-format notebook."""
    lines, inside = [], False
    for line in source.splitlines():
        if line.startswith("# %%"):
            if inside:
                break
            inside = "[markdown]" in line
            continue
        if inside:
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
    return "\n".join(lines)


@cache
def notebook_macros(path: Path = SOURCE_NOTEBOOK) -> dict[str, Macro]:
    """The macros the notebook's first cell defines."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the source notebook, whose first cell defines the macros")
    return parse_macros(_first_markdown_cell(path.read_text(encoding="utf-8")))


def _argument(tex: str, i: int) -> tuple[str, int] | None:
    """One macro argument at ``tex[i:]``: a ``{group}``, a control word or one character."""
    while i < len(tex) and tex[i] == " ":
        i += 1
    if i >= len(tex):
        return None
    if tex[i] == "{":
        return _group(tex, i)
    if tex[i] == "\\":
        word = re.match(r"\\([A-Za-z]+|.)", tex[i:])
        return word.group(0), i + len(word.group(0))
    return tex[i], i + 1


def _nth(args: list[str], ref: re.Match) -> str:
    n = int(ref.group(1))
    return args[n - 1] if n <= len(args) else ref.group(0)


def _expand_once(tex: str, macros: dict[str, Macro]) -> str:
    out, i = [], 0
    call = re.compile(r"\\([A-Za-z]+)")
    while True:
        m = call.search(tex, i)
        if m is None:
            out.append(tex[i:])
            return "".join(out)
        out.append(tex[i : m.start()])
        macro = macros.get(m.group(1))
        if macro is None:
            out.append(m.group(0))
            i = m.end()
            continue
        args, j = [], m.end()
        for _ in range(macro.nargs):
            arg = _argument(tex, j)
            if arg is None:
                break
            args.append(arg[0])
            j = arg[1]
        if len(args) < macro.nargs:  # an incomplete call is left as written
            out.append(m.group(0))
            i = m.end()
            continue
        body = re.sub(r"#([1-9])", lambda g, a=args: _nth(a, g), macro.body)
        out.append("{" + body + "}")
        i = j


def expand_macros(tex: str, macros: dict[str, Macro] | None = None) -> str:
    """``tex`` with every call of the notebook's macros replaced by its definition."""
    macros = notebook_macros() if macros is None else macros
    for _ in range(_MAX_PASSES):
        expanded = _expand_once(tex, macros)
        if expanded == tex:
            break
        tex = expanded
    return tex
