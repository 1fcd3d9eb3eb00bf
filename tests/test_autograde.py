"""The autograder end to end on the example submissions, and its command line."""

import csv
import json
import os
import subprocess
import sys

import pytest
from grading_support import REPO, autograde, grades, make_submission, requires_sandbox

from tools.checks import CHECKS, MAX_AUTO_POINTS

EXAMPLES = REPO / "examples" / "submissions"
AUTO = [c.name for c in CHECKS if c.kind == "auto"]


def test_examples_are_up_to_date():
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_examples.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def graded_examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    done = autograde(EXAMPLES, out, "--force", timeout=60)
    assert done.returncode == 0, done.stderr
    return out, done


@requires_sandbox
@pytest.mark.slow
def test_correct_scores_full_marks(graded_examples):
    out, _ = graded_examples
    rows = grades(out)["correct"]
    assert {c: rows[c]["status"] for c in AUTO} == {c: "passed" for c in AUTO}
    assert sum(r["points"] for r in rows.values()) == MAX_AUTO_POINTS == 100
    assert rows["part4_q1"]["status"] == rows["part4_q2"]["status"] == "manual"
    assert "answered" in rows["part4_q1"]["message"]


@requires_sandbox
@pytest.mark.slow
def test_untouched_scores_zero_and_says_unanswered(graded_examples):
    out, _ = graded_examples
    rows = grades(out)["untouched"]
    assert sum(r["points"] for r in rows.values()) == 0
    assert all(rows[c]["status"] == "error" for c in AUTO)
    assert "NotImplementedError" in rows["cnn_0"]["message"]
    assert "hw2/cnn.py line" in rows["cnn_0"]["message"]
    assert rows["part4_q1"]["message"] == rows["part4_q2"]["message"] == "unanswered"


@requires_sandbox
@pytest.mark.slow
def test_partial_and_broken(graded_examples):
    out, _ = graded_examples
    table = grades(out)
    partial = {c: r["status"] for c, r in table["partial"].items()}
    assert partial["cnn_0"] == partial["resblock_bottleneck"] == "passed"
    assert partial["resblock"] == partial["hidden_classifier"] == "failed"
    broken = table["broken"]
    assert broken["cnn_0"]["status"] == "error"
    assert "SyntaxError" in broken["cnn_0"]["message"]
    assert "exited with code 3" in broken["hidden_classifier"]["message"]
    assert sum(r["points"] for r in broken.values()) == 0


@requires_sandbox
@pytest.mark.slow
def test_outputs_and_summary(graded_examples):
    out, done = graded_examples
    with open(out / "grades.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:6] == [
            "student_id", "check", "points", "max_points", "status", "message",
        ]  # fmt: skip
        rows = list(reader)
    assert len(rows) == 4 * len(CHECKS)
    assert {r["status"] for r in rows} <= {"passed", "failed", "error", "timeout", "missing",
                                           "manual"}  # fmt: skip
    doc = json.loads((out / "grades.json").read_text())
    assert len(doc["rows"]) == len(rows) and doc["students"]["correct"]["score"] == 100
    report = (out / "report.html").read_text()
    assert report.count("<svg") >= 2  # the plots, inline
    for fetch in ("<script", "<link", "<img", 'src="http', "<iframe"):
        assert fetch not in report  # nothing is fetched
    for sid in ("correct", "untouched", "partial", "broken"):
        assert (out / "feedback" / f"{sid}.html").is_file()
    assert "cnn_0" in done.stdout and "mean" in done.stdout and "report.html" in done.stdout
    assert not list((out / "results").glob(".*.tmp"))


@requires_sandbox
@pytest.mark.slow
def test_rerun_skips_graded_and_regrades_changed(tmp_path):
    sub = tmp_path / "sub"
    make_submission(sub, "a", files={})  # an empty submission: every check missing
    (sub / "a").mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out"
    assert autograde(sub, out).returncode == 0
    first = (out / "results" / "a.json").read_text()
    assert all(r["status"] == "missing" for r in grades(out)["a"].values())
    assert autograde(sub, out).returncode == 0
    assert (out / "results" / "a.json").read_text() == first  # skipped: not rewritten
    assert autograde(sub, out, "--force").returncode == 0
    assert (out / "results" / "a.json").read_text() != first  # regraded (new timestamp)


def test_missing_folder_is_a_one_line_error(tmp_path):
    done = autograde(tmp_path / "nope", tmp_path / "out")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "not a folder" in done.stderr


def test_bad_arguments_are_a_one_line_error(tmp_path):
    done = autograde(tmp_path, tmp_path / "out", workers=0)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--workers" in done.stderr


def test_missing_bwrap_says_how_to_install(tmp_path):
    env = dict(os.environ, PATH="/nonexistent")
    cmd = [sys.executable, str(REPO / "tools" / "autograde.py"), str(tmp_path), "--out",
           str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert "apt-get install" in done.stderr and "bubblewrap" in done.stderr
    assert "--unsandboxed" in done.stderr


@pytest.mark.slow
def test_unsandboxed_mode_grades_trusted_code(tmp_path):
    sub = tmp_path / "sub"
    make_submission(sub, "sol")
    out = tmp_path / "out"
    done = autograde(sub, out, "--unsandboxed", workers=1, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sum(r["points"] for r in grades(out)["sol"].values()) == 100


def test_zip_and_folder_give_the_same_files(tmp_path):
    from cs236781.submit import write_zip
    from tools.grading.collect import find_submissions, load_submission

    folder = make_submission(tmp_path, "s1")
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.py")}
    write_zip(files, tmp_path / "s2.zip")
    found = dict(find_submissions(tmp_path)[0])
    a, b = load_submission("s1", found["s1"]), load_submission("s2", found["s2"])
    assert a.files == b.files and a.fingerprint() == b.fingerprint() and not a.notes


def test_group_output_is_split_by_task():
    from tools.grading.harness import GROUP_MARK
    from tools.grading.student import OUTPUT_KEEP, keep_output, split_group_output

    # what run_group prints: a marker line before each task, even after output with no newline
    text = (
        f"\n{GROUP_MARK}cnn_0\nhello\nno newline\n{GROUP_MARK}cnn_1\n\n{GROUP_MARK}resblock\nbye\n"
    )
    assert split_group_output(text) == {
        "cnn_0": "hello\nno newline",
        "cnn_1": "",
        "resblock": "bye",
    }
    long = keep_output("x" * (OUTPUT_KEEP + 10), 0)
    assert long.startswith("x" * OUTPUT_KEEP) and f"{OUTPUT_KEEP + 10} bytes in all" in long
    assert keep_output("short", 0) == "short"
    assert "truncated" in keep_output("short", 10_000)


def test_entries_that_are_not_submissions_are_reported(tmp_path):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    (submitted / "a b" / "hw2").mkdir(parents=True)
    (submitted / "notes.txt").write_text("not a submission")
    done = autograde(submitted, out, "--unsandboxed")  # nothing to run: no sandbox needed
    assert done.returncode == 0, done.stderr
    assert "no submissions" in done.stderr and "'a b' is not a valid student id" in done.stderr
    skipped = json.loads((out / "grades.json").read_text())["skipped"]
    assert len(skipped) == 2 and any(s.startswith("notes.txt") for s in skipped)
    page = (out / "report.html").read_text()
    assert "Not graded" in page and "notes.txt" in page
