"""Bundle your hw2 files into ``<student_id>.zip``, the form the course's autograder reads.

Usage (from the hw2 folder)::

    python -m cs236781.submit --id STUDENT_ID [--dir .] [--out .]

Exactly the graded files are taken (``STUDENT_FILES``); a missing one stops with an error.
Parts that still raise ``NotImplementedError`` and questions still unanswered are listed as
warnings: the zip is written anyway, so that you can submit partial work.
"""

import argparse
import ast
import os
import re
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

from cs236781.answers import is_unanswered

# The only files the grader takes from a submission (the course's tools/checks.py holds the
# same list; a test keeps the two equal).
STUDENT_FILES = ("hw2/cnn.py", "hw2/classifier.py", "hw2/training.py", "hw2/answers.py")
ANSWER_NAMES = ("part4_q1", "part4_q2")
# Letters and digits of any script (names like "José" are ids too), then also _ . @ + -.
STUDENT_ID_RE = re.compile(r"^[^\W_][\w.@+-]{0,63}$")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class SubmitError(Exception):
    """The zip cannot be made; the message says what to do."""


def check_id(student_id: str) -> str:
    """``student_id`` if it is a plain id (letters, digits, ``_.@+-``), else ``SubmitError``."""
    student_id = unicodedata.normalize("NFC", student_id)
    if not STUDENT_ID_RE.match(student_id):
        raise SubmitError(
            f"invalid student id {student_id!r}: use letters, digits and _ . @ + - only "
            f"(no slashes or spaces), at most 64 characters"
        )
    return student_id


def _raises_not_implemented(node: ast.AST) -> bool:
    """Whether a function's own body (not nested functions) raises NotImplementedError."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(child, ast.Raise) and child.exc is not None:
            exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
        stack.extend(ast.iter_child_nodes(child))
    return False


def unfinished(rel: str, source: str) -> list[str]:
    """What in one file still looks unimplemented: functions raising NotImplementedError,
    answers still the stub, or a syntax error."""
    try:
        tree = ast.parse(source, filename=rel)
    except SyntaxError as e:
        return [f"{rel}: syntax error at line {e.lineno}: {e.msg}"]
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if _raises_not_implemented(child):
                    found.append(f"{rel}: {prefix}{child.name}() is not implemented")

    visit(tree, "")
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assign) or not isinstance(stmt.value, ast.Constant):
            continue
        for target in stmt.targets:
            name = getattr(target, "id", None)
            if name in ANSWER_NAMES and isinstance(stmt.value.value, str):
                if is_unanswered(stmt.value.value):
                    found.append(f"{rel}: {name} is unanswered")
    return found


def collect(folder: Path) -> dict[str, bytes]:
    """The graded files under ``folder``; ``SubmitError`` naming the first missing one."""
    files = {}
    for rel in STUDENT_FILES:
        path = folder / rel
        if path.is_symlink() or not path.is_file():
            raise SubmitError(
                f"{rel} not found in {folder.resolve()}: run this from your hw2 folder "
                f"(or pass --dir) and keep every graded file"
            )
        files[rel] = path.read_bytes()
    return files


def write_zip(files: dict[str, bytes], dest: Path) -> None:
    """Write ``files`` into the zip ``dest`` (atomically; same files, same bytes)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel in sorted(files):
                info = zipfile.ZipInfo(rel, date_time=_ZIP_DATE)
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, files[rel])
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def submit(student_id: str, folder: Path, out: Path) -> tuple[Path, list[str]]:
    """Make ``out/<student_id>.zip`` from ``folder``; return its path and the warnings."""
    check_id(student_id)
    files = collect(folder)
    warnings = []
    for rel, data in files.items():
        warnings += unfinished(rel, data.decode("utf-8", "replace"))
    dest = out / f"{student_id}.zip"
    write_zip(files, dest)
    return dest, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", required=True, dest="student_id", help="your student id")
    parser.add_argument("--dir", type=Path, default=Path("."), help="your hw2 folder")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to write the zip")
    args = parser.parse_args(argv)
    try:
        dest, warnings = submit(args.student_id, args.dir, args.out)
    except (SubmitError, OSError) as e:
        print(f"submit: {e}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"submit: warning: {w}", file=sys.stderr)
    print(f"submit: wrote {dest} ({len(STUDENT_FILES)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
