"""Grades where staff keep them: nbgrader's gradebook, Canvas, Gradescope.

Usage (from the repository root, the nbgrader course directory):
    python tools/gradebook.py sync OUT                   # OUT of tools/autograde.py -> gradebook
    python tools/gradebook.py import-manual grades.csv   # TAs' points for part4_q1, part4_q2
    python tools/gradebook.py report OUT                 # OUT/report.html with the manual points
    python tools/gradebook.py canvas OUT --roster roster.csv --canvas-id 12345
    python tools/gradebook.py gradescope OUT             # OUT/gradescope/<id>/results.json

Every command takes ``--db URL`` (``sqlite:///PATH``, a path, or ``postgresql://USER@HOST/DB``);
the default is ``nbgrader_config.py``'s ``CourseDirectory.db_url``, else ``./gradebook.db``.
``nbgrader export`` and the formgrader read the same database. Bad input stops with one line
saying what to fix, and nothing is written.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.grading import exports, gradebook  # noqa: E402
from tools.grading.gradebook import GradebookError  # noqa: E402


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        print(f"gradebook: warning: {w}", file=sys.stderr)


def cmd_sync(args) -> int:
    url = gradebook.resolve_url(args.db)
    rep = gradebook.sync(args.out, url, course=args.course, progress=not args.quiet)
    if rep.recorded_assignment:
        print(f"gradebook: recorded assignment {gradebook.ASSIGNMENT} (generate_assignment)")
    print(
        f"gradebook: {len(rep.added)} new and {len(rep.updated)} updated submission(s) of "
        f"{gradebook.ASSIGNMENT} in {gradebook.shown(url)}"
    )
    if rep.notebooks:
        folder = rep.notebooks[0].parent.parent.parent
        print(f"gradebook: {len(rep.notebooks)} notebook(s) for the formgrader in {folder}/")
    if rep.kept_notebooks:
        kept = ", ".join(str(p) for p in rep.kept_notebooks)
        _warn([f"notebooks made by nbgrader autograde, left as they were: {kept}"])
    if rep.not_in_results:
        _warn(
            [f"submissions not in {args.out}, left as they were: {', '.join(rep.not_in_results)}"]
        )
    return 0


def cmd_import_manual(args) -> int:
    url = gradebook.resolve_url(args.db)
    n = gradebook.import_manual(args.csv, url)
    print(f"gradebook: set {n} manual grade(s) from {args.csv} in {gradebook.shown(url)}")
    return 0


def cmd_report(args) -> int:
    from tools.grading import report

    url = gradebook.resolve_url(args.db)
    docs, grades = exports.load(args.out, url)
    manual = {d["student_id"]: grades[d["student_id"]].manual_points() for d in docs}
    skipped = json.loads((args.out / "grades.json").read_text()).get("skipped", [])
    report.write_totals(docs, args.out, skipped, manual)
    waiting = exports.ungraded(docs, grades)
    if waiting:
        _warn([f"written answers not graded yet: {', '.join(waiting)}"])
    print(f"gradebook: added the written answers' points to {args.out}/report.html and grades.json")
    return 0


def cmd_canvas(args) -> int:
    url = gradebook.resolve_url(args.db)
    roster = exports.read_roster(args.roster, args.key)
    docs, grades = exports.load(args.out, url)
    export = exports.canvas_csv(
        docs,
        grades,
        roster,
        args.key,
        args.assignment,
        args.canvas_id,
        missing=args.missing,
        ignore_unlisted=args.ignore_unlisted,
    )
    target = args.output or args.out / "canvas.csv"
    exports.write(exports.Export({target.name: export.files["canvas.csv"]}), target.parent)
    _warn(export.warnings)
    print(f"gradebook: wrote {target} ({len(roster)} roster students)")
    return 0


def cmd_gradescope(args) -> int:
    url = gradebook.resolve_url(args.db)
    docs, grades = exports.load(args.out, url)
    export = exports.gradescope(docs, grades)
    target = args.output or args.out / "gradescope"
    exports.write(export, target)
    _warn(export.warnings)
    print(f"gradebook: wrote {len(export.files)} results.json under {target}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", help="gradebook database URL or SQLite path (default: the course's)")
        p.set_defaults(func=func)
        return p

    p = command("sync", cmd_sync, "write OUT's results into the gradebook (re-runs update)")
    p.add_argument("out", type=Path, help="the --out folder of tools/autograde.py")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--course",
        type=Path,
        default=gradebook.ROOT,
        help="course directory whose autograded/<id>/hw2/ get the notebooks the "
        "formgrader shows (default: this repository)",
    )

    p = command("import-manual", cmd_import_manual, "import TAs' points for the written answers")
    p.add_argument(
        "csv",
        type=Path,
        help="columns student_id, part4_q1, part4_q2 "
        "[, part4_q1_comment, part4_q2_comment]; blank cells are left as they are",
    )

    p = command("report", cmd_report, "add the written answers' points to OUT's report")
    p.add_argument("out", type=Path)

    p = command("canvas", cmd_canvas, "Canvas gradebook import CSV of the totals")
    p.add_argument("out", type=Path)
    p.add_argument("--roster", type=Path, required=True, help="Canvas's gradebook export")
    p.add_argument("--canvas-id", required=True, help="the Canvas assignment id (a number)")
    p.add_argument("--assignment", default="hw2", help="the assignment's name in Canvas")
    p.add_argument(
        "--key",
        default="SIS Login ID",
        help="roster column that holds the graded student ids (default: %(default)s)",
    )
    p.add_argument(
        "--missing",
        choices=exports.MISSING,
        default="blank",
        help="roster students without a submission: blank (default; Canvas keeps "
        "its grade) or zero",
    )
    p.add_argument(
        "--ignore-unlisted",
        action="store_true",
        help="leave out graded students not on the roster instead of stopping",
    )
    p.add_argument("-o", "--output", type=Path, help="default: OUT/canvas.csv")

    p = command("gradescope", cmd_gradescope, "Gradescope results.json per student")
    p.add_argument("out", type=Path)
    p.add_argument("-o", "--output", type=Path, help="default: OUT/gradescope/")

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GradebookError as e:
        print(f"gradebook: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
