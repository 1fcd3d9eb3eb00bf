"""Similarity of the students' code, for the staff: copydetect's winnowing fingerprints, pairwise.

After grading, every graded code file of every submission (``cnn.py``, ``classifier.py``,
``training.py``, as ``collect.load_submission`` took them) is fingerprinted with copydetect
(``CodeFingerprint``): pygments tokenizes the code, comments and whitespace are dropped,
every string (docstrings included) becomes ``S`` and every variable, attribute, function and
class name becomes ``V``/``F``/``O``, so renaming, reformatting and commenting change
nothing. Every k-gram of that normalized text is a fingerprint (window 1, see ``WINDOW``).
The released stubs (``release/hw2/hw2/*.py``) are boilerplate: the lines a file shares with
its stub are left out before fingerprinting (``own_lines``) and the stub's k-grams are
copydetect's boilerplate, so the template's code counts for nothing. Each pair of
submissions is compared file by file with copydetect's ``compare_files`` (same file name
only: ``cnn.py`` with ``cnn.py``); a pair's two directional scores are the share of each
side's own code (its tokens outside the stubs, all files together) found in the other.
Reordering functions only breaks the k-grams that span two functions.

Submissions of earlier semesters (``--similarity-archive DIR``, read by the same intake) are
compared with this batch's students, never with each other. Pairs whose higher score reaches
the threshold (and that share at least ``MIN_MATCHED`` tokens) are listed in ``report.html``,
in ``grades.json`` (``similarity``), and each gets a side-by-side page under
``OUT/similarity/`` that highlights the matching regions: staff pages, never linked from a
student's feedback.
"""

import bisect
import hashlib
import html
import io
import itertools
import tokenize
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import cache
from pathlib import Path
from urllib.parse import quote

import numpy as np

from tools.checks import STUDENT_FILES
from tools.grading.collect import Submission, find_submissions, load_submission

ROOT = Path(__file__).resolve().parent.parent.parent
BOILERPLATE_DIR = ROOT / "release" / "hw2" / "hw2"
# answers.py is left out: its code is a dict of four hyperparameters, and its answers are
# prose, which code fingerprints reduce to one `S` per string.
CODE_FILES = tuple(rel for rel in STUDENT_FILES if rel != "hw2/answers.py")
PAGES = "similarity"  # OUT/<PAGES>/: the side-by-side pages

# k: the length of a fingerprint, in characters of copydetect's normalized code (every name
# is one character there: `layers.append(nn.Conv2d(` is `V.V(V.V(`; copydetect's default is
# 25). This homework's code is short and dictated by its API, so independent solutions share
# runs of one or two statements (the training step, a 1x1 shortcut conv, the four keyword
# arguments of a block); on the fixtures the longest such run is 50 to 55 characters, while a
# copied function is one run of hundreds. 60 drops the former and keeps the latter:
# bench/results/similarity.json ("calibration") has the scores at each k.
NOISE_K = 60
# Winnowing keeps one fingerprint per window of WINDOW k-grams. copydetect hashes k-grams
# with Python's salted str hash, so with a window above 1 the fingerprints kept, and the
# scores, change from one run to the next; with 1 every k-gram is kept and a run is
# reproducible. The cost stays far below grading's (bench/bench_similarity.py).
WINDOW = 1
# A pair is reported when its higher directional score reaches the threshold. At k = 60 the
# independent fixtures score 0 against each other and the solution, the template-style one 0.09;
# the planted copies 1.0 (verbatim), 0.96 (reordered), 0.73 (renamed and reformatted) and
# 0.27 (ResNet only: ResNet is about 30% of the solution's own code). 0.2 sits in that gap.
DEFAULT_THRESHOLD = 0.2
# ...and when the two share at least two fingerprints' length of code: a student whose own
# code is a few lines shares them with half the class.
MIN_MATCHED = 2 * NOISE_K
MAX_LISTED = 500  # pairs listed (table and pages); grades.json keeps every pair above


@cache
def boilerplate_hashes(rel: str) -> np.ndarray:
    """Every k-gram hash of the released stub of ``rel`` (none when there is no stub)."""
    path = BOILERPLATE_DIR / rel.split("/", 1)[1]
    if not path.is_file():
        return np.array([], dtype=np.int64)
    fp = _fingerprint(path.read_text(encoding="utf-8"), rel, window=1)
    return np.unique(np.array(sorted(fp.hashes), dtype=np.int64))


def _fingerprint(code: str, rel: str, window: int = WINDOW, boilerplate=None):
    from copydetect import CodeFingerprint

    return CodeFingerprint(rel, NOISE_K, window, boilerplate=boilerplate, language="python",
                           fp=io.StringIO(code))  # fmt: skip


@dataclass
class FileCode:
    """One graded file: its text as submitted, which lines are the stub's, and copydetect's
    fingerprint of the rest (the student's own lines, joined: ``compact``)."""

    raw: str
    template: list[bool]  # per line of raw
    fp: object  # copydetect.CodeFingerprint of the own lines
    compact_starts: np.ndarray  # where each own line starts in the fingerprinted text...
    raw_starts: np.ndarray  # ...and in raw
    hash_values: np.ndarray  # the fingerprint at each position kept (window 1: every k-gram)
    positions: np.ndarray

    def to_raw(self, slices) -> np.ndarray:
        """copydetect's slices (2xN, in the fingerprinted text) as offsets into ``raw``."""
        slices = np.asarray(slices, dtype=np.int64).reshape(2, -1)
        seg = np.searchsorted(self.compact_starts, slices, side="right") - 1
        return self.raw_starts[seg] + (slices - self.compact_starts[seg])


@dataclass
class Document:
    """One submission's fingerprints: the batch's (``archive`` None) or an archive's."""

    student_id: str
    archive: str | None
    files: dict[str, FileCode] = field(default_factory=dict)  # files with code of their own
    tokens: int = 0  # tokens of own code (not boilerplate), all files together

    @property
    def label(self) -> str:
        return self.student_id if self.archive is None else f"{self.archive}/{self.student_id}"


@cache
def _stub_lines(rel: str) -> tuple[str, ...]:
    path = BOILERPLATE_DIR / rel.split("/", 1)[1]
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return tuple(line.strip() for line in text.splitlines())


def _lines(text: str) -> list[str]:
    """The lines of ``text``, ends kept, split at ``\\n`` only (as tokenize and pygments)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _multiline_strings(text: str, lines: list[str]) -> list[tuple[int, int]]:
    """``(first, last)`` line of every string literal spanning lines: Python's tokenizer, or
    pygments' (which reads any text) when the file is not valid Python."""
    try:
        return [
            (t.start[0] - 1, t.end[0] - 1)
            for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type == tokenize.STRING and t.end[0] > t.start[0]
        ]
    except (tokenize.TokenError, SyntaxError):
        pass
    from pygments import lexers, token

    starts = list(itertools.accumulate((len(line) for line in lines), initial=0))
    spans, run = [], None  # [first line, last line] of a run of string tokens
    tokens = lexers.get_lexer_by_name("python").get_tokens_unprocessed(text)
    for index, kind, value in itertools.chain(tokens, [(len(text), token.Text, "")]):
        if kind in token.String:
            first = bisect.bisect_right(starts, index) - 1
            last = bisect.bisect_right(starts, index + max(len(value) - 1, 0)) - 1
            run = (run[0] if run else first, last)
            continue
        if run and run[1] > run[0]:
            spans.append(run)
        run = None
    return spans


def template_lines(text: str, rel: str) -> tuple[list[str], list[bool]]:
    """The lines of ``text`` (ends kept), and for each whether it is the released stub's of
    ``rel`` (matched by ``difflib``, ignoring indentation); a multi-line string is the stub's
    only when all its lines are."""
    lines = _lines(text)
    stub = _stub_lines(rel)
    if not stub:
        return lines, [False] * len(lines)
    matcher = SequenceMatcher(None, [line.strip() for line in lines], stub, autojunk=False)
    template = [False] * len(lines)
    for i, _, n in matcher.get_matching_blocks():
        template[i : i + n] = [True] * n
    for first, last in _multiline_strings(text, lines):
        whole = all(template[first : last + 1])
        template[first : last + 1] = [whole] * (last + 1 - first)
    return lines, template


def own_lines(lines: list[str], template: list[bool]) -> tuple[str, np.ndarray, np.ndarray]:
    """The student's own lines of a file joined (blank ones left out), where each starts in
    that text and where in the file.

    This is what is fingerprinted. copydetect's boilerplate list alone only drops the k-grams
    that lie wholly in the stub: a k-gram made of the stub's text around a solution region
    plus the first token of a student's code survives, and every student whose code begins
    with an assignment shares it. Without the stub's lines, those k-grams are not formed.
    """
    kept, compact_starts, raw_starts = [], [], []
    at = n = 0
    for line, stub in zip(lines, template, strict=True):
        if not stub and line.strip():
            kept.append(line)
            compact_starts.append(n)
            raw_starts.append(at)
            n += len(line)
        at += len(line)
    return "".join(kept), np.array(compact_starts, dtype=np.int64), np.array(raw_starts, np.int64)


def normalized(text: str) -> str:
    """``text`` as pygments reads it (no byte-order mark, ``\\n`` line ends, no leading blank
    line), so that copydetect's offsets into it are offsets into what the pages show."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").lstrip("\n")


def fingerprint(sub: Submission, archive: str | None = None) -> Document:
    """Fingerprint the graded code files of one submission, without the stubs' code."""
    doc = Document(sub.student_id, archive)
    for rel in CODE_FILES:
        data = sub.files.get(rel)
        if data is None:
            continue
        text = normalized(data.decode("utf-8", errors="replace"))
        lines, template = template_lines(text, rel)
        compact, compact_starts, raw_starts = own_lines(lines, template)
        if not compact:
            continue
        fp = _fingerprint(compact, rel, boilerplate=boilerplate_hashes(rel))
        if fp.token_coverage > 0:
            values = [(h, i) for h, idx in fp.hash_idx.items() for i in idx]
            hash_values, positions = (
                np.array(v, dtype=np.int64) for v in zip(*values, strict=True)
            )
            doc.files[rel] = FileCode(text, template, fp, compact_starts, raw_starts,
                                      hash_values, positions)  # fmt: skip
            doc.tokens += int(fp.token_coverage)
    return doc


def file_overlap(fa: FileCode, fb: FileCode) -> tuple[int, int]:
    """The tokens of ``fa`` and of ``fb`` covered by fingerprints they share: what copydetect's
    ``compare_files`` counts (its ``token_overlap``, from ``get_copied_slices``), with the
    shared positions found by one vectorized lookup instead of one per fingerprint. A test
    checks that the two agree."""
    from copydetect.utils import get_copied_slices

    if fa.fp.hashes.isdisjoint(fb.fp.hashes):
        return 0, 0
    counts = []
    for mine, theirs in ((fa, fb), (fb, fa)):
        idx = mine.positions[np.isin(mine.hash_values, theirs.hash_values)]
        slices = get_copied_slices(idx, NOISE_K)
        counts.append(int(np.sum(slices[1] - slices[0])) if np.size(slices) else 0)
    return counts[0], counts[1]


@dataclass
class Pair:
    """Two submissions compared: ``score_a`` is the share of ``a``'s own code found in ``b``."""

    a: Document
    b: Document
    score_a: float
    score_b: float
    matched_a: int
    matched_b: int
    files: dict  # rel -> (share of a's file found in b's, share of b's found in a's)

    @property
    def score(self) -> float:
        return max(self.score_a, self.score_b)

    @property
    def page(self) -> str:
        """The side-by-side page, relative to OUT."""
        key = f"{self.a.label}\0{self.b.label}".encode()
        return f"{PAGES}/pair-{hashlib.sha256(key).hexdigest()[:16]}.html"


def compare(a: Document, b: Document) -> Pair:
    """Compare two submissions, file by file (``file_overlap``)."""
    matched_a = matched_b = 0
    files = {}
    for rel, fa in a.files.items():
        fb = b.files.get(rel)
        if fb is None:
            continue
        n_a, n_b = file_overlap(fa, fb)
        if n_a:
            matched_a += n_a
            matched_b += n_b
            files[rel] = (n_a / fa.fp.token_coverage, n_b / fb.fp.token_coverage)
    score_a = matched_a / a.tokens if a.tokens else 0.0
    score_b = matched_b / b.tokens if b.tokens else 0.0
    return Pair(a, b, score_a, score_b, matched_a, matched_b, files)


@dataclass
class Similarity:
    """The batch's similarity: every pair's score, and the pairs reported."""

    threshold: float
    documents: list[Document]
    archives: dict[str, int]  # archive label -> submissions read from it
    scores: np.ndarray  # the higher score of every pair compared
    reported: list[Pair]
    without_code: list[str]  # batch students with no code of their own (stubs only)

    def summary(self) -> dict:
        """The ``similarity`` section of grades.json."""
        import copydetect

        return {
            "tool": f"copydetect {copydetect.__version__}",
            "noise_k": NOISE_K,
            "window": WINDOW,
            "boilerplate": "release/hw2/hw2 (the released stubs)",
            "files": list(CODE_FILES),
            "threshold": self.threshold,
            "min_matched_tokens": MIN_MATCHED,
            "students": sum(d.archive is None for d in self.documents),
            "archives": self.archives,
            "pairs_compared": int(self.scores.size),
            "without_code": self.without_code,
            "pairs": [_pair_json(p, listed=i < MAX_LISTED) for i, p in enumerate(self.reported)],
        }

    def section_html(self) -> str:
        """The report's section: the distribution plot and the ranked table."""
        e = html.escape
        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{e(p.a.label)}</td><td>{e(p.b.label)}</td>"
            f"<td>{p.score_a:.0%}</td><td>{p.score_b:.0%}</td>"
            f"<td>{max(p.matched_a, p.matched_b)}</td>"
            f"<td>{e(', '.join(r.split('/', 1)[1] for r in p.files))}</td>"
            f'<td><a href="{e(quote(p.page))}">side by side</a></td></tr>'
            for i, p in enumerate(self.reported[:MAX_LISTED])
        )
        more = len(self.reported) - MAX_LISTED
        more_html = (
            f"<p>{more} more pairs reach the threshold: see grades.json.</p>" if more > 0 else ""
        )
        archives = "; ".join(f"{e(k)}, {v} submissions" for k, v in self.archives.items())
        archives = f" (with the archives {archives})" if archives else ""
        table = (
            '<table class="similarity"><thead><tr><th>#</th><th>a</th><th>b</th>'
            "<th>a's code in b</th><th>b's code in a</th><th>tokens matched</th><th>files</th>"
            f"<th></th></tr></thead><tbody>{rows}</tbody></table>{more_html}"
            if self.reported
            else "<p>No pair reaches the threshold.</p>"
        )
        no_code = (
            f"<p>Not compared (no code of their own beyond the stubs): "
            f"{e(', '.join(self.without_code))}.</p>"
            if self.without_code
            else ""
        )
        return f"""
<h2 id="similarity">Similarity (staff only)</h2>
<p>Each pair of submissions compared with copydetect's winnowing fingerprints (k = {NOISE_K}
tokens of code with every name anonymized; comments, docstrings and the released stubs do not
count). A score is the share of one side's own code found in the other. {len(self.reported)}
pair(s) of {self.scores.size} reach {100 * self.threshold:g}%{archives}. Similar code is a
reason to look, not a verdict: open the side-by-side page.</p>
<div>{self.plot_svg()}</div>
{table}
{no_code}
"""

    def plot_svg(self) -> str:
        """Inline SVG: the distribution of the pairs' (higher) scores, the threshold marked."""
        if not self.scores.size:
            return "<p>(fewer than two submissions with code of their own: no pair to plot)</p>"
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from tools.grading.report import _svg

        plt.rcParams["svg.fonttype"] = "none"
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(100 * self.scores, bins=np.linspace(0, 100, 51), color="#8250df", log=True)
        ax.axvline(100 * self.threshold, color="#cf222e", linestyle="--", label="threshold")
        ax.set_xlim(0, 100)
        ax.set_xlabel("similarity of a pair (%, the higher of its two scores)")
        ax.set_ylabel("pairs (log scale)")
        ax.set_title(f"Pairwise similarity ({self.scores.size} pairs)")
        ax.legend(loc="upper right")
        svg = _svg(fig)
        plt.close(fig)
        return svg

    def write_pages(self, out: Path) -> None:
        """Write the side-by-side page of each listed pair under ``out/similarity/``, removing
        pages of an earlier run."""
        from tools.grading.runner import write_atomic

        keep = set()
        for p in self.reported[:MAX_LISTED]:
            write_atomic(out / p.page, pair_html(p, self.threshold).encode())
            keep.add(Path(p.page).name)
        folder = out / PAGES
        if folder.is_dir():
            for old in folder.glob("pair-*.html"):
                if old.name not in keep:
                    old.unlink()


def _pair_json(p: Pair, listed: bool) -> dict:
    return {
        "a": p.a.student_id,
        "a_archive": p.a.archive,
        "b": p.b.student_id,
        "b_archive": p.b.archive,
        "score_a": round(p.score_a, 4),
        "score_b": round(p.score_b, 4),
        "matched_tokens_a": p.matched_a,
        "matched_tokens_b": p.matched_b,
        "files": {rel: [round(sa, 4), round(sb, 4)] for rel, (sa, sb) in p.files.items()},
        "page": p.page if listed else None,
    }


PAGE_STYLE = """
.sbs { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.sbs pre { font-size: .75em; white-space: pre-wrap; word-break: break-all; }
mark { background: #ffd8b5; }
body { max-width: 110rem; }
"""


def own_slices(raw: str, template: list[bool], slices) -> np.ndarray:
    """``slices`` (2xN starts and ends in ``raw``) without the stub's lines (``template``, one
    flag per line): a match that runs from one solution region into the next covers the
    template between them, which is not highlighted."""
    if not np.size(slices):
        return np.zeros((2, 0), dtype=int)
    lines = _lines(raw)
    own = np.repeat(~np.array(template, dtype=bool), [len(line) for line in lines])
    starts, ends = [], []
    for s, e in zip(*np.asarray(slices, dtype=int), strict=True):
        edges = np.diff(np.concatenate([[False], own[s:e], [False]]).astype(np.int8))
        starts.extend(s + np.flatnonzero(edges == 1))
        ends.extend(s + np.flatnonzero(edges == -1))
    return np.array([starts, ends], dtype=int).reshape(2, -1)


def matched_regions(fa: FileCode, fb: FileCode) -> tuple[np.ndarray, np.ndarray]:
    """The regions of each file's text that match the other's, from copydetect's
    ``compare_files``, without the stub's lines."""
    from copydetect import compare_files

    _, _, (slices_a, slices_b) = compare_files(fa.fp, fb.fp)
    return tuple(
        own_slices(f.raw, f.template, f.to_raw(sl) if np.size(sl) else sl)
        for f, sl in ((fa, slices_a), (fb, slices_b))
    )


def _marked(raw: str, slices: np.ndarray, truncate: int) -> str:
    from copydetect.utils import highlight_overlap

    if not slices.shape[1]:
        return html.escape(raw)
    marked, _ = highlight_overlap(raw, slices, "<mark>", "</mark>", truncate=truncate,
                                  escape_html=True)  # fmt: skip
    return marked


CONTEXT_LINES = 4  # lines shown around the highlighted regions (the whole file is one click away)


def pair_html(p: Pair, threshold: float) -> str:
    """The side-by-side page of a pair: each file twice, matching regions highlighted (the
    code is the student's, escaped; the page has no script)."""
    from tools.grading.feedback import page

    e = html.escape
    sections = []
    for rel, (sim_a, sim_b) in p.files.items():
        columns = []
        fa, fb = p.a.files[rel], p.b.files[rel]
        regions = matched_regions(fa, fb)
        for doc, f, sim, mine in ((p.a, fa, sim_a, regions[0]), (p.b, fb, sim_b, regions[1])):
            columns.append(
                f"<div><h3>{e(doc.label)}: {e(rel)} ({sim:.0%} of its own code here)</h3>"
                f"<pre>{_marked(f.raw, mine, CONTEXT_LINES)}</pre>"
                f"<details><summary>the whole file</summary><pre>{_marked(f.raw, mine, -1)}"
                "</pre></details></div>"
            )
        sections.append(f'<h2>{e(rel)}</h2><div class="sbs">{"".join(columns)}</div>')
    body = f"""<style>{PAGE_STYLE}</style>
<h1>Similarity: {e(p.a.label)} and {e(p.b.label)}</h1>
<p>Staff only. {p.score_a:.0%} of {e(p.a.label)}'s own code ({p.matched_a} of {p.a.tokens}
tokens) is found in {e(p.b.label)}'s; {p.score_b:.0%} of {e(p.b.label)}'s ({p.matched_b} of
{p.b.tokens}) in {e(p.a.label)}'s. Threshold {100 * threshold:g}%. <mark>Highlighted</mark>: code
whose fingerprints (runs of k = {NOISE_K} tokens, every name anonymized) occur in both files,
outside the released stubs; {CONTEXT_LINES} lines of context are shown around them.
<a href="../report.html#similarity">Back to the report</a>.</p>
{"".join(sections) or "<p>No file in common.</p>"}
"""
    return page(f"similarity: {p.a.label} and {p.b.label}", body)


def load_archive(folder: Path) -> list[Submission]:
    """Every submission of an earlier semester's folder, read as the intake reads a batch."""
    found, _ = find_submissions(folder)
    return [load_submission(sid, path) for sid, path in found]


def archive_labels(folders: list[Path]) -> list[str]:
    """A short label per archive folder: its name, or its path when names repeat."""
    names = [f.resolve().name or str(f) for f in folders]
    return [n if names.count(n) == 1 else str(f) for n, f in zip(names, folders, strict=True)]


def analyze(
    batch: list[Submission],
    archives: dict[str, list[Submission]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    progress: bool = False,
) -> Similarity:
    """Compare every pair of ``batch`` and every batch submission with every archived one."""
    from tqdm import tqdm

    archives = archives or {}
    docs = [fingerprint(s) for s in batch]
    old = [fingerprint(s, label) for label, subs in archives.items() for s in subs]
    without_code = [d.student_id for d in docs if d.tokens == 0]
    docs = [d for d in docs if d.tokens]
    old = [d for d in old if d.tokens]
    scores, reported = [], []
    for i, a in enumerate(tqdm(docs, desc="similarity", unit="student", disable=not progress)):
        for b in docs[i + 1 :] + old:
            pair = compare(a, b)
            scores.append(pair.score)
            if pair.score >= threshold and max(pair.matched_a, pair.matched_b) >= MIN_MATCHED:
                reported.append(pair)
            # pairs below the threshold keep only their score
    reported.sort(key=lambda p: (-p.score, -max(p.matched_a, p.matched_b), p.a.label, p.b.label))
    return Similarity(
        threshold=threshold,
        documents=docs + old,
        archives={label: len(subs) for label, subs in archives.items()},
        scores=np.array(scores, dtype=float),
        reported=reported,
        without_code=without_code,
    )


def run(
    submitted: Path,
    student_ids: list[str],
    archive_folders: list[Path] = (),
    threshold: float = DEFAULT_THRESHOLD,
    progress: bool = False,
) -> Similarity:
    """The similarity of a graded batch: the students ``student_ids`` of ``submitted`` (read
    again by the intake: the same files that were graded) and the archive folders."""
    found, _ = find_submissions(submitted)
    wanted = set(student_ids)
    batch = [load_submission(sid, path) for sid, path in found if sid in wanted]
    labels = archive_labels(list(archive_folders))
    archives = {lab: load_archive(f) for lab, f in zip(labels, archive_folders, strict=True)}
    return analyze(batch, archives, threshold, progress)
