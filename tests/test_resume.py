"""Crash safety of a batch: `kill -9` of tools/autograde.py midway, then a re-run.

The killed run leaves no sandbox process behind; its report files show the students graded
so far. The re-run grades exactly the
students that were not finished (each student once in all), leaves the finished ones' files
untouched, and removes the temporary files a killed writer leaves behind.
"""

import csv
import fcntl
import os
import signal
import subprocess
from pathlib import Path

import pytest
from batch_support import (
    cli,
    cmdline,
    comparable,
    descendants,
    graded_now,
    make_batch,
    run_cli,
    still_running,
    stored,
    wait_for,
)
from grading_support import requires_sandbox

from tools.checks import CHECKS
from tools.grading.runner import OUT_LOCK, TMP_PREFIX

pytestmark = [requires_sandbox, pytest.mark.slow]
N = 8


def snapshot(out: Path) -> dict[str, tuple]:
    """Each results file's identity: a rewrite (``os.replace``) makes a new inode."""
    return {
        p.stem: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
        for p in (out / "results").glob("*.json")
    }


def test_kill_then_resume_grades_each_student_once(tmp_path):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    ids = make_batch(submitted, N)
    # --report-every 0: grades.csv is rewritten after each student
    run = subprocess.Popen(cli(submitted, out, "--report-every", "0"), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    seen: dict[tuple[int, int], list[str]] = {}  # every process the run started, as it goes
    try:

        def two_graded():
            for proc in descendants(run.pid) - seen.keys():
                seen[proc] = cmdline(proc[0])
            return len(list(out.glob("results/*.json"))) >= 2

        wait_for(two_graded, "two students graded", 600, 0.05)
        os.kill(run.pid, signal.SIGKILL)  # the CLI only: its sandboxes must die with it
        run.wait()
    finally:
        if run.poll() is None:
            run.kill()
    assert any(argv and Path(argv[0]).name == "bwrap" for argv in seen.values())
    wait_for(lambda: not still_running(set(seen)), "the killed run's sandboxes to end", 30)
    tmpdirs = {a.removesuffix("/kit") for argv in seen.values() for a in argv
               if a.endswith("/kit") and TMP_PREFIX in a}  # fmt: skip

    before = snapshot(out)
    assert 2 <= len(before) < N  # killed midway
    published = {r["student_id"] for r in csv.DictReader((out / "grades.csv").open())}
    assert published and published <= set(before)  # grades.csv showed the batch as it went
    # what a writer killed between its temporary file and the rename leaves behind
    stale = out / "results" / f".{sorted(set(ids) - set(before))[0]}.json.x1y2z3.tmp"
    stale.write_text('{"student_id": "half a doc')
    assert tmpdirs and all(Path(d).is_dir() for d in tmpdirs)  # the killed run's private files

    done = run_cli(submitted, out)
    assert done.returncode == 0, done.stderr
    assert graded_now(done.stdout) == N - len(before)
    after = snapshot(out)
    assert set(after) == set(ids)
    assert {sid: after[sid] for sid in before} == before  # finished students: not rewritten
    assert not stale.exists()
    assert not [p for p in out.rglob("*.tmp")]
    assert not [d for d in tmpdirs if Path(d).exists()]  # swept by the re-run
    rows = list(csv.DictReader((out / "grades.csv").open()))
    per_student = {sid: sum(r["student_id"] == sid for r in rows) for sid in ids}
    assert per_student == dict.fromkeys(ids, len(CHECKS))
    docs = stored(out)
    by_kind = {}
    for sid, kind in ids.items():  # copies of one example grade alike, before and after
        by_kind.setdefault(kind, set()).add(repr(dict(comparable(docs[sid]), student_id=kind)))
    assert all(len(v) == 1 for v in by_kind.values()), by_kind
    assert docs["s00_correct"]["score"] == 100


def test_a_second_run_on_the_same_out_is_refused(tmp_path):
    """While a batch holds OUT's lock (here: this test, as a running batch would), another
    run on that OUT stops with a one-line error and writes nothing."""
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    make_batch(submitted, 1)
    out.mkdir()
    with open(out / OUT_LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = run_cli(submitted, out)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"autograde: {out} is being written by another autograde run: wait for it to end, "
        f"or pass another --out"
    ]
    assert sorted(p.name for p in out.iterdir()) == [OUT_LOCK]
    assert run_cli(submitted, out).returncode == 0  # once released, the batch runs
    assert set(stored(out)) == {"s00_correct"}
