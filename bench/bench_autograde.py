"""Benchmark the sandboxed autograder against `nbgrader autograde` and against the floor.

Usage:
    python bench/bench_autograde.py [--n 40] [--nbgrader-n 40] [--workers 2]

Builds one scratch nbgrader course (``tools/release.py``) with N correct submissions laid out
as ``nbgrader collect`` leaves them (``submitted/<id>/hw2/Part4_CNN.ipynb`` beside the package
``submitted/<id>/hw2/hw2/*.py``), and grades that same course directory three ways, each as a
child process whose wall time and peak memory (summed RSS of its process tree, sampled every
0.1 s) are measured:

* ``autograde``: ``tools/autograde.py course/submitted`` with ``--workers`` sandboxed workers
  and ``--no-similarity`` (40 identical submissions are the similarity report's worst case;
  ``bench/bench_similarity.py`` measures it);
* ``nbgrader``: ``nbgrader autograde hw2`` in the course, on the first ``--nbgrader-n``
  submissions (extrapolated linearly to N when fewer, and said so);
* ``floor``: all checks on the solution, N times, in one warm process per worker (N / workers
  each, in parallel), without isolation, with the parent's comparisons, the overfit run
  stopped at the first epoch that passes, as the autograder does.

Goals (issue 9): at least 10x faster than nbgrader, within 1.5x of the floor.
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

from tools.grading.memcap import process_tree  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "autograde.json"
EXAMPLES = ROOT / "examples" / "submissions"


def tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and all its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                total += int(f.read().rsplit(")", 1)[1].split()[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
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
    import torch

    torch.set_num_threads(1)
    from tools.grading import compare, harness
    from tools.grading.student import all_tasks

    exp = compare.Expected()
    tasks = [t for t in all_tasks() if not t.startswith("import:")]

    def outputs_of(results: dict) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            harness.save_results(results, Path(tmp))
            return {p.name: p.read_bytes() for p in Path(tmp).iterdir()}

    def snapshot(epoch: int, state: dict) -> bool:  # the parent's early stop, in-process
        passed, _ = compare.grade_outputs("overfit", outputs_of(state), exp, {})
        return not passed

    for _ in range(n):
        for task in tasks:
            results = harness.run_task(task, {}, snapshot if task == "overfit" else None)
            if task in compare.GRADERS:
                passed, message = compare.grade_outputs(task, outputs_of(results), exp, {})
                assert passed, (task, message)


def floor_parallel(n: int, workers: int) -> dict:
    """``workers`` floor processes sharing the ``n`` submissions; the wall time of all."""
    share = [n // workers + (i < n % workers) for i in range(workers)]
    cmds = [[sys.executable, "bench/bench_autograde.py", "--floor-only", str(k)] for k in share]
    start = time.monotonic()
    runs = [None] * workers
    threads = [threading.Thread(target=lambda i=i: runs.__setitem__(i, measure(cmds[i])))
               for i in range(workers)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": round(time.monotonic() - start, 2), "processes": runs,
            "returncode": max(r["returncode"] for r in runs)}  # fmt: skip


def nbgrader_course(tmp: Path, n: int) -> tuple[Path, list[str]]:
    """A scratch nbgrader course, the assignment generated, ``n`` correct students submitted
    in nbgrader's own layout (the released files, the graded modules from the solution)."""
    from tools import release
    from tools.checks import STUDENT_FILES

    course = tmp / "course"
    files = release.build(ROOT, course)
    ids = [f"s{i:03d}" for i in range(n)]
    for sid in ids:
        dest = course / "submitted" / sid / "hw2"
        for rel, data in files.items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(data)
        for rel in STUDENT_FILES:
            shutil.copyfile(ROOT / rel, dest / rel)
    return course, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--nbgrader-n", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--floor-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_only:
        floor_main(args.floor_only)
        return 0
    py = sys.executable
    report: dict = {"n": args.n, "workers": args.workers, "cpus": os.cpu_count(),
                    "submissions": "correct, in nbgrader's collected layout"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        tmp = Path(tmp)
        course, ids = nbgrader_course(tmp, args.n)
        print(f"autograde: {args.n} submissions, {args.workers} workers ...", flush=True)
        report["autograde"] = measure([py, "tools/autograde.py", str(course / "submitted"),
                                       "--out", str(tmp / "out"), "--quiet", "--workers",
                                       str(args.workers), "--no-similarity"])  # fmt: skip
        graded = json.loads((tmp / "out" / "grades.json").read_text())["students"]
        report["autograde"]["scores"] = sorted({v["score"] for v in graded.values()})
        print(f"floor: {args.n} x all checks on the solution, {args.workers} processes ...",
              flush=True)  # fmt: skip
        report["floor"] = floor_parallel(args.n, args.workers)
        k = min(args.nbgrader_n, args.n)
        print(f"nbgrader: {k} of the same submissions ...", flush=True)
        for sid in ids[k:]:  # nbgrader grades every folder of submitted/: keep only k
            shutil.move(course / "submitted" / sid, tmp / sid)
        env = dict(os.environ, HW2_OFFLINE_DATA="1",
                   PATH=str(Path(py).parent) + os.pathsep + os.environ.get("PATH", ""))  # fmt: skip
        nb = measure([str(Path(py).parent / "nbgrader"), "autograde", "hw2", "--force",
                      f"--CourseDirectory.root={course}"], cwd=course, env=env)  # fmt: skip
        nb.update(measured_on=k, extrapolated_seconds=round(nb["seconds"] * args.n / k, 1))
        report["nbgrader"] = nb
    ours, floor = report["autograde"]["seconds"], report["floor"]["seconds"]
    theirs = report["nbgrader"]["extrapolated_seconds"]
    report["speedup_vs_nbgrader"] = round(theirs / ours, 2)
    report["ratio_to_floor"] = round(ours / floor, 2)
    report["goals"] = {"speedup_vs_nbgrader >= 10": report["speedup_vs_nbgrader"] >= 10,
                       "ratio_to_floor <= 1.5": report["ratio_to_floor"] <= 1.5}  # fmt: skip
    report["reproduce"] = "python bench/bench_autograde.py " + " ".join(argv or sys.argv[1:])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
