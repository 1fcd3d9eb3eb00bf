"""``python -m cs236781.submit``: the bundle students hand in."""

import subprocess
import sys
import zipfile

import pytest
from grading_support import REPO, make_submission

from cs236781 import submit
from tools.checks import STUDENT_FILES
from tools.grading.collect import load_submission

RELEASE = REPO / "release" / "hw2"


def run(*args: str, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "cs236781.submit", *args], cwd=cwd,
                          capture_output=True, text=True)  # fmt: skip


def test_allow_list_matches_the_graders():
    assert submit.STUDENT_FILES == STUDENT_FILES


def test_solution_zips_without_warnings(tmp_path):
    done = run("--id", "s123", "--dir", str(REPO), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    with zipfile.ZipFile(tmp_path / "s123.zip") as zf:
        assert sorted(zf.namelist()) == sorted(STUDENT_FILES)
    sub = load_submission("s123", tmp_path / "s123.zip")
    assert sorted(sub.files) == sorted(STUDENT_FILES) and not sub.notes
    assert sub.files["hw2/cnn.py"] == (REPO / "hw2" / "cnn.py").read_bytes()


def test_same_files_same_zip(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        submit.submit("s1", REPO, out)
    assert (a / "s1.zip").read_bytes() == (b / "s1.zip").read_bytes()


@pytest.mark.skipif(not (RELEASE / "hw2" / "cnn.py").is_file(), reason="no release built")
def test_untouched_release_lists_what_is_left(tmp_path):
    done = run("--id", "s1", "--dir", str(RELEASE), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "CNN._make_feature_extractor() is not implemented" in done.stderr
    assert "ArgMaxClassifier._classify() is not implemented" in done.stderr
    assert "part4_q1 is unanswered" in done.stderr and "part4_q2 is unanswered" in done.stderr
    assert (tmp_path / "s1.zip").is_file()


def test_missing_file_is_refused(tmp_path):
    folder = make_submission(tmp_path, "x", drop=("hw2/training.py",))
    done = run("--id", "s1", "--dir", str(folder), "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "hw2/training.py not found" in done.stderr
    assert not (tmp_path / "s1.zip").exists()


@pytest.mark.parametrize("good", ["s1", "José", "ivan.petrov@uni", "李明", "x"])
def test_plain_ids_are_accepted(good):
    assert submit.check_id(good) == good


@pytest.mark.parametrize(
    "bad", ["../evil", "a/b", "", " s1", "a" * 65, ".hidden", "x y", "_x", "a\\b", "=cmd"]
)
def test_bad_ids_are_refused(tmp_path, bad):
    done = run("--id", bad, "--dir", str(REPO), "--out", str(tmp_path))
    assert done.returncode == 1 and "invalid student id" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_syntax_error_is_a_warning(tmp_path):
    folder = make_submission(tmp_path, "x", append={"hw2/cnn.py": "def f(:"})
    _, warnings = submit.submit("s1", folder, tmp_path)
    assert any("hw2/cnn.py: syntax error" in w for w in warnings)


def test_collect_refuses_dangerous_zips(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("../hw2/cnn.py", "x")
        zf.writestr("/etc/hw2/cnn.py", "x")
        link = zipfile.ZipInfo("hw2/classifier.py")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("hw2/training.py", "0" * (5 << 20))  # a bomb: 5 MiB of zeros
        zf.writestr("hw2/mlp.py", "x")  # not a student file
        zf.writestr("hw2/answers.py", "ok = 1")
    sub = load_submission("evil", path)
    assert sub.files == {"hw2/answers.py": b"ok = 1"}
    text = " ".join(sub.notes)
    for expected in ("leaves the folder", "absolute", "link", "too large", "not a graded file"):
        assert expected in text


def test_collect_refuses_links_in_folders(tmp_path):
    folder = make_submission(tmp_path, "s", drop=("hw2/cnn.py",))
    (folder / "hw2" / "cnn.py").symlink_to(REPO / "hw2" / "cnn.py")
    sub = load_submission("s", folder)
    assert "hw2/cnn.py" not in sub.files and "link" in " ".join(sub.notes)
