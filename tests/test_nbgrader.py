"""nbgrader end to end in a temporary copy of the course directory: autograde scores the
solution full marks and the untouched release zero, with the hidden tests in play; the
feedback holds neither hidden tests nor solution code; the release never gets hidden files."""

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import release
from tools.checks import STUDENT_FILES, points_by_cell

REPO = release.ROOT
RELEASED = REPO / release.RELEASE_DIR
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

STUDENTS = ("solution", "stub")
# What the course needs besides the staged assignment: the config and what it imports.
CONFIG_FILES = (
    "nbgrader_config.py",
    "tools/__init__.py",
    "tools/checks.py",
    "tools/nbgrader_feedback.py",
)


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HW2_OFFLINE_DATA": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    run = subprocess.run(
        [str(BIN / "nbgrader"), *args],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course directory with the assignment generated and two submissions autograded."""
    course = tmp_path_factory.mktemp("course")
    for rel in CONFIG_FILES:
        (course / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, course / rel)
    release.build(REPO, course)  # stages nbgrader's source and runs generate_assignment
    for student in STUDENTS:
        shutil.copytree(RELEASED, course / "submitted" / student / release.ASSIGNMENT)
    for rel in STUDENT_FILES:
        shutil.copy(REPO / rel, course / "submitted" / "solution" / release.ASSIGNMENT / rel)
    nbgrader(course, "autograde", release.ASSIGNMENT)
    nbgrader(course, "generate_feedback", release.ASSIGNMENT)
    return course


def scores(course: Path, student: str) -> tuple[float, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub = gb.find_submission(release.ASSIGNMENT, student)
        return sub.code_score, sub.max_code_score


def test_solution_scores_full_marks(course):
    assert scores(course, "solution") == (sum(points_by_cell().values()),) * 2


def test_untouched_release_scores_zero_code_marks(course):
    score, max_score = scores(course, "stub")
    assert (score, max_score) == (0, sum(points_by_cell().values()))


def test_autograded_folders_hold_the_hidden_assets_and_the_submitted_modules(course):
    hidden = sorted(p.name for p in (REPO / release.HIDDEN_ASSETS).glob("*"))
    for student in STUDENTS:
        graded = course / "autograded" / student / release.ASSIGNMENT
        assert sorted(p.name for p in (graded / release.HIDDEN_ASSETS).glob("*")) == hidden
        for rel in STUDENT_FILES:
            submitted = course / "submitted" / student / release.ASSIGNMENT / rel
            assert (graded / rel).read_bytes() == submitted.read_bytes(), (student, rel)


def test_feedback_holds_no_hidden_test_and_no_solution_code(course):
    hidden = [
        line.strip()
        for part in re.findall(
            r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS",
            (REPO / release.SOURCE_NOTEBOOK).read_text(),
            re.DOTALL,
        )
        for line in part.splitlines()
        if "hidden" in line
    ]
    solution = [
        line.strip()
        for rel in STUDENT_FILES
        # code regions (indented markers); the written answers are the student's to see
        for _, part in re.findall(
            r"^( +)### BEGIN SOLUTION\n(.*?)### END SOLUTION",
            (REPO / rel).read_text(),
            re.DOTALL | re.MULTILINE,
        )
        for line in part.splitlines()
        if len(line.strip()) > 25
    ]
    assert hidden and solution
    for student in STUDENTS:
        (page,) = (course / "feedback" / student / release.ASSIGNMENT).glob("*.html")
        text = page.read_text()
        assert "HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
        plain = html.unescape(re.sub(r"<[^>]+>", "", text))
        assert not [line for line in hidden if line in plain], student
        assert not [line for line in solution if line in plain], student


def test_nothing_was_written_to_the_repository(course):
    assert not (REPO / "autograded").exists() and not (REPO / "submitted").exists()
    assert not (REPO / "feedback").exists()
