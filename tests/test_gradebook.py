"""The autograder's results in nbgrader's gradebook, on SQLite and on a real PostgreSQL server
started here: every cell's points, the manual cells the formgrader shows, re-runs in place,
``nbgrader export`` totals equal to grades.csv, TAs' grades (formgrader's way and by CSV), and
bad input refused with one line and nothing written."""

import json
import shutil

import pytest
from gradebook_support import (
    api,
    course_dir,
    fresh_database,
    gradebook_cli,
    graded_examples,
    jupyter_server,
    nbgrader_export,
    postgres_server,
    totals_of_grades_csv,
)
from grading_support import REPO, requires_sandbox

from tools import release
from tools.checks import CHECKS, MAX_POINTS, points_by_cell, task_points_by_cell
from tools.grading import gradebook

pytestmark = [pytest.mark.slow, requires_sandbox]
BACKENDS = ("sqlite", "postgresql")
MANUAL = {c.name: c for c in CHECKS if c.kind == "manual"}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """The example submissions graded once by tools/autograde.py."""
    return graded_examples(tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="module")
def pg_port():
    with postgres_server() as port:
        yield port


def _port(request, kind):
    return request.getfixturevalue("pg_port") if kind == "postgresql" else None


@pytest.fixture(scope="module", params=BACKENDS)
def synced(request, out, tmp_path_factory):
    """A database of each kind into which the examples' results were synced (read only)."""
    tmp = tmp_path_factory.mktemp("synced")
    with fresh_database(request.param, tmp, _port(request, request.param)) as url:
        gradebook.sync(out, url, course=tmp / "course", progress=False)
        yield request.param, url


@pytest.fixture
def db(request, synced, tmp_path):
    """A copy of the synced database, for a test that changes it."""
    kind, template = synced
    with fresh_database(kind, tmp_path, _port(request, kind), copy_of=template) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def empty_db(request, tmp_path):
    """A new, empty database of each kind."""
    with fresh_database(request.param, tmp_path, _port(request, request.param)) as url:
        yield url


@pytest.fixture(scope="module")
def release_course(tmp_path_factory):
    """A course directory after `python tools/release.py`'s generate_assignment."""
    course = course_dir(tmp_path_factory.mktemp("course"))
    release.build(REPO, course)
    return course


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``python tools/gradebook.py ARGS``, in this process: (exit code, stdout, stderr)."""
    from tools.gradebook import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def results(out) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}


def snapshot(url) -> dict:
    """Everything the gradebook holds about hw2 submissions, for before/after comparisons."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url) as gb:
        try:
            subs = gb.assignment_submissions(release.ASSIGNMENT)
        except MissingEntry:
            subs = []
        return {
            "students": sorted(s.id for s in gb.students),
            "grades": sorted(
                (g.student.id, g.name, g.auto_score, g.manual_score, g.needs_manual_grade)
                for s in subs
                for nb in s.notebooks
                for g in nb.grades
            ),
            "comments": sorted(
                (c.student.id, c.name, c.auto_comment, c.manual_comment)
                for s in subs
                for nb in s.notebooks
                for c in nb.comments
            ),
        }


def grade_of(url, sid, cell):
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        g = gb.find_grade(cell, release.NOTEBOOK, release.ASSIGNMENT, sid)
        c = None
        if cell in task_points_by_cell():
            c = gb.find_comment(cell, release.NOTEBOOK, release.ASSIGNMENT, sid).comment
        return g.auto_score, g.manual_score, g.needs_manual_grade, g.score, c


# --- what sync writes -----------------------------------------------------------------------


def test_sync_writes_each_cell_as_the_sum_of_its_checks(out, synced):
    _, url = synced
    docs = results(out)
    assert sorted(docs) == ["broken", "correct", "partial", "untouched"]
    for sid, doc in docs.items():
        points = {c["check"]: c["points"] for c in doc["checks"]}
        for cell in points_by_cell():
            want = sum(points[c.name] for c in CHECKS if c.kind == "auto" and c.grade_id == cell)
            auto, manual, needs, score, _ = grade_of(url, sid, cell)
            assert (auto, manual, needs, score) == (want, None, False, want), (sid, cell)
    # the solution scores every automatic point, the untouched release none
    assert grade_of(url, "correct", "test_resnet")[0] == points_by_cell()["test_resnet"]
    assert grade_of(url, "untouched", "test_resnet")[0] == 0


def test_answered_questions_wait_for_a_ta_and_blank_ones_score_zero(out, synced):
    _, url = synced
    docs = results(out)
    for sid in ("correct", "partial"):
        for name, check in MANUAL.items():
            auto, manual, needs, score, comment = grade_of(url, sid, check.grade_id)
            assert (auto, manual, needs, score) == (None, None, True, 0), (sid, name)
            message = next(c["message"] for c in docs[sid]["checks"] if c["check"] == name)
            assert comment == message and message.startswith("answered")
    for check in MANUAL.values():
        auto, _, needs, score, comment = grade_of(url, "untouched", check.grade_id)
        assert (auto, needs, score) == (0, False, 0)
        assert comment == "No response. (unanswered)"
    _, _, needs, _, comment = grade_of(url, "broken", "task_q1")
    assert not needs and comment.startswith("No response. (")


def test_the_formgrader_database_holds_the_cells_generate_assignment_records(
    synced, release_course
):
    """Sync records the assignment with nbgrader's generate_assignment: the same notebook,
    cells, points and locked sources as tools/release.py records in the course."""
    from nbgrader.api import Gradebook

    _, url = synced
    mine, theirs = {}, {}
    for db_url, into in ((url, mine), (f"sqlite:///{release_course / 'gradebook.db'}", theirs)):
        with Gradebook(db_url) as gb:
            (nb,) = gb.find_assignment(release.ASSIGNMENT).notebooks
            into["name"] = nb.name
            into["grade"] = {c.name: c.max_score for c in nb.grade_cells}
            into["task"] = {c.name: c.max_score for c in nb.task_cells}
            into["source"] = {c.name: (c.source, c.checksum, c.locked) for c in nb.source_cells}
    assert mine == theirs
    assert mine["name"] == release.NOTEBOOK
    assert mine["task"] == {"task_q1": 5.0, "task_q2": 5.0} == task_points_by_cell()
    assert mine["grade"] == points_by_cell()


def test_rerun_updates_in_place_and_keeps_the_tas_grades(out, db, tmp_path, capsys):
    from nbgrader.api import Gradebook

    first = snapshot(db)
    with Gradebook(db) as gb:  # a TA grades an answer in the formgrader
        g = gb.find_grade("task_q1", release.NOTEBOOK, release.ASSIGNMENT, "correct")
        g.manual_score, g.needs_manual_grade = 4.0, False
        gb.db.commit()
    # the student's cnn_0 is regraded as failed
    regraded = tmp_path / "out"
    shutil.copytree(out, regraded)
    path = regraded / "results" / "correct.json"
    doc = json.loads(path.read_text())
    (cnn_0,) = [c for c in doc["checks"] if c["check"] == "cnn_0"]
    cnn_0["points"], cnn_0["status"] = 0, "failed"
    path.write_text(json.dumps(doc))
    code, stdout, stderr = cli(
        capsys, "sync", str(regraded), "--db", db, "--quiet", "--course", str(tmp_path)
    )
    assert code == 0, stderr
    assert "0 new and 4 updated" in stdout
    second = snapshot(db)
    assert second["students"] == first["students"]
    assert len(second["grades"]) == len(first["grades"]) == 4 * (len(points_by_cell()) + 2)
    assert grade_of(db, "correct", "test_cnn")[0] == points_by_cell()["test_cnn"] - 5
    assert grade_of(db, "correct", "task_q1")[1:3] == (4.0, False)


# --- nbgrader's own export and TAs' grades --------------------------------------------------


def test_nbgrader_export_lists_the_totals_of_grades_csv(out, db, tmp_path):
    exported = nbgrader_export(course_dir(tmp_path / "course"), db)
    want = totals_of_grades_csv(out)
    assert {sid: float(row["score"]) for sid, row in exported.items()} == want
    assert want["correct"] == 100 and want["untouched"] == 0
    assert {float(row["max_score"]) for row in exported.values()} == {MAX_POINTS}


def test_import_manual_csv_sets_the_tas_points_and_comments(out, db, tmp_path, capsys):
    sheet = tmp_path / "manual.csv"
    sheet.write_text(
        "student_id,part4_q1,part4_q2,part4_q2_comment\n"
        "correct,5,4.5,the chain rule step is missing\n"
        "partial,2,,\n"
    )
    code, stdout, stderr = cli(capsys, "import-manual", str(sheet), "--db", db)
    assert code == 0, stderr
    assert "set 3 manual grade(s)" in stdout
    assert grade_of(db, "correct", "task_q1")[1:4] == (5.0, False, 5.0)
    note = "the chain rule step is missing"
    assert grade_of(db, "correct", "task_q2")[1:] == (4.5, False, 4.5, note)
    assert grade_of(db, "partial", "task_q1")[1:4] == (2.0, False, 2.0)
    assert grade_of(db, "partial", "task_q2")[1:3] == (None, True)  # blank: left to grade
    exported = nbgrader_export(course_dir(tmp_path / "course"), db)
    want = totals_of_grades_csv(out)
    assert float(exported["correct"]["score"]) == want["correct"] + 9.5
    assert float(exported["partial"]["score"]) == want["partial"] + 2


@pytest.fixture
def formgrader(db, out, tmp_path):
    """nbgrader's formgrader (a Jupyter server with nbgrader's extension, as TAs run it) on a
    course directory whose gradebook is ``db``, after a sync that wrote the notebooks it shows;
    yields ``(base url, token, course)``."""
    course = course_dir(tmp_path / "course")
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(f"\nc.CourseDirectory.db_url = {db!r}\n")
    gradebook.sync(out, db, course=course, progress=False)
    with jupyter_server(course, tmp_path) as (base, token):
        yield base, token, course


def test_tas_grade_the_answers_in_the_formgrader_and_the_export_follows(out, db, formgrader):
    base, token, course = formgrader
    subs = {s["student"]: s for s in api(base, token, "submitted_notebooks/hw2/Part4_CNN")}
    assert sorted(subs) == sorted(results(out))
    # answered questions wait for a TA; a submission with none answered does not
    assert subs["partial"]["needs_manual_grade"] and not subs["untouched"]["needs_manual_grade"]
    assert subs["correct"]["score"] == 100 and subs["correct"]["max_score"] == MAX_POINTS
    grades = {
        g["name"]: g for g in api(base, token, f"grades?submission_id={subs['partial']['id']}")
    }
    manual = {name: grades[name] for name in task_points_by_cell()}
    assert {n: g["max_score"] for n, g in manual.items()} == {"task_q1": 5.0, "task_q2": 5.0}
    assert all(g["needs_manual_grade"] and g["manual_score"] is None for g in manual.values())
    # the TA reads the student's answer, rendered, in the submission's page
    answer = results(out)["partial"]["answers"]["part4_q2"]
    assert "chain rule gives" in answer
    page = api(base, token, f"/formgrader/submissions/{subs['partial']['id']}/", raw=True)
    assert "chain rule gives" in page
    # and grades it: the formgrader writes the gradebook, nbgrader export follows
    before = float(nbgrader_export(course, db)["partial"]["score"])
    saved = api(base, token, f"grade/{manual['task_q2']['id']}", {"manual_score": 3.5})
    assert saved["manual_score"] == 3.5 and not saved["needs_manual_grade"]
    assert float(nbgrader_export(course, db)["partial"]["score"]) == before + 3.5
    assert before == totals_of_grades_csv(out)["partial"]


# --- bad input: one line, nothing written ---------------------------------------------------


BAD_SHEETS = {
    "duplicate": ("student_id,part4_q1\ncorrect,1\ncorrect,2\n", "already on line 2"),
    "unknown student": ("student_id,part4_q1\ncorrect,1\nnobody,2\n", "nobody"),
    "too many points": ("student_id,part4_q1\ncorrect,1\npartial,6\n", "from 0 to 5"),
    "not a number": ("student_id,part4_q2\ncorrect,1\npartial,five\n", "'five'"),
    "no id column": ("student,part4_q1\ncorrect,1\n", "no student_id column"),
    "unknown column": ("student_id,part4_q1,bonus\ncorrect,1,3\n", "bonus"),
    "empty id": ("student_id,part4_q1\ncorrect,1\n,2\n", "empty student_id"),
}


def test_bad_manual_sheets_are_refused_with_one_line_and_nothing_written(db, tmp_path, capsys):
    before = snapshot(db)
    for case, (text, says) in BAD_SHEETS.items():
        sheet = tmp_path / "bad.csv"
        sheet.write_text(text)
        code, _, stderr = cli(capsys, "import-manual", str(sheet), "--db", db)
        assert code == 1, case
        assert stderr.count("\n") == 1 and says in stderr, (case, stderr)
        assert snapshot(db) == before, case


def test_an_unreachable_database_is_one_line(out, pg_port, tmp_path, capsys):
    closed = f"postgresql://postgres@127.0.0.1:{pg_port}/no_such_database"
    for url in (closed, f"sqlite:///{tmp_path / 'missing' / 'gradebook.db'}"):
        code, _, stderr = cli(
            capsys, "sync", str(out), "--db", url, "--quiet", "--course", str(tmp_path)
        )
        assert code == 1
        assert stderr.count("\n") == 1 and "gradebook" in stderr, stderr
    roster = tmp_path / "roster.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section\nA,1,2,correct,S\n")
    code, _, stderr = cli(capsys, "canvas", str(out), "--db", str(tmp_path / "none.db"),
                          "--roster", str(roster), "--canvas-id", "1")  # fmt: skip
    assert code == 1 and stderr.count("\n") == 1
    assert "no gradebook at" in stderr and not (tmp_path / "none.db").exists()


def test_a_gradebook_made_for_another_assignment_is_refused(out, empty_db, tmp_path, capsys):
    from nbgrader.api import Gradebook

    with Gradebook(empty_db, course_id="default_course") as gb:
        gb.add_assignment(release.ASSIGNMENT)
        gb.add_notebook("Part3_MLP", release.ASSIGNMENT)
        gb.add_grade_cell("test_mlp", "Part3_MLP", release.ASSIGNMENT, max_score=7,
                          cell_type="code")  # fmt: skip
    before = snapshot(empty_db)
    code, _, stderr = cli(
        capsys, "sync", str(out), "--db", empty_db, "--quiet", "--course", str(tmp_path)
    )
    assert code == 1 and stderr.count("\n") == 1
    assert "made for another notebook" in stderr and "Part3_MLP" in stderr
    assert snapshot(empty_db) == before


def test_results_of_another_grader_are_refused(out, empty_db, tmp_path, capsys):
    bad = tmp_path / "out"
    shutil.copytree(out, bad)
    path = bad / "results" / "partial.json"
    doc = json.loads(path.read_text())
    doc["checks"] = [c for c in doc["checks"] if c["check"] != "overfit"]
    path.write_text(json.dumps(doc))
    code, _, stderr = cli(
        capsys, "sync", str(bad), "--db", empty_db, "--quiet", "--course", str(tmp_path)
    )
    assert code == 1 and stderr.count("\n") == 1
    assert "partial.json" in stderr and "tools/checks.py" in stderr
    assert snapshot(empty_db)["students"] == []


def test_a_database_failure_half_way_writes_nothing(out, empty_db, tmp_path, capsys):
    """The database itself refuses the third student: the two written before are gone too."""
    import sqlalchemy as sa
    from nbgrader.api import Gradebook

    Gradebook(empty_db).close()  # nbgrader creates its tables
    engine = sa.create_engine(empty_db)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON student WHEN NEW.id = 'partial' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                "IF NEW.id = 'partial' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON student "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
    engine.dispose()
    code, stdout, stderr = cli(
        capsys, "sync", str(out), "--db", empty_db, "--quiet", "--course", str(tmp_path)
    )
    assert code == 1, stdout
    assert stderr.count("\n") == 1 and "nothing was written" in stderr, stderr
    assert "refused by the test" in stderr
    held = snapshot(empty_db)
    assert held["students"] == [] and held["grades"] == []
    assert not (tmp_path / "autograded").exists()  # no notebook either
    # the assignment itself was recorded (as tools/release.py would) before the grades
    with Gradebook(empty_db) as gb:
        assert [a.name for a in gb.assignments] == [release.ASSIGNMENT]


def test_the_command_runs_as_staff_run_it(out, tmp_path):
    """The script itself, in a fresh process, on an SQLite path."""
    path = tmp_path / "course.db"
    done = gradebook_cli("sync", str(out), "--db", str(path), "--quiet", "--course", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "4 new and 0 updated" in done.stdout and path.is_file()
    assert snapshot(f"sqlite:///{path}")["students"] == sorted(results(out))
    made = sorted(p.relative_to(tmp_path) for p in (tmp_path / "autograded").rglob("*.ipynb"))
    assert [str(p) for p in made] == [
        f"autograded/{s}/hw2/Part4_CNN.ipynb" for s in sorted(results(out))
    ]


def test_the_formgrader_notebook_shows_results_and_sanitized_answers(out):
    import nbformat

    doc = results(out)["partial"]
    doc["answers"]["part4_q1"] = "My answer <script>alert(1)</script> with $x^2$"
    (hidden,) = [c for c in doc["checks"] if c["check"] == "hidden_resblock"]
    hidden.update(status="failed", message="differs for in_channels=7 (secret)")
    nb = gradebook.graded_notebook(doc, nbformat.read(gradebook.RELEASED_NOTEBOOK, as_version=4))
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    html = cells["answer_q1"].outputs[0]["data"]["text/html"]
    assert "My answer" in html and "<script" not in html and "<math" in html
    text = cells["test_resblock"].outputs[0]["text"]
    assert "resblock: " in text and "hidden_resblock: failed, 0 / 5 points." in text
    assert "in_channels=7" not in text
    assert nb.metadata["hw2"]["graded_by"] == gradebook.MADE_BY


def test_the_default_database_is_the_course_gradebook(tmp_path):
    assert gradebook.resolve_url(None, REPO) == f"sqlite:///{REPO / 'gradebook.db'}"
    assert gradebook.resolve_url(str(tmp_path / "g.db")) == f"sqlite:///{tmp_path / 'g.db'}"
    url = gradebook.resolve_url("postgresql://ta:secret@db.example/course")
    assert "connect_timeout=10" in url and "secret" not in gradebook.shown(url)
    with pytest.raises(gradebook.GradebookError, match="not a database URL"):
        gradebook.resolve_url("postgresql://host:notaport/x")
