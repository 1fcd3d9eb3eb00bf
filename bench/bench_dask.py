"""Benchmark grading on Dask against the local pool, and estimate a 1,000-student batch.

Usage:
    python bench/bench_dask.py [--n 40] [--workers 2] [--repeats 2]

Grades the same N correct submissions (the solution's graded modules, each under its own id)
three ways, each a run of ``tools/autograde.py`` as a child process, timed from start to exit,
``--repeats`` times, interleaved (so that a busy spell of a shared machine hits every mode);
ratios compare the best runs (the medians are reported too):

* ``local``: the default path, the local pool of ``--workers`` sandboxed workers;
* ``local_cluster``: ``--cluster local --workers W`` (a Dask LocalCluster started by the run);
* ``external``: ``--scheduler tcp://127.0.0.1:PORT`` on a `dask scheduler` and W
  `dask worker --nthreads 1` processes started beforehand (their start is not timed: the
  cluster exists; the grader's set-up on the workers is).

An untimed run first fills the calibration cache (``tools/grading/calibrate.py``), so that no
timed run pays for it. Then, on the external cluster, it measures what a paper estimate for
1,000 submissions on 10 machines of 16 cores rests on:

* the per-submission cost: each results document's ``seconds`` (the student's grading wall
  time on one worker), averaged over the local runs;
* the scheduler's per-task overhead: ``--tasks`` trivial tasks, each carrying as many bytes as
  a submission's files, submitted at once and gathered; wall time / tasks;
* the grader's set-up on a worker (sandboxed zygotes and references): the plugin's
  registration on the running cluster;
* the client's serial work: writing one results document, the report rewritten while grading
  and the final report (feedback pages included) for 1,000 students.

Writes bench/results/dask.json.
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "dask.json"
DASK = str(Path(sys.executable).parent / "dask")
ESTIMATE = {"students": 1000, "machines": 10, "cores": 16}
RESTART_S = 5.0  # a sandbox's restart after a submission killed its zygote (README)


def make_submissions(dest: Path, n: int) -> list[str]:
    """``n`` correct submissions: the solution's graded modules under ids s000, s001, ..."""
    from tools.checks import STUDENT_FILES

    ids = [f"s{i:03d}" for i in range(n)]
    for sid in ids:
        for rel in STUDENT_FILES:
            (dest / sid / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest / sid / rel)
    return ids


def timed(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time and exit status (its output when it fails)."""
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"bench_dask: {' '.join(cmd)} failed")
    return {"seconds": round(seconds, 2), "command": " ".join(cmd)}


def mean_seconds(docs: list[dict]) -> float:
    """The mean of the students' grading wall times (each document's ``seconds``)."""
    return sum(d.get("seconds") or sum(c["seconds"] for c in d["checks"]) for d in docs) / len(docs)


def grade(submitted: Path, out: Path, *args: str) -> dict:
    cmd = [sys.executable, "tools/autograde.py", str(submitted), "--out", str(out), "--quiet",
           "--force", *args]  # fmt: skip
    return timed(cmd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ExternalCluster:
    """`dask scheduler` and ``workers`` `dask worker` processes on 127.0.0.1, as staff start
    them (README: Grading on a cluster)."""

    def __init__(self, workers: int, logs: Path):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        port = self.address.rsplit(":", 1)[1]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.procs = []
        argvs = [[DASK, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"]]
        argvs += [[DASK, "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
                   "--no-dashboard"]] * workers  # fmt: skip
        for i, argv in enumerate(argvs):
            with open(logs / f"dask-{i}.log", "wb") as log:
                self.procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                                   stderr=subprocess.STDOUT,
                                                   start_new_session=True))  # fmt: skip
            if i == 0:
                time.sleep(2)
        from distributed import Client

        with Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=300)

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def scheduler_overhead(address: str, tasks: int, payload: int) -> dict:
    """Seconds per trivial task (carrying ``payload`` bytes) through the scheduler."""
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        warm = client.map(len, [os.urandom(8) for _ in range(50)], pure=False)
        client.gather(warm)
        data = [os.urandom(payload) for _ in range(tasks)]
        start = time.monotonic()
        futures = client.map(len, data, pure=False)
        assert client.gather(futures) == [payload] * tasks
        seconds = time.monotonic() - start
    return {"tasks": tasks, "payload_bytes": payload, "seconds": round(seconds, 3),
            "per_task_ms": round(1000 * seconds / tasks, 3)}  # fmt: skip


def plugin_setup(address: str) -> float:
    """Seconds to set the grader up on every worker of the running cluster."""
    import platform

    from distributed import Client

    from tools.grading.dask_backend import PLUGIN_NAME, GraderPlugin, environment_pins
    from tools.grading.runner import Options
    from tools.grading.student import grader_version

    opts = Options()
    plugin = GraderPlugin(opts.timeout, opts.limits, grader_version(), environment_pins(),
                          ".".join(platform.python_version_tuple()[:2]))  # fmt: skip
    with Client(address, timeout=30, set_as_default=False) as client:
        start = time.monotonic()
        client.register_plugin(plugin, name=PLUGIN_NAME)
        return round(time.monotonic() - start, 2)


def client_costs(out: Path, students: int) -> dict:
    """The client's serial work for ``students`` results, from the documents in ``out``."""
    from tools.grading import report
    from tools.grading.runner import write_atomic

    docs = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]
    many = [dict(docs[i % len(docs)], student_id=f"x{i:04d}") for i in range(students)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.monotonic()
        for doc in many[:200]:
            write_atomic(tmp / "results" / f"{doc['student_id']}.json",
                         (json.dumps(doc, indent=1) + "\n").encode())  # fmt: skip
        per_write = (time.monotonic() - start) / 200
        start = time.monotonic()
        report.write_summary(many, tmp)
        summary = time.monotonic() - start
        start = time.monotonic()
        report.write_all(many, tmp)
        final = time.monotonic() - start
    return {
        "students": students,
        "write_one_result_ms": round(1000 * per_write, 2),
        "report_while_grading_s": round(summary, 2),
        "final_report_s": round(final, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    from tools.grading.student import default_budget

    w = str(args.workers)
    report: dict = {"n": args.n, "workers": args.workers, "cpus": os.cpu_count(),
                    "load_before": os.getloadavg()[0]}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        tmp = Path(tmp)
        submitted = tmp / "submitted"
        make_submissions(submitted, args.n)
        warm = tmp / "warm"
        make_submissions(warm, 2)
        print("warm-up (fills the calibration cache) ...", flush=True)
        grade(warm, tmp / "out-warm", "--workers", w)
        print(f"external dask scheduler + {w} workers (started, not timed) ...", flush=True)
        cluster = ExternalCluster(args.workers, tmp)
        modes = {
            "local": ("--workers", w),
            "local_cluster": ("--cluster", "local", "--workers", w),
            "external": ("--scheduler", cluster.address),
        }
        runs: dict = {name: {"seconds": [], "mean_student_s": []} for name in modes}
        docs = []
        try:
            for r in range(args.repeats):  # interleaved: a busy spell hits every mode
                for name, flags in modes.items():
                    print(f"{name} (run {r + 1}/{args.repeats}): {args.n} submissions ...",
                          flush=True)  # fmt: skip
                    out = tmp / f"out-{name}-{r}"
                    run = grade(submitted, out, *flags)
                    got = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
                    assert len(got) == args.n and all(d["score"] == 100 for d in got), name
                    runs[name]["command"] = run["command"]
                    runs[name]["seconds"].append(run["seconds"])
                    runs[name]["mean_student_s"].append(round(mean_seconds(got), 3))
                    if name == "local":
                        docs += got
            files = sum(len(p.read_bytes()) for p in (submitted / "s000").rglob("*.py"))
            print(f"scheduler overhead: {args.tasks} trivial tasks of {files} bytes ...")
            overhead = scheduler_overhead(cluster.address, args.tasks, files)
            print("grader set-up on the running workers ...", flush=True)
            setup = plugin_setup(cluster.address)
        finally:
            cluster.close()
        print("client-side costs for 1,000 students ...", flush=True)
        client = client_costs(tmp / "out-local-0", ESTIMATE["students"])
    for run in runs.values():
        run["best_s"] = min(run["seconds"])
        run["median_s"] = statistics.median(run["seconds"])
    local = runs["local"]["best_s"]
    for name in ("local_cluster", "external"):
        runs[name]["ratio_to_local"] = round(runs[name]["best_s"] / local, 3)
        runs[name]["ratio_to_local_median"] = round(
            runs[name]["median_s"] / runs["local"]["median_s"], 3
        )
    report["runs"] = runs
    per_sub = mean_seconds(docs)
    slots = ESTIMATE["machines"] * ESTIMATE["cores"]
    waves = math.ceil(ESTIMATE["students"] / slots)
    sched = ESTIMATE["students"] * overhead["per_task_ms"] / 1000
    writes = ESTIMATE["students"] * client["write_one_result_ms"] / 1000
    total = setup + waves * per_sub + sched + client["final_report_s"]
    worst = setup + waves * (default_budget(None) + RESTART_S) + sched + client["final_report_s"]
    report["measured"] = {
        "per_submission_s": round(per_sub, 3),
        "per_submission_from": "mean 'seconds' of the local runs' results documents",
        "scheduler_overhead": overhead,
        "grader_setup_s": setup,
        "client": client,
    }
    report["estimate_1000_on_10x16"] = {
        **ESTIMATE,
        "slots": slots,
        "formula": "setup + ceil(students/slots) * per_submission + students * per_task "
        "+ final_report",
        "setup_s": setup,
        "waves": waves,
        "grading_s": round(waves * per_sub, 1),
        "scheduler_s": round(sched, 2),
        "final_report_s": client["final_report_s"],
        "total_s": round(total, 1),
        "worst_case_s": round(worst, 1),
        "worst_case_from": f"every submission using its whole budget ({default_budget(None):g} s"
        f", README) plus {RESTART_S:g} s to restart its sandbox, instead of per_submission",
        "client_writes_s": round(writes, 2),
        "assumptions": [
            "one Dask worker process per core (dask worker --nworkers 16 --nthreads 1), each "
            "with one sandboxed zygote, costing per submission what one worker costs here",
            "the scheduler's per-task cost is paid serially (an upper bound: it overlaps "
            "with grading)",
            "the client's writes (client_writes_s) and report rewrites overlap with grading",
            "set-up measured with this machine's workers; 16 zygotes starting at once on one "
            "machine may take longer",
        ],
    }
    report["goals"] = {
        f"{name} <= 1.1x local (best of {args.repeats})": runs[name]["ratio_to_local"] <= 1.1
        for name in ("local_cluster", "external")
    }
    report["load_after"] = os.getloadavg()[0]
    report["reproduce"] = "python bench/bench_dask.py " + " ".join(argv or sys.argv[1:])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
