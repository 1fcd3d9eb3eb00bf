"""What the tools that make committed files share: compare with disk, write, report."""

import sys
from collections.abc import Iterable
from pathlib import Path


def differences(
    files: dict[Path, bytes], on_disk: Iterable[Path], root: Path, stray: str = "not generated"
) -> list[str]:
    """Files of ``files`` missing or differing on disk, and files of ``on_disk`` (what the
    tool owns there now) that it would not produce; paths shown relative to ``root``."""
    problems = []
    for path, data in files.items():
        if not path.is_file():
            problems.append(f"missing: {path.relative_to(root)}")
        elif path.read_bytes() != data:
            problems.append(f"differs: {path.relative_to(root)}")
    for path in sorted(on_disk):
        if path not in files:
            problems.append(f"{stray}: {path.relative_to(root)}")
    return problems


def report_problems(tool: str, problems: list[str], what: str, fix: str) -> None:
    """Print what a ``--check`` found out of date and how to fix it, on stderr."""
    print(f"{tool}: {len(problems)} {what} out of date:", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    print(fix, file=sys.stderr)


def write_changed(files: dict[Path, bytes]) -> None:
    """Write the files whose bytes differ from disk (unchanged files keep their mtime)."""
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
