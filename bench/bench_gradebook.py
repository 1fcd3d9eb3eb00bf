"""Benchmark the gradebook tools on a class of N students, on SQLite and on PostgreSQL.

Usage:
    python bench/bench_gradebook.py [--n 300] [--out OUT]

Grades the example submissions once (or takes the results of ``--out``), copies their
results documents to N students, and times, on each database: the first sync (nbgrader's
generate_assignment records the assignment, then every student in one transaction, and the
formgrader's notebooks), a re-sync (every grade updated in place), the import of N TAs'
rows, the Canvas CSV and Gradescope's N results.json. PostgreSQL is started by the tests'
helper in a temporary folder. Writes bench/results/gradebook.json.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
RESULTS = ROOT / "bench" / "results" / "gradebook.json"

from tools.grading import exports, gradebook  # noqa: E402


def class_of(n: int, examples_out: Path, out: Path) -> list[str]:
    """``out`` with the examples' results copied to ``n`` students."""
    docs = [json.loads(p.read_text()) for p in sorted((examples_out / "results").glob("*.json"))]
    (out / "results").mkdir(parents=True)
    ids = [f"s{i:04d}" for i in range(n)]
    for i, sid in enumerate(ids):
        doc = dict(docs[i % len(docs)], student_id=sid)
        (out / "results" / f"{sid}.json").write_text(json.dumps(doc))
    summary = {"students": {sid: {} for sid in ids}, "skipped": []}
    (out / "grades.json").write_text(json.dumps(summary))
    return ids


def run(url: str, out: Path, ids: list[str], tmp: Path) -> dict[str, float]:
    times = {}

    def timed(name, fn):
        start = time.perf_counter()
        fn()
        times[name] = round(time.perf_counter() - start, 2)

    course = tmp / "course"
    timed("first_sync_s", lambda: gradebook.sync(out, url, course=course, progress=False))
    timed("resync_s", lambda: gradebook.sync(out, url, course=course, progress=False))
    sheet = tmp / "manual.csv"
    sheet.write_text("student_id,part4_q1,part4_q2\n" + "".join(f"{s},4,3.5\n" for s in ids))
    timed("import_manual_s", lambda: gradebook.import_manual(sheet, url))
    roster = tmp / "roster.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section\n"
                      + "".join(f"S {s},{i},{i},{s},A\n" for i, s in enumerate(ids)))  # fmt: skip

    def canvas():
        docs, grades = exports.load(out, url)
        rows = exports.read_roster(roster, "SIS Login ID")
        exports.canvas_csv(docs, grades, rows, "SIS Login ID", "hw2", "1")

    def gradescope():
        docs, grades = exports.load(out, url)
        exports.write(exports.gradescope(docs, grades), tmp / "gradescope")

    timed("canvas_s", canvas)
    timed("gradescope_s", gradescope)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="students (default 300)")
    parser.add_argument("--out", type=Path, help="results of an earlier grading of the examples")
    args = parser.parse_args(argv)
    from gradebook_support import fresh_database, postgres_server

    with tempfile.TemporaryDirectory(prefix="bench-gradebook-") as tmp_name:
        tmp = Path(tmp_name)
        examples_out = args.out
        if examples_out is None:
            examples_out = tmp / "examples"
            grade = [sys.executable, "tools/autograde.py", "examples/submissions", "--out",
                     str(examples_out), "--quiet"]  # fmt: skip
            subprocess.run(grade, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        out = tmp / "class"
        ids = class_of(args.n, examples_out, out)
        backends = {}
        with postgres_server() as port:
            for kind in ("sqlite", "postgresql"):
                work = tmp / kind
                work.mkdir()
                with fresh_database(kind, work, port) as url:
                    backends[kind] = run(url, out, ids, work)
                    print(kind, backends[kind], flush=True)
                shutil.rmtree(work)
    python = shlex.quote(os.path.relpath(sys.executable, ROOT))
    result = {
        "benchmark": f"tools/gradebook.py on a class of {args.n} students",
        "command": f"{python} bench/bench_gradebook.py --n {args.n}",
        "n": args.n,
        "backends": backends,
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}; reproduce with: {result['command']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
