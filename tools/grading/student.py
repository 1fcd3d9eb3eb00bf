"""Grade one student: the one function every backend calls (the local pool, Dask).

``StudentGrader.grade(sub)`` takes one submission's allow-listed files, runs every check's
task on a sandboxed ``Worker`` and grades the outputs here, in the trusted process, against
the references (``compare.Expected``). It returns the results document that the batch
writes to ``OUT/results/<student_id>.json``. Nothing of the grading logic lives elsewhere.
"""

import hashlib
import json
import signal
import time
from dataclasses import dataclass, field

from cs236781.answers import is_unanswered
from tools.asset_specs import OVERFIT_RUN
from tools.checks import CHECKS, MAX_AUTO_POINTS
from tools.grading import compare, diagnose, harness
from tools.grading.collect import Submission
from tools.grading.compare import CheckResult, Expected, clip
from tools.grading.harness import TASK_MODULES
from tools.grading.memcap import format_size
from tools.grading.sandbox import ROOT, UnsafeOutput, Worker, WorkerDied, wall_clock

OUTPUT_KEEP = 4000  # characters of a task's output kept in the results
# Tasks that run last: the overfit run may be stopped early (``EarlyStop``), which ends its child.
UNGROUPED_TASKS = ("overfit",)
GRADER_FILES = (
    "tools/checks.py", "tools/asset_specs.py", "tools/grading/harness.py",
    "tools/grading/compare.py", "tools/grading/student.py", "tools/grading/diagnose.py",
    "hw2/mlp.py", "hw2/__init__.py",
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


# Time limits (issue 9). Each task may use FACTOR x the reference solution's CPU time, at least
# FLOOR_CPU seconds (``calibrate``), and its wall-clock limit is ``sandbox.wall_clock`` of that;
# all the tasks of one submission together get BUDGET seconds of wall-clock time. So the worst
# case per submission is the budget plus, when its code killed the sandbox, one restart.
FACTOR = 10.0
FLOOR_CPU = 5.0
BUDGET = 60.0
MIN_LEFT = 1.0  # seconds of budget below which the remaining tasks are not started


def default_budget(timeout: float | None) -> float:
    """The per-submission budget: ``BUDGET``, or more when staff allow each check more."""
    return BUDGET if timeout is None else max(BUDGET, 4 * timeout)


def all_tasks() -> list[str]:
    """Every sandbox task, in the order they run: import probes, short checks, overfit."""
    tasks = [f"import:{m}" for m in harness.MODULES]
    for check in CHECKS:
        task = harness.task_of(check.name)
        if task not in tasks and task not in UNGROUPED_TASKS:
            tasks.append(task)
    return tasks + list(UNGROUPED_TASKS)


@dataclass
class TaskRun:
    """How one task ended: ``failure`` is ``(status, message)`` or None; its outputs."""

    failure: tuple[str, str] | None
    outputs: dict = field(default_factory=dict)
    output: str = ""
    seconds: float = 0.0
    cpu: float = 0.0
    note: str = ""


class EarlyStop:
    """Judges each epoch's snapshot of the overfit run in this process (with the trusted
    model, as ``compare`` grades the final one) and, with ``stop``, stops the run at the first
    that passes: the seed's verdict is the best epoch's accuracy, so later epochs cannot
    change it. Without ``stop`` the run trains every epoch and the verdict is the same."""

    def __init__(self, grader: "StudentGrader", stop: bool = True):
        self.grader = grader
        self.stop = stop
        self.outputs: dict | None = None
        self.epoch = -1

    def note(self) -> str:
        epochs = OVERFIT_RUN["num_epochs"]
        if self.stop:
            return f"stopped after epoch {self.epoch + 1} of {epochs}, the first that passes"
        return f"first passed after epoch {self.epoch + 1} of {epochs} (all {epochs} trained)"

    def __call__(self, event: dict) -> str:
        if event.get("task") != "overfit" or self.outputs is not None:
            return "continue"
        try:
            files = self.grader.worker.outputs()
        except UnsafeOutput:
            return "continue"
        arrays = compare.unpack_snapshot(files.get(harness.SNAPSHOT))
        if arrays is None:
            return "continue"
        passed, _ = compare.grade_outputs("overfit", arrays, self.grader.exp, {})
        if not passed:
            return "continue"
        self.outputs, self.epoch = arrays, int(event.get("epoch", -1))
        return "stop" if self.stop else "continue"


class StudentGrader:
    """Grades one submission at a time on one worker.

    ``timeout`` (CPU seconds per check) replaces the calibrated limits when given; ``budget``
    is the wall-clock seconds of one submission (default ``default_budget``). ``limits``
    (task -> CPU seconds) may be given directly; otherwise the first ``grade`` calibrates them
    on the reference solution (``calibrate``).
    """

    def __init__(
        self, worker: Worker, expected: Expected, timeout: float | None = None,
        budget: float | None = None, limits: dict[str, float] | None = None,
        early_stop: bool = True,
    ):  # fmt: skip
        self.worker = worker
        self.exp = expected
        self.timeout = timeout
        if budget is None:
            budget = worker.limits.budget or default_budget(timeout)
        self.budget = budget
        self.early_stop = early_stop and not worker.limits.full_overfit
        self._limits = limits
        if limits is None and timeout is not None:
            self._limits = {task: float(timeout) for task in all_tasks()}

    @property
    def limits(self) -> dict[str, float]:
        """CPU seconds of each task."""
        if self._limits is None:
            from tools.grading import calibrate

            self._limits = calibrate.load_or_measure(self)
        return self._limits

    # -- running tasks

    def run_tasks(self, tasks: list[str], deadline: float) -> dict[str, TaskRun]:
        """Run ``tasks`` in order, as few children as possible: one, unless a task hangs or
        crashes; that task is then pinned with the failure and the tasks after it go on in a
        fresh child. Tasks left when the submission's budget has run out are not started."""
        limits, results, todo = self.limits, {}, list(tasks)
        while todo:
            left = deadline - time.monotonic()
            if left < MIN_LEFT:
                for task in todo:
                    results[task] = TaskRun(("timeout", (
                        f"not run: the submission had used up its time budget of "
                        f"{self.budget:g} s on earlier checks"
                    )))  # fmt: skip
                break
            finished, pinned = self._run_some(todo, left, limits)
            results.update(finished)
            results.update(pinned)
            todo = todo[len(finished) + len(pinned) :]
        return results

    def _run_some(self, todo: list[str], left: float, limits: dict) -> tuple[dict, dict]:
        """One child for ``todo``: the results of the tasks it finished, in order, and of the
        one it was running when it ended (if it did not finish them all)."""
        request = {
            "tasks": todo,
            "cpu": {t: limits[t] for t in todo},
            "wall": {t: wall_clock(limits[t]) for t in todo},
            "budget": left,
            "args": {"overfit": {"snapshots": True}},
        }
        stop = EarlyStop(self, self.early_stop) if "overfit" in todo else None
        stops_before = self.worker.cap.stops()
        try:
            reply = self.worker.run(request, on_event=stop)
        except WorkerDied as e:
            failure = self._memory_failure(stops_before) or (
                "timeout" if "no answer" in str(e) else "error",
                f"the grading process stopped ({e})",
            )
            return {}, {todo[0]: TaskRun(failure)}
        if "error" in reply:
            return {}, {todo[0]: TaskRun(("error", f"grader: {clip(reply['error'])}"))}
        output = str(reply.get("output", ""))
        if reply.get("output_bytes", 0) > len(output.encode()):
            output += f"\n[... output truncated: {reply['output_bytes']} bytes in all]"
        texts = {t: keep_output(text, 0) for t, text in split_group_output(output).items()}
        try:
            outputs = self.worker.outputs()
        except UnsafeOutput as e:
            return {}, {t: TaskRun(("failed", clip(str(e))), {}, texts.get(t, "")) for t in todo}
        try:
            summary = json.loads(outputs.get(harness.GROUP_SUMMARY, b"{}")[:100_000])
        except ValueError:
            summary = {}
        summary = summary if isinstance(summary, dict) else {}
        finished = {}
        for task in todo:
            entry = summary.get(task)
            if not isinstance(entry, dict):
                break
            prefix = f"{task}."
            own = {k.removeprefix(prefix): v for k, v in outputs.items() if k.startswith(prefix)}
            error = entry.get("error")
            finished[task] = TaskRun(
                ("error", clip(str(error))) if error else None, own, texts.get(task, ""),
                _number(entry.get("seconds")), _number(entry.get("cpu")),
            )  # fmt: skip
        run = finished.get("overfit")
        if run is not None and run.failure is None and stop and stop.outputs is not None:
            run.outputs, run.note = stop.outputs, stop.note()  # the epoch that passed
        if len(finished) == len(todo):
            return finished, {}
        task = todo[len(finished)]
        text = texts.get(task, "")
        if reply.get("stopped") and task == "overfit" and stop and stop.outputs is not None:
            seconds = float(reply.get("seconds") or 0.0)
            return finished, {task: TaskRun(None, stop.outputs, text, seconds, note=stop.note())}
        failure = (
            self._memory_failure(stops_before)
            or self._time_failure(reply, task, limits[task], left)
            or compare.run_failure(reply, outputs)
            or ("error", "the process ended before this check returned its results")
        )
        return finished, {task: TaskRun(failure, {}, text)}

    def _time_failure(self, reply: dict, task: str, cpu: float, left: float):
        if reply.get("timed_out"):
            if float(reply.get("seconds") or 0.0) >= left - 0.5:
                return "timeout", (
                    f"stopped when the submission's time budget of {self.budget:g} s ran out"
                )
            return "timeout", (
                f"did not finish in {wall_clock(cpu):g} s of wall-clock time "
                f"(waiting, not computing?)"
            )
        if reply.get("signal") == signal.SIGXCPU:
            return "timeout", f"used more than the {cpu:g} s of CPU time allowed to this check"
        return None

    def _memory_failure(self, stops_before: int):
        if self.worker.cap.stops() > stops_before:
            return "error", (
                f"stopped by the memory limit: the sandbox's processes together used more than "
                f"{format_size(self.worker.cap.limit)} (the grader's --memory)"
            )
        return None

    # -- one student

    def probe_modules(self, sub: Submission, deadline: float) -> dict[str, tuple[str, str]]:
        """``module -> (state, message)``: "ok", "missing", or the import's failure."""
        states = {}
        present = [m for m in harness.MODULES if f"hw2/{m}.py" in sub.files]
        runs = self.run_tasks([f"import:{m}" for m in present], deadline)
        for module in harness.MODULES:
            rel = f"hw2/{module}.py"
            if rel not in sub.files:
                states[module] = ("missing", f"{rel} is not in the submission")
                continue
            failure = runs[f"import:{module}"].failure
            if failure is None:
                states[module] = ("ok", "")
            else:
                status = "error" if failure[0] == "failed" else failure[0]
                states[module] = (status, clip(f"importing {rel} failed: {failure[1]}"))
        return states

    def grade(self, sub: Submission) -> dict:
        """Every check of ``sub``, its answers and notes, as the stored results document."""
        _ = self.limits  # calibrate (once per grader) before this student's budget starts
        start = time.monotonic()
        deadline = start + self.budget
        self.worker.install(sub.files)
        try:
            states = self.probe_modules(sub, deadline)
            tasks = [t for t in all_tasks() if not t.startswith("import:")]
            ready = [t for t in tasks if all(states[m][0] == "ok" for m in TASK_MODULES[t])]
            runs = self.run_tasks(ready, deadline)
            results, answers = [], {}
            for check in CHECKS:
                results.append(self.grade_check(check, states, answers, runs))
            self.add_hints(results, states, deadline)
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
            "seconds": round(time.monotonic() - start, 3),
            "timing": {t: {"wall": r.seconds, "cpu": r.cpu} for t, r in runs.items()},
        }

    def grade_check(self, check, states, answers: dict, runs: dict) -> CheckResult:
        task = harness.task_of(check.name)
        result = CheckResult(check.name, 0, check.points, "error", "")
        blocked = [states[m] for m in TASK_MODULES[task] if states[m][0] != "ok"]
        if blocked:
            result.status, result.message = blocked[0]
            return result
        run = runs[task]
        result.output, result.seconds = run.output, run.seconds
        if run.failure is not None:
            result.status, result.message = run.failure
        elif check.kind == "manual":
            self.grade_answer(check.name, run.outputs, answers, result)
        else:
            passed, message = compare.grade_outputs(check.name, run.outputs, self.exp, {})
            message = f"{message}; {run.note}" if run.note else message
            result.status, result.message = ("passed" if passed else "failed"), clip(message)
            result.points = check.points if passed else 0
        return result

    hints = True  # diagnose failed visible numeric checks (issue 13)

    def add_hints(self, results: list[CheckResult], states: dict, deadline: float) -> None:
        """Say why each failed visible numeric check differs (``diagnose``): the structure
        of the student's module is fetched for those checks only, in one child, so a
        submission that passes them costs nothing more. Never for a hidden check."""
        failed = {
            harness.STRUCTURE_PREFIX + r.check: r
            for r in results
            if self.hints and r.check in diagnose.DIAGNOSED and r.status in ("failed", "error")
            and "NotImplementedError" not in r.message  # unfinished: nothing to compare
            and "memory limit" not in r.message  # it would only hog again
            and all(states[m][0] == "ok" for m in TASK_MODULES[harness.task_of(r.check)])
        }  # fmt: skip
        if not failed:
            return
        for task, r in failed.items():  # a check's own time limit for its structure
            self.limits.setdefault(task, self.limits[harness.task_of(r.check)])
        for task, run in self.run_tasks(list(failed), deadline).items():
            if run.failure is None:
                failed[task].hint = diagnose.diagnose(failed[task].check, run.outputs)

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


def _number(value) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
