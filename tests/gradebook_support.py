"""Helpers of the gradebook and export tests: a real PostgreSQL server in a temporary folder,
fresh databases on it or in SQLite, the graded examples, and nbgrader's own commands.

PostgreSQL refuses to run as root, and the tests run as root in CI: the server is then run
by pytest-postgresql's executor through a two-line ``pg_ctl`` wrapper that drops to the
``nobody`` user with ``setpriv`` (util-linux), in a folder that user owns.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from grading_support import REPO, autograde

BIN = Path(sys.executable).parent
# nbgrader's Gradebook runs its `alembic` console script when it creates a database.
if str(BIN) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
EXAMPLES = REPO / "examples" / "submissions"
GRADEBOOK_CLI = REPO / "tools" / "gradebook.py"
# What an nbgrader course directory needs besides a database: the config and its imports.
CONFIG_FILES = ("nbgrader_config.py", "tools/__init__.py", "tools/checks.py",
                "tools/nbgrader_feedback.py")  # fmt: skip


def pg_ctl_path() -> str | None:
    """Debian's pg_ctl (``/usr/lib/postgresql/<version>/bin``), else one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return found[-1] if found else shutil.which("pg_ctl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    """A PostgreSQL server on 127.0.0.1 (trust authentication, superuser ``postgres``), in a
    temporary folder, stopped and removed afterwards; yields its port."""
    from pytest_postgresql.executors.proc import PostgreSQLExecutor

    pg_ctl = pg_ctl_path()
    if pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is required in CI (bash tools/sysdeps.sh installs it)")
        pytest.skip("PostgreSQL is not installed (bash tools/sysdeps.sh, as root)")
    base = Path(tempfile.mkdtemp(prefix="hw2-pg-"))  # short: the socket path has a size limit
    executable = pg_ctl
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        wrapper = base / "pg_ctl"
        wrapper.write_text(
            f'#!/bin/sh\ncd "{base}" && exec setpriv --reuid={nobody.pw_uid} '
            f'--regid={nobody.pw_gid} --clear-groups -- "{pg_ctl}" "$@"\n'
        )
        wrapper.chmod(0o755)
        executable = str(wrapper)
    server = PostgreSQLExecutor(
        executable=executable, host="127.0.0.1", port=_free_port(), datadir=str(base / "data"),
        unixsocketdir=str(base), logfile=str(base / "server.log"), startparams="-w",
        dbname="postgres", user="postgres",
    )  # fmt: skip
    try:
        server.start()
        yield server.port
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@contextmanager
def fresh_database(kind: str, tmp: Path, pg_port: int | None, copy_of: str | None = None):
    """The URL of a new database: an SQLite file in ``tmp``, or a database created (and
    dropped afterwards) on the test server; empty, or a copy of the database ``copy_of``."""
    if kind == "sqlite":
        path = tmp / f"gradebook-{uuid.uuid4().hex[:8]}.db"
        if copy_of:
            shutil.copy(copy_of.removeprefix("sqlite:///"), path)
        yield f"sqlite:///{path}"
        return
    from pytest_postgresql.janitor import DatabaseJanitor

    name = f"gb_{uuid.uuid4().hex[:12]}"
    template = copy_of.rsplit("/", 1)[1] if copy_of else None
    janitor = DatabaseJanitor(user="postgres", host="127.0.0.1", port=pg_port, dbname=name,
                              template_dbname=template)  # fmt: skip
    janitor.init()
    try:
        yield f"postgresql://postgres@127.0.0.1:{pg_port}/{name}"
    finally:
        janitor.drop()


def graded_examples(out: Path) -> Path:
    """``out`` after grading the example submissions with tools/autograde.py."""
    done = autograde(EXAMPLES, out, "--force", timeout=60)
    assert done.returncode == 0, done.stderr
    return out


def gradebook_cli(*args: str) -> subprocess.CompletedProcess:
    """``python tools/gradebook.py ARGS`` as staff run it."""
    return subprocess.run(
        [sys.executable, str(GRADEBOOK_CLI), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def course_dir(root: Path) -> Path:
    """A bare nbgrader course directory (config only) under ``root``."""
    for rel in CONFIG_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    return root


def nbgrader_export(course: Path, url: str) -> dict[str, dict[str, str]]:
    """``nbgrader export`` run in ``course`` on the database ``url``: its rows by student."""
    import csv

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    (course / "grades.csv").unlink(missing_ok=True)
    done = subprocess.run(
        [str(BIN / "nbgrader"), "export", f"--CourseDirectory.db_url={url}"],
        cwd=course, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with open(course / "grades.csv", newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def totals_of_grades_csv(out: Path) -> dict[str, float]:
    """Each student's total in the autograder's ``grades.csv`` (its points column summed)."""
    import csv

    totals: dict[str, float] = {}
    with open(out / "grades.csv", newline="") as f:
        for row in csv.DictReader(f):
            totals[row["student_id"]] = totals.get(row["student_id"], 0.0) + float(row["points"])
    return totals


@contextmanager
def jupyter_server(course: Path, tmp: Path):
    """A Jupyter server (nbgrader's formgrader extension enabled by its install) serving
    ``course`` on 127.0.0.1 with a token; yields ``(base url, token)``, stopped afterwards."""
    import time
    import urllib.request

    port, token = _free_port(), uuid.uuid4().hex
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime")}
    log = open(tmp / "jupyter.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(BIN / "jupyter"), "server", f"--ServerApp.token={token}", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", "--ServerApp.open_browser=False", "--allow-root",
         f"--ServerApp.root_dir={course}"],
        cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to about a minute on a loaded machine
            if server.poll() is not None:
                pytest.fail(f"jupyter server exited: {(tmp / 'jupyter.log').read_text()[-2000:]}")
            try:
                request = urllib.request.Request(
                    f"{base}/formgrader/api/status", headers={"Authorization": f"token {token}"}
                )
                with urllib.request.urlopen(request, timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the jupyter server did not answer within a minute")
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def api(base: str, token: str, path: str, body: dict | None = None, raw: bool = False):
    """A request to the formgrader: its REST API under /formgrader/api/ (a PUT when ``body``
    is given), or any page (a path starting with /) as text when ``raw``."""
    import json
    import urllib.request

    url = f"{base}{path}" if path.startswith("/") else f"{base}/formgrader/api/{path}"
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "PUT",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        text = reply.read().decode()
    return text if raw else json.loads(text)
