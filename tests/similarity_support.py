"""Planted copies for the similarity tests and benchmark: what a student who copies does to
the code, each a function of the submission files it copies (``{"hw2/cnn.py": text, ...}``)."""

import ast
import builtins
import hashlib
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.checks import STUDENT_FILES  # noqa: E402

SOLUTION = REPO / "examples" / "submissions" / "correct"
FIXTURES = REPO / "tests" / "fixtures" / "similarity"
INDEPENDENT = ("loops", "compact", "helpers")  # written independently of each other and hw2/
TEMPLATE_STYLE = REPO / "tests" / "fixtures" / "template" / "w26"  # on the course's template
CODE = tuple(rel for rel in STUDENT_FILES if rel != "hw2/answers.py")


def read(folder: Path) -> dict[str, str]:
    """The graded files of a submission folder ``<id>/`` (``<id>/hw2/cnn.py``...)."""
    return {rel: (folder / rel).read_text() for rel in STUDENT_FILES if (folder / rel).is_file()}


def write(root: Path, sid: str, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / sid / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / sid / rel).write_text(text)
    return root / sid


def _local_names(tree: ast.Module) -> set[str]:
    """Names bound inside function bodies (variables, loop targets, comprehension targets),
    other than parameters, module-level names and builtins."""
    module_level = set()
    for node in tree.body:
        for sub in ast.walk(node) if isinstance(node, ast.Import | ast.ImportFrom) else []:
            if isinstance(sub, ast.alias):
                module_level.add((sub.asname or sub.name).split(".")[0])
        if isinstance(node, ast.Assign | ast.AnnAssign):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name):
                    module_level.add(sub.id)
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            module_level.add(node.name)
    params, stored = set(), set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.Lambda):
            for arg in ast.walk(fn.args):
                if isinstance(arg, ast.arg):
                    params.add(arg.arg)
            for sub in ast.walk(fn):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    stored.add(sub.id)
    return stored - params - module_level - set(dir(builtins)) - {"self"}


def renamed_and_reformatted(files: dict[str, str]) -> dict[str, str]:
    """Every local variable renamed, comments dropped, the code laid out anew (``ast.unparse``,
    then ruff's formatter at 60 columns when it is installed: other line breaks, trailing
    commas, quotes)."""
    out = {}
    for rel, text in files.items():
        tree = ast.parse(text)
        names = _local_names(tree)
        new = {n: "r_" + hashlib.sha256(n.encode()).hexdigest()[:6] for n in names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in new:
                node.id = new[node.id]
        code = ast.unparse(tree) + "\n"
        ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
        if Path(ruff).exists():
            done = subprocess.run(
                [ruff, "format", "--isolated", "--line-length", "60", "-"],
                input=code, capture_output=True, text=True, check=True,
            )  # fmt: skip
            code = done.stdout
        out[rel] = code
    return out


def _reverse_defs(lines: list[str], body: list[ast.stmt]) -> list[str]:
    """``lines`` with the function definitions of ``body`` (a module's or a class's) reversed
    in place: the same text, in another order."""
    defs = [n for n in body if isinstance(n, ast.FunctionDef)]
    if len(defs) < 2:
        return lines
    spans = [((n.decorator_list[0].lineno if n.decorator_list else n.lineno) - 1, n.end_lineno)
             for n in defs]  # fmt: skip
    chunks = [lines[s:e] for s, e in spans]
    out = list(lines)
    # replace from the last span to the first, so earlier indices stay valid
    for (s, e), chunk in sorted(zip(spans, reversed(chunks), strict=True), reverse=True):
        out[s:e] = chunk
    return out


def reordered(files: dict[str, str]) -> dict[str, str]:
    """The methods of every class, and the module's functions, in reverse order; the code
    itself untouched."""
    out = {}
    for rel, text in files.items():
        lines = text.split("\n")
        tree = ast.parse(text)
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
        for cls in sorted(classes, key=lambda c: c.lineno, reverse=True):
            part = lines[cls.lineno - 1 : cls.end_lineno]
            sub = ast.parse("\n".join(part))
            part = _reverse_defs(part, sub.body[0].body)
            lines[cls.lineno - 1 : cls.end_lineno] = part
        text = "\n".join(lines)
        lines = _reverse_defs(text.split("\n"), ast.parse(text).body)
        out[rel] = "\n".join(lines)
    return out


def class_source(text: str, name: str) -> tuple[int, int]:
    """The lines ``[start, end)`` of class ``name`` in ``text``."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node.lineno - 1, node.end_lineno
    raise KeyError(name)


def with_class_of(base: dict[str, str], source: dict[str, str], name: str = "ResNet"):
    """``base``'s files, with class ``name`` of cnn.py replaced by ``source``'s."""
    out = dict(base)
    mine, theirs = base["hw2/cnn.py"].split("\n"), source["hw2/cnn.py"].split("\n")
    s0, e0 = class_source(base["hw2/cnn.py"], name)
    s1, e1 = class_source(source["hw2/cnn.py"], name)
    out["hw2/cnn.py"] = "\n".join(mine[:s0] + theirs[s1:e1] + mine[e0:])
    return out


def planted(solution: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """The four planted copies of the solution, by name."""
    sol = solution or read(SOLUTION)
    return {
        "copy_verbatim": dict(sol),
        "copy_renamed": renamed_and_reformatted(sol),
        "copy_reordered": reordered(sol),
        "copy_resnet_only": with_class_of(read(FIXTURES / "loops"), sol, "ResNet"),
    }


def perturbed(files: dict[str, str], rng: random.Random) -> dict[str, str]:
    """A light perturbation, for the benchmark's many variants: a third of the local variables
    that the stub does not name renamed, and three comment lines added; the stub's lines are
    left as they are, as a student leaves them."""
    out = {}
    for rel, text in files.items():
        stub = REPO / "release" / "hw2" / rel
        stub_words = set(re.findall(r"\w+", stub.read_text())) if stub.is_file() else set()
        try:
            names = sorted(_local_names(ast.parse(text)) - stub_words)
        except SyntaxError:
            names = []
        for name in rng.sample(names, len(names) // 3):
            text = re.sub(rf"\b{name}\b", f"{name}_{rng.randrange(1000)}", text)
        lines = text.split("\n")
        for _ in range(3):
            i = rng.randrange(len(lines))
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            lines.insert(i, f"{indent}# note {rng.randrange(10**6)}")
        out[rel] = "\n".join(lines)
    return out
