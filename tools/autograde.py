"""Grade a batch of hw2 Part 4 submissions in a sandbox; write grades, a report and feedback.

Usage:
    python tools/autograde.py SUBMITTED --out OUT [--workers N] [--timeout S] [--force]
                              [--unsandboxed]

SUBMITTED holds ``<student_id>/hw2/...`` folders (nbgrader's layout) and/or
``<student_id>.zip`` files (as ``python -m cs236781.submit`` writes them). OUT receives
``grades.csv``, ``grades.json``, ``report.html``, ``feedback/<student_id>.html`` and
``results/<student_id>.json`` (one per student, written as soon as it is graded; a re-run
skips students already graded unless --force).

Exit status 0 whenever the batch was graded, whatever the scores; 1 with a one-line message
when the grader cannot run.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.grading import report  # noqa: E402
from tools.grading.runner import Options, run_batch  # noqa: E402
from tools.grading.sandbox import SandboxUnavailable, require_bwrap  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"autograde: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("submitted", type=Path, help="folder of submissions")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--workers", type=int, default=2, help="sandboxed workers (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="CPU seconds per check (default 60; wall clock: 2x+5)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="regrade students already graded")
    parser.add_argument("--unsandboxed", action="store_true",
                        help="run without bubblewrap: only for trusted code")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.timeout <= 0:
        parser.error("--workers must be >= 1 and --timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.submitted.is_dir():
            raise SandboxUnavailable(
                f"{args.submitted} is not a folder: pass the folder that holds "
                f"<student_id>/hw2/ folders or <student_id>.zip files"
            )
        if not args.unsandboxed:
            require_bwrap()
        opts = Options(
            workers=args.workers, timeout=args.timeout, force=args.force,
            sandboxed=not args.unsandboxed, progress=not args.quiet,
        )  # fmt: skip
        start = time.monotonic()
        docs, skipped = run_batch(args.submitted, args.out, opts)
        report.write_all(docs, args.out, skipped)
    except (SandboxUnavailable, FileNotFoundError, PermissionError) as e:
        print(f"autograde: {e}", file=sys.stderr)
        return 1
    for note in skipped:
        print(f"autograde: {note}", file=sys.stderr)
    if not docs:
        print(
            f"autograde: no submissions in {args.submitted} (expected <student_id>/hw2/ "
            f"folders or <student_id>.zip files); wrote an empty report",
            file=sys.stderr,
        )
    print(report.summary_table(docs))
    print(
        f"graded {len(docs)} submission(s) in {time.monotonic() - start:.1f} s; "
        f"report: {args.out / 'report.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
