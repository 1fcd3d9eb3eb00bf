"""The sandbox: what student code can see and do, and how misbehaving submissions end.

One batch holds a submission of each kind of misbehaviour beside a correct one; each gets
clear per-check statuses, the batch completes, and the correct one's results are the same as
when it is graded alone.
"""

import json
import socket
import threading

import pytest
from grading_support import (
    REPO,
    autograde,
    comparable,
    grades,
    make_submission,
    outputs,
    requires_sandbox,
)

pytestmark = [requires_sandbox, pytest.mark.slow]
TIMEOUT = 8
RESBLOCK = "        self.main_path, self.shortcut_path = None, None\n"
FORWARD = "        features = self.feature_extractor(x)  # (N, C', H', W')"


def probe_code(paths: list[str], port: int) -> str:
    """Module-level code that prints what the sandbox lets it see and do."""
    return f"""
import json as _json, os as _os, resource as _r, socket as _socket
def _try(fn):
    try:
        return "ok: " + repr(fn())[:80]
    except Exception as e:
        return "denied: " + type(e).__name__
def _connect():
    with _socket.create_connection(("127.0.0.1", {port}), timeout=2):
        return "connected"
def _find_refs():
    found = []
    for top, dirs, files in _os.walk("/"):
        if top in ("/proc", "/sys", "/dev"):
            dirs[:] = []
        found += [_os.path.join(top, f) for f in files
                  if f.endswith(".pt") and f.startswith(("expected_", "hidden_"))]
    return found
_facts = dict(
    uid=_os.getuid(), gid=_os.getgid(), groups=_os.getgroups(),
    limits={{n: _r.getrlimit(getattr(_r, "RLIMIT_" + n))[0]
            for n in ("AS", "NPROC", "CPU", "FSIZE")}},
    visible={{p: _os.path.exists(p) for p in {paths!r}}},
    refs=_find_refs(),
    loopback=_try(_connect),
    internet=_try(lambda: _socket.create_connection(("1.1.1.1", 80), timeout=2)),
    dns=_try(lambda: _socket.gethostbyname("pytorch.org")),
    parent_environ=_try(lambda: open(f"/proc/{{_os.getppid()}}/environ", "rb").read()),
    parent_mem=_try(lambda: open(f"/proc/{{_os.getppid()}}/mem", "rb").read(1)),
    write_root=_try(lambda: open("/evil", "w")),
    write_kit=_try(lambda: open("/kit/tools/grading/harness.py", "a")),
    write_sub=_try(lambda: open("/sub/hw2/mlp.py", "a")),
)
print("FACTS=" + _json.dumps(_facts))
"""


@pytest.fixture(scope="module")
def listener():
    """A TCP server on the host's loopback; the sandbox must not reach it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    hits = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            hits.append(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join()
    srv.close()


@pytest.fixture(scope="module")
def batch(tmp_path_factory, listener):
    port, _ = listener
    root = tmp_path_factory.mktemp("batch")
    sub, out = root / "submitted", root / "out"
    paths = [str(REPO / "tests" / "assets"), str(REPO / "hw2" / "cnn.py"), str(REPO / ".git"),
             str(out), str(sub), str(sub / "correct"), str(REPO / "tools")]  # fmt: skip
    make_submission(sub, "correct")
    make_submission(sub, "probe", append={"hw2/training.py": probe_code(paths, port)})
    make_submission(sub, "syntax", append={"hw2/cnn.py": "def broken(:\n    pass"})
    make_submission(sub, "missing", drop=("hw2/training.py", "hw2/answers.py"))
    make_submission(sub, "sysexit", append={"hw2/cnn.py": "import sys\nsys.exit(3)"})
    make_submission(sub, "osexit", append={"hw2/classifier.py": "import os\nos._exit(5)"})
    make_submission(sub, "segfault", replace=[
        ("hw2/cnn.py", FORWARD, "        import ctypes\n        ctypes.string_at(0)\n" + FORWARD),
    ])  # fmt: skip
    make_submission(sub, "hang_import", append={"hw2/training.py": "while True:\n    pass"})
    make_submission(sub, "hang_check", replace=[
        ("hw2/cnn.py", RESBLOCK, RESBLOCK + "        while in_channels == 5:\n            pass\n"),
    ])  # hangs on hidden_resblock only  # fmt: skip
    make_submission(sub, "memory", append={"hw2/answers.py": "_hog = bytearray(8 << 30)"})
    make_submission(sub, "flood", append={"hw2/cnn.py": "print('x' * 5_000_000)"})
    make_submission(
        sub, "forkbomb", append={"hw2/answers.py": "import os\nwhile True:\n    os.fork()"}
    )
    done = autograde(sub, out, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    alone_sub, alone_out = root / "alone", root / "alone_out"
    make_submission(alone_sub, "correct")
    assert autograde(alone_sub, alone_out, timeout=TIMEOUT).returncode == 0
    return grades(out), out, grades(alone_out)


def statuses(rows: dict, checks=None) -> dict[str, str]:
    return {c: r["status"] for c, r in rows.items() if checks is None or c in checks}


def test_correct_is_unaffected_by_its_batch(batch):
    table, _, alone = batch
    assert comparable(table["correct"]) == comparable(alone["correct"])
    assert sum(r["points"] for r in table["correct"].values()) == 100


def test_probe_sees_only_its_sandbox(batch, listener):
    _, out, _ = batch
    _, hits = listener
    text = outputs(out, "probe")["overfit"]
    facts = json.loads(text.split("FACTS=", 1)[1].splitlines()[0])
    assert facts["uid"] != 0 and facts["gid"] == 65534 and facts["groups"] == []
    assert facts["limits"]["AS"] == 4 << 30 and facts["limits"]["NPROC"] == 64
    # each task's CPU limit is its share on top of what the child used before it
    assert TIMEOUT <= facts["limits"]["CPU"] <= TIMEOUT + 3
    assert facts["limits"]["FSIZE"] == 16 << 20
    assert not any(facts["visible"].values()), facts["visible"]
    assert facts["refs"] == []
    for key in ("loopback", "internet", "dns", "parent_environ", "parent_mem", "write_root",
                "write_kit", "write_sub"):  # fmt: skip
        assert facts[key].startswith("denied"), (key, facts[key])
    assert hits == []


def test_syntax_error_and_missing_files(batch):
    table, _, _ = batch
    assert table["syntax"]["cnn_0"]["status"] == "error"
    assert "SyntaxError" in table["syntax"]["cnn_0"]["message"]
    assert table["syntax"]["hidden_classifier"]["status"] == "passed"
    missing = table["missing"]
    assert missing["overfit"]["status"] == "missing"
    assert "hw2/training.py is not in the submission" in missing["overfit"]["message"]
    assert missing["part4_q1"]["status"] == "missing" and missing["cnn_0"]["status"] == "passed"


def test_exits_and_crashes(batch):
    table, _, _ = batch
    assert table["sysexit"]["cnn_0"]["status"] == "error"
    assert "sys.exit" in table["sysexit"]["cnn_0"]["message"]
    assert table["osexit"]["classifier"]["status"] == "error"
    assert "code 5" in table["osexit"]["classifier"]["message"]
    assert table["osexit"]["cnn_0"]["status"] == "passed"
    seg = table["segfault"]
    assert seg["cnn_0"]["status"] == "error" and "SIGSEGV" in seg["cnn_0"]["message"]
    assert seg["resblock"]["status"] == "passed"


def test_hangs_time_out_per_check(batch):
    table, _, _ = batch
    imp = table["hang_import"]
    assert imp["overfit"]["status"] == "timeout" and "hw2/training.py" in imp["overfit"]["message"]
    assert imp["cnn_0"]["status"] == "passed"
    hang = table["hang_check"]
    assert hang["hidden_resblock"]["status"] == "timeout"
    assert "CPU time" in hang["hidden_resblock"]["message"]
    others = {c: s for c, s in statuses(hang).items() if c != "hidden_resblock"}
    assert set(others.values()) == {"passed", "manual"}, {
        c: hang[c]["message"] for c, s in others.items() if s not in ("passed", "manual")
    }


def test_memory_hog_and_fork_bomb(batch):
    table, _, _ = batch
    mem = table["memory"]
    assert mem["part4_q1"]["status"] == "error" and "MemoryError" in mem["part4_q1"]["message"]
    assert mem["cnn_0"]["status"] == "passed"
    bomb = table["forkbomb"]
    assert bomb["overfit"]["status"] in ("error", "timeout")
    assert "hw2/answers.py" in bomb["overfit"]["message"]
    assert bomb["part4_q1"]["status"] in ("error", "timeout")
    assert bomb["cnn_0"]["status"] == bomb["hidden_classifier"]["status"] == "passed"


def test_output_flood_is_capped(batch):
    table, out, _ = batch
    assert table["flood"]["cnn_0"]["status"] == "passed"
    text = outputs(out, "flood")["cnn_0"]
    assert len(text) < 10_000 and "output truncated" in text
    assert (out / "results" / "flood.json").stat().st_size < 200_000
