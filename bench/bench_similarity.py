"""Benchmark the similarity report: its cost at N submissions, and the calibration of its
defaults (k and the threshold) on the planted copies and the independent solutions.

Usage:
    python bench/bench_similarity.py [--n 40 400] [--seed 0]

Cost: N submissions made from five correct solutions (the reference, the three independent
fixtures of tests/fixtures/similarity and the template-style one) by light perturbation (a
third of the local variables renamed, three comment lines added), so that about a fifth of
all pairs are near-copies: the dearest case for copydetect, whose comparison of two files
grows with the fingerprints they share. Timed: reading and fingerprinting every submission,
comparing every pair (``similarity.analyze``, which does both), writing the listed pairs'
side-by-side pages, and the report section (plot and table) with the grades.json section.
The grading time of the same batch is estimated from bench/results/autograde.json.

Calibration: for each k, the highest score between independent solutions (the reference and
the three fixtures), the template-style fixture's highest score against them, and each planted
copy's score against the reference it copies.

Writes bench/results/similarity.json.
"""

import argparse
import itertools
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from similarity_support import (  # noqa: E402
    FIXTURES,
    INDEPENDENT,
    SOLUTION,
    TEMPLATE_STYLE,
    perturbed,
    planted,
    read,
)

from tools.grading import similarity  # noqa: E402
from tools.grading.collect import Submission  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "similarity.json"
AUTOGRADE_RESULTS = ROOT / "bench" / "results" / "autograde.json"
CALIBRATION_K = (25, 35, 45, 50, 55, 60, 70, 80)


def submission(sid: str, files: dict[str, str]) -> Submission:
    return Submission(sid, "dir", {rel: text.encode() for rel, text in files.items()})


def bases() -> dict[str, dict[str, str]]:
    return {
        "reference": read(SOLUTION),
        **{name: read(FIXTURES / name) for name in INDEPENDENT},
        "template_style": read(TEMPLATE_STYLE),
    }


def cost(n: int, seed: int) -> dict:
    """Time the similarity of ``n`` perturbed variants, phase by phase."""
    rng = random.Random(seed)
    sources = bases()
    names = sorted(sources)
    subs = [
        submission(f"s{i:04d}", perturbed(sources[names[i % len(names)]], rng)) for i in range(n)
    ]
    similarity.analyze(subs[:2])  # imports, the stubs' boilerplate: once per run
    t0 = time.perf_counter()
    docs = [similarity.fingerprint(s) for s in subs]
    t_fingerprint = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = similarity.analyze(subs)  # fingerprints again, then every pair
    t_analyze = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="bench-similarity-") as tmp:
        t0 = time.perf_counter()
        result.write_pages(Path(tmp))
        t_pages = time.perf_counter() - t0
        pages_bytes = sum(p.stat().st_size for p in Path(tmp).rglob("*.html"))
    t0 = time.perf_counter()
    section = result.section_html()
    summary = json.dumps(result.summary())
    t_report = time.perf_counter() - t0
    pairs = n * (n - 1) // 2
    return {
        "n": n,
        "pairs": pairs,
        "pairs_reported": len(result.reported),
        "pages_written": min(len(result.reported), similarity.MAX_LISTED),
        "pages_mib": round(pages_bytes / 2**20, 1),
        "report_section_kib": round(len(section) / 1024, 1),
        "grades_json_section_kib": round(len(summary) / 1024, 1),
        "mean_own_tokens": round(sum(d.tokens for d in docs) / n),
        "seconds": {
            "fingerprint": round(t_fingerprint, 2),
            "compare_pairs": round(t_analyze - t_fingerprint, 2),
            "pages": round(t_pages, 2),
            "report_section": round(t_report, 2),
            "total": round(t_analyze + t_pages + t_report, 2),
        },
        "microseconds_per_pair": round(1e6 * (t_analyze - t_fingerprint) / max(pairs, 1), 1),
    }


def calibration() -> dict:
    """Scores of independent solutions and planted copies at each k."""
    plants = planted()
    sources = bases()
    independent = ["reference", *INDEPENDENT]
    rows = []
    saved = similarity.NOISE_K
    try:
        for k in CALIBRATION_K:
            similarity.NOISE_K = k
            similarity.boilerplate_hashes.cache_clear()
            docs = {n: similarity.fingerprint(submission(n, f)) for n, f in sources.items()}
            docs |= {n: similarity.fingerprint(submission(n, f)) for n, f in plants.items()}
            ind = max(
                similarity.compare(docs[a], docs[b]).score
                for a, b in itertools.combinations(independent, 2)
            )
            tmpl = max(
                similarity.compare(docs["template_style"], docs[b]).score for b in independent
            )
            copies = {n: similarity.compare(docs[n], docs["reference"]).score for n in plants}
            rows.append({
                "k": k,
                "independent_max": round(ind, 3),
                "template_style_max": round(tmpl, 3),
                **{n: round(s, 3) for n, s in copies.items()},
                "planted_min": round(min(copies.values()), 3),
            })  # fmt: skip
    finally:
        similarity.NOISE_K = saved
        similarity.boilerplate_hashes.cache_clear()
    return {"rows": rows, "chosen_k": saved, "default_threshold": similarity.DEFAULT_THRESHOLD}


def grading_estimate(n: int) -> dict | None:
    """Grading time of ``n`` submissions, from the autograde benchmark's measured rate."""
    try:
        measured = json.loads(AUTOGRADE_RESULTS.read_text())
        seconds, graded = measured["autograde"]["seconds"], measured["n"]
    except (OSError, ValueError, KeyError):
        return None
    per = seconds / graded
    return {
        "source": "bench/results/autograde.json",
        "measured": f"{graded} submissions in {seconds} s with {measured.get('workers')} workers",
        "seconds_per_submission": round(per, 2),
        "estimated_seconds": round(per * n, 1),
    }


def busy() -> str:
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    return f"load average {load:.1f} on {cpus} CPUs" + (" (busy)" if load > 0.5 * cpus else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[40, 400])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = "python bench/bench_similarity.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print(f"reproduce: {command}".rstrip())
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {busy()} at the start",
        "calibration": calibration(),
        "cost": [],
    }
    print(f"calibration (k = {similarity.NOISE_K}, threshold {similarity.DEFAULT_THRESHOLD}):")
    for row in report["calibration"]["rows"]:
        print(f"  k={row['k']:3d} independent max {row['independent_max']:.2f}, template-style "
              f"{row['template_style_max']:.2f}; planted: verbatim {row['copy_verbatim']:.2f}, "
              f"renamed {row['copy_renamed']:.2f}, reordered {row['copy_reordered']:.2f}, "
              f"ResNet only {row['copy_resnet_only']:.2f}")  # fmt: skip
    for n in args.n:
        row = cost(n, args.seed)
        grading = grading_estimate(n)
        row["grading"] = grading
        if grading:
            row["share_of_grading"] = round(
                row["seconds"]["total"] / grading["estimated_seconds"], 4
            )
        report["cost"].append(row)
        s = row["seconds"]
        print(f"n={n}: {row['pairs']} pairs ({row['pairs_reported']} reported) in {s['total']} s "
              f"(fingerprints {s['fingerprint']} s, pairs {s['compare_pairs']} s, pages "
              f"{s['pages']} s, report {s['report_section']} s)"
              + (f"; grading the same batch: ~{grading['estimated_seconds']} s"
                 if grading else ""))  # fmt: skip
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["machine"] += f", {busy()} at the end"
    report["reproduce"] = command
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}; {report['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
