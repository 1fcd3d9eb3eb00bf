"""A total memory cap over all the processes of one sandbox (process supervision only).

``RLIMIT_AS`` caps each process, but a sandbox may hold up to ``Limits.processes`` of them.
``MemoryCap`` caps their sum:

* with a memory cgroup of its own, when this machine lets us make one: cgroup v2
  ``memory.max`` (and ``memory.swap.max = 0``), or cgroup v1 ``memory.limit_in_bytes`` (and
  ``memory.memsw.limit_in_bytes``). The sandbox's first process joins it before it starts
  (``preexec``), so every process of the sandbox is in it, and the kernel stops them at the
  cap;
* otherwise with a watchdog thread that sums the proportional set size (PSS: shared pages
  counted once) of the sandbox's process tree every ``WATCH_INTERVAL`` seconds and kills the
  whole tree when it is over the cap.

``stops()`` counts how often the cap has stopped something, so the grader can tell the
student that memory, not their code's logic, ended a check.
"""

import os
import signal
import threading
import time
from pathlib import Path

WATCH_INTERVAL = 0.1
HW2_MEMCAP = "HW2_MEMCAP"  # "watchdog" forces the fallback (tests of it, machines without cgroups)


def parse_size(text: str) -> int:
    """``"3G"``, ``"512M"``, ``"2.5GiB"`` or a number of bytes -> bytes."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a memory size (examples: 3G, 512M)") from None


def format_size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def _mounts() -> list[tuple[str, str, str]]:
    """``(mount point, fstype, super options)`` of every cgroup mount."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and tail and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4], tail[0], tail[-1] if len(tail) > 2 else ""))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy: ``{"": v2 path, "memory": v1 path}``."""
    paths = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(","):
                paths[c] = path
    except (OSError, ValueError):
        pass
    return paths


def _candidates() -> list[tuple[str, Path]]:
    """Folders under which a memory cgroup could be made, best first."""
    own = _own_paths()
    out = []
    for mount, fstype, opts in _mounts():
        if fstype == "cgroup2":
            controllers = Path(mount, "cgroup.controllers")
            try:
                if "memory" not in controllers.read_text().split():
                    continue
            except OSError:
                continue
            rel = own.get("", "/").lstrip("/")
            out += [("v2", Path(mount, rel)), ("v2", Path(mount))]
        elif "memory" in opts.split(","):
            rel = own.get("memory", "/").lstrip("/")
            out += [("v1", Path(mount, rel)), ("v1", Path(mount))]
    return out


class MemoryCap:
    """The memory cap of one sandbox; see the module docstring."""

    def __init__(self, name: str, limit: int):
        self.limit = limit
        self.kind = "watchdog"
        self.path: Path | None = None
        self._procs_fd: int | None = None
        self._stops = 0
        self._root_pid: int | None = None
        self._watch: threading.Thread | None = None
        self._closed = threading.Event()
        if os.environ.get(HW2_MEMCAP) != "watchdog":
            self._make_cgroup(f"hw2-grader-{os.getpid()}-{name}")
        if self.kind == "watchdog":
            self._watch = threading.Thread(target=self._watchdog, daemon=True)
            self._watch.start()

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{format_size(self.limit)} in all, enforced by {self.kind}{where}"

    # -- cgroups

    def _make_cgroup(self, name: str) -> None:
        for kind, parent in _candidates():
            path = parent / name
            try:
                path.mkdir(exist_ok=True)
                if kind == "v2":
                    (path / "memory.max").write_text(str(self.limit))
                    _try_write(path / "memory.swap.max", "0")
                else:
                    (path / "memory.limit_in_bytes").write_text(str(self.limit))
                    _try_write(path / "memory.memsw.limit_in_bytes", str(self.limit))
                self._procs_fd = os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
            except OSError:
                try:
                    path.rmdir()
                except OSError:
                    pass
                continue
            self.kind, self.path = f"cgroup {kind}", path
            return

    def preexec(self) -> None:
        """In the sandbox's first process, before it execs: join the cgroup."""
        if self._procs_fd is not None:
            os.write(self._procs_fd, b"0")

    def started(self, pid: int) -> None:
        """The sandbox's first process is ``pid`` (the watchdog watches its tree)."""
        self._root_pid = pid

    def stops(self) -> int:
        """How many processes the cap has stopped so far."""
        if self.path is None:
            return self._stops
        if self.kind == "cgroup v2":
            return _field(self.path / "memory.events", "oom_kill")
        kills = _field(self.path / "memory.oom_control", "oom_kill")
        return kills if kills >= 0 else _int(self.path / "memory.failcnt")

    def close(self) -> None:
        """Release the cgroup (once its processes are gone) and stop the watchdog."""
        self._closed.set()
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None
        if self.path is not None:
            for _ in range(50):
                try:
                    self.path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            self.path = None

    # -- watchdog

    def _watchdog(self) -> None:
        while not self._closed.wait(WATCH_INTERVAL):
            root = self._root_pid
            if root is None:
                continue
            tree = process_tree(root)
            if sum(_pss(pid) for pid in tree) > self.limit:
                for pid in tree:
                    if pid != root:  # bwrap itself: the worker restarts the sandbox
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                self._stops += 1


def _try_write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass


def _int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return -1


def _field(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return -1


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (those that can be read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
