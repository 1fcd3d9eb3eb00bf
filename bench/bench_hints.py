"""What the hints of failed visible checks cost (issue 13): nothing for a correct submission.

Usage:
    python bench/bench_hints.py [--repeats 3]

Grades each submission with ``StudentGrader.grade`` (the one function that grades a student)
on one sandboxed worker, with hints off and on, alternately, ``--repeats`` times each, and
counts the sandbox tasks and children each grading ran (by wrapping this worker's ``run``):

* the two correct submissions of tests/test_hints.py (the solution, the template-style w26):
  with hints on they must run the same tasks in the same number of children as with hints
  off; their wall times are given for completeness (medians, same worker, same machine);
* each mistake of tests/test_hints.py: how many more tasks and children the hints ran (one
  child with one ``structure:<check>`` task per failed visible check) and the seconds spent
  in ``StudentGrader.add_hints`` (that child and the comparisons), median over the repeats;
  whole-grading wall times are given too, but the overfit run makes them noisy;
* the parent's one-time cost of describing each check's reference module (once per batch
  and process, cached afterwards).

Writes bench/results/hints.json.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results" / "hints.json"


def submissions():
    """``{name: Submission}``: the correct ones and the mistakes of the hints test."""
    from test_hints import CORRECT, MISTAKES, base_files

    from tools.grading.collect import Submission

    subs = {}
    for name in CORRECT:
        files = base_files(name)
        subs[name] = Submission(name, "dir", {k: v.encode() for k, v in files.items()})
    for name, (base, replace, _) in MISTAKES.items():
        files = base_files(base)
        for old, new in replace:
            assert old in files["hw2/cnn.py"], f"{name}: a replacement no longer applies"
            files["hw2/cnn.py"] = files["hw2/cnn.py"].replace(old, new)
        subs[name] = Submission(name, "dir", {k: v.encode() for k, v in files.items()})
    return subs, CORRECT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tools.grading import diagnose
    from tools.grading.compare import Expected
    from tools.grading.sandbox import Limits, Worker, build_kit, require_bwrap
    from tools.grading.student import StudentGrader

    require_bwrap()
    subs, correct = submissions()
    exp = Expected()
    reference_s = {}
    for check in diagnose.DIAGNOSED:
        start = time.perf_counter()
        diagnose.reference(check)
        reference_s[check] = round(time.perf_counter() - start, 3)

    with tempfile.TemporaryDirectory(prefix="bench-hints-") as tmp:
        worker = Worker(0, build_kit(Path(tmp) / "kit"), Path(tmp), Limits(), sandboxed=True)
        worker.start()
        counts = {"tasks": 0, "children": 0}
        run = worker.run

        def counting(request, **kw):
            counts["tasks"] += len(request["tasks"])
            counts["children"] += 1
            return run(request, **kw)

        worker.run = counting
        grader = StudentGrader(worker, exp, timeout=30.0)
        add_hints, spent = grader.add_hints, [0.0]

        def timed_add_hints(*a, **kw):  # the whole cost of the hints, in the parent
            start = time.perf_counter()
            try:
                return add_hints(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - start

        grader.add_hints = timed_add_hints
        rows = {}
        try:
            grader.grade(subs[correct[0]])  # warm up (the first grading starts the children)
            for name, sub in subs.items():
                rows[name] = {False: [], True: []}
                for _ in range(args.repeats):
                    for hints in (False, True):
                        grader.hints = hints
                        counts.update(tasks=0, children=0)
                        spent[0] = 0.0
                        start = time.perf_counter()
                        doc = grader.grade(sub)
                        seconds = time.perf_counter() - start
                        n_hints = sum(bool(c["hint"]) for c in doc["checks"])
                        rows[name][hints].append(
                            (seconds, dict(counts), n_hints, doc["score"], spent[0])
                        )
                print(f"{name}: graded {2 * args.repeats} times", file=sys.stderr)
        finally:
            worker.stop()

    report = {}
    for name, by in rows.items():
        off, on = by[False], by[True]
        report[name] = {
            "correct": name in correct,
            "score": on[0][3],
            "hints": on[0][2],
            "tasks_off": off[0][1]["tasks"],
            "tasks_on": on[0][1]["tasks"],
            "children_off": off[0][1]["children"],
            "children_on": on[0][1]["children"],
            "seconds_off_median": round(statistics.median(r[0] for r in off), 3),
            "seconds_on_median": round(statistics.median(r[0] for r in on), 3),
            "hint_step_seconds_median": round(statistics.median(r[4] for r in on), 3),
        }
    same = all(
        r["tasks_on"] == r["tasks_off"] and r["children_on"] == r["children_off"]
        for r in report.values()
        if r["correct"]
    )
    result = {
        "benchmark": "hints of failed visible checks: extra sandbox work per submission",
        "command": f".venv/bin/python bench/bench_hints.py --repeats {args.repeats}",
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "note": "medians of alternating runs on one sandboxed worker; the machine was shared "
        "with other jobs, so seconds are noisy, task and child counts are exact",
        "correct_submissions_run_no_extra_task": same,
        "reference_description_seconds_once_per_batch": reference_s,
        "submissions": report,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, report))
    print(
        f"{'submission':<{width}}  hints  tasks off/on  children off/on  hint step s  "
        "grade s off / on"
    )
    for name, r in report.items():
        print(
            f"{name:<{width}}  {r['hints']:>5}  {r['tasks_off']:>5}/{r['tasks_on']:<6}  "
            f"{r['children_off']:>8}/{r['children_on']:<7}  "
            f"{r['hint_step_seconds_median']:>11.3f}  "
            f"{r['seconds_off_median']:>6.2f} / {r['seconds_on_median']:.2f}"
        )
    print(f"correct submissions run no extra task: {same}")
    print(f"reference descriptions (once per batch): {sum(reference_s.values()):.2f} s in all")
    print(f"wrote {RESULTS.relative_to(ROOT)}; reproduce: {result['command']}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
