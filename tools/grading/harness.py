"""The trusted code that runs inside the sandbox: a zygote that forks one child per task.

The zygote imports torch and the helper package once, warms torch up, and then serves tasks
read as JSON lines on stdin. For each task it forks a child that closes the control pipe,
starts its own session, lowers its limits and only then imports the student's modules from
``--sub`` and runs the task. The child writes plain arrays (``.npy``) and texts into
``<scratch>/work/out``; it never sees an expected value. The zygote answers with how the child
ended (exit code, signal, timeout) and its captured output, capped.

Between tasks the zygote kills every other process of its uid (``kill(-1)``; it is a child
subreaper, so it can reap them all) and wipes the scratch folder, so nothing of one task
survives into the next. It is made non-dumpable, so a child of the same uid cannot ptrace it
or read its ``/proc`` entries.

The parent imports this module too, for the task table and the inputs it needs to know.
"""

import json
import math
import os
import selectors
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from tools.asset_specs import OVERFIT_CNN, OVERFIT_RUN

# Student modules, in the order they are probed.
MODULES = ("cnn", "classifier", "training", "answers")

# Check name -> the reference file of its spec (tools/asset_specs.py).
SPEC_CHECKS = {
    "cnn_0": "expected_conv_out_00.pt",
    "cnn_1": "expected_conv_out_01.pt",
    "cnn_2": "expected_conv_out_02.pt",
    "resblock": "expected_resblock_out.pt",
    "resblock_bottleneck": "expected_resblock_bn_out.pt",
    "resnet_0": "expected_resnet_out_00.pt",
    "resnet_1": "expected_resnet_out_01.pt",
    "hidden_cnn": "hidden_cnn.pt",
    "hidden_resblock": "hidden_resblock.pt",
    "hidden_resblock_bottleneck": "hidden_resblock_bottleneck.pt",
    "hidden_resnet": "hidden_resnet.pt",
}

# Task name -> the student modules it imports. Answer checks share the task "answers".
TASK_MODULES = {
    **{name: ("cnn",) for name in SPEC_CHECKS},
    "classifier": ("cnn", "classifier"),
    "hidden_classifier": ("classifier",),
    "overfit": ("cnn", "classifier", "training", "answers"),
    "answers": ("answers",),
}

OUTPUT_CAP = 32 * 1024  # bytes of a task's stdout/stderr kept
ANSWER_CAP = 200_000  # characters of an answer kept
SEED = 42
# Returned parameters of the trained overfit model at most (the seed's CNN has 6).
OVERFIT_MAX_PARAMS = 12


def task_of(check: str) -> str:
    """The sandbox task that produces the data of ``check``."""
    return "answers" if check.startswith("part4_q") else check


def hidden_classifier_scores():
    """Class scores with a clear maximum per row, for ``hidden_classifier`` (5 classes, large
    and negative values included, so that a naive softmax overflows)."""
    import torch

    g = torch.Generator().manual_seed(2024)
    z = torch.randn(6, 5, generator=g) * 4
    z[1] += 80.0
    z[2] -= 50.0
    return z


def overfit_samples():
    """The images and labels the overfit run trains on: the first 50 of the offline data."""
    import torch

    from cs236781.data import SyntheticCIFAR10

    ds = SyntheticCIFAR10(train=True)
    n = OVERFIT_RUN["max_batches"] * OVERFIT_RUN["batch_size"]
    xs, ys = zip(*(ds[i] for i in range(n)), strict=True)
    return torch.stack(xs), torch.tensor(ys)


# ----------------------------------------------------------------------------- tasks (child)


def _student(module: str):
    import importlib

    return importlib.import_module(f"hw2.{module}")


def _spec_task(check: str, args: dict) -> dict:
    from tools.asset_specs import ALL_SPECS, run_spec

    spec = next(s for s in ALL_SPECS if s.file == SPEC_CHECKS[check])
    return {"out": run_spec(spec, _student("cnn"))}


def _classifier_task(args: dict) -> dict:
    """Seed cell In[4]: an ArgMaxClassifier around the first test CNN, on one random image."""
    import torch

    from tools.asset_specs import CNN_TEST_PARAMS

    torch.manual_seed(SEED)
    CNN, ArgMaxClassifier = _student("cnn").CNN, _student("classifier").ArgMaxClassifier
    model = ArgMaxClassifier(model=CNN(**CNN_TEST_PARAMS[0]))
    image = torch.randint(low=0, high=256, size=(3, 100, 100), dtype=torch.float).unsqueeze(0)
    return {"classify": model.classify(image), "proba": model.predict_proba(image)}


def _hidden_classifier_task(args: dict) -> dict:
    import torch

    model = _student("classifier").ArgMaxClassifier(model=torch.nn.Identity())
    z = hidden_classifier_scores()
    return {
        "classify_scores": model.classify_scores(z.clone()),
        "proba_scores": model.predict_proba_scores(z.clone()),
        "classify": model.classify(z.clone()),
    }


def _overfit_task(args: dict) -> dict:
    """The seed's overfit run with the student's CNN, classifier, trainer and hyperparameters.

    Returns what the trainer reported per epoch and the trained parameters, in the order of
    ``model.parameters()``. The parent loads them into its own trusted copy of the seed's CNN
    and measures the accuracy itself, so neither a forged accuracy nor a forward pass that
    recognizes the images instead of learning them can pass.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    CNN = _student("cnn").CNN
    ArgMaxClassifier = _student("classifier").ArgMaxClassifier
    ClassifierTrainer = _student("training").ClassifierTrainer
    part4_optim_hp = _student("answers").part4_optim_hp

    x, y = overfit_samples()
    torch.manual_seed(SEED)
    dl_train = DataLoader(TensorDataset(x, y), OVERFIT_RUN["batch_size"], shuffle=False)
    model = ArgMaxClassifier(model=CNN(**OVERFIT_CNN))
    hp = dict(part4_optim_hp())
    loss_fn = hp.pop("loss_fn")
    optimizer = torch.optim.SGD(params=model.parameters(), **hp)
    trainer = ClassifierTrainer(model, loss_fn, optimizer, "cpu")
    accuracies = []
    for _ in range(OVERFIT_RUN["num_epochs"]):
        res = trainer.train_epoch(dl_train, max_batches=OVERFIT_RUN["max_batches"], verbose=False)
        accuracies.append(float(res.accuracy))
    params = list(model.parameters())[:OVERFIT_MAX_PARAMS]
    return {
        "accuracies": torch.tensor(accuracies, dtype=torch.float64),
        **{f"param_{i:02d}": p.detach() for i, p in enumerate(params)},
    }


ANSWER_NAMES = ("part4_q1", "part4_q2")


def _answers_task(args: dict) -> dict:
    """Each answer's text, or why there is none: ``<name>`` holds the text,
    ``<name>.missing`` or ``<name>.error`` the reason, so one answer never costs the other."""
    answers = _student("answers")
    texts = {}
    for name in ANSWER_NAMES:
        if not hasattr(answers, name):
            texts[f"{name}.missing"] = f"hw2/answers.py defines no {name}"
            continue
        value = getattr(answers, name)
        if isinstance(value, str):
            texts[name] = value[:ANSWER_CAP]
        else:
            kind = type(value).__name__
            texts[f"{name}.error"] = f"hw2/answers.py: {name} must be a str, got {kind}"
    return texts


def _import_task(module: str) -> dict:
    _student(module)
    return {}


def run_task(task: str, args: dict) -> dict:
    """Run one task in this process and return its results (tensors, arrays or strings)."""
    if task.startswith("import:"):
        return _import_task(task.removeprefix("import:"))
    if task in SPEC_CHECKS:
        return _spec_task(task, args)
    handlers = {
        "classifier": _classifier_task,
        "hidden_classifier": _hidden_classifier_task,
        "overfit": _overfit_task,
        "answers": _answers_task,
    }
    if task not in handlers:
        raise KeyError(f"unknown task {task!r}")
    return handlers[task](args)


# A request for several tasks in one child: "group:<task>,<task>,...". Each task's files are
# prefixed with "<task>.", its output follows a line GROUP_MARK + task, and GROUP_SUMMARY says
# how each task ended. A group that does not finish normally is run again task by task.
GROUP_PREFIX = "group:"
GROUP_MARK = "\x1e"
GROUP_SUMMARY = "group.json"


def run_group(tasks: list[str], out: Path, sub: str) -> None:
    """Run ``tasks`` one after the other in this process, each failure caught on its own."""
    summary = {}
    for task in tasks:
        # on a line of its own, even after output without a final newline
        print(f"\n{GROUP_MARK}{task}", flush=True)
        start = time.monotonic()
        error = None
        try:
            results = run_task(task, {})
            save_results({f"{task}.{key}": value for key, value in results.items()}, out)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message
            error = describe_error(exc, sub)
        sys.stdout.flush()
        sys.stderr.flush()
        summary[task] = {"seconds": round(time.monotonic() - start, 3), "error": error}
    (out / GROUP_SUMMARY).write_text(json.dumps(summary))


def save_results(results: dict, out: Path) -> None:
    """Write each result as ``<key>.npy`` (numbers, no pickles) or ``<key>.txt`` (text)."""
    import numpy as np
    import torch

    for key, value in results.items():
        if isinstance(value, str):
            (out / f"{key}.txt").write_text(value, encoding="utf-8", errors="replace")
            continue
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        np.save(out / f"{key}.npy", np.asarray(value), allow_pickle=False)


def describe_error(exc: BaseException, sub: str) -> str:
    """One line: the exception and where in the student's files it was raised."""
    if isinstance(exc, SystemExit):
        what = f"SystemExit({exc.code!r}): the code called sys.exit()"
    elif isinstance(exc, SyntaxError):
        what = f"{type(exc).__name__}: {exc.msg}"
    elif isinstance(exc, ModuleNotFoundError) and exc.name:
        what = (
            f"ModuleNotFoundError: no module named {exc.name!r}, which is not part of the "
            "course environment (release/hw2/requirements.txt): remove that import"
        )
    else:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(sub):
            rel = os.path.relpath(frame.filename, sub)
            where = f" (at {rel} line {frame.lineno}, in {frame.name})"
    if isinstance(exc, SyntaxError) and exc.filename and exc.filename.startswith(sub):
        where = f" (in {os.path.relpath(exc.filename, sub)} line {exc.lineno})"
    return (what[:500] + where)[:800]


# ----------------------------------------------------------------------------- zygote


def _libc_prctl(option: int, value: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


class Zygote:
    """Serves tasks: fork, supervise, clean up. See the module docstring."""

    def __init__(self, sub: str, scratch: str, sweep: bool, ctl_out: int):
        self.sub = sub
        self.scratch = Path(scratch)
        self.work = self.scratch / "work"
        self.sweep = sweep and os.getuid() != 0  # kill(-1) as root would hit the host
        self.ctl_out = ctl_out

    def wipe(self) -> bool:
        """Empty the scratch folder; False when something could not be removed."""

        def unlock(func, path, _exc):
            # A task may have made a folder unreadable; its owner (our uid) can undo that.
            parent = os.path.dirname(path)
            os.chmod(parent, 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
            func(path)

        for entry in os.scandir(self.scratch):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, onerror=unlock)
                else:
                    os.unlink(entry.path)
            except OSError:
                return False
        return not any(os.scandir(self.scratch))

    def kill_others(self, pgid: int) -> None:
        """Kill the task's session and (in the sandbox) every other process of our uid;
        reap them all (we are their subreaper)."""
        for target, how in ((pgid, os.killpg), (-1, os.kill)):
            if target == -1 and not self.sweep:
                continue
            try:
                how(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, 0 if self.sweep else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def serve(self, request: dict) -> dict:
        """Run one task in a forked child and describe how it ended."""
        if not self.wipe():
            return {"error": "scratch folder could not be cleaned"}
        (self.work / "out").mkdir(parents=True)
        wall = float(request["wall"])
        r, w = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child(r, w, request)
        os.close(w)
        exited, timed_out, head, total = self._supervise(pid, r, start + wall)
        if not exited:
            os.killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        self.kill_others(pid)
        head, total = self._drain(r, head, total)
        os.close(r)
        return {
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "timed_out": timed_out,
            "seconds": round(time.monotonic() - start, 3),
            "output": head.decode("utf-8", "replace"),
            "output_bytes": total,
        }

    def _supervise(self, pid: int, r: int, deadline: float):
        """Collect the child's output until it exits or the deadline passes."""
        pidfd = os.pidfd_open(pid)
        os.set_blocking(r, False)
        head, total, exited = bytearray(), 0, False
        with selectors.DefaultSelector() as sel:
            sel.register(r, selectors.EVENT_READ)
            sel.register(pidfd, selectors.EVENT_READ)
            while not exited:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                for key, _ in sel.select(remaining):
                    if key.fd == pidfd:
                        exited = True
                        continue
                    head, total, eof = self._read_some(r, head, total)
                    if eof:
                        sel.unregister(r)
        os.close(pidfd)
        return exited, not exited, head, total

    @staticmethod
    def _read_some(r: int, head: bytearray, total: int):
        try:
            data = os.read(r, 65536)
        except BlockingIOError:
            return head, total, False
        if len(head) < OUTPUT_CAP:
            head += data[: OUTPUT_CAP - len(head)]
        return head, total + len(data), not data

    def _drain(self, r: int, head: bytearray, total: int):
        """Read what is left in the pipe; every writer is dead by now (or, unsandboxed, may
        linger: then stop at the first empty read instead of waiting)."""
        with selectors.DefaultSelector() as sel:
            sel.register(r, selectors.EVENT_READ)
            while sel.select(0):
                head, total, eof = self._read_some(r, head, total)
                if eof:
                    break
        return head, total

    def _child(self, r: int, w: int, request: dict) -> None:
        """In the forked child: isolate, then run the task. Never returns."""
        code = 70
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(w, 1)
            os.dup2(w, 2)
            for fd in (devnull, r, w, self.ctl_out):
                os.close(fd)
            import resource

            import torch

            torch.set_num_threads(1)  # a child forked after torch ops hangs without this
            cpu = math.ceil(float(request["timeout"]))  # CPU seconds: the same under any load
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            os.chdir(self.work)
            sys.path.insert(0, self.sub)
            out = self.work / "out"
            try:
                task = request["task"]
                if task.startswith(GROUP_PREFIX):
                    run_group(task.removeprefix(GROUP_PREFIX).split(","), out, self.sub)
                else:
                    save_results(run_task(task, request.get("args", {})), out)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - every failure becomes a message
                error = {"error": describe_error(exc, self.sub), "traceback": _tb(exc)}
                (out / "error.json").write_text(json.dumps(error))
                code = 0
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)


def _tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc, limit=-8))[-4000:]


def _warm_up() -> None:
    """Import what tasks use and run each kind of op once, so children start warm."""
    import numpy  # noqa: F401
    import torch
    import torch.utils.data  # noqa: F401
    import tqdm.auto  # noqa: F401

    import cs236781.answers  # noqa: F401
    import cs236781.data  # noqa: F401
    import cs236781.train_results  # noqa: F401
    import tools.asset_specs  # noqa: F401

    torch.set_num_threads(1)
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout2d(0.1), nn.LeakyReLU(),
        nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3), nn.Tanh(),
    )  # fmt: skip
    net(torch.ones(2, 3, 8, 8))
    torch.softmax(torch.ones(2, 3), dim=1).argmax(dim=1)
    _warm_up_overfit(nn)


def _warm_up_overfit(nn, steps: int = 100) -> None:
    """Train a model of the overfit check's shapes (built here from torch.nn, not from any
    submission) for a while: oneDNN's kernels for these shapes and the allocator's state for
    its buffers are then inherited by every child, which makes the check about 25% faster."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = overfit_samples()
    c, h, w = OVERFIT_CNN["in_size"]
    width, hidden = OVERFIT_CNN["channels"][0], OVERFIT_CNN["hidden_dims"][0]
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(width * (h // 2) * (w // 2), hidden), nn.ReLU(),
        nn.Linear(hidden, OVERFIT_CNN["out_classes"]),
    )  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    batches = DataLoader(TensorDataset(x, y), OVERFIT_RUN["batch_size"], shuffle=False)
    done = 0
    while done < steps:
        for xb, yb in batches:
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
            done += 1
    torch.manual_seed(SEED)


def zygote_main(argv: list[str]) -> None:
    """Entry point in the sandbox: ``--sub DIR --scratch DIR [--sweep]``."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--sub", required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True
    ctl_in = os.fdopen(0, "r", encoding="utf-8")
    ctl_out = os.dup(1)
    os.dup2(2, 1)  # stray prints must not corrupt the protocol
    _warm_up()
    _libc_prctl(PR_SET_DUMPABLE, 0)
    _libc_prctl(PR_SET_CHILD_SUBREAPER, 1)
    zygote = Zygote(args.sub, args.scratch, args.sweep, ctl_out)

    def reply(doc: dict) -> None:
        os.write(ctl_out, (json.dumps(doc) + "\n").encode())

    reply({"ready": True, "torchvision_imported": "torchvision" in sys.modules, "uid": os.getuid()})
    for line in ctl_in:
        reply(zygote.serve(json.loads(line)))
