"""Time limits calibrated on the reference solution, and a self-test of the sandbox.

The first grader of a batch grades the solution's own modules (``hw2/``) in its sandbox with
generous limits and the overfit run in full (no early stop), and measures each task's CPU
time. Each task may then use ``student.FACTOR`` times that, at least ``student.FLOOR_CPU``
seconds. Every automatic check must pass on the reference: if one does not, the grader is
broken on this machine and says so instead of grading anyone.

The limits are cached per grader version and machine in ``~/.cache/hw2-kit/`` (or
``$XDG_CACHE_HOME/hw2-kit/``), so the measurement is paid once per machine.
"""

import hashlib
import json
import os
import platform
import sys
from pathlib import Path

from tools.checks import CHECKS, STUDENT_FILES
from tools.grading.collect import Submission
from tools.grading.sandbox import ROOT

GENEROUS_CPU = 120.0  # seconds per task while measuring
GENEROUS_BUDGET = 900.0


class GraderBroken(RuntimeError):
    """The reference solution does not pass in the sandbox: grading would be wrong."""


def reference_submission() -> Submission:
    """The solution's own graded modules, as a submission."""
    return Submission("reference", "dir", {rel: (ROOT / rel).read_bytes() for rel in STUDENT_FILES})


def machine_key() -> str:
    """What the measured times depend on besides the grader: the CPU and its kernels."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}|{os.cpu_count()}|{os.environ.get('ATEN_CPU_CAPABILITY', '')}"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hw2-kit"


def measure(grader) -> dict[str, float]:
    """Grade the reference solution on ``grader``'s worker; return each task's CPU limit."""
    from tools.grading.student import FACTOR, FLOOR_CPU, StudentGrader, all_tasks

    tasks = all_tasks()
    probe = StudentGrader(
        grader.worker, grader.exp, budget=GENEROUS_BUDGET,
        limits={t: GENEROUS_CPU for t in tasks}, early_stop=False,
    )  # fmt: skip
    doc = probe.grade(reference_submission())
    auto = {c.name for c in CHECKS if c.kind == "auto"}
    failed = [c for c in doc["checks"] if c["check"] in auto and c["status"] != "passed"]
    if failed:
        details = "; ".join(f"{c['check']}: {c['status']} ({c['message']})" for c in failed[:3])
        raise GraderBroken(
            f"the reference solution fails {len(failed)} check(s) in the sandbox ({details}): "
            f"the grader is broken on this machine; see the worker log"
        )
    cpu = {t: float(v.get("cpu") or 0.0) for t, v in doc["timing"].items()}
    return {t: round(max(FLOOR_CPU, FACTOR * cpu.get(t, 0.0)), 1) for t in tasks}


def load_or_measure(grader) -> dict[str, float]:
    """The cached limits of this grader and machine, or new ones measured on ``grader``."""
    from tools.grading.runner import write_atomic
    from tools.grading.student import all_tasks, grader_version

    key = hashlib.sha256(f"{grader_version()}|{machine_key()}".encode()).hexdigest()[:16]
    path = cache_dir() / f"limits-{key}.json"
    try:
        limits = json.loads(path.read_text())
        if isinstance(limits, dict) and set(limits) == set(all_tasks()):
            return {t: float(v) for t, v in limits.items()}
    except (OSError, ValueError, TypeError):
        pass
    limits = measure(grader)
    try:
        write_atomic(path, (json.dumps(limits, indent=1) + "\n").encode())
    except OSError:
        pass  # an unwritable cache only costs the measurement next time
    print(f"autograde: time limits calibrated on the reference solution: {describe(limits)}",
          file=sys.stderr)  # fmt: skip
    return limits


def describe(limits: dict[str, float]) -> str:
    """One line: the limits, grouped."""
    short = [v for t, v in limits.items() if t != "overfit"]
    text = f"{min(short):g}-{max(short):g} s CPU per check" if short else ""
    if "overfit" in limits:
        text += f", overfit {limits['overfit']:g} s"
    return text
