"""What one submission may cost (issue 9): time budget, total memory, early-stopped overfit.

Submissions that spin or sleep in every check finish within the per-submission budget, with
each check that never ran reported as such; a multi-process memory hog is stopped by the
sandbox's total memory cap (by the kernel's cgroup, and by the watchdog where there is none)
and the student beside it is graded as when graded alone; stopping the overfit run at the
first epoch that passes gives the verdicts of the full run.
"""

import os
import subprocess
import sys

import pytest
from grading_support import (
    AUTOGRADE,
    comparable,
    grades,
    make_submission,
    requires_sandbox,
    results,
)
from hostile import MEMORY_HOG, STALL, stalling

pytestmark = [requires_sandbox, pytest.mark.slow]
BUDGET = 24
TIMEOUT = 4  # CPU seconds per check: fixed, so that the test does not depend on calibration


def run(submitted, out, *args, env=None):
    cmd = [sys.executable, str(AUTOGRADE), str(submitted), "--out", str(out), "--quiet", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def stalled(tmp_path_factory):
    root = tmp_path_factory.mktemp("stall")
    sub, out = root / "submitted", root / "out"
    for kind in STALL:
        make_submission(sub, kind, append=stalling(kind))
    run(sub, out, "--timeout", str(TIMEOUT), "--budget", str(BUDGET))
    return out


@pytest.mark.parametrize("kind", sorted(STALL))
def test_a_submission_stalling_in_every_check_ends_within_its_budget(stalled, kind):
    doc = results(stalled, kind)
    assert doc["seconds"] <= BUDGET + 1, doc["seconds"]
    auto = [c for c in doc["checks"] if c["max_points"] and not c["check"].startswith("part4")]
    assert auto and all(c["status"] == "timeout" for c in auto), [
        (c["check"], c["status"], c["message"]) for c in auto if c["status"] != "timeout"
    ]
    assert doc["score"] == 0
    messages = {c["message"] for c in auto}
    # some ran into their own limit, the rest are told that the budget ran out first
    own = "CPU time" if kind == "spin" else "wall-clock"
    assert any(own in m for m in messages), messages
    assert any(f"time budget of {BUDGET} s" in m for m in messages), messages
    # the answers do not depend on the stalled code: still read (unless the budget was gone)
    answers = {c["check"]: c["status"] for c in doc["checks"] if c["check"].startswith("part4")}
    assert set(answers.values()) <= {"manual", "timeout"}


@pytest.mark.parametrize("enforcer", ["cgroup", "watchdog"])
def test_a_multi_process_memory_hog_is_stopped_by_the_total_cap(tmp_path, enforcer):
    env = dict(os.environ)
    if enforcer == "watchdog":
        env["HW2_MEMCAP"] = "watchdog"
    sub = tmp_path / "submitted"
    make_submission(sub, "correct")
    make_submission(sub, "hog", append={"hw2/cnn.py": MEMORY_HOG})
    run(sub, tmp_path / "out", "--memory", "2G", "--timeout", "5", env=env)
    hog = grades(tmp_path / "out")["hog"]
    assert hog["cnn_0"]["status"] == "error", hog["cnn_0"]
    assert "memory limit" in hog["cnn_0"]["message"] and "2.0 GiB" in hog["cnn_0"]["message"]
    assert hog["hidden_classifier"]["status"] == "passed"  # it does not import cnn.py

    alone = tmp_path / "alone"
    make_submission(alone, "correct")
    run(alone, tmp_path / "alone_out", "--memory", "2G", "--timeout", "5", env=env)
    together = grades(tmp_path / "out")["correct"]
    assert comparable(together) == comparable(grades(tmp_path / "alone_out")["correct"])
    assert sum(r["points"] for r in together.values()) == 100


def test_stopping_the_overfit_run_early_keeps_every_verdict(tmp_path):
    """The seed's verdict is the best epoch's accuracy: stopping at the first epoch that the
    parent's evaluation passes must give the same verdicts as the full 25 epochs, for
    learners fast, slow and failing, and for a trainer that lies about its accuracy."""
    sub = tmp_path / "submitted"
    hp = "hw2/answers.py"
    lr = "lr="
    make_submission(sub, "fast")
    make_submission(sub, "slow", replace=[(hp, lr, "lr=0.2*")])
    make_submission(sub, "never", replace=[(hp, lr, "lr=0.0*")])
    make_submission(sub, "liar", replace=[(hp, lr, "lr=0.0*")], append={
        # reports every sample as correct: only the parent's own evaluation counts
        "hw2/training.py": "ClassifierTrainer.train_batch = (lambda f: lambda self, b: "
        "f(self, b)._replace(num_correct=len(b[1])))(ClassifierTrainer.train_batch)"
    })  # fmt: skip
    early, full = tmp_path / "early", tmp_path / "full"
    run(sub, early)
    run(sub, full, "--full-overfit")
    for sid in ("fast", "slow", "never", "liar"):
        a, b = results(early, sid), results(full, sid)
        verdicts = [(c["check"], c["status"], c["points"]) for c in a["checks"]]
        assert verdicts == [(c["check"], c["status"], c["points"]) for c in b["checks"]], sid
    overfit = {sid: grades(early)[sid]["overfit"] for sid in ("fast", "slow", "never", "liar")}
    assert overfit["fast"]["status"] == overfit["slow"]["status"] == "passed"
    assert overfit["never"]["status"] == overfit["liar"]["status"] == "failed"
    assert "stopped after epoch" in overfit["fast"]["message"]
    assert "stopped after epoch" not in grades(full)["fast"]["overfit"]["message"]
    stopped_at = {
        sid: int(overfit[sid]["message"].split("stopped after epoch ")[1].split()[0])
        for sid in ("fast", "slow")
    }
    assert stopped_at["fast"] < stopped_at["slow"] <= 25, stopped_at
