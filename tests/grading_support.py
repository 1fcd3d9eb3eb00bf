"""Helpers of the autograder's tests: make submissions from the solution, run the grader."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tools.checks import STUDENT_FILES  # noqa: E402

AUTOGRADE = REPO / "tools" / "autograde.py"

requires_sandbox = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("CI"),
    reason="bubblewrap is not installed (apt-get install -y bubblewrap); required in CI",
)


def solution_files() -> dict[str, str]:
    return {rel: (REPO / rel).read_text() for rel in STUDENT_FILES}


def make_submission(
    root: Path,
    sid: str,
    replace: list[tuple[str, str, str]] = (),
    append: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    files: dict[str, str] | None = None,
) -> Path:
    """Write ``root/<sid>/hw2/...``: the solution (or ``files``), with ``replace``
    substitutions (each must apply), code appended to modules, and files dropped."""
    texts = dict(files if files is not None else solution_files())
    for rel, old, new in replace:
        assert old in texts[rel], f"{rel} no longer contains {old!r}"
        texts[rel] = texts[rel].replace(old, new)
    for rel, code in (append or {}).items():
        texts[rel] += "\n\n" + code + "\n"
    folder = root / sid
    for rel, text in texts.items():
        if rel in drop:
            continue
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def autograde(submitted: Path, out: Path, *args: str, timeout: float = 30, workers: int = 2):
    """Run the CLI as staff would; return the finished process."""
    cmd = [sys.executable, str(AUTOGRADE), str(submitted), "--out", str(out), "--quiet",
           "--timeout", str(timeout), "--workers", str(workers), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def grades(out: Path) -> dict[str, dict[str, dict]]:
    """``{student: {check: row}}`` from ``grades.json``."""
    table: dict[str, dict[str, dict]] = {}
    for row in json.loads((out / "grades.json").read_text())["rows"]:
        table.setdefault(row["student_id"], {})[row["check"]] = row
    return table


def results(out: Path, sid: str) -> dict:
    return json.loads((out / "results" / f"{sid}.json").read_text())


def outputs(out: Path, sid: str) -> dict[str, str]:
    """The captured output of each check of ``sid``."""
    return {c["check"]: c["output"] for c in results(out, sid)["checks"]}


def comparable(rows: dict[str, dict]) -> dict[str, tuple]:
    """What must not change between runs: status, points and message of each check."""
    return {check: (r["status"], r["points"], r["message"]) for check, r in rows.items()}


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def measure_in_chromium(page: str, script: str, tmp_path: Path) -> dict:
    """Lay ``page`` out in headless Chromium with ``script`` added before ``</body>`` (on a
    copy: the pages themselves carry no script); return the JSON the script put in
    ``<pre id="measured">``. Skips when Chromium is missing, except in CI."""
    import html

    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    html_path = tmp_path / f"measured-{len(list(tmp_path.glob('measured-*')))}.html"
    html_path.write_text(page.replace("</body>", script + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=3000", "--dump-dom", html_path.as_uri()]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = done.stdout.split('<pre id="measured">', 1)[1].split("</pre>", 1)[0]
    return json.loads(html.unescape(measured))
