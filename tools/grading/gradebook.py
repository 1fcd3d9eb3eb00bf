"""The autograder's results in nbgrader's gradebook, written through nbgrader's own API.

``sync`` reads a grading run's results (``OUT/grades.json`` and ``OUT/results/<id>.json``)
and writes, for each student, their submitted assignment and notebook and one grade per
autograded notebook cell: the sum of the points of the checks that cell holds (``grade_id``
in ``tools/checks.py``). The questions are nbgrader task cells graded by people: an
unanswered one gets 0 and "No response." at once, an answered one waits for a TA (the
formgrader lists it as needing a manual grade) and gets the autograder's note as its
automatic comment. ``import_manual`` writes TAs' points from a CSV instead. ``read_grades``
gives back what the gradebook holds, for the exports.

The database is the course's ``gradebook.db`` by default (``nbgrader_config.py``'s
``CourseDirectory.db_url`` when set), or any SQLAlchemy URL (``postgresql://...``). When it
does not know the assignment yet, nbgrader's own ``generate_assignment`` records it from the
source notebook, exactly as ``tools/release.py`` does. Every run validates all of its input
first and then writes in one database transaction: a failure leaves the gradebook as it was.
Re-runs update the same rows in place.
"""

import copy
import csv
import json
import logging
import math
import os
import re
import sys
import tempfile
import unicodedata
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tools import release
from tools.checks import CHECKS, CHECKS_BY_NAME, points_by_cell, task_points_by_cell

ROOT = release.ROOT
ASSIGNMENT = release.ASSIGNMENT
NOTEBOOK = release.NOTEBOOK
RELEASED_NOTEBOOK = ROOT / release.RELEASE_DIR / f"{NOTEBOOK}.ipynb"
MADE_BY = "tools/gradebook.py sync"  # marks the autograded notebooks that sync writes
MANUAL = [c for c in CHECKS if c.kind == "manual"]
NO_RESPONSE = "No response."
PG_CONNECT_TIMEOUT = "10"  # seconds; an unreachable server fails instead of hanging
MAX_ID = 128  # nbgrader's Student.id is a VARCHAR(128)


class GradebookError(Exception):
    """Bad input or an unusable database; the message is one line naming what to fix."""


# --- the database -------------------------------------------------------------------------


def course_config(root: Path = ROOT):
    """The course's ``nbgrader_config.py`` (``root``'s own, else this kit's), as nbgrader
    loads it, rooted at ``root``."""
    try:
        return release.nbgrader_config(
            root if (root / "nbgrader_config.py").is_file() else ROOT, root
        )
    except release.ReleaseError as e:
        raise GradebookError(str(e)) from e


def resolve_url(db: str | None, root: Path = ROOT) -> str:
    """The database URL: ``db`` (a URL, or a path to an SQLite file), else the course's
    ``CourseDirectory.db_url``, else ``sqlite:///<root>/gradebook.db``."""
    from nbgrader.coursedir import CourseDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if db is None:
        url = CourseDirectory(config=course_config(root)).db_url
    elif "://" not in db:
        url = f"sqlite:///{Path(db).resolve()}"
    else:
        url = db
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise GradebookError(
            f"--db {db!r}: not a database URL; give sqlite:///PATH, a path, or "
            f"postgresql://USER@HOST:PORT/DB"
        ) from e
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": PG_CONNECT_TIMEOUT})
        url = parsed.render_as_string(hide_password=False)
    return url


def shown(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _course_id() -> str:
    from nbgrader.coursedir import CourseDirectory

    return CourseDirectory(config=course_config()).course_id or "default_course"


def _alembic_on_path() -> None:
    # A new gradebook runs nbgrader's `alembic` console script: find it beside this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _first_line(e: BaseException) -> str:
    cause = getattr(e, "orig", None) or e
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _unreachable(url: str, e: BaseException) -> GradebookError:
    return GradebookError(
        f"cannot use the gradebook database {shown(url)} ({_first_line(e)}); check --db (or "
        f"CourseDirectory.db_url in nbgrader_config.py) and that the server is running"
    )


def connect(url: str, must_exist: bool = False):
    """An ``nbgrader.api.Gradebook`` on ``url`` (created when new, unless ``must_exist``)."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SQLAlchemyError

    path = _sqlite_path(url)
    if path is not None:
        if must_exist and not path.is_file():
            raise GradebookError(
                f"no gradebook at {path}; run `python tools/gradebook.py sync OUT` first"
            )
        if not path.parent.is_dir():
            raise GradebookError(
                f"cannot create the gradebook {path}: folder {path.parent} does not exist"
            )
    _alembic_on_path()
    try:
        return Gradebook(url, course_id=_course_id())
    except (SQLAlchemyError, OSError) as e:
        raise _unreachable(url, e) from e


@contextmanager
def _quiet(name: str):
    """No records of the logger ``name`` below CRITICAL (nbgrader logs every database error it
    passes on; the tools report it once, in one line)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


@contextmanager
def opened(url: str, must_exist: bool = False):
    """The gradebook, for reading (and for the checks made before writing)."""
    gb = connect(url, must_exist)
    try:
        yield gb
    finally:
        gb.close()


@contextmanager
def transaction(url: str):
    """The gradebook with every write of the block in one database transaction.

    nbgrader's API commits after each call; its session is bound here to one connection
    whose outer transaction is committed only when the block ends without an error (each
    ``commit()`` of the API then only releases a savepoint), so a failure half-way leaves
    the database as it was."""
    from nbgrader.api import InvalidEntry
    from sqlalchemy import event
    from sqlalchemy.exc import SAWarning, SQLAlchemyError
    from sqlalchemy.orm import scoped_session, sessionmaker

    gb = connect(url)
    gb.db.remove()
    gb.engine.dispose()
    if gb.engine.dialect.name == "sqlite":
        # pysqlite's own transaction handling breaks savepoints; SQLAlchemy's documented
        # recipe hands the BEGIN to SQLAlchemy.
        @event.listens_for(gb.engine, "connect")
        def _no_pysqlite_transactions(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        @event.listens_for(gb.engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        conn = gb.engine.connect()
        outer = conn.begin()
    except SQLAlchemyError as e:
        gb.close()
        raise _unreachable(url, e) from e
    gb.db = scoped_session(
        sessionmaker(bind=conn, join_transaction_mode="create_savepoint", autoflush=True)
    )
    try:
        with _quiet("tornado.application"), warnings.catch_warnings():
            # nbgrader's add_submission builds its rows before adding them to the session
            warnings.filterwarnings("ignore", message=".*not in session", category=SAWarning)
            yield gb
        gb.db.commit()
        outer.commit()
    except (SQLAlchemyError, InvalidEntry) as e:
        outer.rollback()
        raise GradebookError(
            f"the gradebook database {shown(url)} refused a write, so nothing was written "
            f"({_first_line(e)})"
        ) from e
    except BaseException:
        outer.rollback()
        raise
    finally:
        gb.db.remove()
        conn.close()
        gb.close()


# --- the assignment's schema --------------------------------------------------------------


@dataclass(frozen=True)
class Schema:
    """An assignment's notebooks, each with its graded cells' points (autograded test cells
    and manually graded task cells)."""

    notebooks: dict[str, tuple[dict[str, float], dict[str, float]]]

    def describe(self) -> str:
        parts = []
        for name, (grade, task) in sorted(self.notebooks.items()):
            cells = ", ".join(f"{k}={v:g}" for k, v in sorted({**grade, **task}.items()))
            parts.append(f"{name} [{cells}]")
        return "; ".join(parts) or "no notebooks"


def source_schema(root: Path = ROOT) -> Schema:
    """What ``generate_assignment`` records from the source notebook; refuses a notebook
    whose points disagree with ``tools/checks.py``."""
    try:
        nb = release.notebook_ipynb(root)
    except release.ReleaseError as e:
        raise GradebookError(str(e)) from e
    grade, task = {}, {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            grade[meta["grade_id"]] = float(meta["points"])
        if meta.get("task"):
            task[meta["grade_id"]] = float(meta["points"])
    want_grade = {k: float(v) for k, v in points_by_cell().items()}
    want_task = {k: float(v) for k, v in task_points_by_cell().items()}
    if (grade, task) != (want_grade, want_task):
        have, want = sorted({**grade, **task}.items()), sorted({**want_grade, **want_task}.items())
        raise GradebookError(
            f"{release.SOURCE_NOTEBOOK} and tools/checks.py disagree on the graded cells "
            f"({have} vs {want}); fix one of them and rerun python tools/release.py"
        )
    return Schema({NOTEBOOK: (grade, task)})


def gradebook_schema(gb, assignment: str = ASSIGNMENT) -> Schema | None:
    """The assignment as the gradebook holds it, or ``None`` when it holds no such one."""
    from nbgrader.api import MissingEntry

    try:
        found = gb.find_assignment(assignment)
    except MissingEntry:
        return None
    return Schema(
        {
            nb.name: (
                {c.name: float(c.max_score) for c in nb.grade_cells},
                {c.name: float(c.max_score) for c in nb.task_cells},
            )
            for nb in found.notebooks
        }
    )


def check_schema(gb, url: str, expected: Schema, must_exist: bool = False) -> bool:
    """Whether the gradebook already holds the assignment; refuses one made for another."""
    held = gradebook_schema(gb)
    if held is None:
        if must_exist:
            raise GradebookError(
                f"the gradebook {shown(url)} has no assignment {ASSIGNMENT!r}; run "
                f"`python tools/gradebook.py sync OUT` first"
            )
        return False
    if held != expected:
        raise GradebookError(
            f"the gradebook {shown(url)} holds an assignment {ASSIGNMENT!r} made for another "
            f"notebook ({held.describe()}; this kit's is {expected.describe()}); use another "
            f"--db, or run python tools/release.py if the source notebook changed"
        )
    return True


def record_assignment(url: str, root: Path = ROOT) -> None:
    """Record the assignment (notebook, cells, points, locked sources) in the gradebook with
    nbgrader's own ``generate_assignment``, run on the source notebook in a scratch course
    directory, as ``tools/release.py`` runs it in the real one."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    try:
        nb = release.notebook_ipynb(root)
        with tempfile.TemporaryDirectory(prefix="hw2-gradebook-") as tmp:
            course = Path(tmp)
            target = course / release.NB_SOURCE / f"{NOTEBOOK}.ipynb"
            target.parent.mkdir(parents=True)
            nbformat.write(nb, target)
            cfg = release.nbgrader_config(root, course)
            cfg.CourseDirectory.db_url = url
            # nbgrader files an assignment under its course, which must exist: PostgreSQL
            # enforces it, so the course id is never empty (nbgrader's Gradebook default).
            cfg.CourseDirectory.course_id = _course_id()
            _alembic_on_path()
            api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
            with _quiet("tornado.application"):
                result = api.generate_assignment(ASSIGNMENT, force=True)
    except release.ReleaseError as e:
        raise GradebookError(str(e)) from e
    if not result["success"]:
        text = (result.get("log") or "") + "\n" + (result.get("error") or "")
        causes = [
            line.strip()
            for line in text.splitlines()
            if re.match(r"\s*[\w.]+(Error|Exception|Violation)\b.*: ", line)
            and "NbGraderException" not in line
        ]
        raise GradebookError(
            f"nbgrader generate_assignment could not record {ASSIGNMENT} in {shown(url)} "
            f"({causes[0] if causes else 'see the nbgrader log'})"
        )


# --- results -------------------------------------------------------------------------------


def load_results(out: Path) -> list[dict]:
    """The results documents of the students of ``OUT/grades.json``, validated."""
    summary_path = out / "grades.json"
    try:
        summary = json.loads(summary_path.read_text())
        students = list(summary["students"])
    except FileNotFoundError as e:
        raise GradebookError(
            f"{summary_path}: missing; grade first: python tools/autograde.py SUBMITTED --out {out}"
        ) from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GradebookError(f"{summary_path}: not a grades.json written by autograde") from e
    docs = []
    for sid in students:
        path = out / "results" / f"{sid}.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise GradebookError(
                f"{path}: missing or unreadable; rerun tools/autograde.py --out {out}"
            ) from e
        problem = _results_problem(doc, sid)
        if problem:
            raise GradebookError(f"{path}: {problem}; rerun tools/autograde.py --out {out}")
        docs.append(doc)
    return docs


def _results_problem(doc: dict, sid: str) -> str | None:
    if not isinstance(doc, dict) or doc.get("student_id") != sid:
        return f"holds no results for student {sid!r}"
    if not sid or len(sid) > MAX_ID or unicodedata.normalize("NFC", sid) != sid:
        return f"student id {sid!r} is not usable in nbgrader (1 to {MAX_ID} characters, NFC)"
    checks = doc.get("checks")
    if not isinstance(checks, list):
        return "holds no checks"
    names = [c.get("check") for c in checks if isinstance(c, dict)]
    if sorted(names) != sorted(c.name for c in CHECKS):
        return "its checks are not those of tools/checks.py (results of another grader)"
    for c in checks:
        points = c.get("points")
        limit = CHECKS_BY_NAME[c["check"]].points
        if not isinstance(points, int | float) or not 0 <= points <= limit:
            return f"check {c['check']} has {points!r} points (0 to {limit})"
    return None


def cell_scores(doc: dict) -> dict[str, float]:
    """Automatic points per autograded notebook cell: the sum of its checks' points."""
    scores = {cell: 0.0 for cell in points_by_cell()}
    for c in doc["checks"]:
        check = CHECKS_BY_NAME[c["check"]]
        if check.kind == "auto":
            scores[check.grade_id] += float(c["points"])
    return scores


def _answer_state(result: dict) -> tuple[bool, str]:
    """``(answered, comment)`` of a manual check's result."""
    status, message = result.get("status"), str(result.get("message", ""))
    if status == "manual" and message != "unanswered":
        return True, message
    return False, f"{NO_RESPONSE} ({message})" if message else NO_RESPONSE


# --- sync ----------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What a sync wrote."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    not_in_results: list[str] = field(default_factory=list)
    recorded_assignment: bool = False
    notebooks: list[Path] = field(default_factory=list)
    kept_notebooks: list[Path] = field(default_factory=list)  # nbgrader autograde's own


def sync(out: Path, url: str, course: Path | None = ROOT, progress: bool = True) -> SyncReport:
    """Write the results of ``out`` into the gradebook at ``url``, then (unless ``course`` is
    ``None``) each student's notebook into the course's ``autograded/<id>/hw2/`` folder,
    where the formgrader shows it to the TAs."""
    from nbgrader.api import MissingEntry
    from tqdm import tqdm

    docs = load_results(out)
    expected = source_schema()
    report = SyncReport()
    with opened(url) as gb:
        known = check_schema(gb, url, expected)
    if not known:
        record_assignment(url)
        report.recorded_assignment = True
        with opened(url) as gb:
            check_schema(gb, url, expected, must_exist=True)
    with transaction(url) as gb:
        ours = {d["student_id"] for d in docs}
        report.not_in_results = sorted(
            s.student.id for s in gb.assignment_submissions(ASSIGNMENT) if s.student.id not in ours
        )
        for doc in tqdm(docs, desc="gradebook", unit="student", disable=not progress):
            sid = doc["student_id"]
            try:
                gb.find_student(sid)
            except MissingEntry:
                gb.add_student(sid)
            try:
                gb.find_submission(ASSIGNMENT, sid)
                report.updated.append(sid)
            except MissingEntry:
                gb.add_submission(ASSIGNMENT, sid)
                report.added.append(sid)
            _write_student(gb, doc)
    if course is not None:
        _write_notebooks(docs, course, report)
    return report


def _write_student(gb, doc: dict) -> None:
    sid = doc["student_id"]
    for cell, score in cell_scores(doc).items():
        grade = gb.find_grade(cell, NOTEBOOK, ASSIGNMENT, sid)
        grade.auto_score = score
        # as nbgrader's autograde: a grade a TA overrode is flagged for another look
        grade.needs_manual_grade = grade.manual_score is not None
    results = {c["check"]: c for c in doc["checks"]}
    for check in MANUAL:
        grade = gb.find_grade(check.grade_id, NOTEBOOK, ASSIGNMENT, sid)
        comment = gb.find_comment(check.grade_id, NOTEBOOK, ASSIGNMENT, sid)
        answered, note = _answer_state(results[check.name])
        # as nbgrader does for an untouched answer cell: no response scores 0 at once
        grade.auto_score = None if answered else 0.0
        grade.needs_manual_grade = answered and grade.manual_score is None
        comment.auto_comment = note
    gb.db.commit()


# --- the notebooks the formgrader shows ----------------------------------------------------


def graded_notebook(doc: dict, released: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student's notebook as the formgrader shows it to a TA: the released notebook with
    each test cell's output listing its checks' results (a hidden check's as the student's
    feedback words it) and each answer cell showing the student's answer, sanitized."""
    from cs236781.answers import clean_answer, is_unanswered
    from tools.grading.feedback import render_markdown, student_message

    nb = copy.deepcopy(released)
    nb.metadata["hw2"] = {**nb.metadata.get("hw2", {}), "graded_by": MADE_BY,
                          "student_id": doc["student_id"], "grader": doc.get("grader")}  # fmt: skip
    results = {c["check"]: c for c in doc["checks"]}
    answers = doc.get("answers", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        lines = [
            f"{c.name}: {results[c.name]['status']}, {results[c.name]['points']:g} / {c.points}"
            f" points. {student_message(results[c.name], c.hidden)}"
            for c in CHECKS
            if c.kind == "auto" and c.grade_id == grade_id
        ]
        if lines:
            text = "\n".join(lines) + "\n"
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        for check in MANUAL:
            if f"answers.{check.name})" not in cell.source:
                continue
            answer = answers.get(check.name)
            if answer is None or is_unanswered(answer):
                note = f"({results[check.name]['message'] or 'unanswered'})\n"
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=note)]
            else:
                data = {"text/html": render_markdown(clean_answer(answer)), "text/plain": answer}
                cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
    return nb


def _write_notebooks(docs: list[dict], course: Path, report: SyncReport) -> None:
    from nbgrader.coursedir import CourseDirectory

    from tools.grading.runner import write_atomic

    released = nbformat.read(RELEASED_NOTEBOOK, as_version=4)
    coursedir = CourseDirectory(config=course_config(course))
    for doc in docs:
        folder = coursedir.format_path(
            coursedir.autograded_directory, doc["student_id"], ASSIGNMENT
        )
        path = Path(folder) / f"{NOTEBOOK}.ipynb"
        if path.is_file():
            try:
                made_by = nbformat.read(path, as_version=4).metadata.get("hw2", {}).get("graded_by")
            except (OSError, ValueError):
                made_by = None
            if made_by != MADE_BY:  # nbgrader autograde's own run: left as it is
                report.kept_notebooks.append(path)
                continue
        nb = graded_notebook(doc, released)
        write_atomic(path, (nbformat.writes(nb) + "\n").encode())
        report.notebooks.append(path)


# --- manual grades from a CSV ---------------------------------------------------------------


def read_manual_csv(path: Path) -> list[tuple[str, dict[str, float], dict[str, str]]]:
    """Rows ``(student_id, {check: points}, {check: comment})`` of a TAs' CSV: a
    ``student_id`` column and one column per manual check (``part4_q1``...), optionally
    ``<check>_comment``; a blank cell leaves that grade as it is. Validated whole."""
    allowed = {c.name for c in MANUAL} | {f"{c.name}_comment" for c in MANUAL}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except FileNotFoundError as e:
        raise GradebookError(f"{path}: no such file") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise GradebookError(f"{path}: not a readable UTF-8 CSV ({e})") from e
    header = [h.strip() for h in (lines[0] if lines else [])]
    raw = [
        (line, [v.strip() for v in values])
        for line, values in enumerate(lines[1:], start=2)
        if any(v.strip() for v in values)
    ]
    if "student_id" not in header:
        raise GradebookError(
            f"{path}: no student_id column (header: {', '.join(header) or 'empty'})"
        )
    unknown = [h for h in header if h != "student_id" and h not in allowed]
    if unknown or len(set(header)) != len(header):
        raise GradebookError(
            f"{path}: unknown or repeated columns {unknown or header}; allowed: student_id, "
            f"{', '.join(sorted(allowed))}"
        )
    if not any(c.name in header for c in MANUAL):
        raise GradebookError(f"{path}: no grade column ({', '.join(c.name for c in MANUAL)})")
    rows, seen = [], {}
    for line, values in raw:
        if len(values) != len(header):
            raise GradebookError(f"{path} line {line}: {len(values)} cells, not {len(header)}")
        row = dict(zip(header, values, strict=True))
        sid = unicodedata.normalize("NFC", row["student_id"])
        if not sid:
            raise GradebookError(f"{path} line {line}: empty student_id")
        if sid in seen:
            raise GradebookError(f"{path} line {line}: student {sid!r} already on line {seen[sid]}")
        seen[sid] = line
        points, comments = {}, {}
        for check in MANUAL:
            text = row.get(check.name, "")
            if text:
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not 0 <= value <= check.points:
                    raise GradebookError(
                        f"{path} line {line}: {check.name} = {text!r} for {sid!r}; give a "
                        f"number from 0 to {check.points}, or leave it blank"
                    )
                points[check.name] = value
            if row.get(f"{check.name}_comment"):
                comments[check.name] = row[f"{check.name}_comment"]
        rows.append((sid, points, comments))
    return rows


def import_manual(path: Path, url: str) -> int:
    """Write the TAs' points (and comments) of ``path`` into the gradebook; return how many
    grades were set. Every row must name a student the gradebook has a submission of."""
    rows = read_manual_csv(path)
    with opened(url, must_exist=True) as gb:
        check_schema(gb, url, source_schema(), must_exist=True)
        have = {s.student.id for s in gb.assignment_submissions(ASSIGNMENT)}
    missing = [sid for sid, _, _ in rows if sid not in have]
    if missing:
        raise GradebookError(
            f"{path}: no {ASSIGNMENT} submission in the gradebook for {', '.join(missing)}; "
            f"fix the ids, or sync their results first"
        )
    count = 0
    with transaction(url) as gb:
        for sid, points, comments in rows:
            for check in MANUAL:
                if check.name in points:
                    grade = gb.find_grade(check.grade_id, NOTEBOOK, ASSIGNMENT, sid)
                    grade.manual_score = points[check.name]
                    grade.needs_manual_grade = False  # as the formgrader does
                    count += 1
                if check.name in comments:
                    comment = gb.find_comment(check.grade_id, NOTEBOOK, ASSIGNMENT, sid)
                    comment.manual_comment = comments[check.name]
            gb.db.commit()
    return count


# --- reading back --------------------------------------------------------------------------


@dataclass(frozen=True)
class CellGrade:
    """One graded cell of one student's notebook, as the gradebook holds it."""

    score: float
    max_score: float
    auto_score: float | None
    manual_score: float | None
    needs_manual_grade: bool
    comment: str | None


@dataclass(frozen=True)
class StudentGrades:
    """One student's submission: nbgrader's total and each graded cell."""

    student_id: str
    score: float
    max_score: float
    cells: dict[str, CellGrade]

    def manual_points(self) -> dict[str, float | None]:
        """Each manual check's points, ``None`` while it waits for a TA."""
        out = {}
        for check in MANUAL:
            cell = self.cells[check.grade_id]
            out[check.name] = None if cell.needs_manual_grade else cell.score
        return out


def read_grades(url: str) -> dict[str, StudentGrades]:
    """Every submission of the assignment in the gradebook, by student id."""
    with opened(url, must_exist=True) as gb:
        check_schema(gb, url, source_schema(), must_exist=True)
        found = {}
        for sub in gb.assignment_submissions(ASSIGNMENT):
            (nb,) = [n for n in sub.notebooks if n.name == NOTEBOOK]
            comments = {c.name: c.comment for c in nb.comments}
            cells = {
                g.name: CellGrade(
                    float(g.score), float(g.max_score), g.auto_score, g.manual_score,
                    bool(g.needs_manual_grade), comments.get(g.name),
                )
                for g in nb.grades
            }  # fmt: skip
            sid = sub.student.id
            found[sid] = StudentGrades(sid, float(sub.score), float(sub.max_score), cells)
    return found


def stale(docs: list[dict], grades: dict[str, StudentGrades]) -> list[str]:
    """Students of ``docs`` whose automatic points the gradebook does not hold (not synced,
    or synced from other results)."""
    bad = []
    for doc in docs:
        held = grades.get(doc["student_id"])
        if held is None or any(
            held.cells[cell].auto_score != score for cell, score in cell_scores(doc).items()
        ):
            bad.append(doc["student_id"])
    return bad
