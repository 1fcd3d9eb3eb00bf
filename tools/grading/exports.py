"""Uploads for the LMS, made from a grading run's results and the gradebook's totals.

- ``canvas_csv``: a Canvas gradebook import: the header ``Student, ID, SIS User ID, SIS Login
  ID, Section, <assignment> (<canvas assignment id>)``, a ``Points Possible`` row, then one
  row per student of the staff's roster (Canvas's own gradebook export), matched to the
  graded students by one roster column (``SIS Login ID`` unless told otherwise). A roster
  student without a submission gets a blank cell by default, which Canvas's import leaves
  as it was (``missing="zero"`` writes 0 instead).
- ``gradescope_results``: Gradescope's ``results.json`` of one student: every check a test
  (``name``, ``score``, ``max_score``, ``status``, ``output``, ``visibility``); hidden
  checks are ``after_published`` and say only how they ended (``feedback.student_message``),
  never their own messages or prints, which could reveal their configuration; the written
  answers are tests once a TA has graded them. ``score`` is the gradebook's total, as
  ``nbgrader export`` lists it.

Totals are the gradebook's (automatic + manual, TAs' overrides included); an export refuses
results that the gradebook does not hold (run ``sync`` first).
"""

import csv
import io
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from tools.checks import CHECKS, MAX_POINTS
from tools.grading import gradebook
from tools.grading.feedback import student_message
from tools.grading.gradebook import GradebookError, StudentGrades
from tools.grading.runner import write_atomic

CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "Points Possible"
MISSING = ("blank", "zero")


@dataclass
class Export:
    """An export's files (path relative to its target, content) and the warnings to list."""

    files: dict[str, bytes]
    warnings: list[str] = field(default_factory=list)


def load(out: Path, url: str) -> tuple[list[dict], dict[str, StudentGrades]]:
    """The results of ``out`` and the gradebook's grades of the same students."""
    docs = gradebook.load_results(out)
    grades = gradebook.read_grades(url)
    behind = gradebook.stale(docs, grades)
    if behind:
        raise GradebookError(
            f"the gradebook {gradebook.shown(url)} does not hold the automatic points of "
            f"{out} for {_listed(behind)}; run `python tools/gradebook.py sync {out}` first"
        )
    return docs, grades


def _listed(ids: list[str], n: int = 8) -> str:
    more = f" and {len(ids) - n} more" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


def _points(x: float) -> str:
    return f"{x:g}"


def ungraded(docs: list[dict], grades: dict[str, StudentGrades]) -> list[str]:
    """Students whose written answers still wait for a TA."""
    return [
        d["student_id"] for d in docs if None in grades[d["student_id"]].manual_points().values()
    ]


# --- Canvas ----------------------------------------------------------------------------------


def read_roster(path: Path, key: str) -> list[dict[str, str]]:
    """The roster's student rows (Canvas's gradebook export or the same columns), validated:
    every row has a ``key`` and no two rows share one."""
    if key not in ("ID", "SIS User ID", "SIS Login ID"):
        raise GradebookError(f"--key {key!r}: use ID, SIS User ID or SIS Login ID")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
        header = [h.strip() for h in (lines[0] if lines else [])]
    except FileNotFoundError as e:
        raise GradebookError(f"roster {path}: no such file") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise GradebookError(f"roster {path}: not a readable UTF-8 CSV ({e})") from e
    if len(set(header)) != len(header):
        raise GradebookError(f"roster {path}: a column name is repeated in its header")
    lacking = [c for c in CANVAS_COLUMNS if c not in header]
    if lacking:
        raise GradebookError(
            f"roster {path}: no column {', '.join(lacking)}; give Canvas's gradebook export "
            f"(Grades > Export), whose first columns are {', '.join(CANVAS_COLUMNS)}"
        )
    rows, seen = [], {}
    for line, values in enumerate(lines[1:], start=2):
        row = {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}
        row[key] = unicodedata.normalize("NFC", row[key])  # as the graded ids are
        if not any(row.values()) or row["Student"] == POINTS_POSSIBLE:
            continue
        if not row[key]:
            raise GradebookError(
                f"roster {path} line {line}: {row['Student'] or 'a student'} has no {key}; "
                f"fill it in or use --key with another column"
            )
        if row[key] in seen:
            raise GradebookError(
                f"roster {path} line {line}: {key} {row[key]!r} is already on line "
                f"{seen[row[key]]}; each student once"
            )
        seen[row[key]] = line
        rows.append(row)
    if not rows:
        raise GradebookError(f"roster {path}: no students")
    return rows


def canvas_csv(
    docs: list[dict],
    grades: dict[str, StudentGrades],
    roster: list[dict[str, str]],
    key: str,
    assignment: str,
    canvas_id: str,
    missing: str = "blank",
    ignore_unlisted: bool = False,
) -> Export:
    """The Canvas import file (``canvas.csv``) and its warnings."""
    if missing not in MISSING:
        raise GradebookError(f"--missing {missing!r}: use blank or zero")
    if not str(canvas_id).strip().isdigit():
        raise GradebookError(
            f"--canvas-id {canvas_id!r}: the number at the end of the assignment's Canvas "
            f"address (.../assignments/NUMBER)"
        )
    listed = {row[key] for row in roster}
    graded = [d["student_id"] for d in docs]
    unlisted = [sid for sid in graded if sid not in listed]
    submitted = set(graded)
    warnings = []
    if unlisted and not ignore_unlisted:
        raise GradebookError(
            f"graded students not on the roster (by {key}): {_listed(unlisted)}; fix the "
            f"ids or the roster, or pass --ignore-unlisted to leave them out"
        )
    if unlisted:
        warnings.append(f"not on the roster, left out: {_listed(unlisted, 50)}")
    column = f"{assignment} ({canvas_id.strip()})"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*CANVAS_COLUMNS, column])
    writer.writerow([POINTS_POSSIBLE, "", "", "", "", _points(MAX_POINTS)])
    no_submission = []
    for row in roster:
        held = grades.get(row[key]) if row[key] in submitted else None
        if held is None:
            no_submission.append(row[key])
            cell = "0" if missing == "zero" else ""
        else:
            cell = _points(held.score)
        writer.writerow([*(row[c] for c in CANVAS_COLUMNS), cell])
    if no_submission:
        filled = "0" if missing == "zero" else "blank (Canvas keeps what it had)"
        warnings.append(f"no submission, {filled}: {_listed(no_submission, 50)}")
    waiting = [sid for sid in ungraded(docs, grades) if sid in listed]
    if waiting:
        warnings.append(
            f"written answers not graded yet, totals without them: {_listed(waiting, 50)}"
        )
    return Export({"canvas.csv": buf.getvalue().encode()}, warnings)


# --- Gradescope ------------------------------------------------------------------------------


def gradescope_results(doc: dict, held: StudentGrades) -> dict:
    """Gradescope's ``results.json`` of one student."""
    results = {c["check"]: c for c in doc["checks"]}
    manual = held.manual_points()
    tests = []
    for check in CHECKS:
        result = results[check.name]
        test = {"name": f"{check.name}: {check.title}", "max_score": check.points}
        if check.kind == "manual":
            if manual[check.name] is None:
                continue  # waits for a TA; Gradescope shows no test rather than a false 0
            score = manual[check.name]
            output = held.cells[check.grade_id].comment or "graded by the course staff"
            visibility = "visible"
        elif check.hidden:
            score = float(result["points"])
            output = student_message(result, hidden=True)  # as the feedback page words it
            visibility = "after_published"
        else:
            score = float(result["points"])
            output = result["message"]
            if result.get("output"):
                output += f"\n\noutput:\n{result['output']}"
            visibility = "visible"
        status = "passed" if score >= check.points else "failed"
        tests.append({**test, "score": score, "status": status, "output": output,
                      "visibility": visibility})  # fmt: skip
    waiting = [c.title for c in CHECKS if c.kind == "manual" and manual[c.name] is None]
    summary = (
        f"Automatic checks of hw2 Part 4; total {_points(held.score)} / {_points(MAX_POINTS)}."
    )
    if waiting:
        summary += f" Not graded yet by the staff: {'; '.join(waiting)}."
    if doc.get("notes"):
        summary += "\n" + "\n".join(doc["notes"])
    return {"score": held.score, "output": summary, "visibility": "visible", "tests": tests}


def gradescope(docs: list[dict], grades: dict[str, StudentGrades]) -> Export:
    """``<student_id>/results.json`` for every graded student."""
    files = {}
    for doc in docs:
        sid = doc["student_id"]
        if sid in (".", "..") or "/" in sid or "\\" in sid or sid.startswith("."):
            raise GradebookError(f"student id {sid!r} cannot name a folder; rename it")
        text = json.dumps(gradescope_results(doc, grades[sid]), indent=1, ensure_ascii=False)
        files[f"{sid}/results.json"] = (text + "\n").encode()
    waiting = ungraded(docs, grades)
    warnings = [f"written answers not graded yet: {_listed(waiting, 50)}"] if waiting else []
    return Export(files, warnings)


def write(export: Export, target: Path) -> None:
    """Write every file of ``export`` under ``target`` (each atomically)."""
    for rel, data in export.files.items():
        write_atomic(target / rel, data)
