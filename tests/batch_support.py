"""Helpers of the batch tests (Dask, kill and resume): run the CLI, read what it stored, and
follow the processes it started."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grading_support import REPO

from tools.grading.memcap import process_tree

EXAMPLES = REPO / "examples" / "submissions"
KINDS = ("correct", "partial", "broken", "untouched")


def cli(submitted: Path, out: Path, *args: str) -> list[str]:
    """The autograde command staff would type (with a fixed per-check timeout)."""
    return [sys.executable, str(REPO / "tools" / "autograde.py"), str(submitted), "--out",
            str(out), "--quiet", "--timeout", "60", *args]  # fmt: skip


def run_cli(submitted: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(submitted, out, *args), capture_output=True, text=True, timeout=900)


def make_batch(dest: Path, n: int) -> dict[str, str]:
    """``n`` copies of the examples under other ids: ``{student_id: example it copies}``."""
    ids = {}
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        sid = f"s{i:02d}_{kind}"
        shutil.copytree(EXAMPLES / kind, dest / sid)
        ids[sid] = kind
    return ids


def stored(out: Path) -> dict[str, dict]:
    """The results documents in ``out/results``."""
    return {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}


TIMING = ("graded_at", "seconds", "timing")  # of a document; a check's is "seconds"


def comparable(doc: dict) -> dict:
    """A results document without its timing fields."""
    doc = {k: v for k, v in doc.items() if k not in TIMING}
    doc["checks"] = [{k: v for k, v in c.items() if k != "seconds"} for c in doc["checks"]]
    return doc


def graded_now(stdout: str) -> int:
    """How many students the run graded itself (its last line says so)."""
    found = re.search(r"\((\d+) now on the ", stdout.strip().splitlines()[-1])
    assert found, stdout
    return int(found[1])


def wait_for(predicate, what: str, limit: float = 120.0, every: float = 0.2):
    """Poll ``predicate`` until it returns something true; fail the test after ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"gave up waiting for {what}")


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of ``pid``, or None when it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> set[tuple[int, int]]:
    """``(pid, start time)`` of every process below ``pid`` (the start time tells a process
    from a later one that reuses its pid)."""
    return {(p, st[1]) for p in process_tree(pid)[1:] if (st := _stat(p))}


def still_running(procs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of ``procs`` that still run (same pid, same start time)."""
    return {(p, start) for p, start in procs if (st := _stat(p)) and st[1] == start}


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return []
