"""Grade a batch: one thread per worker slot, each driving its sandboxed worker.

Steps per student, in order: install the allow-listed files into the slot's ``/sub``; probe
the import of each student module (so that a module that hangs or crashes on import costs
one timeout, not one per check); run each check's task; grade its outputs in this process;
write ``OUT/results/<student_id>.json`` atomically. A re-run skips students whose stored
results match their files and this grader, unless ``force``.
"""

import hashlib
import json
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cs236781.answers import is_unanswered
from tools.checks import CHECKS, MAX_AUTO_POINTS
from tools.grading import compare, harness
from tools.grading.collect import Submission, find_submissions, load_submission
from tools.grading.compare import CheckResult, Expected, clip
from tools.grading.sandbox import ROOT, Limits, UnsafeOutput, Worker, WorkerDied, build_kit

OUTPUT_KEEP = 4000  # characters of a task's output kept in the results
# Tasks run on their own even when the others share one child: the long training run keeps
# its own CPU budget.
UNGROUPED_TASKS = ("overfit",)
# CPU seconds a group of short tasks may take (about 1 s for a correct submission); a group
# that does not finish in time is run again task by task, each with the full timeout.
GROUP_TIMEOUT = 20.0
GRADER_FILES = (
    "tools/checks.py", "tools/asset_specs.py", "tools/grading/harness.py",
    "tools/grading/compare.py", "tools/grading/runner.py", "hw2/mlp.py", "hw2/__init__.py",
    "tests/assets/manifest.json", "tests/assets/hidden/manifest.json",
)  # fmt: skip


@dataclass
class Options:
    """How to grade a batch."""

    workers: int = 2
    timeout: float = 60.0
    force: bool = False
    sandboxed: bool = True
    limits: Limits = field(default_factory=Limits)
    progress: bool = True


def grader_version() -> str:
    """A hash of the grader's code and references: stored results from another grader are
    regraded."""
    h = hashlib.sha256()
    for rel in GRADER_FILES:
        path = ROOT / rel
        h.update(rel.encode() + (path.read_bytes() if path.is_file() else b"<missing>"))
    return h.hexdigest()[:16]


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


class StudentGrader:
    """Grades one submission at a time on one worker."""

    def __init__(self, worker: Worker, expected: Expected, opts: Options):
        self.worker = worker
        self.exp = expected
        self.opts = opts

    def call(self, task: str, args: dict | None = None, timeout: float | None = None):
        """Run ``task``; return ``(failure, outputs, output_text, seconds)``, where
        ``failure`` is ``(status, message)`` or ``None``."""
        timeout = self.opts.timeout if timeout is None else timeout
        try:
            reply = self.worker.run(task, timeout, args)
        except WorkerDied as e:
            status = "timeout" if "no answer" in str(e) else "error"
            return (status, f"the grading process stopped ({e})"), {}, "", 0.0
        if "error" in reply:
            return ("error", f"grader: {clip(reply['error'])}"), {}, "", 0.0
        output = str(reply.get("output", ""))
        total = reply.get("output_bytes", 0)
        if not task.startswith(harness.GROUP_PREFIX):
            output = keep_output(output, total)
        elif total > len(output.encode()):  # cut task by task in call_group
            output += f"\n[... output truncated: {total} bytes in all]"
        seconds = float(reply.get("seconds") or 0.0)
        try:
            outputs = self.worker.outputs()
        except UnsafeOutput as e:
            return ("failed", clip(str(e))), {}, output, seconds
        failure = compare.run_failure(reply, outputs, timeout)
        return failure, outputs, output, seconds

    def call_group(self, tasks: list[str]) -> dict | None:
        """Run ``tasks`` in one child (one fork instead of one per task); return
        ``{task: (failure, outputs, output_text, seconds)}``, or ``None`` when the group did
        not end normally, so that the caller runs the tasks one by one and each failure is
        pinned on its own task."""
        if len(tasks) < 2:
            return None
        timeout = min(self.opts.timeout, GROUP_TIMEOUT)
        failure, outputs, output, _ = self.call(
            harness.GROUP_PREFIX + ",".join(tasks), timeout=timeout
        )
        try:
            summary = json.loads(outputs.get(harness.GROUP_SUMMARY, b"")[:100_000])
        except ValueError:
            return None
        if failure is not None or not isinstance(summary, dict):
            return None
        if any(not isinstance(summary.get(t), dict) for t in tasks):
            return None
        texts = {t: keep_output(text, 0) for t, text in split_group_output(output).items()}
        results = {}
        for task in tasks:
            entry, prefix = summary[task], f"{task}."
            own = {k.removeprefix(prefix): v for k, v in outputs.items() if k.startswith(prefix)}
            error = entry.get("error")
            task_failure = ("error", clip(str(error))) if error else None
            seconds = entry.get("seconds")
            seconds = float(seconds) if isinstance(seconds, int | float) else 0.0
            results[task] = (task_failure, own, texts.get(task, ""), seconds)
        return results

    def probe_modules(self, sub: Submission) -> dict[str, tuple[str, str]]:
        """``module -> (state, message)``: "ok", "missing", or the import's failure."""
        states = {}
        present = [m for m in harness.MODULES if f"hw2/{m}.py" in sub.files]
        grouped = self.call_group([f"import:{m}" for m in present]) or {}
        for module in harness.MODULES:
            rel = f"hw2/{module}.py"
            if rel not in sub.files:
                states[module] = ("missing", f"{rel} is not in the submission")
                continue
            task = f"import:{module}"
            failure, _, output, _ = grouped[task] if task in grouped else self.call(task)
            if failure is None:
                states[module] = ("ok", "")
            else:
                status = "error" if failure[0] == "failed" else failure[0]
                states[module] = (status, clip(f"importing {rel} failed: {failure[1]}"))
        return states

    def grade(self, sub: Submission) -> dict:
        """Every check of ``sub``, its answers and notes, as the stored results document."""
        self.worker.install(sub.files)
        try:
            states = self.probe_modules(sub)
            results, answers, cache = [], {}, self.prefetch(states)
            for check in CHECKS:
                results.append(self.grade_check(check, states, answers, cache))
        finally:
            self.worker.clear()
        return {
            "student_id": sub.student_id,
            "source": sub.source,
            "fingerprint": sub.fingerprint(),
            "grader": grader_version(),
            "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "notes": sub.notes,
            "score": sum(r.points for r in results),
            "max_score": MAX_AUTO_POINTS,
            "checks": [r.to_dict() for r in results],
            "answers": answers,
        }

    def prefetch(self, states: dict) -> dict:
        """Run every short task whose modules imported, all in one child; the per-check
        cache of ``grade_check`` (empty when the group has to be run task by task)."""
        tasks = []
        for check in CHECKS:
            task = harness.task_of(check.name)
            ready = all(states[m][0] == "ok" for m in harness.TASK_MODULES[task])
            if ready and task not in UNGROUPED_TASKS and task not in tasks:
                tasks.append(task)
        grouped = self.call_group(tasks) or {}
        return {task: result + ({},) for task, result in grouped.items()}

    def grade_check(self, check, states, answers: dict, cache: dict) -> CheckResult:
        task = harness.task_of(check.name)
        result = CheckResult(check.name, 0, check.points, "error", "")
        blocked = [states[m] for m in harness.TASK_MODULES[task] if states[m][0] != "ok"]
        if blocked:
            result.status, result.message = blocked[0]
            return result
        args = {}
        if task not in cache:
            cache[task] = self.call(task, args) + (args,)
        failure, outputs, output, seconds, args = cache[task]
        result.output, result.seconds = output, seconds
        if failure is not None:
            result.status, result.message = failure
        elif check.kind == "manual":
            self.grade_answer(check.name, outputs, answers, result)
        else:
            passed, message = compare.grade_outputs(check.name, outputs, self.exp, args)
            result.status, result.message = ("passed" if passed else "failed"), clip(message)
            result.points = check.points if passed else 0
        return result

    @staticmethod
    def grade_answer(name: str, outputs: dict, answers: dict, result: CheckResult) -> None:
        raw = outputs.get(f"{name}.txt")
        if raw is None:
            for status in ("missing", "error"):
                reason = outputs.get(f"{name}.{status}.txt")
                if reason is not None:
                    result.status, result.message = status, clip(reason.decode("utf-8", "replace"))
                    return
            result.status, result.message = "error", f"no text returned for {name}"
            return
        text = raw[: harness.ANSWER_CAP * 4].decode("utf-8", "replace")
        answers[name] = text
        result.status = "manual"
        if is_unanswered(text):
            result.message = "unanswered"
        else:
            result.message = f"answered ({len(text.split())} words); graded by the staff"


def keep_output(output: str, total_bytes: int) -> str:
    """At most ``OUTPUT_KEEP`` characters of a task's output, saying when more was printed."""
    if len(output) > OUTPUT_KEEP or total_bytes > len(output.encode()):
        total = max(total_bytes, len(output.encode()))
        return output[:OUTPUT_KEEP] + f"\n[... output truncated: {total} bytes in all]"
    return output


def split_group_output(output: str) -> dict[str, str]:
    """A group's captured output, split by task at the marker lines the harness prints."""
    texts, task = {}, None
    for line in output.split("\n"):  # not splitlines(): it splits at GROUP_MARK too
        if line.startswith(harness.GROUP_MARK):
            task = line[len(harness.GROUP_MARK) :].strip()
            texts.setdefault(task, "")
        elif task is not None:
            texts[task] += line + "\n"
    return {task: text.strip("\n") for task, text in texts.items()}


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
            grader = StudentGrader(worker, shared["expected"], opts)
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
