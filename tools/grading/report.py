"""The batch's outputs: grades.csv, grades.json, report.html (with inline plots), feedback pages
and the summary table printed at the end. All are rebuilt from the per-student results."""

import csv
import html
import io
import json
from pathlib import Path
from urllib.parse import quote

from tools.checks import CHECKS, MAX_AUTO_POINTS, MAX_MANUAL_POINTS, MAX_POINTS
from tools.grading.feedback import feedback_html, page, status_cell
from tools.grading.runner import write_atomic

COLUMNS = ("student_id", "check", "points", "max_points", "status", "message", "seconds", "hint")
HINTS_SHOWN = 20  # rows of the report's table of the most common hints
# Around the sections added after the batch (similarity), so that write_totals keeps them.
EXTRA_START, EXTRA_END = "<!-- extra sections -->", "<!-- end of extra sections -->"


def rows(docs: list[dict]) -> list[dict]:
    """One row per student and check."""
    return [
        {"student_id": d["student_id"], **{k: c.get(k, "") for k in COLUMNS[1:]}}
        for d in docs
        for c in d["checks"]
    ]


def check_stats(docs: list[dict]) -> list[dict]:
    """Per check: how many passed, and the mean points."""
    stats = []
    n = max(len(docs), 1)
    for check in CHECKS:
        cs = [c for d in docs for c in d["checks"] if c["check"] == check.name]
        counts = {}
        for c in cs:
            counts[c["status"]] = counts.get(c["status"], 0) + 1
        stats.append({
            "check": check.name,
            "max_points": check.points,
            "kind": check.kind,
            "passed": counts.get("passed", 0),
            "statuses": counts,
            "mean_points": sum(c["points"] for c in cs) / n,
        })  # fmt: skip
    return stats


def hint_stats(docs: list[dict]) -> list[dict]:
    """The hints of failed checks (diagnose.py), most common first: how many students got
    each kind of hint (``diagnose.hint_kind``: the same mistake in any check), how many
    checks, which ones, and its most frequent wording. Staff see the class's typical
    mistakes at a glance."""
    from tools.grading.diagnose import hint_kind

    kinds: dict[str, dict] = {}
    for d in docs:
        for c in d["checks"]:
            if c.get("hint"):
                k = kinds.setdefault(hint_kind(c["hint"]), {"students": set(), "checks": {},
                                                            "texts": {}})  # fmt: skip
                k["students"].add(d["student_id"])
                k["checks"][c["check"]] = k["checks"].get(c["check"], 0) + 1
                k["texts"][c["hint"]] = k["texts"].get(c["hint"], 0) + 1
    stats = [
        {"hint": max(k["texts"], key=lambda t: (k["texts"][t], t)),
         "students": len(k["students"]), "count": sum(k["checks"].values()),
         "checks": k["checks"]}
        for k in kinds.values()
    ]  # fmt: skip
    return sorted(stats, key=lambda h: (-h["students"], -h["count"], h["hint"]))


def write_all(docs: list[dict], out: Path, skipped: list[str] = ()) -> None:
    """Write every report file of the batch into ``out``; ``skipped`` notes the entries of
    the submissions folder that were not graded, and why."""
    for d in docs:
        write_feedback(d, out)
    write_summary(docs, out, skipped)


def write_feedback(doc: dict, out: Path) -> None:
    """Write one student's feedback page."""
    titles = {c.name: c.title for c in CHECKS}
    write_atomic(
        out / "feedback" / f"{doc['student_id']}.html", feedback_html(doc, titles).encode()
    )


def write_summary(docs: list[dict], out: Path, skipped: list[str] = ()) -> None:
    """Write grades.csv, grades.json and report.html (also while a batch runs, from the
    students graded so far)."""
    table = rows(docs)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_atomic(out / "grades.csv", buf.getvalue().encode())
    summary = {
        "max_points": MAX_AUTO_POINTS,
        "max_manual_points": MAX_MANUAL_POINTS,  # the written answers, graded by the staff
        "max_total_points": MAX_POINTS,
        "students": {d["student_id"]: {"score": d["score"], "notes": d["notes"]} for d in docs},
        "checks": check_stats(docs),
        "hints": hint_stats(docs),
        "rows": table,
        "skipped": list(skipped),
    }
    write_atomic(out / "grades.json", (json.dumps(summary, indent=1) + "\n").encode())
    write_atomic(out / "report.html", report_html(docs, skipped).encode())


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def plots(docs: list[dict]) -> tuple[str, str]:
    """Inline SVG of the score distribution and of each check's pass rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist([d["score"] for d in docs], bins=range(0, MAX_AUTO_POINTS + 6, 5), color="#0969da")
    ax.set_xlabel(f"automatic score (of {MAX_AUTO_POINTS})")
    ax.set_ylabel("students")
    ax.set_title("Score distribution")
    scores = _svg(fig)
    plt.close(fig)

    stats = [s for s in check_stats(docs) if s["kind"] == "auto"]
    n = max(len(docs), 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.barh([s["check"] for s in stats], [100 * s["passed"] / n for s in stats], color="#1a7f37")
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("students passing (%)")
    ax.set_title("Pass rate of each check")
    rates = _svg(fig)
    plt.close(fig)
    return scores, rates


def report_html(
    docs: list[dict], skipped: list[str] = (), extra: str = "", manual: dict | None = None
) -> str:
    """The class summary page; ``extra`` is HTML of more sections (the similarity's);
    ``manual`` (``{student: {check: points or None}}``, from the gradebook) adds the staff's
    points of the written answers and the totals."""
    e = html.escape
    n = len(docs)
    mean = sum(d["score"] for d in docs) / max(n, 1)
    total_head, totals_line = "", ""
    if manual is not None:
        total_head = f"<th>written (of {MAX_MANUAL_POINTS})</th><th>total (of {MAX_POINTS})</th>"
        mean_total = sum(total_points(d, manual) for d in docs) / max(n, 1)
        waiting = sum(1 for d in docs if _waiting(d, manual))
        totals_line = (
            f" Mean total with the written answers {mean_total:.1f} / {MAX_POINTS}"
            f" ({waiting} students with answers still to grade)."
        )
    scores_svg, rates_svg = plots(docs)
    stat_rows = "".join(
        f"<tr><td>{e(s['check'])}</td><td>{s['max_points']}</td><td>{s['passed']} / {n}</td>"
        f"<td>{s['mean_points']:.1f}</td><td>{e(_counts(s['statuses']))}</td></tr>"
        for s in check_stats(docs)
    )
    student_rows = "".join(
        f'<tr><td><a href="feedback/{e(quote(d["student_id"]))}.html">{e(d["student_id"])}</a></td>'
        f"<td>{d['score']} / {d['max_score']}</td>"
        + (_total_cells(d, manual) if manual is not None else "")
        + "".join(status_cell(c["status"]) for c in d["checks"])
        + "</tr>"
        for d in docs
    )
    skipped_html = (
        "<h2>Not graded</h2><p>Entries of the submissions folder that are not submissions:</p>"
        "<ul>" + "".join(f"<li>{e(note)}</li>" for note in skipped) + "</ul>"
        if skipped
        else ""
    )
    heads = "".join(f"<th><small>{e(c.name)}</small></th>" for c in CHECKS)
    hints = hint_stats(docs)
    hint_rows = "".join(
        f'<tr><td class="count">{h["students"]}</td><td>{h["count"]}</td>'
        f"<td>{e(', '.join(h['checks']))}</td><td>{e(h['hint'])}</td></tr>"
        for h in hints[:HINTS_SHOWN]
    )
    hints_html = (
        "<h2>Most common hints</h2><p>Why failed visible checks differ from the reference, "
        "as students read it in their feedback"
        + (f" (the {HINTS_SHOWN} most common of {len(hints)})" if len(hints) > HINTS_SHOWN else "")
        + ':</p><table id="hints"><thead><tr><th>students</th><th>checks failed</th>'
        f"<th>on</th><th>hint</th></tr></thead><tbody>{hint_rows}</tbody></table>"
        if hints
        else ""
    )
    body = f"""
<h1>hw2 Part 4: class report</h1>
<p>{n} students; mean automatic score {mean:.1f} / {MAX_AUTO_POINTS}.{totals_line}</p>
<div>{scores_svg}</div>
<div>{rates_svg}</div>
<h2>Checks</h2>
<table><thead><tr><th>check</th><th>points</th><th>passed</th><th>mean points</th>
<th>statuses</th></tr></thead><tbody>{stat_rows}</tbody></table>
{hints_html}
<h2>Students</h2>
<div style="overflow-x:auto"><table><thead><tr><th>student</th><th>automatic</th>
{total_head}{heads}</tr></thead>
<tbody>{student_rows}</tbody></table></div>
{skipped_html}
{EXTRA_START}{extra}{EXTRA_END}
"""
    return page("hw2 Part 4: class report", body)


def total_points(doc: dict, manual: dict) -> float:
    """The automatic score plus the written answers' points graded so far."""
    given = manual.get(doc["student_id"], {})
    return doc["score"] + sum(p for p in given.values() if p is not None)


def _waiting(doc: dict, manual: dict) -> list[str]:
    """The written answers of ``doc``'s student still to grade."""
    given = manual.get(doc["student_id"])
    if given is None:
        return [c.name for c in CHECKS if c.kind == "manual"]
    return [name for name, p in given.items() if p is None]


def _total_cells(doc: dict, manual: dict) -> str:
    given = manual.get(doc["student_id"], {})
    waiting = _waiting(doc, manual)
    written = sum(p for p in given.values() if p is not None)
    note = f" <small>({html.escape(', '.join(waiting))} to grade)</small>" if waiting else ""
    return f"<td>{written:g}{note}</td><td>{total_points(doc, manual):g}</td>"


def write_totals(docs: list[dict], out: Path, skipped: list[str], manual: dict) -> None:
    """After the manual grading: the written answers' points (``manual``, from the gradebook)
    and each student's total in grades.json (its ``totals`` section) and report.html, whose
    automatic scores stay as they are. A similarity section already there is kept."""
    summary = json.loads((out / "grades.json").read_text())
    summary["totals"] = {
        d["student_id"]: {
            "automatic": d["score"],
            "written": manual.get(d["student_id"], {}),
            "total": total_points(d, manual),
        }
        for d in docs
    }
    write_atomic(out / "grades.json", (json.dumps(summary, indent=1) + "\n").encode())
    old = (out / "report.html").read_text() if (out / "report.html").is_file() else ""
    extra = old.split(EXTRA_START, 1)[-1].split(EXTRA_END, 1)[0] if EXTRA_START in old else ""
    write_atomic(out / "report.html", report_html(docs, skipped, extra, manual).encode())


def _counts(statuses: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))


def summary_table(docs: list[dict]) -> str:
    """The plain-text summary printed at the end of a run."""
    n = len(docs)
    lines = [f"{'check':<28}{'points':>7}{'passed':>10}{'mean':>8}"]
    for s in check_stats(docs):
        passed = f"{s['passed']}/{n}" if s["kind"] == "auto" else "manual"
        lines.append(f"{s['check']:<28}{s['max_points']:>7}{passed:>10}{s['mean_points']:>8.1f}")
    mean = sum(d["score"] for d in docs) / max(n, 1)
    lines.append(f"{'total (mean score)':<28}{MAX_AUTO_POINTS:>7}{'':>10}{mean:>8.1f}")
    lines.append(f"{'+ written answers (staff)':<28}{MAX_MANUAL_POINTS:>7}{'manual':>10}")
    return "\n".join(lines)


def write_similarity(docs: list[dict], out: Path, skipped: list[str], similarity) -> None:
    """After ``write_all``: add the similarity of the batch (``similarity.Similarity``) to
    grades.json (its ``similarity`` section) and to report.html (a ranked table of pairs and
    a plot, linking the side-by-side pages under ``out/similarity/``). Staff files only: no
    feedback page mentions it."""
    summary = json.loads((out / "grades.json").read_text())
    summary["similarity"] = similarity.summary()
    write_atomic(out / "grades.json", (json.dumps(summary, indent=1) + "\n").encode())
    html_text = report_html(docs, skipped, extra=similarity.section_html())
    write_atomic(out / "report.html", html_text.encode())
