"""Canvas and Gradescope exports of the graded examples, read back and checked against the
formats: Canvas's gradebook import CSV (roster-mapped, Points Possible row) and Gradescope's
results.json (tests, hidden ones published late and saying nothing of their setup)."""

import csv
import json
import shutil

import pytest
from gradebook_support import (
    course_dir,
    fresh_database,
    graded_examples,
    nbgrader_export,
    postgres_server,
    totals_of_grades_csv,
)
from grading_support import requires_sandbox

from tools.checks import CHECKS, MAX_POINTS
from tools.grading import gradebook
from tools.grading.feedback import SAFE_PREFIXES, student_message

pytestmark = [pytest.mark.slow, requires_sandbox]
BACKENDS = ("sqlite", "postgresql")
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
GRADESCOPE_TEST_KEYS = {"name", "score", "max_score", "status", "output", "visibility"}
# TAs' points: correct has both answers graded, partial only the first.
MANUAL = {"correct": {"part4_q1": 4.5, "part4_q2": 5.0}, "partial": {"part4_q1": 3.0}}
ROSTER = """Student,ID,SIS User ID,SIS Login ID,Section,Integration ID
    Points Possible,,,,,
"Doe, Jane",101,S101,correct,A01,x
"Roe, Rick",102,S102,partial,A01,x
"Poe, Ed",103,S103,broken,B02,x
"Moe, Al",104,S104,untouched,B02,x
"Late, Lou",105,S105,late_student,B02,x
"""


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return graded_examples(tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="module")
def pg_port():
    with postgres_server() as port:
        yield port


@pytest.fixture(scope="module", params=BACKENDS)
def graded_db(request, out, tmp_path_factory):
    """A gradebook of each kind with the examples synced and the TAs' points imported."""
    port = request.getfixturevalue("pg_port") if request.param == "postgresql" else None
    tmp = tmp_path_factory.mktemp("db")
    with fresh_database(request.param, tmp, port) as url:
        gradebook.sync(out, url, course=tmp / "course", progress=False)
        sheet = tmp / "manual.csv"
        sheet.write_text(
            "student_id,part4_q1,part4_q2\n"
            + "".join(f"{s},{p.get('part4_q1', '')},{p.get('part4_q2', '')}\n"
                      for s, p in MANUAL.items())
        )  # fmt: skip
        gradebook.import_manual(sheet, url)
        yield url


@pytest.fixture
def roster(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(ROSTER)
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from tools.gradebook import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expected_totals(out) -> dict[str, float]:
    """grades.csv's automatic totals plus the TAs' points."""
    totals = totals_of_grades_csv(out)
    return {sid: t + sum(MANUAL.get(sid, {}).values()) for sid, t in totals.items()}


def read_canvas(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# --- Canvas ----------------------------------------------------------------------------------


def test_canvas_csv_reads_back_in_canvas_import_format(out, graded_db, roster, tmp_path, capsys):
    target = tmp_path / "canvas.csv"
    code, _, stderr = cli(
        capsys,
        "canvas",
        str(out),
        "--db",
        graded_db,
        "--roster",
        str(roster),
        "--canvas-id",
        "98765",
        "--assignment",
        "HW2 Part 4",
        "-o",
        str(target),
    )
    assert code == 0, stderr
    rows = read_canvas(target)
    assert rows[0] == [*CANVAS_HEADER, "HW2 Part 4 (98765)"]
    assert rows[1] == ["Points Possible", "", "", "", "", f"{MAX_POINTS:g}"]
    body = {r[3]: r for r in rows[2:]}
    assert list(body) == ["correct", "partial", "broken", "untouched", "late_student"]
    assert body["correct"][:5] == ["Doe, Jane", "101", "S101", "correct", "A01"]
    want = expected_totals(out)
    for sid in ("correct", "partial", "broken", "untouched"):
        assert float(body[sid][5]) == want[sid], sid
    assert want["correct"] == 109.5 and want["partial"] == totals_of_grades_csv(out)["partial"] + 3
    assert body["late_student"][5] == ""  # no submission: blank, Canvas keeps its grade
    # listed warnings: who has no submission, whose answers wait for a TA
    assert "no submission" in stderr and "late_student" in stderr
    assert "not graded yet" in stderr and "partial" in stderr.split("not graded yet")[1]


def test_canvas_totals_equal_nbgrader_export(out, graded_db, roster, tmp_path, capsys):
    target = tmp_path / "canvas.csv"
    code, _, stderr = cli(
        capsys,
        "canvas",
        str(out),
        "--db",
        graded_db,
        "--roster",
        str(roster),
        "--canvas-id",
        "1",
        "-o",
        str(target),
    )
    assert code == 0, stderr
    canvas = {r[3]: float(r[5]) for r in read_canvas(target)[2:] if r[5]}
    exported = nbgrader_export(course_dir(tmp_path / "course"), graded_db)
    assert canvas == {sid: float(row["score"]) for sid, row in exported.items()}


def test_canvas_missing_zero_writes_zero(out, graded_db, roster, tmp_path, capsys):
    target = tmp_path / "canvas.csv"
    code, _, _ = cli(
        capsys,
        "canvas",
        str(out),
        "--db",
        graded_db,
        "--roster",
        str(roster),
        "--canvas-id",
        "1",
        "--missing",
        "zero",
        "-o",
        str(target),
    )
    assert code == 0
    assert {r[3]: r[5] for r in read_canvas(target)[2:]}["late_student"] == "0"


def test_canvas_matches_by_another_roster_column(out, graded_db, tmp_path, capsys):
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section\n"
        "A,1,correct,jd1,S\nB,2,partial,rr2,S\nC,3,broken,pe3,S\nD,4,untouched,ma4,S\n"
    )
    target = tmp_path / "canvas.csv"
    code, _, stderr = cli(
        capsys,
        "canvas",
        str(out),
        "--db",
        graded_db,
        "--roster",
        str(roster),
        "--canvas-id",
        "7",
        "--key",
        "SIS User ID",
        "-o",
        str(target),
    )
    assert code == 0, stderr
    got = {r[2]: float(r[5]) for r in read_canvas(target)[2:]}
    assert got == expected_totals(out)


BAD_ROSTERS = {
    "missing id": (
        "Student,ID,SIS User ID,SIS Login ID,Section\nA,1,s1,correct,S\nB,2,s2,,S\n",
        "line 3: B has no SIS Login ID",
    ),
    "duplicate id": (
        "Student,ID,SIS User ID,SIS Login ID,Section\nA,1,s1,correct,S\nB,2,s2,correct,S\n",
        "already on line 2",
    ),
    "not canvas columns": ("name,login\nA,correct\n", "no column Student, ID"),
    "students not on the roster": (
        "Student,ID,SIS User ID,SIS Login ID,Section\nA,1,s1,correct,S\n",
        "not on the roster (by SIS Login ID): broken, partial, untouched",
    ),
}


@pytest.mark.parametrize("case", BAD_ROSTERS)
def test_bad_rosters_are_refused_with_one_line_and_nothing_written(
    case, out, graded_db, tmp_path, capsys
):
    text, says = BAD_ROSTERS[case]
    roster = tmp_path / "roster.csv"
    roster.write_text(text)
    target = tmp_path / "canvas.csv"
    code, _, stderr = cli(
        capsys,
        "canvas",
        str(out),
        "--db",
        graded_db,
        "--roster",
        str(roster),
        "--canvas-id",
        "1",
        "-o",
        str(target),
    )
    assert code == 1
    assert stderr.count("\n") == 1 and says in stderr, stderr
    assert not target.exists()


def test_students_off_the_roster_can_be_left_out_with_a_listed_warning(
    out, graded_db, tmp_path, capsys
):
    roster = tmp_path / "roster.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section\nA,1,s1,correct,S\n")
    target = tmp_path / "canvas.csv"
    code, _, stderr = cli(
        capsys,
        "canvas",
        str(out),
        "--db",
        graded_db,
        "--roster",
        str(roster),
        "--canvas-id",
        "1",
        "--ignore-unlisted",
        "-o",
        str(target),
    )
    assert code == 0
    assert "not on the roster, left out: broken, partial, untouched" in stderr
    assert [r[3] for r in read_canvas(target)[2:]] == ["correct"]


def test_exports_refuse_results_the_gradebook_does_not_hold(out, graded_db, roster, tmp_path,
                                                            capsys):  # fmt: skip
    regraded = tmp_path / "out"
    shutil.copytree(out, regraded)
    path = regraded / "results" / "correct.json"
    doc = json.loads(path.read_text())
    doc["checks"][0]["points"] = 0
    path.write_text(json.dumps(doc))
    for args in (("canvas", "--roster", str(roster), "--canvas-id", "1"), ("gradescope",)):
        code, _, stderr = cli(capsys, args[0], str(regraded), "--db", graded_db, *args[1:])
        assert code == 1 and stderr.count("\n") == 1
        assert "correct" in stderr and "sync" in stderr
    assert not (regraded / "canvas.csv").exists() and not (regraded / "gradescope").exists()


# --- Gradescope ------------------------------------------------------------------------------


def test_gradescope_results_read_back_in_gradescope_format(out, graded_db, tmp_path, capsys):
    target = tmp_path / "gs"
    code, _, stderr = cli(capsys, "gradescope", str(out), "--db", graded_db, "-o", str(target))
    assert code == 0, stderr
    docs = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert sorted(p.parent.name for p in target.glob("*/results.json")) == sorted(docs)
    want = expected_totals(out)
    checks = {c.name: c for c in CHECKS}
    for sid, doc in docs.items():
        res = json.loads((target / sid / "results.json").read_text())
        assert res["score"] == want[sid]
        assert isinstance(res["tests"], list)
        by_check = {}
        for test in res["tests"]:
            assert set(test) == GRADESCOPE_TEST_KEYS, test
            assert test["status"] in ("passed", "failed")
            assert test["visibility"] in ("visible", "after_published")
            assert isinstance(test["output"], str) and test["output"]
            by_check[test["name"].split(":")[0]] = test
        results = {c["check"]: c for c in doc["checks"]}
        for name, check in checks.items():
            if check.kind == "manual":
                graded = MANUAL.get(sid, {}).get(name)
                answered = results[name]["message"].startswith("answered")
                if graded is not None:
                    assert by_check[name]["score"] == graded
                elif answered:
                    assert name not in by_check  # waits for a TA: no false zero
                else:
                    assert by_check[name]["score"] == 0  # unanswered: 0, as in nbgrader
                continue
            test = by_check[name]
            assert test["max_score"] == check.points
            assert test["score"] == results[name]["points"]
            assert test["status"] == ("passed" if results[name]["status"] == "passed" else "failed")
            if check.hidden:
                assert test["visibility"] == "after_published"
                assert test["output"] == student_message(results[name], hidden=True)
                if not results[name]["message"].startswith(SAFE_PREFIXES):
                    assert results[name]["message"] not in test["output"]
            else:
                assert test["visibility"] == "visible"
                assert results[name]["message"] in test["output"]
        auto = sum(t["score"] for n, t in by_check.items() if checks[n].kind == "auto")
        assert auto == totals_of_grades_csv(out)[sid]


def test_hidden_checks_never_reveal_their_configuration(out, graded_db, tmp_path, capsys):
    """A hidden check's message and prints (which could name its configuration) are in the
    results; none of it reaches results.json."""
    secret = "in_channels=7, hidden_dims=[13, 17]"
    leaky = tmp_path / "out"
    shutil.copytree(out, leaky)
    for path in (leaky / "results").glob("*.json"):
        doc = json.loads(path.read_text())
        for c in doc["checks"]:
            if c["check"].startswith("hidden_"):
                if not c["message"].startswith(SAFE_PREFIXES):  # those are about the files
                    c["message"] += f" ({secret})"
                c["output"] = f"print from student code: {secret}"
        path.write_text(json.dumps(doc))
    target = tmp_path / "gs"
    code, _, stderr = cli(capsys, "gradescope", str(leaky), "--db", graded_db, "-o", str(target))
    assert code == 0, stderr
    texts = [p.read_text() for p in target.glob("*/results.json")]
    assert len(texts) == 4
    assert not [t for t in texts if "in_channels=7" in t or "hidden_dims" in t]
    assert (
        sum(
            secret in (c.get("message", "") + c.get("output", ""))
            for p in (leaky / "results").glob("*.json")
            for c in json.loads(p.read_text())["checks"]
        )
        >= 20
    )
    assert all('"after_published"' in t for t in texts)


# --- the class report with the written answers ------------------------------------------------


def test_report_adds_the_written_points_and_keeps_the_automatic_scores(
    out, graded_db, tmp_path, capsys
):
    from tools.grading import report

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    page = (copy / "report.html").read_text()
    extra = page.split(report.EXTRA_START)[1].split(report.EXTRA_END)[0]
    code, _, stderr = cli(capsys, "report", str(copy), "--db", graded_db)
    assert code == 0, stderr
    assert "not graded yet: partial" in stderr
    summary = json.loads((copy / "grades.json").read_text())
    autos = totals_of_grades_csv(out)
    want = expected_totals(out)
    for sid, t in summary["totals"].items():
        assert t["automatic"] == autos[sid] and t["total"] == want[sid], sid
    assert summary["totals"]["partial"]["written"] == {"part4_q1": 3.0, "part4_q2": None}
    assert summary["max_points"] == 100 and summary["max_total_points"] == MAX_POINTS
    page = (copy / "report.html").read_text()
    assert f"total (of {MAX_POINTS})" in page and "(part4_q2 to grade)" in page
    assert f"<td>{autos['partial']:g} / 100</td>" in page  # the automatic score stays visible
    assert f"<td>{want['correct']:g}</td>" in page
    assert page.split(report.EXTRA_START)[1].split(report.EXTRA_END)[0] == extra
