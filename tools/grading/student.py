"""Grade one student: the one function every backend calls (the local pool, Dask).

``StudentGrader.grade(sub)`` takes one submission's allow-listed files, runs every check's
task on a sandboxed ``Worker`` and grades the outputs here, in the trusted process, against
the references (``compare.Expected``). It returns the results document that the batch
writes to ``OUT/results/<student_id>.json``. Nothing of the grading logic lives elsewhere.
"""

import hashlib
import json
import time

from cs236781.answers import is_unanswered
from tools.checks import CHECKS, MAX_AUTO_POINTS
from tools.grading import compare, harness
from tools.grading.collect import Submission
from tools.grading.compare import CheckResult, Expected, clip
from tools.grading.sandbox import ROOT, UnsafeOutput, Worker, WorkerDied

OUTPUT_KEEP = 4000  # characters of a task's output kept in the results
# Tasks run on their own even when the others share one child: the long training run keeps
# its own CPU budget.
UNGROUPED_TASKS = ("overfit",)
# CPU seconds a group of short tasks may take (about 1 s for a correct submission); a group
# that does not finish in time is run again task by task, each with the full timeout.
GROUP_TIMEOUT = 20.0
GRADER_FILES = (
    "tools/checks.py", "tools/asset_specs.py", "tools/grading/harness.py",
    "tools/grading/compare.py", "tools/grading/student.py", "hw2/mlp.py", "hw2/__init__.py",
    "tests/assets/manifest.json", "tests/assets/hidden/manifest.json",
)  # fmt: skip


def grader_version() -> str:
    """A hash of the grader's code and references: stored results from another grader are
    regraded."""
    h = hashlib.sha256()
    for rel in GRADER_FILES:
        path = ROOT / rel
        h.update(rel.encode() + (path.read_bytes() if path.is_file() else b"<missing>"))
    return h.hexdigest()[:16]


class StudentGrader:
    """Grades one submission at a time on one worker."""

    def __init__(self, worker: Worker, expected: Expected, timeout: float = 60.0):
        self.worker = worker
        self.exp = expected
        self.timeout = timeout

    def call(self, task: str, args: dict | None = None, timeout: float | None = None):
        """Run ``task``; return ``(failure, outputs, output_text, seconds)``, where
        ``failure`` is ``(status, message)`` or ``None``."""
        timeout = self.timeout if timeout is None else timeout
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
        timeout = min(self.timeout, GROUP_TIMEOUT)
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
