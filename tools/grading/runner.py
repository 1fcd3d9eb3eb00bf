"""Grade a batch: one client-side loop, fed by a backend that grades students somewhere.

Backends:

* the local pool (default): one thread per worker slot on this machine, each driving its own
  sandboxed zygote (``ZygotePool``);
* Dask (``tools.grading.dask_backend``): an existing distributed cluster
  (``Options.scheduler``) or a ``LocalCluster`` started here (``Options.cluster == "local"``);
  each Dask worker hosts a ``ZygotePool`` of its own.

Whichever backend runs it, a student is graded by ``student.StudentGrader.grade`` (the one
function that grades one student), and the loop here writes each results document to
``OUT/results/<student_id>.json`` exactly once, atomically, updates one progress bar, and
republishes grades.csv, grades.json, report.html and the new feedback pages every
``Options.publish_every`` seconds while results arrive. A re-run skips students whose stored
results match their files and this grader, unless ``force``.

Crash safety: a batch holds a lock on OUT (one batch per OUT at a time); at its start it
removes the temporary files that an interrupted ``write_atomic`` left there, and the private
temporary folders of batches that were killed. Sandboxes die with the thread that started
them (bubblewrap's ``--die-with-parent``).
"""

import contextlib
import fcntl
import json
import os
import queue
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tools.grading.collect import Submission, find_submissions, load_submission
from tools.grading.compare import Expected
from tools.grading.sandbox import Limits, Worker, build_kit
from tools.grading.student import StudentGrader, grader_version

PUBLISH_EVERY = 10.0  # seconds between two reports written while a batch runs
TMP_PREFIX = "hw2-grading-"  # private temporary folders: hw2-grading-<pid>-<random>
# One lock file per sandbox uid slot (``sandbox.slot_uid``): RLIMIT_NPROC counts a uid's
# processes machine-wide, so no two zygotes on one machine may share a slot, whichever batch,
# pool or Dask worker runs them.
SLOT_LOCK_DIR = Path("/run/lock/hw2-grader") if Path("/run/lock").is_dir() else None
FIRST_SLOT, SLOT_MAX = 1, 100_000
OUT_LOCK = ".autograde.lock"


class BatchError(RuntimeError):
    """The batch cannot run (a cluster that cannot be reached, a worker that cannot grade)."""


@dataclass
class Options:
    """How to grade a batch."""

    workers: int = 2
    timeout: float | None = None  # CPU seconds per check; None: calibrated (calibrate.py)
    force: bool = False
    sandboxed: bool = True
    limits: Limits = field(default_factory=Limits)
    progress: bool = True
    scheduler: str | None = None  # tcp://HOST:PORT of an existing Dask scheduler
    cluster: str | None = None  # "local": a Dask LocalCluster of ``workers`` processes
    publish_every: float = PUBLISH_EVERY


@dataclass
class Batch:
    """What a batch did: every student's results (those skipped as already graded too), the
    entries that were not submissions, and the students graded by this run."""

    docs: list[dict]
    skipped: list[str]
    graded: list[str]
    backend: str


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


def load_current(path: Path, sub: Submission, version: str) -> dict | None:
    """The stored results in ``path`` if they are for exactly these files from this grader."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("fingerprint") != sub.fingerprint() or doc.get("grader") != version:
        return None
    return doc


def stored_is_current(path: Path, sub: Submission, version: str) -> bool:
    """Whether ``path`` holds results for exactly these files from this grader."""
    return load_current(path, sub, version) is not None


# ----------------------------------------------------------------------------- crash safety


@contextlib.contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.autograde.lock`` for the batch: a second batch on the same OUT stops with
    a one-line error. The kernel releases the lock when the process dies, even by kill -9."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / OUT_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchError(
                f"{out} is being written by another autograde run: wait for it to end, or "
                f"pass another --out"
            ) from None
        yield
    finally:
        os.close(fd)


def remove_stale_tmp(out: Path) -> list[Path]:
    """Remove the ``.<name>.*.tmp`` files that a killed ``write_atomic`` left in OUT, its
    results and its feedback folders (only call it while holding ``out_lock``)."""
    removed = []
    for folder in (out, out / "results", out / "feedback"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def sweep_stale_tmpdirs() -> None:
    """Remove the private temporary folders of batches that were killed: those whose process
    (named in the folder's name) is gone and whose lock is free."""
    for entry in os.scandir(tempfile.gettempdir()):
        if not entry.name.startswith(TMP_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            pid = int(entry.name[len(TMP_PREFIX) :].split("-", 1)[0])
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid() or _alive(pid):
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (OSError, ValueError):
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(entry.path, ignore_errors=True)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def private_tmpdir() -> Iterator[Path]:
    """A temporary folder for the kit and the slots' files, named after this process and
    locked while in use; removed afterwards, or by a later batch's ``sweep_stale_tmpdirs``
    when this process was killed."""
    sweep_stale_tmpdirs()
    path = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _slot_lock_dir() -> Path:
    folder = SLOT_LOCK_DIR or Path(tempfile.gettempdir()) / "hw2-grader-slots"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(folder)
    if st.st_uid != os.geteuid() or not stat.S_ISDIR(st.st_mode):
        raise BatchError(f"{folder} is not a folder of this user: remove it and run again")
    return folder


class SlotLease:
    """One sandbox uid slot held by this process (a lock on ``<lock dir>/slot-<n>``)."""

    def __init__(self, slot: int, fd: int):
        self.slot, self._fd = slot, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lease_slots(n: int) -> list[SlotLease]:
    """``n`` uid slots that no other zygote on this machine holds, held until released (or
    until this process ends)."""
    folder = _slot_lock_dir()
    leases: list[SlotLease] = []
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    for slot in range(FIRST_SLOT, SLOT_MAX):
        if len(leases) == n:
            return leases
        fd = os.open(folder / f"slot-{slot}", flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        leases.append(SlotLease(slot, fd))
    for lease in leases:
        lease.release()
    raise BatchError(f"no free sandbox slot in {folder} ({SLOT_MAX} in use?)")


# ----------------------------------------------------------------------------- zygote pool


class ZygotePool:
    """``n`` sandboxed workers on this machine, each started and driven by its own thread
    (a sandbox dies with the thread that started it); ``submit(sub)`` is graded by whichever
    is free, with ``StudentGrader.grade``. Used by the local backend and by each Dask worker.

    The workers start (each imports torch in its sandbox) while the caller loads the
    references (``set_expected``), so that the two start-ups overlap. A worker that cannot
    start fails the whole pool (``error``): every queued and later request gets its error.
    """

    def __init__(self, n: int, tmp: Path, timeout: float, limits: Limits, sandboxed: bool):
        self.timeout = timeout
        self.error: BaseException | None = None
        self._expected: Expected | None = None
        self._loaded = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._ready = threading.Semaphore(0)
        self._stopped = False
        kit = build_kit(tmp / "kit")
        self.leases = lease_slots(n)
        self.slots = [lease.slot for lease in self.leases]
        self._threads = [
            threading.Thread(
                target=self._serve,
                args=(Worker(slot, kit, tmp, limits, sandboxed=sandboxed),),
                name=f"hw2-slot-{slot}",
                daemon=True,
            )  # fmt: skip
            for slot in self.slots
        ]
        for t in self._threads:
            t.start()

    def set_expected(self, expected: Expected) -> None:
        self._expected = expected
        self._loaded.set()

    def fail(self, error: BaseException) -> None:
        """Fail the pool: every queued and later request gets ``error``."""
        with self._lock:
            if self.error is None:
                self.error = error
        self._loaded.set()
        self._drain(lambda fut: fut.set_exception(self.error))

    def wait_ready(self) -> None:
        """Wait until every worker has started and the references are loaded (raises the
        pool's error, if any)."""
        for _ in self._threads:
            self._ready.acquire()
        for _ in self._threads:
            self._ready.release()
        self._loaded.wait()
        if self.error is not None:
            raise self.error

    def submit(self, sub: Submission) -> Future:
        fut: Future = Future()
        with self._lock:
            if self.error is not None or self._stopped:
                fut.set_exception(self.error or RuntimeError("the grading pool was stopped"))
                return fut
            self._queue.put((sub, fut))
        return fut

    def stop(self, cancel: bool = False) -> None:
        """Stop every worker once the queued requests are graded (or cancelled, with
        ``cancel``), and release the uid slots."""
        with self._lock:
            self._stopped = True
        if cancel:
            self._drain(lambda fut: fut.cancel())
        if not self._loaded.is_set():
            self.fail(RuntimeError("the grading pool was stopped"))
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        for lease in self.leases:
            lease.release()

    def _drain(self, settle) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:  # a stop marker: keep it for the threads
                self._queue.put(None)
                return
            settle(item[1])

    def _serve(self, worker: Worker) -> None:
        try:
            try:
                worker.start()
            finally:
                self._ready.release()
            self._loaded.wait()
            if self.error is not None:
                return
            grader = StudentGrader(worker, self._expected, self.timeout)
            while True:
                item = self._queue.get()
                if item is None:
                    return
                sub, fut = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(grader.grade(sub))
                except BaseException as e:  # noqa: BLE001 - the requester decides
                    fut.set_exception(e)
        except BaseException as e:  # noqa: BLE001 - reported through the pool's requests
            self.fail(e)
        finally:
            worker.stop()


# ----------------------------------------------------------------------------- backends


class LocalBackend:
    """A ``ZygotePool`` of ``workers`` slots on this machine."""

    name = "local pool"

    def __init__(self, opts: Options):
        self.opts = opts
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def grade(self, subs: list[Submission]) -> Iterator[tuple[Submission, dict]]:
        from concurrent.futures import as_completed

        opts = self.opts
        tmp = self._stack.enter_context(private_tmpdir())
        n = max(1, min(opts.workers, len(subs)))
        pool = ZygotePool(n, tmp, opts.timeout, opts.limits, opts.sandboxed)
        done = False
        try:
            try:
                pool.set_expected(Expected())
            except BaseException as e:
                pool.fail(e)
                raise
            futures = {pool.submit(sub): sub for sub in subs}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
            done = True
        finally:
            pool.stop(cancel=not done)


def open_backend(opts: Options):
    """The backend ``opts`` asks for (not yet connected: use it as a context manager)."""
    if opts.scheduler or opts.cluster:
        from tools.grading.dask_backend import DaskBackend

        return DaskBackend(opts)
    return LocalBackend(opts)


# ----------------------------------------------------------------------------- the batch


class Publisher:
    """Writes the batch's report files while results arrive, at most every ``every`` s."""

    def __init__(self, out: Path, skipped: list[str], every: float):
        self.out, self.skipped, self.every = out, skipped, every
        self.last = time.monotonic()
        self.fresh: list[dict] = []

    def add(self, doc: dict, docs) -> None:
        """Note a new results document; ``docs()`` gives all the batch's documents."""
        self.fresh.append(doc)
        if time.monotonic() - self.last >= self.every:
            self.publish(docs())

    def publish(self, docs: list[dict]) -> None:
        from tools.grading import report

        for doc in self.fresh:
            report.write_feedback(doc, self.out)
        report.write_summary(docs, self.out, self.skipped)
        self.fresh = []
        self.last = time.monotonic()


def grade_batch(submitted: Path, out: Path, opts: Options) -> Batch:
    """Grade every submission under ``submitted`` that has no current results in
    ``out/results``; see the module docstring."""
    from tqdm import tqdm

    found, skipped = find_submissions(submitted)
    results_dir = out / "results"
    version = grader_version()
    with out_lock(out):
        remove_stale_tmp(out)
        subs, docs, todo = [], {}, []
        for sid, path in found:
            sub = load_submission(sid, path)
            subs.append(sub)
            doc = None if opts.force else load_current(results_dir / f"{sid}.json", sub, version)
            if doc is None:
                todo.append(sub)
            else:
                docs[sid] = doc
        graded: list[str] = []
        backend = open_backend(opts)
        if todo:
            publisher = Publisher(out, skipped, opts.publish_every)
            order = {s.student_id: i for i, s in enumerate(subs)}

            def rank(doc: dict) -> int:
                return order[doc["student_id"]]

            bar = partial(tqdm, total=len(todo), desc="grading", unit="student")
            with (
                backend,  # connects (and says so) before the bar is drawn
                contextlib.closing(backend.grade(todo)) as results,
                bar(disable=not opts.progress) as bar,
            ):
                for sub, doc in results:
                    sid = sub.student_id
                    if sid in graded:
                        raise BatchError(f"{sid} was graded twice by the {backend.name}")
                    data = (json.dumps(doc, indent=1) + "\n").encode()
                    write_atomic(results_dir / f"{sid}.json", data)
                    graded.append(sid)
                    docs[sid] = json.loads(data)
                    bar.update()
                    publisher.add(docs[sid], lambda: sorted(docs.values(), key=rank))
        return Batch([docs[s.student_id] for s in subs], skipped, graded, backend.name)


def run_batch(submitted: Path, out: Path, opts: Options) -> tuple[list[dict], list[str]]:
    """Grade every submission under ``submitted``; return all students' results (also the
    ones skipped as already graded) and notes on entries that were not submissions."""
    batch = grade_batch(submitted, out, opts)
    return batch.docs, batch.skipped
