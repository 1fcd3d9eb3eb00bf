"""Grade a batch of hw2 Part 4 submissions in a sandbox; write grades, a report and feedback.

Usage:
    python tools/autograde.py SUBMITTED --out OUT [--workers N] [--timeout S] [--force]
                              [--unsandboxed] [--scheduler tcp://HOST:PORT | --cluster local]

SUBMITTED holds ``<student_id>/hw2/...`` folders (nbgrader's layout) and/or
``<student_id>.zip`` files (as ``python -m cs236781.submit`` writes them). OUT receives
``grades.csv``, ``grades.json``, ``report.html``, ``feedback/<student_id>.html`` and
``results/<student_id>.json`` (one per student, written as soon as it is graded; a re-run
skips students already graded unless --force). grades.csv, grades.json and report.html are
also rewritten every few seconds while a batch runs. A killed run leaves no partial file: run it
again and it grades the students that were not finished.

Where it grades: by default on this machine, one thread per sandboxed worker (``--workers``);
``--scheduler tcp://HOST:PORT`` on an existing Dask cluster, ``--cluster local`` on a Dask
LocalCluster of ``--workers`` processes (see tools/grading/dask_backend.py and the README).

Exit status 0 whenever the batch was graded, whatever the scores; 1 with a one-line message
when the grader cannot run.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.grading import report, similarity  # noqa: E402
from tools.grading.calibrate import GraderBroken  # noqa: E402
from tools.grading.memcap import parse_size  # noqa: E402
from tools.grading.runner import PUBLISH_EVERY, BatchError, Options, grade_batch  # noqa: E402
from tools.grading.sandbox import (  # noqa: E402
    DEFAULT_MEMORY,
    Limits,
    SandboxUnavailable,
    require_bwrap,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"autograde: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("submitted", type=Path, help="folder of submissions")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--workers", type=int, default=None,
                        help="sandboxed workers (default 2; also --cluster local)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=None,
                        help="CPU seconds per check (default: 10x the reference solution's, "
                             "at least 5; wall clock: that + 5)")  # fmt: skip
    parser.add_argument("--budget", type=float, default=None,
                        help="wall-clock seconds for all the checks of one submission "
                             "(default 60, or 4x --timeout when larger)")  # fmt: skip
    parser.add_argument("--full-overfit", action="store_true",
                        help="train the overfit check's 25 epochs in full (by default it stops "
                             "at the first epoch that passes; same verdict)")  # fmt: skip
    parser.add_argument("--memory", type=parse_size, default=DEFAULT_MEMORY,
                        help="memory of each sandbox, all its processes together "
                             "(default 3G)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="regrade students already graded")
    parser.add_argument("--unsandboxed", action="store_true",
                        help="run without bubblewrap: only for trusted code")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--report-every", type=float, default=PUBLISH_EVERY, metavar="S",
                        help="rewrite grades and report.html at most every S seconds while "
                             f"grading (default {PUBLISH_EVERY:g})")  # fmt: skip
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="grade on this existing Dask cluster")  # fmt: skip
    where.add_argument("--cluster", choices=["local"],
                       help="grade on a Dask LocalCluster of --workers processes")  # fmt: skip
    parser.add_argument("--similarity-archive", type=Path, action="append", default=[],
                        metavar="DIR", help="earlier submissions (same layouts) to compare "
                        "with; repeat for several semesters")  # fmt: skip
    parser.add_argument("--similarity-threshold", type=float, metavar="X",
                        default=similarity.DEFAULT_THRESHOLD,
                        help="report pairs whose similarity reaches X, in (0, 1] (default "
                             f"{similarity.DEFAULT_THRESHOLD:g})")  # fmt: skip
    parser.add_argument("--no-similarity", action="store_true",
                        help="skip the similarity report")  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 < args.similarity_threshold <= 1:
        parser.error(f"--similarity-threshold must be in (0, 1], got {args.similarity_threshold}")
    for folder in args.similarity_archive:
        if not folder.is_dir() or folder.resolve() == args.submitted.resolve():
            parser.error(
                f"--similarity-archive {folder} is not a folder of earlier submissions "
                f"(<student_id>/ folders or <student_id>.zip files, not SUBMITTED itself)"
            )
    if args.scheduler and args.workers is not None:
        parser.error("--workers does not apply to --scheduler (the cluster has its workers)")
    if (args.scheduler or args.cluster) and args.unsandboxed:
        parser.error("Dask workers always grade in the sandbox: drop --unsandboxed")
    args.workers = 2 if args.workers is None else args.workers
    if args.workers < 1 or (args.timeout is not None and args.timeout <= 0):
        parser.error("--workers must be >= 1 and --timeout > 0")
    if (args.budget is not None and args.budget < 5) or args.memory < (1 << 30):
        parser.error("--budget must be at least 5 (seconds) and --memory at least 1G")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.submitted.is_dir():
            raise SandboxUnavailable(
                f"{args.submitted} is not a folder: pass the folder that holds "
                f"<student_id>/hw2/ folders or <student_id>.zip files"
            )
        if not args.unsandboxed and not args.scheduler:  # a cluster's workers check their own
            require_bwrap()
        opts = Options(
            workers=args.workers, timeout=args.timeout, force=args.force,
            sandboxed=not args.unsandboxed, progress=not args.quiet,
            scheduler=args.scheduler, cluster=args.cluster, publish_every=args.report_every,
            limits=Limits(memory=args.memory, budget=args.budget, full_overfit=args.full_overfit),
        )  # fmt: skip
        start = time.monotonic()
        batch = grade_batch(args.submitted, args.out, opts)
        docs, skipped = batch.docs, batch.skipped
        report.write_all(docs, args.out, skipped)
        if not args.no_similarity:
            ids = [d["student_id"] for d in docs]
            sim = similarity.run(args.submitted, ids, args.similarity_archive,
                                 args.similarity_threshold, progress=not args.quiet)  # fmt: skip
            sim.write_pages(args.out)
            report.write_similarity(docs, args.out, skipped, sim)
            print(f"similarity: {len(sim.reported)} pair(s) reach {sim.threshold:g} "
                  f"(report.html#similarity)")  # fmt: skip
    except (
        SandboxUnavailable, BatchError, GraderBroken, FileNotFoundError, PermissionError,
    ) as e:  # fmt: skip
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
        f"graded {len(docs)} submission(s) in {time.monotonic() - start:.1f} s "
        f"({len(batch.graded)} now on the {batch.backend}, "
        f"{len(docs) - len(batch.graded)} already graded); report: {args.out / 'report.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
