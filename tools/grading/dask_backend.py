"""Grade on a Dask cluster: each Dask worker hosts sandboxed zygotes; a task grades one student.

Staff start a scheduler and workers from a checkout of this kit, in its pinned environment
(the README's "Grading on a cluster"):

    dask scheduler                                             # on one machine: tcp://HOST:8786
    cd KIT && PYTHONPATH=$PWD .venv/bin/dask worker tcp://HOST:8786 --nworkers 16 --nthreads 1

and grade with ``tools/autograde.py SUBMITTED --out OUT --scheduler tcp://HOST:8786``, or
``--cluster local --workers N`` for a ``LocalCluster`` on this machine.

* ``GraderPlugin`` (a ``distributed.WorkerPlugin``): its setup, on every worker, checks that
  the worker can sandbox (bubblewrap, root) and runs the pinned environment and the client's
  grader, then starts a ``runner.ZygotePool`` (one sandboxed zygote per worker thread, each on
  a uid slot of its own on that machine) and loads ``compare.Expected``. A worker that fails
  these checks fails its plugin with a message naming it and is never used unsandboxed.
* ``grade_student``, the task: it carries the allow-listed files as bytes, and calls
  ``StudentGrader.grade`` through the worker's pool; expected values and comparisons stay in
  the worker's trusted process. It returns the results document.
* ``DaskBackend``: the client side, feeding ``runner.grade_batch``'s loop (which writes each
  document once) from ``as_completed``. A killed worker's tasks are run again elsewhere (the
  scheduler's ``allowed-failures``; ``RETRIES`` more for tasks that raise).
"""

import asyncio
import contextlib
import hashlib
import importlib.metadata
import logging
import platform
import re
import socket
import sys
import tomllib
import uuid
from collections.abc import Iterator

from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from distributed.core import Status

from tools.grading.collect import Submission
from tools.grading.compare import Expected
from tools.grading.runner import BatchError, Options, ZygotePool, private_tmpdir
from tools.grading.sandbox import ROOT, Limits, SandboxUnavailable, require_bwrap
from tools.grading.student import grader_version

PLUGIN_NAME = "hw2-grader"
CONNECT_TIMEOUT = 10  # seconds to reach the scheduler
WORKERS_TIMEOUT = 60  # seconds to wait for a first worker
RETRIES = 2  # more attempts of a task that raised (a killed worker's tasks are rerun anyway)
CLOSING = (Status.closing, Status.closing_gracefully, Status.closed, Status.failed)


class GraderUnavailable(SandboxUnavailable):
    """A Dask worker that cannot grade (not sandboxed, another environment or grader)."""


def environment_pins() -> dict[str, str]:
    """The student environment's exact pins (``pyproject.toml``'s dependencies)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for req in project["dependencies"]:
        name, sep, version = req.partition("==")
        if sep:
            pins[name.strip()] = version.strip()
    return pins


def environment_problems(pins: dict[str, str], python: str) -> list[str]:
    """How this process's environment differs from ``pins`` and the ``python`` version."""
    from packaging.specifiers import SpecifierSet

    problems = []
    here = ".".join(platform.python_version_tuple()[:2])
    if here != python:
        problems.append(f"Python {here} (the course uses {python})")
    for name, want in pins.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} missing (pinned {want})")
            continue
        if not SpecifierSet(f"=={want}").contains(have, prereleases=True):
            problems.append(f"{name} {have} (pinned {want})")
    return problems


def plugin_token(version: str, timeout: float, limits: Limits) -> str:
    """What a task needs of the worker's grader: the grader itself and its settings."""
    return hashlib.sha256(f"{version} {timeout!r} {limits!r}".encode()).hexdigest()[:16]


class GraderPlugin(WorkerPlugin):
    """Hosts a ``ZygotePool`` on a Dask worker (see the module docstring)."""

    idempotent = False  # a new batch's plugin replaces the last one (which drains first)

    def __init__(self, timeout: float, limits: Limits, version: str, pins: dict, python: str):
        self.timeout, self.limits = timeout, limits
        self.version, self.pins, self.python = version, pins, python
        self.token = plugin_token(version, timeout, limits)
        self.pool: ZygotePool | None = None
        self.error: str | None = None
        self.where = "?"
        self._stack: contextlib.ExitStack | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(pool=None, error=None, _stack=None)
        return state

    async def setup(self, worker) -> None:
        self.where = f"Dask worker {worker.address} on {socket.gethostname()}"
        await asyncio.to_thread(self._setup, worker.state.nthreads)

    def _setup(self, nthreads: int) -> None:
        try:
            try:
                require_bwrap()
            except SandboxUnavailable as e:
                raise GraderUnavailable(
                    f"cannot sandbox: {str(e).split(' (or pass --unsandboxed')[0]}; it is never "
                    f"used without the sandbox"
                ) from None
            problems = environment_problems(self.pins, self.python)
            if problems:
                raise GraderUnavailable(
                    f"not the course's pinned environment ({'; '.join(problems)}): run the "
                    f"worker with the kit's .venv (README: Grading on a cluster)"
                )
            if grader_version() != self.version:
                raise GraderUnavailable(
                    f"runs another version of the grader ({grader_version()}, the client has "
                    f"{self.version}): check out the client's commit of the kit on the worker"
                )
            self._stack = contextlib.ExitStack()
            tmp = self._stack.enter_context(private_tmpdir())
            self.pool = ZygotePool(max(1, nthreads), tmp, self.timeout, self.limits, True)
            try:
                self.pool.set_expected(Expected())
            except BaseException as e:
                self.pool.fail(e)
                raise
            self.pool.wait_ready()
        except BaseException as e:
            self.error = str(e) if isinstance(e, GraderUnavailable) else f"{type(e).__name__}: {e}"
            self._teardown(cancel=True)
            raise GraderUnavailable(f"{self.where}: {self.error}") from None

    async def teardown(self, worker) -> None:
        await asyncio.to_thread(self._teardown, worker.status in CLOSING)

    def _teardown(self, cancel: bool) -> None:
        """Stop the pool: at once when the worker closes, else (a new batch's plugin replaces
        this one) once the students it was given are graded."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.stop(cancel=cancel)
        if self._stack is not None:
            self._stack.close()
            self._stack = None


def grade_student(
    student_id: str, source: str, files: dict[str, bytes], notes: list[str], token: str
) -> dict:
    """The Dask task: grade one student on this worker's pool; the results document."""
    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, GraderPlugin):
        raise GraderUnavailable(f"Dask worker {worker.address} has no grader plugin")
    if plugin.token != token:
        raise GraderUnavailable(
            f"{plugin.where}: its grader was replaced by another batch's (another version or "
            f"other --timeout): run one batch at a time on a cluster"
        )
    pool = plugin.pool
    if pool is None:
        raise GraderUnavailable(f"{plugin.where}: {plugin.error or 'the grader is not running'}")
    return pool.submit(Submission(student_id, source, dict(files), list(notes))).result()


def _task_function():
    """``grade_student`` behind a function that cloudpickle sends by value: the scheduler
    unpickles every task, and it need not be able to import the grader (only workers do)."""

    def grade_student_task(*args):
        from tools.grading.dask_backend import grade_student

        return grade_student(*args)

    return grade_student_task


def _dashboard(client: Client) -> str | None:
    """The dashboard's link when it answers (the scheduler serves it only with bokeh)."""
    import urllib.request

    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        link = client.dashboard_link
        with urllib.request.urlopen(link, timeout=2) as reply:
            return link if reply.status == 200 else None
    except Exception:  # noqa: BLE001 - the link is a convenience
        return None


class DaskBackend:
    """Grades on a Dask cluster: an existing one (``opts.scheduler``) or a ``LocalCluster``
    of ``opts.workers`` in-process workers with one thread each (``opts.cluster == "local"``).

    The local cluster's workers are threads of this process (``processes=False``): each still
    hosts its own sandboxed zygote (``GraderPlugin``), which is where student code runs, and
    this saves starting N Python processes that would each import torch and load the
    references (a 1.3-1.5x overhead on 40 submissions, against about 1.05x)."""

    def __init__(self, opts: Options):
        if opts.cluster not in (None, "local"):
            raise BatchError(f"--cluster {opts.cluster}: only 'local' is known")
        if not opts.sandboxed:
            raise BatchError("Dask workers always grade in the sandbox: drop --unsandboxed")
        self.opts = opts
        self.client: Client | None = None
        self.cluster: LocalCluster | None = None
        self.version = grader_version()
        self.token = plugin_token(self.version, opts.timeout, opts.limits)
        if opts.scheduler:
            self.name = f"Dask cluster at {opts.scheduler}"
        else:
            self.name = f"Dask LocalCluster of {opts.workers} workers"

    def __enter__(self):
        try:
            self._connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
            self.cluster = None

    def _connect(self) -> None:
        opts = self.opts
        address = opts.scheduler
        if address:
            try:
                self.client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
            except (OSError, ValueError, TimeoutError) as e:
                raise BatchError(
                    f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT} s "
                    f"({e}): start it with `dask scheduler` on that machine, or fix --scheduler"
                ) from None
        else:
            try:
                import bokeh  # noqa: F401 - the dashboard needs it
            except ImportError:
                dashboard = None
            else:
                dashboard = ":0"
            self.cluster = LocalCluster(
                n_workers=opts.workers, threads_per_worker=1, processes=False,
                dashboard_address=dashboard, silence_logs=logging.ERROR,
            )  # fmt: skip
            self.client = Client(self.cluster, set_as_default=False)
            address = self.cluster.scheduler_address
        link = _dashboard(self.client)
        if link:
            print(f"autograde: Dask dashboard: {link}", file=sys.stderr)
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except TimeoutError:
            raise BatchError(
                f"the Dask scheduler at {address} has no worker after {WORKERS_TIMEOUT} s: "
                f"start workers with `dask worker {address}` (README: Grading on a cluster)"
            ) from None
        plugin = GraderPlugin(opts.timeout, opts.limits, self.version, environment_pins(),
                              ".".join(platform.python_version_tuple()[:2]))  # fmt: skip
        try:
            self.client.register_plugin(plugin, name=PLUGIN_NAME)
        except GraderUnavailable as e:
            raise BatchError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - any failure of a worker's setup
            missing = re.search(r"No module named '[^']+'", str(e))
            if missing:  # the plugin could not even be unpickled there
                raise BatchError(
                    f"a Dask worker of {address} cannot import the grader ({missing[0]}): "
                    f"start each worker in the kit's folder with PYTHONPATH set to it (README: "
                    f"Grading on a cluster)"
                ) from None
            raise BatchError(
                f"a Dask worker of {address} could not start the grader: {type(e).__name__}: {e}"
            ) from None

    def grade(self, subs: list[Submission]) -> Iterator[tuple[Submission, dict]]:
        run = uuid.uuid4().hex[:8]
        by_key, futures, task = {}, [], _task_function()
        for sub in subs:
            fut = self.client.submit(
                task, sub.student_id, sub.source, sub.files, list(sub.notes),
                self.token, key=f"hw2-grade-{sub.student_id}-{run}", retries=RETRIES,
            )  # fmt: skip
            by_key[fut.key] = sub
            futures.append(fut)
        try:
            for fut in as_completed(futures, loop=self.client.loop):
                sub = by_key[fut.key]
                try:
                    doc = fut.result()
                except GraderUnavailable as e:
                    raise BatchError(str(e)) from None
                except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - with the id
                    raise BatchError(
                        f"grading {sub.student_id} failed on the cluster: {type(e).__name__}: {e}"
                    ) from None
                yield sub, doc
        finally:
            self.client.cancel([f for f in futures if not f.done()])
