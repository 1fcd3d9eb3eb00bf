"""The similarity report: planted copies are found, independent solutions are not flagged.

The module works on ``Submission`` files, so most tests need no sandbox: the batch is the
example submissions, four copies of the solution planted among them, and three solutions
written independently (tests/fixtures/similarity). One test runs tools/autograde.py end to
end, one renders the pages in headless Chromium.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from grading_support import CHROMIUM, autograde, measure_in_chromium, requires_sandbox
from similarity_support import (
    FIXTURES,
    INDEPENDENT,
    REPO,
    SOLUTION,
    planted,
    read,
    renamed_and_reformatted,
    write,
)

from tools.grading import similarity
from tools.grading.collect import Submission, find_submissions, load_submission

EXAMPLES = REPO / "examples" / "submissions"
THRESHOLD = similarity.DEFAULT_THRESHOLD
PLANTED = ("copy_verbatim", "copy_renamed", "copy_reordered", "copy_resnet_only")


def make_batch(root) -> None:
    """The examples, the planted copies of the solution and the independent fixtures."""
    shutil.copytree(EXAMPLES, root)
    for name, files in planted().items():
        write(root, name, files)
    for name in INDEPENDENT:
        shutil.copytree(FIXTURES / name, root / name)


def load(root) -> list[Submission]:
    found, skipped = find_submissions(root)
    assert not skipped
    return [load_submission(sid, path) for sid, path in found]


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("similarity") / "submitted"
    make_batch(root)
    return root


@pytest.fixture(scope="module")
def result(batch_dir):
    return similarity.analyze(load(batch_dir))


def reported(result) -> dict[frozenset, similarity.Pair]:
    return {frozenset((p.a.label, p.b.label)): p for p in result.reported}


def score(result, a: str, b: str) -> float:
    docs = {d.label: d for d in result.documents}
    return similarity.compare(docs[a], docs[b]).score


@pytest.mark.parametrize("name", PLANTED)
def test_each_planted_copy_is_reported_above_the_default_threshold(result, name):
    pair = reported(result).get(frozenset((name, "correct")))
    assert pair is not None, f"{name} is not reported with the solution it copies"
    assert pair.score >= THRESHOLD and max(pair.matched_a, pair.matched_b) >= 2 * 60
    if name == "copy_resnet_only":  # only cnn.py: the copied class
        assert list(pair.files) == ["hw2/cnn.py"]
    else:
        assert pair.score > 0.5


def test_independent_solutions_are_not_flagged(result):
    """Written in different styles against the same stubs: they share the stubs' code, not
    each other's, and score well below the threshold (they score 0 at k = 60)."""
    names = ("correct", *INDEPENDENT)
    flagged = reported(result)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert frozenset((a, b)) not in flagged, (a, b)
            assert score(result, a, b) < THRESHOLD / 2, (a, b, score(result, a, b))


def test_scores_are_copydetects(result):
    """``file_overlap`` counts what copydetect's ``compare_files`` counts, for every pair of
    files of the batch (planted copies, independent solutions, partial ones)."""
    from copydetect import compare_files

    docs = result.documents
    checked = 0
    for i, a in enumerate(docs):
        for b in docs[i + 1 :]:
            for rel, fa in a.files.items():
                if rel not in b.files:
                    continue
                fb = b.files[rel]
                overlap, (sim_a, sim_b), _ = compare_files(fa.fp, fb.fp)
                n_a, n_b = similarity.file_overlap(fa, fb)
                assert n_a == overlap and n_a / fa.fp.token_coverage == sim_a, (a, b, rel)
                assert n_b / fb.fp.token_coverage == sim_b, (a.label, b.label, rel)
                checked += n_a > 0
    assert checked > 20


def test_stub_code_counts_for_nothing(result):
    """An untouched release has no code of its own: it is not compared. Two students who
    wrote the same few lines on the stubs share fewer tokens than ``MIN_MATCHED``: they are
    compared (score 1) but not reported."""
    assert result.without_code == ["untouched"]
    stub = read(EXAMPLES / "untouched")
    mine = dict(stub)
    for end, code in (
        ("return out", "out = self.mlp(self.feature_extractor(x).flatten(1))"),
        ("return mlp", "mlp = MLP(self._n_features(), [*self.hidden_dims, self.out_classes], "
                       "[self._make_activation() for _ in self.hidden_dims] + [None])"),
    ):  # fmt: skip
        region = f"        # YOUR CODE HERE\n        raise NotImplementedError()\n        {end}\n"
        assert region in mine["hw2/cnn.py"]
        mine["hw2/cnn.py"] = mine["hw2/cnn.py"].replace(region, f"        {code}\n        {end}\n")
    subs = [Submission(s, "dir", {k: v.encode() for k, v in mine.items()}) for s in "ab"]
    small = similarity.analyze(subs)
    assert 0 < small.documents[0].tokens < similarity.MIN_MATCHED
    assert small.scores.tolist() == [1.0] and small.reported == []
    stub_only = [Submission(s, "dir", {k: v.encode() for k, v in stub.items()}) for s in "ab"]
    assert similarity.analyze(stub_only).without_code == ["a", "b"]


def test_a_batch_without_pairs_renders():
    """No submission, or one: nothing to compare, and the section says so (no plot)."""
    one = [Submission("a", "dir", {k: v.encode() for k, v in read(SOLUTION).items()})]
    for subs in ([], one):
        res = similarity.analyze(subs)
        assert res.scores.size == 0 and res.summary()["pairs"] == []
        assert "no pair to plot" in res.section_html() and "<svg" not in res.section_html()


def test_renaming_alone_changes_no_fingerprint():
    """copydetect anonymizes every name: a copy whose variables are renamed in the solution
    regions, and nothing else, has the solution's fingerprints exactly (score 1 both ways)."""
    names = ("out_channels", "block_kwargs", "group", "block", "features", "was_training",
             "nonlins", "c_in", "c_out", "scores", "loss")  # fmt: skip
    region = re.compile(r"### BEGIN SOLUTION.*?### END SOLUTION", re.S)
    word = re.compile(r"\b(" + "|".join(names) + r")\b")

    def rename(m: re.Match) -> str:
        return word.sub(lambda w: "my_" + w.group(1)[::-1], m.group(0))

    sol = read(SOLUTION)
    renamed = {rel: region.sub(rename, text) for rel, text in sol.items()}
    assert renamed["hw2/cnn.py"].count("my_") > 20
    docs = [similarity.fingerprint(Submission(n, "dir", {k: v.encode() for k, v in f.items()}))
            for n, f in (("a", sol), ("b", renamed))]  # fmt: skip
    assert docs[0].files.keys() == docs[1].files.keys() >= {"hw2/cnn.py"}
    for rel, f in docs[0].files.items():
        assert f.fp.hashes == docs[1].files[rel].fp.hashes, rel
    pair = similarity.compare(*docs)
    assert pair.score_a == pair.score_b == 1.0


def test_comments_and_docstrings_are_not_fingerprinted():
    """The same long comment and docstring added to two independent solutions change
    neither's fingerprints."""
    extra = (
        '\n\ndef shared_helper_doc():\n    """' + "the same long docstring text " * 20 + '"""\n'
        "# " + "the same long comment text " * 20 + "\n"
    )
    a, b = read(FIXTURES / "compact"), read(FIXTURES / "helpers")
    before = [similarity.fingerprint(Submission(n, "dir", {k: v.encode() for k, v in f.items()}))
              for n, f in (("a", a), ("b", b))]  # fmt: skip
    a2 = {**a, "hw2/cnn.py": a["hw2/cnn.py"].replace("\n\n\nclass ResNet", "\n\n" + "# x " * 40
                                                     + "\n\n\nclass ResNet")}  # fmt: skip
    a2["hw2/training.py"] = a["hw2/training.py"] + extra
    b2 = {**b, "hw2/training.py": b["hw2/training.py"] + extra}
    after = [similarity.fingerprint(Submission(n, "dir", {k: v.encode() for k, v in f.items()}))
             for n, f in (("a", a2), ("b", b2))]  # fmt: skip
    p0, p1 = similarity.compare(*before), similarity.compare(*after)
    assert p0.score < THRESHOLD / 2
    # the helper's `def F(): S` is a handful of tokens of code, shorter than k: it matches nothing
    assert (p1.score_a, p1.score_b) == (p0.score_a, p0.score_b)
    assert after[0].files["hw2/cnn.py"].fp.hashes == before[0].files["hw2/cnn.py"].fp.hashes


def test_a_reformatted_copy_keeps_most_of_the_solution(result):
    """ast.unparse plus ruff at 60 columns: other line breaks, quotes and trailing commas.
    Most of the solution's own code is still found in the copy."""
    pair = reported(result)[frozenset(("copy_renamed", "correct"))]
    solution_side = pair.score_a if pair.a.label == "correct" else pair.score_b
    assert solution_side > 0.5
    text = renamed_and_reformatted(read(SOLUTION))["hw2/cnn.py"]
    assert "layers.append" not in text and ".append(" in text  # renamed
    assert "### BEGIN SOLUTION" not in text  # comments gone


def test_archive_pairs_are_reported_but_not_archive_to_archive(batch_dir, tmp_path):
    """An earlier semester's folder, read in the intake's layouts (nbgrader's, a submit zip,
    a repository folder): its copy of the solution is reported against this batch; two archived
    copies of each other are not compared."""
    archive = tmp_path / "2024"
    sol = read(SOLUTION)
    # nbgrader's layout: <id>/hw2/hw2/cnn.py
    for rel, text in sol.items():
        (archive / "alice" / "hw2" / rel).parent.mkdir(parents=True, exist_ok=True)
        (archive / "alice" / "hw2" / rel).write_text(text)
    # the submit tool's zip, and a repository folder with the package two levels down
    helpers = read(FIXTURES / "helpers")
    with zipfile.ZipFile(archive / "bob.zip", "w") as zf:
        for rel, text in helpers.items():
            zf.writestr(rel, text)
    for rel, text in helpers.items():
        (archive / "carol" / "HW2" / rel).parent.mkdir(parents=True, exist_ok=True)
        (archive / "carol" / "HW2" / rel).write_text(text)
    ids = ["correct", "loops", "copy_resnet_only"]
    res = similarity.run(batch_dir, ids, [archive])
    assert res.archives == {"2024": 3}
    labels = {frozenset((p.a.label, p.b.label)) for p in res.reported}
    assert frozenset(("correct", "2024/alice")) in labels
    assert frozenset(("copy_resnet_only", "2024/alice")) in labels
    assert not any(all("/" in x for x in pair) for pair in labels)  # bob and carol: not a pair
    assert res.scores.size == 3 + 3 * 3  # 3 batch pairs, 3 students x 3 archived
    summary = res.summary()
    pair = next(p for p in summary["pairs"] if {p["a"], p["b"]} == {"correct", "alice"})
    assert "2024" in (pair["a_archive"], pair["b_archive"])
    assert pair["score_a"] == pair["score_b"] == 1.0


def test_scores_are_the_same_in_another_process(batch_dir):
    """copydetect hashes with Python's salted str hash; with window 1 the scores do not
    depend on the salt."""
    code = (
        "import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests'];"
        "from tools.grading import similarity; from test_similarity import load;"
        "from pathlib import Path;"
        "r = similarity.analyze(load(Path(sys.argv[2])));"
        "print(json.dumps([r.summary()['pairs'], sorted(r.scores.round(6).tolist())]))"
    )
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code, str(REPO), str(batch_dir)],
                              capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(json.loads(done.stdout))
    assert outs[0] == outs[1]
    assert len(outs[0][0]) >= len(PLANTED)


HOSTILE = '</pre><script>alert("x")</script><img src=x onerror=alert(1)>'


def test_pages_escape_student_code_and_names(tmp_path):
    sol = read(SOLUTION)
    evil = dict(sol)
    evil["hw2/cnn.py"] = sol["hw2/cnn.py"].replace(
        "        features = self.feature_extractor(x)",
        f"        features = self.feature_extractor(x)  # {HOSTILE}\n        note = {HOSTILE!r}",
    )
    subs = [Submission("s1", "dir", {k: v.encode() for k, v in sol.items()})]
    archive = [Submission("s2", "dir", {k: v.encode() for k, v in evil.items()})]
    res = similarity.analyze(subs, {"<b>old</b>": archive})
    assert len(res.reported) == 1
    res.write_pages(tmp_path)
    page = (tmp_path / res.reported[0].page).read_text()
    section = res.section_html()
    for text in (page, section):
        assert "<script" not in text and "<img" not in text and "<b>old" not in text
    assert "&lt;script&gt;" in page and "&lt;b&gt;old&lt;/b&gt;/s2" in page
    assert "&lt;b&gt;old&lt;/b&gt;/s2" in section


def test_pages_of_an_earlier_run_are_removed(result, tmp_path):
    old = tmp_path / "similarity" / "pair-0000000000000000.html"
    old.parent.mkdir()
    old.write_text("stale")
    keep = tmp_path / "similarity" / "notes.txt"
    keep.write_text("staff notes")
    result.write_pages(tmp_path)
    assert not old.exists() and keep.exists()
    assert len(list(old.parent.glob("pair-*.html"))) == len(result.reported)


MEASURE = """
<script>
window.addEventListener("load", () => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return [r.x, r.y, r.width, r.height];
  };
  const cols = [...document.querySelectorAll(".sbs > div")].slice(0, 2).map(box);
  const marks = [...document.querySelectorAll("mark")].map(box);
  const svg = [...document.querySelectorAll("svg")].map(box);
  const rows = document.querySelectorAll("table.similarity tbody tr").length;
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({cols, marks, svg, rows});
  document.body.appendChild(out);
});
</script>
"""


def render(path, tmp_path) -> dict:
    """Load ``path`` in headless Chromium with the measuring script added to a copy."""
    return measure_in_chromium(path.read_text(), MEASURE, tmp_path)


def test_pages_render_in_chromium(result, tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from tools.grading.feedback import page

    result.write_pages(tmp_path)
    report = tmp_path / "report.html"
    report.write_text(page("report", result.section_html()))
    measured = render(report, tmp_path)
    assert measured["rows"] == len(result.reported)
    (x, y, w, h), *_ = measured["svg"]
    assert w > 200 and h > 100  # the distribution plot is laid out
    pair = reported(result)[frozenset(("copy_resnet_only", "correct"))]
    measured = render(tmp_path / pair.page, tmp_path)
    (lx, ly, lw, lh), (rx, ry, rw, rh) = measured["cols"]
    assert rx >= lx + lw and abs(ly - ry) < 1  # side by side
    assert lw > 200 and rw > 200
    visible = [m for m in measured["marks"] if m[2] > 0 and m[3] > 0]
    assert len(visible) >= 2  # the copied class highlighted in both columns


@requires_sandbox
@pytest.mark.slow
def test_autograde_writes_the_similarity_report(tmp_path):
    """tools/autograde.py end to end: graded, then compared; report.html links each reported
    pair's page; grades.json has the same pairs; no feedback page mentions similarity."""
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    make_batch(submitted)
    archive = tmp_path / "archive" / "2025"
    write(archive, "dana", read(FIXTURES / "compact"))
    done = autograde(submitted, out, "--similarity-archive", str(archive), timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "grades.json").read_text())
    for name in INDEPENDENT:  # correct solutions, written independently
        assert summary["students"][name]["score"] == 100, name
    sim = summary["similarity"]
    assert sim["threshold"] == THRESHOLD and sim["archives"] == {"2025": 1}
    pairs = {frozenset((p["a"], p["b"])): p for p in sim["pairs"]}
    for name in PLANTED:
        assert pairs[frozenset((name, "correct"))]["page"], name
    assert frozenset(("compact", "dana")) in pairs  # the archived copy of compact
    for a in ("correct", *INDEPENDENT):
        for b in ("correct", *INDEPENDENT):
            assert frozenset((a, b)) not in pairs
    report = (out / "report.html").read_text()
    assert 'id="similarity"' in report
    for p in sim["pairs"]:
        assert f'href="{p["page"]}"' in report and (out / p["page"]).is_file()
    for page in (out / "feedback").glob("*.html"):
        assert "similarity" not in page.read_text().lower(), page.name


def test_bad_similarity_arguments_are_one_line_errors(tmp_path):
    (tmp_path / "submitted").mkdir()
    for args, needle in (
        (["--similarity-archive", str(tmp_path / "nowhere")], "--similarity-archive"),
        (["--similarity-threshold", "1.5"], "--similarity-threshold"),
    ):
        done = autograde(tmp_path / "submitted", tmp_path / "out", *args)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], done.stderr
