"""Long-lived sandboxed workers: one bubblewrap sandbox per worker slot, with a zygote inside.

Each worker slot starts ``tools/grading/harness.py`` once, under bubblewrap, and sends it
one task at a time; torch is imported once per slot, and every task runs in a child forked
from the warm zygote (see the harness docstring for what happens between tasks).

The sandbox:

* new network, pid, ipc and uts namespaces, ``--die-with-parent``, ``--new-session``;
* a tmpfs root that is made read-only, holding read-only binds of only ``/usr`` (and its
  ``/lib*`` links), the Python installation and the venv, the grader's trusted kit at
  ``/kit`` and the slot's current submission at ``/sub``; a fresh ``/proc`` of the pid
  namespace; no repository, no ``tests/assets``, no output folder, no other student;
* a private, size-limited tmpfs at ``/scratch``, the only writable place;
* ``setpriv`` to an unprivileged uid of the slot's own (see ``slot_uid``), gid 65534, no
  supplementary groups, no new privileges; ``prlimit`` caps address space, processes, CPU
  seconds, file size and open files.

The parent reads a task's outputs through ``/proc/<sandbox init>/root/scratch``, without
following links and with size caps (``read_outputs``).
"""

import json
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.grading.memcap import MemoryCap

ROOT = Path(__file__).resolve().parents[2]
NOBODY_GID = 65534
# RLIMIT_NPROC counts the processes of a uid system-wide: with one uid for all slots, a fork
# bomb in one slot would make forks fail in the others. Each slot gets a uid no account uses.
SANDBOX_UID_BASE = 65534


def slot_uid(slot: int) -> int:
    """The unprivileged uid of worker slot ``slot``: 65534 (nobody) for slot 0, then uids
    far above every account and dynamic-user range."""
    return SANDBOX_UID_BASE if slot == 0 else 3_000_000 + slot


# What the zygote needs of the grader; copied into the kit, mirroring the repository layout.
KIT_FILES = (
    "tools/__init__.py",
    "tools/asset_specs.py",
    "tools/grading/__init__.py",
    "tools/grading/harness.py",
)
KIT_PACKAGES = ("cs236781",)
TRUSTED_HW2 = ("hw2/__init__.py", "hw2/mlp.py")
BOOT = "import sys; sys.path.insert(0, sys.argv.pop(1)); from tools.grading.harness import zygote_main; zygote_main(sys.argv[1:])"  # noqa: E501
OUTPUT_FILE_CAP = 8 << 20
OUTPUT_FILES_MAX = 64  # a group of tasks writes a few files per task
OUTPUT_TOTAL_CAP = 64 << 20
RESPONSE_CAP = 1 << 20
START_TIMEOUT = 180.0


REPLY_GRACE = 15.0  # seconds the zygote may take beyond a request's budget to answer
POLL_INTERVAL = 0.25  # seconds between two looks at the memory cap while a request runs


def wall_clock(cpu_seconds: float) -> float:
    """The wall-clock limit of a task allowed ``cpu_seconds`` of CPU time. The CPU limit is
    what decides (it does not depend on how busy the machine is); the wall-clock limit only
    catches tasks that wait without computing."""
    return cpu_seconds + 5


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be set up on this machine (the grader cannot run)."""


class WorkerDied(RuntimeError):
    """The worker stopped answering or died; it is restarted for the next task."""


# A warm zygote takes about 0.4 GiB, a correct submission's child about 0.2 GiB more.
DEFAULT_MEMORY = 3 << 30


@dataclass(frozen=True)
class Limits:
    """Resource limits of every sandboxed process (``prlimit``); the task timeout is per call."""

    address_space: int = 4 << 30  # torch alone maps about 3.2 GiB
    memory: int = DEFAULT_MEMORY  # all the sandbox's processes together (memcap.MemoryCap)
    # wall-clock seconds for all the checks of one submission (None: student.default_budget)
    budget: float | None = None
    # run the overfit check's epochs in full instead of stopping at the first that passes
    full_overfit: bool = False
    processes: int = 64  # threads count too
    zygote_cpu_seconds: int = 24 * 3600  # each task lowers its own to its timeout
    file_size: int = 16 << 20
    open_files: int = 256
    scratch_size: int = 64 << 20


def build_kit(dest: Path) -> Path:
    """Copy the trusted files the zygote imports into ``dest`` (read-only for the sandbox)."""
    for rel in KIT_FILES:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, target)
    for pkg in KIT_PACKAGES:
        (dest / pkg).mkdir(parents=True, exist_ok=True)
        for src in sorted((ROOT / pkg).glob("*.py")):
            shutil.copyfile(src, dest / pkg / src.name)
    _make_world_readable(dest)
    return dest


def _make_world_readable(top: Path) -> None:
    os.chmod(top, 0o755)
    for dirpath, dirnames, filenames in os.walk(top):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


def require_bwrap() -> str:
    """The path of bwrap, or ``SandboxUnavailable`` saying how to install it."""
    missing = [tool for tool in ("bwrap", "setpriv", "prlimit") if shutil.which(tool) is None]
    if missing:
        raise SandboxUnavailable(
            f"{', '.join(missing)} not found: run `apt-get install -y bubblewrap util-linux` "
            f"(or pass --unsandboxed to grade without isolation, trusted code only)"
        )
    if os.geteuid() != 0:
        raise SandboxUnavailable("the sandbox needs root (to drop to an unprivileged uid)")
    return shutil.which("bwrap")


def _parents(path: Path) -> list[Path]:
    return list(reversed(path.parents))[1:]


def bwrap_argv(slot: int, kit: Path, sub: Path, limits: Limits, info_fd: int) -> list[str]:
    """The command that starts slot ``slot``'s zygote in its sandbox."""
    argv = [
        require_bwrap(),
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session",
        "--info-fd", str(info_fd),
        "--tmpfs", "/",
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    if os.path.exists("/etc/ld.so.cache"):
        argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    made: set[Path] = set()
    for src in sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix)}):
        for parent in _parents(src):
            if parent not in made and not str(parent).startswith("/usr"):
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        argv += ["--ro-bind", str(src), str(src)]
    argv += [
        "--ro-bind", str(kit), "/kit",
        "--ro-bind", str(sub), "/sub",
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--size", str(limits.scratch_size), "--tmpfs", "/scratch",
        "--remount-ro", "/",
        "--chdir", "/",
        "--clearenv",
        *_env_args(),
        "--",
        shutil.which("setpriv"), "--reuid", str(slot_uid(slot)), "--regid", str(NOBODY_GID),
        "--clear-groups", "--no-new-privs", "--",
        shutil.which("prlimit"),
        f"--as={limits.address_space}", f"--nproc={limits.processes}",
        f"--cpu={limits.zygote_cpu_seconds}", f"--fsize={limits.file_size}",
        f"--nofile={limits.open_files}", "--",
        sys.executable, "-I", "-c", BOOT, "/kit", "--sub", "/sub", "--scratch", "/scratch",
        "--sweep",
    ]  # fmt: skip
    return argv


SANDBOX_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/scratch",
    "TMPDIR": "/scratch",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HW2_OFFLINE_DATA": "1",
}


def _env_args() -> list[str]:
    args = []
    for key, value in SANDBOX_ENV.items():
        args += ["--setenv", key, value]
    return args


class Worker:
    """One worker slot: starts its zygote, sends tasks, restarts it when it dies."""

    def __init__(self, slot: int, kit: Path, tmp: Path, limits: Limits, sandboxed: bool = True):
        self.slot = slot
        self.kit = kit
        self.limits = limits
        self.sandboxed = sandboxed
        self.home = tmp / f"slot{slot}"
        self.sub = self.home / "sub"
        self.scratch = self.home / "scratch"  # used only unsandboxed
        for d in (self.home, self.sub, self.scratch):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        self.proc: subprocess.Popen | None = None
        self.init_pid: int | None = None
        self.cap = MemoryCap(f"slot{slot}", limits.memory)
        self.hello: dict = {}
        self._buf = b""

    # -- lifecycle

    def start(self) -> None:
        """Start the zygote and wait until it has imported torch."""
        log = open(self.home / "worker.log", "ab")  # noqa: SIM115 - kept by the Popen
        if self.sandboxed:
            info_r, info_w = os.pipe()
            argv = bwrap_argv(self.slot, self.kit, self.sub, self.limits, info_w)
            env, pass_fds = {}, (info_w,)
        else:
            argv = [
                sys.executable, "-I", "-c", BOOT, str(self.kit),
                "--sub", str(self.sub), "--scratch", str(self.scratch),
            ]  # fmt: skip
            env, pass_fds = dict(SANDBOX_ENV, HOME=str(self.scratch)), ()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
            pass_fds=pass_fds, start_new_session=True, preexec_fn=self.cap.preexec,
        )  # fmt: skip
        self.cap.started(self.proc.pid)
        log.close()
        self._buf = b""
        if self.sandboxed:
            os.close(info_w)
            with os.fdopen(info_r, "rb") as info:
                self.init_pid = int(json.loads(info.read(65536) or b"{}").get("child-pid", 0))
            if not self.init_pid:
                self._kill()
                raise SandboxUnavailable(f"bwrap did not start: see {self.home}/worker.log")
        try:
            self.hello = self._read_reply(START_TIMEOUT)
        except WorkerDied as e:
            raise SandboxUnavailable(f"the sandboxed worker did not start ({e}): see "
                                     f"{self.home}/worker.log") from e  # fmt: skip

    def stop(self) -> None:
        """Kill the sandbox and release its memory cap; the worker is done."""
        self._kill()
        self.cap.close()

    def _kill(self) -> None:
        """Kill the worker's whole process group (and so its sandbox)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()
        self.proc, self.init_pid = None, None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- tasks

    def run(self, request: dict, on_event=None) -> dict:
        """Send ``request`` (see ``harness.Zygote.serve``) and return the zygote's account of
        how its child ended. Events the zygote sends meanwhile (a training snapshot) go to
        ``on_event(event)``, whose answer (``"continue"`` or ``"stop"``) is sent back.

        Raises ``WorkerDied`` when the zygote does not answer in time or dies (the worker is
        then stopped, and started again by the next call).
        """
        if not self.alive():
            self._kill()
            self.start()
        deadline = time.monotonic() + float(request["budget"]) + REPLY_GRACE
        self._send(request)
        stops, asked = self.cap.stops(), []

        def end_at_memory_stop() -> None:  # the cap stopped a process: end the request now
            if not asked and self.cap.stops() > stops:
                asked.append(True)
                self._send({"control": "stop"})

        while True:
            try:
                reply = self._read_reply(deadline - time.monotonic(), end_at_memory_stop)
            except WorkerDied:
                self._kill()
                raise
            if "event" not in reply:
                break
            word = on_event(reply) if on_event is not None else "continue"
            self._send({"control": word})
        if "error" in reply:  # the scratch folder could not be cleaned: start afresh
            self._kill()
        return reply

    def _send(self, doc: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(doc) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as e:
            self._kill()
            raise WorkerDied(f"could not send the task: {e}") from e

    def _read_reply(self, timeout: float, poll=None) -> dict:
        """The zygote's next message. ``poll()`` is called about every ``POLL_INTERVAL``
        seconds while it is awaited."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerDied(f"no answer within {timeout:.0f} s")
                if not sel.select(min(remaining, POLL_INTERVAL) if poll else remaining):
                    if poll:
                        poll()
                    continue
                data = os.read(fd, 65536)
                if not data:
                    raise WorkerDied("the worker process ended")
                self._buf += data
                if len(self._buf) > RESPONSE_CAP:
                    raise WorkerDied("the worker's answer was too long")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError as e:
            raise WorkerDied("the worker's answer was not JSON") from e
        if not isinstance(reply, dict):
            raise WorkerDied("the worker's answer was not a JSON object")
        return reply

    # -- files in and out

    def install(self, files: dict[str, bytes]) -> None:
        """Make ``files`` (the student's allow-listed files) plus the trusted ``hw2`` files the
        only content of ``/sub``. The folder itself stays: it is bind-mounted."""
        hw2 = self.sub / "hw2"
        if hw2.exists():
            shutil.rmtree(hw2)
        hw2.mkdir(mode=0o755)
        os.chmod(hw2, 0o755)
        for rel in TRUSTED_HW2:
            shutil.copyfile(ROOT / rel, self.sub / rel)
        for rel, data in files.items():
            (self.sub / rel).write_bytes(data)
        _make_world_readable(self.sub)

    def clear(self) -> None:
        """Remove the current submission from ``/sub``."""
        shutil.rmtree(self.sub / "hw2", ignore_errors=True)

    def outputs(self) -> dict[str, bytes]:
        """The files the last task wrote to ``scratch/work/out``, read safely (see module doc)."""
        base = f"/proc/{self.init_pid}/root/scratch" if self.sandboxed else str(self.scratch)
        return read_outputs(base, ("work", "out"))


class UnsafeOutput(ValueError):
    """An output that is not a small regular file reached without links."""


def read_outputs(base: str, parts: tuple[str, ...]) -> dict[str, bytes]:
    """Read every file of ``base/<parts...>``; no component may be a link, every file must be
    regular and at most ``OUTPUT_FILE_CAP`` bytes, and there are at most ``OUTPUT_FILES_MAX``.
    Returns ``{}`` when the folder does not exist; raises ``UnsafeOutput`` otherwise."""
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    try:
        for part in parts:
            try:
                nfd = os.open(part, dir_flags, dir_fd=fd)
            except FileNotFoundError:
                return {}
            except OSError as e:
                raise UnsafeOutput(f"output folder {part!r} is not a plain folder ({e})") from e
            os.close(fd)
            fd = nfd
        names = os.listdir(fd)
        if len(names) > OUTPUT_FILES_MAX:
            raise UnsafeOutput(f"too many output files ({len(names)})")
        files, total = {}, 0
        for name in names:
            files[name] = _read_capped(fd, name)
            total += len(files[name])
            if total > OUTPUT_TOTAL_CAP:
                raise UnsafeOutput(f"outputs too large in all (over {OUTPUT_TOTAL_CAP} bytes)")
        return files
    finally:
        os.close(fd)


def _read_capped(dir_fd: int, name: str) -> bytes:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        raise UnsafeOutput(f"output {name!r} cannot be opened safely ({e})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeOutput(f"output {name!r} is not a regular file")
        if st.st_size > OUTPUT_FILE_CAP:
            raise UnsafeOutput(f"output {name!r} is too large ({st.st_size} bytes)")
        chunks, size = [], 0
        while size <= OUTPUT_FILE_CAP:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > OUTPUT_FILE_CAP:
            raise UnsafeOutput(f"output {name!r} is too large")
        return b"".join(chunks)
    finally:
        os.close(fd)
