"""Submissions written against the course's own template, in the layouts staff collect.

The fixtures (``tests/fixtures/template/``) are complete, correct solutions written by us in
the template's style (COURSE_TEMPLATE.md): scikit-learn and ``plt.cm.get_cmap`` at import,
``ACTIVATION_DEFAULT_KWARGS[name]``, a CNN that accepts only relu/lrelu, the final ReLU as a
module; answers in the Winter 2025-26 layout (part4_q2 still the placeholder) and in the
2022-2025 one (no part4_q2). Each must score full marks, whatever the layout.
"""

import shutil
import zipfile

import pytest
from grading_support import REPO, autograde, grades, requires_sandbox, results

from tools.checks import CHECKS, MAX_AUTO_POINTS, STUDENT_FILES
from tools.grading.collect import find_submissions, load_submission

FIXTURES = REPO / "tests" / "fixtures" / "template"
AUTO = [c.name for c in CHECKS if c.kind == "auto"]
NOTEBOOK = REPO / "release" / "hw2" / "Part4_CNN.ipynb"


def template_files(answers: str = "w26") -> dict[str, bytes]:
    """``hw2/<module>.py`` -> bytes: the w26 modules with the chosen variant's answers."""
    files = {rel: (FIXTURES / "w26" / rel).read_bytes() for rel in STUDENT_FILES}
    files["hw2/answers.py"] = (FIXTURES / answers / "hw2" / "answers.py").read_bytes()
    return files


def write_tree(root, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def course_dir(tmp_path):
    """``submitted/`` as staff have it: nbgrader's layout, a repository zip with ``hw2/``
    two folders down, a repository folder, and one with two candidate packages."""
    submitted = tmp_path / "submitted"
    # nbgrader collect: submitted/<id>/hw2/ is the released assignment folder
    nbg = submitted / "tpl_nbgrader" / "hw2"
    write_tree(nbg, template_files("w26"))
    shutil.copy(NOTEBOOK, nbg / "Part4_CNN.ipynb")
    # a student's repository, zipped whole, the package two folders down
    with zipfile.ZipFile(submitted / "tpl_repo.zip", "w") as zf:
        zf.writestr("cs236781-hw/README.md", "# my homework\n")
        zf.writestr("cs236781-hw/.git/HEAD", "ref: refs/heads/main\n")
        zf.writestr("cs236781-hw/hw2w26/hw2/mlp.py", "raise SystemExit('not graded')\n")
        zf.writestr("cs236781-hw/hw2w26/Part4_CNN.ipynb", "{}")
        for rel, data in template_files("y2023").items():
            zf.writestr(f"cs236781-hw/hw2w26/{rel}", data)
    # a repository folder, the package one folder down
    write_tree(submitted / "tpl_folder" / "HW2", template_files("w26"))
    # two packages: refused, naming both
    write_tree(submitted / "tpl_two", template_files("w26"))
    write_tree(submitted / "tpl_two" / "backup", {"hw2/cnn.py": b"x = 1\n"})
    return submitted


def test_intake_finds_the_one_package_in_every_layout(tmp_path):
    submitted = course_dir(tmp_path)
    found, skipped = find_submissions(submitted)
    assert skipped == []
    subs = {sid: load_submission(sid, path) for sid, path in found}
    for sid in ("tpl_nbgrader", "tpl_repo", "tpl_folder"):
        assert sorted(subs[sid].files) == sorted(STUDENT_FILES), (sid, subs[sid].notes)
    assert subs["tpl_nbgrader"].files == template_files("w26")
    assert subs["tpl_repo"].files == template_files("y2023")
    assert subs["tpl_nbgrader"].notes == ["graded files taken from hw2/hw2/"]
    assert "graded files taken from cs236781-hw/hw2w26/hw2/" in subs["tpl_repo"].notes
    assert subs["tpl_folder"].notes == ["graded files taken from HW2/hw2/"]
    assert subs["tpl_two"].files == {}
    (note,) = subs["tpl_two"].notes
    assert "backup/hw2/" in note and "hw2/," in note and "refused" in note


def test_a_package_deeper_than_three_folders_is_not_searched(tmp_path):
    write_tree(tmp_path / "s" / "a" / "b" / "c", template_files())
    sub = load_submission("s", tmp_path / "s")
    assert sub.files == {}


def test_a_linked_package_folder_is_refused(tmp_path):
    write_tree(tmp_path / "elsewhere", template_files())
    (tmp_path / "s" / "repo").mkdir(parents=True)
    (tmp_path / "s" / "repo" / "hw2").symlink_to(tmp_path / "elsewhere" / "hw2")
    sub = load_submission("s", tmp_path / "s")
    assert sub.files == {}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("template")
    out = tmp / "out"
    done = autograde(course_dir(tmp), out, timeout=60)
    assert done.returncode == 0, done.stderr
    return out


@requires_sandbox
@pytest.mark.slow
@pytest.mark.parametrize("sid", ["tpl_nbgrader", "tpl_repo", "tpl_folder"])
def test_template_style_solutions_score_full_marks(graded, sid):
    rows = grades(graded)[sid]
    assert {c: rows[c]["status"] for c in AUTO} == {c: "passed" for c in AUTO}, {
        c: rows[c]["message"] for c in AUTO if rows[c]["status"] != "passed"
    }
    assert sum(rows[c]["points"] for c in AUTO) == MAX_AUTO_POINTS


@requires_sandbox
@pytest.mark.slow
def test_answers_are_graded_one_by_one(graded):
    w26, y2023 = grades(graded)["tpl_nbgrader"], grades(graded)["tpl_repo"]
    assert w26["part4_q1"]["status"] == "manual" and "answered" in w26["part4_q1"]["message"]
    assert w26["part4_q2"]["status"] == "manual" and w26["part4_q2"]["message"] == "unanswered"
    assert y2023["part4_q2"]["status"] == "missing"
    assert y2023["part4_q2"]["message"] == "hw2/answers.py defines no part4_q2"
    assert y2023["part4_q1"]["status"] == "manual" and "answered" in y2023["part4_q1"]["message"]
    assert "part4_q1" in results(graded, "tpl_repo")["answers"]


@requires_sandbox
@pytest.mark.slow
def test_feedback_renders_macros_and_html_as_the_notebook_does(graded):
    page = (graded / "feedback" / "tpl_nbgrader.html").read_text()
    assert "\\mat" not in page and "\\vec" not in page and "<br>" in page
    assert "<b>multiplications</b>" in page and 'mathvariant="bold-italic"' in page
    y2023 = (graded / "feedback" / "tpl_repo.html").read_text()
    assert "\\pderiv" not in y2023 and "<mfrac>" in y2023 and "<sub>2</sub>" in y2023


@requires_sandbox
@pytest.mark.slow
def test_two_candidate_packages_grade_nothing_and_say_why(graded):
    rows = grades(graded)["tpl_two"]
    assert all(rows[c]["status"] == "missing" for c in AUTO)
    assert any("backup/hw2/" in n for n in results(graded, "tpl_two")["notes"])


def test_an_import_outside_the_course_environment_names_file_and_module(tmp_path):
    from tools.grading.harness import describe_error

    path = tmp_path / "hw2" / "training.py"
    path.parent.mkdir()
    path.write_text("import torch\nfrom not_in_the_course_env.filedialog import test\n")
    try:
        exec(compile(path.read_text(), str(path), "exec"), {})
    except ModuleNotFoundError as e:
        message = describe_error(e, str(tmp_path) + "/")
    assert "no module named 'not_in_the_course_env'" in message
    assert "not part of the course environment" in message
    assert "(at hw2/training.py line 2, in <module>)" in message
