"""Grading on Dask: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1.

The same students grade to the same results as on the local pool; a worker killed midway loses
no student; a cluster that cannot be reached, or a worker that cannot sandbox, stops the batch
with a one-line message and grades nobody.
"""

import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from batch_support import (
    EXAMPLES,
    cli,
    cmdline,
    comparable,
    descendants,
    graded_now,
    make_batch,
    run_cli,
    still_running,
    stored,
    wait_for,
)
from grading_support import REPO, requires_sandbox

from tools.checks import CHECKS

pytestmark = [requires_sandbox, pytest.mark.slow]
DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Cluster:
    """A scheduler and workers, each a real `dask` process in a session of its own."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.spawn("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                 str(self.port), "--no-dashboard"])  # fmt: skip
        wait_for(lambda: listening(self.port), "the scheduler to listen")

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, cwd=REPO, env=env or self.env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def env(**extra) -> dict:
        # as the README says: workers run in the kit's folder, with PYTHONPATH set to it
        return dict(os.environ, PYTHONPATH=str(REPO), **extra)

    def add_worker(self, env: dict | None = None) -> subprocess.Popen:
        return self.spawn("worker", [DASK, "worker", self.address, "--nthreads", "1",
                                     "--host", "127.0.0.1", "--no-dashboard"], env)  # fmt: skip

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=30, set_as_default=False)

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        for _ in range(2):
            c.add_worker()
        with c.client() as client:
            client.wait_for_workers(2, timeout=120)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def local_examples(tmp_path_factory):
    """The example submissions graded on the local pool: what every backend must match."""
    out = tmp_path_factory.mktemp("local")
    done = run_cli(EXAMPLES, out, "--force")
    assert done.returncode == 0, done.stderr
    docs = stored(out)
    assert set(docs) == {"correct", "partial", "broken", "untouched"}
    assert docs["correct"]["score"] == 100  # the solution: full marks
    return {sid: comparable(doc) for sid, doc in docs.items()}


def test_examples_grade_the_same_on_a_cluster(cluster, local_examples, tmp_path):
    out = tmp_path / "out"
    done = run_cli(EXAMPLES, out, "--scheduler", cluster.address)
    assert done.returncode == 0, done.stderr
    assert f"(4 now on the Dask cluster at {cluster.address}" in done.stdout
    assert {sid: comparable(doc) for sid, doc in stored(out).items()} == local_examples
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert len(rows) == 4 * len(CHECKS)


def test_examples_grade_the_same_on_a_local_cluster(local_examples, tmp_path):
    out = tmp_path / "out"
    done = run_cli(EXAMPLES, out, "--cluster", "local", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "(4 now on the Dask LocalCluster of 2 workers" in done.stdout
    assert {sid: comparable(doc) for sid, doc in stored(out).items()} == local_examples


def test_unreachable_scheduler_is_a_one_line_error(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "out"
    done = run_cli(EXAMPLES, out, "--scheduler", address)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"autograde: cannot reach the Dask scheduler at {address}")
    assert "`dask scheduler`" in lines[0]
    assert not list(out.glob("results/*.json"))


def test_worker_without_bubblewrap_is_never_used(tmp_path):
    """A worker whose PATH has no bwrap (nor setpriv, prlimit) fails its plugin, naming
    itself; the batch stops and grades nobody."""
    c = Cluster(tmp_path)
    try:
        c.add_worker(env=c.env(PATH=str(Path(sys.executable).parent)))
        with c.client() as client:
            client.wait_for_workers(1, timeout=120)
        out = tmp_path / "out"
        done = run_cli(EXAMPLES, out, "--scheduler", c.address)
    finally:
        c.close()
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("autograde: Dask worker tcp://127.0.0.1:")
    assert "cannot sandbox: bwrap" in lines[0] and "apt-get install" in lines[0]
    assert not list(out.glob("results/*.json"))


def test_pinned_environment_is_checked():
    from tools.grading.dask_backend import environment_pins, environment_problems

    pins = environment_pins()
    assert pins["torch"] == "2.14.1"  # pyproject.toml's pin
    assert environment_problems(pins, "3.11") == []  # this venv is the pinned one
    wrong = environment_problems({**pins, "torch": "2.0.0", "no-such-package": "1.0"}, "3.10")
    assert wrong == ["Python 3.11 (the course uses 3.10)", "torch 2.14.1 (pinned 2.0.0)",
                     "no-such-package missing (pinned 1.0)"]  # fmt: skip


def test_killed_worker_loses_no_student(cluster, local_examples, tmp_path):
    """kill -9 one worker process while it grades: its student is graded elsewhere (the
    nanny starts a new worker, which sets the grader up again), every student is written
    exactly once, and the killed worker's sandbox dies with it."""
    ids = make_batch(tmp_path / "submitted", 8)
    out = tmp_path / "out"
    cmd = cli(tmp_path / "submitted", out, "--scheduler", cluster.address)
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with cluster.client() as client:

            def busy_worker():
                if len(list(out.glob("results/*.json"))) < 2:
                    return None
                return next((w for w, keys in client.processing().items() if keys), None)

            victim = wait_for(busy_worker, "two students graded and a worker busy", 300, 0.05)
            pid = client.run(os.getpid, workers=[victim])[victim]
            sandbox = descendants(pid)
            programs = {Path(cmdline(p)[0]).name for p, _ in sandbox if cmdline(p)}
            os.kill(pid, signal.SIGKILL)
            done_at_kill = len(list(out.glob("results/*.json")))
        stdout, stderr = run.communicate(timeout=600)
    finally:
        run.kill()
    assert "bwrap" in programs  # the worker had its sandbox
    assert done_at_kill < len(ids)  # the kill was midway
    wait_for(lambda: not still_running(sandbox), "the killed worker's sandbox to end", 30)
    assert run.returncode == 0, stderr
    assert graded_now(stdout) == len(ids)  # every student written by this run, once
    docs = stored(out)
    assert set(docs) == set(ids)
    for sid, kind in ids.items():
        assert comparable(docs[sid]) == dict(local_examples[kind], student_id=sid), sid
    rows = list(csv.DictReader((out / "grades.csv").open()))
    per_student = {sid: sum(r["student_id"] == sid for r in rows) for sid in ids}
    assert per_student == dict.fromkeys(ids, len(CHECKS))
