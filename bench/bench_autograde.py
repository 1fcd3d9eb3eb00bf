"""Benchmark the sandboxed autograder against `nbgrader autograde` and against the floor.

Usage:
    python bench/bench_autograde.py [--n 40] [--nbgrader-n 4] [--workers 2]

Grades the same N generated submissions (half correct, a quarter partial, a quarter broken,
copied from examples/submissions/) three ways, each as a child process whose wall time and
peak memory (the summed RSS of its whole process tree, sampled from /proc every 0.1 s) are
measured:

* ``autograde``: ``tools/autograde.py`` with ``--workers`` sandboxed workers;
* ``nbgrader``: ``nbgrader autograde hw2`` on the release notebook, in a scratch course built
  by ``tools/release.py``; it runs on the first ``--nbgrader-n`` submissions and its time is
  extrapolated linearly to N (said so in the output);
* ``floor``: every check's task run on the solution N times in one warm process, without
  isolation, plus the parent's comparisons.

Writes bench/results/autograde.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "autograde.json"
EXAMPLES = ROOT / "examples" / "submissions"
MIX = ("correct", "correct", "partial", "broken")


def make_submissions(dest: Path, n: int) -> list[str]:
    """``n`` submissions under ``dest``, cycling through ``MIX``."""
    ids = []
    for i in range(n):
        kind = MIX[i % len(MIX)]
        sid = f"s{i:03d}_{kind}"
        shutil.copytree(EXAMPLES / kind, dest / sid)
        ids.append(sid)
    return ids


def tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields[1]), []).append(p)
        rss[p] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def measure(cmd: list[str], cwd: Path = ROOT, env: dict | None = None) -> dict:
    """Run ``cmd``; return its wall time, peak tree RSS and exit status."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    done.set()
    t.join()
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        print(out[-3000:], file=sys.stderr)
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(peak[0] / 2**20, 1),
            "returncode": proc.returncode, "command": " ".join(cmd)}  # fmt: skip


def floor_main(n: int) -> None:
    """In one warm process: every task on the solution ``n`` times, and the comparisons."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from tools.checks import CHECKS
    from tools.grading import compare, harness

    exp = compare.Expected()
    tasks = sorted({harness.task_of(c.name) for c in CHECKS})
    for _ in range(n):
        for task in tasks:
            args = {"order": np.random.default_rng().permutation(50).tolist()}
            results = harness.run_task(task, args)
            if task in compare.GRADERS:
                with tempfile.TemporaryDirectory() as tmp:
                    harness.save_results(results, Path(tmp))
                    outputs = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
                passed, message = compare.grade_outputs(task, outputs, exp, args)
                assert passed, (task, message)


def nbgrader_course(tmp: Path, ids: list[str], submitted: Path) -> Path:
    """A scratch nbgrader course with the assignment generated and ``ids`` submitted."""
    from tools import release

    course = tmp / "course"
    files = release.build(ROOT, course)
    for sid in ids:
        dest = course / "submitted" / sid / "hw2"
        for rel, data in files.items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(data)
        for path in (submitted / sid / "hw2").glob("*.py"):
            shutil.copyfile(path, dest / "hw2" / path.name)
    return course


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--nbgrader-n", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--floor-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_only:
        floor_main(args.floor_only)
        return 0
    py = sys.executable
    report: dict = {"n": args.n, "workers": args.workers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        tmp = Path(tmp)
        submitted = tmp / "submitted"
        ids = make_submissions(submitted, args.n)
        print(f"autograde: {args.n} submissions, {args.workers} workers ...", flush=True)
        report["autograde"] = measure([py, "tools/autograde.py", str(submitted), "--out",
                                       str(tmp / "out"), "--quiet", "--workers",
                                       str(args.workers)])  # fmt: skip
        print(f"floor: {args.n} x all checks on the solution, one process ...", flush=True)
        report["floor"] = measure([py, "bench/bench_autograde.py", "--floor-only", str(args.n)])
        k = min(args.nbgrader_n, args.n)
        print(f"nbgrader: {k} submissions, extrapolated to {args.n} ...", flush=True)
        course = nbgrader_course(tmp, ids[:k], submitted)
        env = dict(os.environ, HW2_OFFLINE_DATA="1",
                   PATH=str(Path(py).parent) + os.pathsep + os.environ.get("PATH", ""))  # fmt: skip
        nb = measure([str(Path(py).parent / "nbgrader"), "autograde", "hw2", "--force",
                      f"--CourseDirectory.root={course}"], env=env)  # fmt: skip
        nb.update(measured_on=k, extrapolated_seconds=round(nb["seconds"] * args.n / k, 1))
        report["nbgrader"] = nb
    ours, floor = report["autograde"]["seconds"], report["floor"]["seconds"]
    theirs = report["nbgrader"]["extrapolated_seconds"]
    report["speedup_vs_nbgrader"] = round(theirs / ours, 2)
    report["ratio_to_floor"] = round(ours / floor, 2)
    report["goals"] = {"speedup_vs_nbgrader >= 5": report["speedup_vs_nbgrader"] >= 5,
                       "ratio_to_floor <= 3": report["ratio_to_floor"] <= 3}  # fmt: skip
    report["reproduce"] = "python bench/bench_autograde.py " + " ".join(argv or sys.argv[1:])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
