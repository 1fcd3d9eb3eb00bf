"""Benchmark: a hostile class finishes on time (issue 9).

Usage:
    python bench/bench_hostile.py [--workers 2] [--copies 2]

Grades one batch of 34 submissions (with ``--copies 2``) with ``tools/autograde.py``: correct
and partial ones beside submissions that spin or sleep in every check, hang, exit or crash at
import, flood their output, fork-bomb, or hog memory from many processes (the recipes of
``tests/hostile.py``). Reports the batch's wall time against the goal (under 5 minutes on 2
workers), the slowest submission against the documented bound (60 s budget + one sandbox
restart), and checks that every correct submission still scored 100 and every stalled one 0.
Writes bench/results/hostile.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results" / "hostile.json"
GOAL_SECONDS = 300.0
BOUND_SECONDS = 65.0  # student.BUDGET + a sandbox restart, as the README documents


def make_batch(dest: Path, copies: int) -> dict[str, str]:
    """The batch: ``{student_id: kind}``."""
    from grading_support import make_submission
    from hostile import AT_IMPORT, STALL, stalling

    kinds: dict[str, dict] = {"correct": {}, "correct_b": {}, "correct_c": {},
                              "correct_d": {}, "correct_e": {}}  # fmt: skip
    for kind in STALL:
        kinds[f"stall_{kind}"] = {"append": stalling(kind)}
    for name, (rel, code) in AT_IMPORT.items():
        kinds[name] = {"append": {rel: code}}
    kinds["partial"] = {"replace": [("hw2/classifier.py", "torch.argmax(", "torch.argmin(")]}
    kinds["no_training"] = {"drop": ("hw2/training.py",)}
    kinds["syntax"] = {"append": {"hw2/cnn.py": "def broken(:\n    pass"}}
    batch = {}
    for i in range(copies):
        for kind, how in kinds.items():
            sid = f"{kind}_{i}"
            make_submission(dest, sid, **how)
            batch[sid] = kind
    return batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        sub, out = Path(tmp) / "submitted", Path(tmp) / "out"
        batch = make_batch(sub, args.copies)
        print(f"grading {len(batch)} submissions on {args.workers} workers ...", flush=True)
        start = time.monotonic()
        cmd = [sys.executable, str(ROOT / "tools" / "autograde.py"), str(sub), "--out", str(out),
               "--quiet", "--workers", str(args.workers), "--no-similarity"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - start
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        docs = {sid: json.loads((out / "results" / f"{sid}.json").read_text()) for sid in batch}
    per_kind: dict[str, dict] = {}
    for sid, kind in batch.items():
        d = docs[sid]
        entry = per_kind.setdefault(kind, {"scores": [], "seconds": []})
        entry["scores"].append(d["score"])
        entry["seconds"].append(d.get("seconds", 0.0))
    slowest = max(batch, key=lambda s: docs[s].get("seconds", 0.0))
    correct = [docs[s]["score"] for s, k in batch.items() if k.startswith("correct")]
    stalled = [docs[s]["score"] for s, k in batch.items() if k.startswith("stall")]
    report = {
        "submissions": len(batch),
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "wall_seconds": round(wall, 1),
        "slowest": {"student": slowest, "seconds": docs[slowest].get("seconds")},
        "per_kind": per_kind,
        "goals": {
            f"batch under {GOAL_SECONDS:g} s": wall < GOAL_SECONDS,
            f"every submission within {BOUND_SECONDS:g} s": all(
                d.get("seconds", 0.0) <= BOUND_SECONDS for d in docs.values()
            ),
            "every correct submission scored 100": all(s == 100 for s in correct),
            "every stalled submission scored 0": all(s == 0 for s in stalled),
        },
        "reproduce": "python bench/bench_hostile.py " + " ".join(argv or sys.argv[1:]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
