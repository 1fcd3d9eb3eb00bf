"""Grade a batch on this machine: one thread per worker slot, each driving its sandboxed worker.

Each thread takes the next student, grades it with ``student.StudentGrader.grade`` (the one
function that grades one student) and writes ``OUT/results/<student_id>.json`` atomically. A
re-run skips students whose stored results match their files and this grader, unless
``force``.
"""

import json
import os
import queue
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tools.grading.collect import Submission, find_submissions, load_submission
from tools.grading.compare import Expected
from tools.grading.sandbox import Limits, Worker, build_kit
from tools.grading.student import StudentGrader, grader_version


@dataclass
class Options:
    """How to grade a batch."""

    workers: int = 2
    timeout: float = 60.0
    force: bool = False
    sandboxed: bool = True
    limits: Limits = field(default_factory=Limits)
    progress: bool = True


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stored_is_current(path: Path, sub: Submission, version: str) -> bool:
    """Whether ``path`` holds results for exactly these files from this grader."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return doc.get("fingerprint") == sub.fingerprint() and doc.get("grader") == version


def run_batch(submitted: Path, out: Path, opts: Options) -> tuple[list[dict], list[str]]:
    """Grade every submission under ``submitted``; return all students' results (also the
    ones skipped as already graded) and notes on entries that were not submissions."""
    from tqdm import tqdm

    found, skipped = find_submissions(submitted)
    results_dir = out / "results"
    version = grader_version()
    todo = queue.Queue()
    subs = []
    for sid, path in found:
        sub = load_submission(sid, path)
        subs.append(sub)
        if opts.force or not stored_is_current(results_dir / f"{sid}.json", sub, version):
            todo.put(sub)
    pending = todo.qsize()
    if pending:
        bar = tqdm(total=pending, desc="grading", unit="student", disable=not opts.progress)
        with tempfile.TemporaryDirectory(prefix="hw2-grade-") as tmp:
            _grade_all(todo, Path(tmp), opts, results_dir, bar)
        bar.close()
    docs = [json.loads((results_dir / f"{s.student_id}.json").read_text()) for s in subs]
    return docs, skipped


def _grade_all(todo, tmp: Path, opts: Options, results_dir: Path, bar) -> None:
    kit = build_kit(tmp / "kit")
    errors: list[BaseException] = []
    lock = threading.Lock()
    # The workers start (each imports torch in its sandbox) while this thread loads the
    # references, so that the two start-ups overlap.
    loaded, shared = threading.Event(), {}

    def work(slot: int) -> None:
        worker = Worker(slot, kit, tmp, opts.limits, sandboxed=opts.sandboxed)
        try:
            worker.start()
            loaded.wait()
            if "expected" not in shared:
                return
            grader = StudentGrader(worker, shared["expected"], opts.timeout)
            while not errors:
                try:
                    sub = todo.get_nowait()
                except queue.Empty:
                    return
                doc = grader.grade(sub)
                data = (json.dumps(doc, indent=1) + "\n").encode()
                write_atomic(results_dir / f"{sub.student_id}.json", data)
                with lock:
                    bar.update()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
        finally:
            worker.stop()

    slots = max(1, min(opts.workers, todo.qsize()))
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(slots)]
    for t in threads:
        t.start()
    try:
        shared["expected"] = Expected()
    except BaseException as e:  # noqa: BLE001 - reported below, after the workers stop
        errors.append(e)
    finally:
        loaded.set()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
