"""Benchmark ``tools/release.py`` against ``nbgrader generate_assignment`` alone.

Usage:
    python bench/bench_release.py [--runs 5]

Both commands run from the course root as fresh processes, alternately, on the same staged
notebook and the same gradebook: the release tool (strip the modules, convert the notebook,
stage, generate, assemble ``release/hw2/``) and ``nbgrader generate_assignment hw2 --force``
on the folder the tool staged. Reports the median wall times and their ratio (goal: at most
1.5), and writes bench/results/release.json. The tool rewrites only files that differ, so
the committed release is left as it was.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "release.json"
GOAL = 1.5
BIN = Path(sys.executable).parent
RELEASE_CMD = [sys.executable, "tools/release.py"]
NBGRADER_CMD = [str(BIN / "nbgrader"), "generate_assignment", "hw2", "--force"]


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default 5)")
    args = parser.parse_args(argv)

    timed(RELEASE_CMD)  # stage nbgrader's source folder and warm the file cache
    release_times, nbgrader_times = [], []
    for _ in range(args.runs):
        nbgrader_times.append(timed(NBGRADER_CMD))
        release_times.append(timed(RELEASE_CMD))  # last, so nbgrader_build/ is the tool's
    release_s = statistics.median(release_times)
    nbgrader_s = statistics.median(nbgrader_times)
    ratio = release_s / nbgrader_s
    python = shlex.quote(os.path.relpath(sys.executable, ROOT))
    command = f"{python} bench/bench_release.py --runs {args.runs}"
    result = {
        "benchmark": "tools/release.py vs nbgrader generate_assignment alone",
        "command": command,
        "runs": args.runs,
        "release_s": round(release_s, 3),
        "nbgrader_generate_assignment_s": round(nbgrader_s, 3),
        "ratio": round(ratio, 3),
        "goal_ratio_at_most": GOAL,
        "met": ratio <= GOAL,
        "release_times_s": [round(t, 3) for t in release_times],
        "nbgrader_times_s": [round(t, 3) for t in nbgrader_times],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"release.py {release_s:.2f} s vs nbgrader generate_assignment {nbgrader_s:.2f} s "
        f"(median of {args.runs}): ratio {ratio:.2f} (goal <= {GOAL}) "
        f"{'met' if ratio <= GOAL else 'NOT met'}"
    )
    print(f"reproduce: {command}")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
