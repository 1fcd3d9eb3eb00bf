"""Hints for failed visible numeric checks (issue 13): why an output differs, not only by how much.

Each mistake below is one seen in real submissions, made by a replacement in a correct
``hw2/cnn.py`` (the solution's, or the template-style fixture ``tests/fixtures/template/w26``);
every replacement must apply. All of them are graded in one batch through the real sandbox,
with the two correct submissions, which must get no hint at all.
"""

import json

import pytest
from grading_support import (
    REPO,
    autograde,
    grades,
    make_submission,
    measure_in_chromium,
    requires_sandbox,
    results,
)

from tools.asset_specs import HIDDEN_SPECS, PUBLIC_SPECS
from tools.checks import CHECKS, CHECKS_BY_NAME, STUDENT_FILES
from tools.grading import diagnose, harness

W26 = REPO / "tests" / "fixtures" / "template" / "w26"
AUTO = [c.name for c in CHECKS if c.kind == "auto"]

# name -> (the correct files it starts from, replacements in hw2/cnn.py, {check: [in the hint]})
MISTAKES = {
    # the three, seen in real course submissions
    "conv_twice": ("solution", [(
        "            in_channels = out_channels\n            if (i + 1) % self.pool_every == 0:",
        "            in_channels = out_channels\n"
        "            layers.append(nn.Conv2d(in_channels, out_channels, **self.conv_params))\n"
        "            layers.append(self._make_activation())\n"
        "            if (i + 1) % self.pool_every == 0:",
    )], {
        "cnn_0": ["feature_extractor has 8 Conv2d layers, expected 4", "channels=[32]*4"],
        "cnn_2": ["feature_extractor has 10 Conv2d layers, expected 5", "channels=[16]*5"],
    }),
    "lrelu_everywhere": ("solution", [
        ("    def _make_activation(self) -> nn.Module:\n"
         "        return make_activation(self.activation_type, **self.activation_params)",
         "    def _make_activation(self, name=None) -> nn.Module:\n"
         "        name = self.activation_type if name is None else name\n"
         "        params = self.activation_params if name == self.activation_type else {}\n"
         "        return nn.ReLU() if name == 'relu' else nn.LeakyReLU(**params)"),
        ('+ ["none"]', '+ [self._make_activation("none")]'),
        ("layers.append(make_activation(activation_type, **activation_params))",
         "layers.append(nn.ReLU() if activation_type == 'relu' "
         "else nn.LeakyReLU(**activation_params))"),
    ], {
        "cnn_0": ["mlp.layers[5] is LeakyReLU, expected Identity: the output layer has no "
                  "activation"],
        "resnet_1": ["main_path[3] is LeakyReLU, expected Tanh", "activation_type='tanh'"],
    }),
    "probe_rng": ("solution", [
        ("features = self.feature_extractor(torch.zeros(1, *self.in_size))",
         "features = self.feature_extractor(torch.randn(1, *self.in_size))"),
        ("        finally:\n            torch.set_rng_state(rng_state)",
         "        finally:\n            pass"),
    ], {
        "cnn_0": ["the layers and shapes match, the initial values do not",
                  "differ from mlp.layers[0] on", "feature-count probe", "RNG state"],
        "resnet_1": ["feature-count probe"],
    }),
    # three more
    "no_projection": ("w26", [(
        "        if in_channels == channels[-1]:\n"
        "            self.shortcut_path = nn.Sequential()\n"
        "        else:\n            self.shortcut_path = nn.Sequential(\n"
        "                nn.Conv2d(in_channels, channels[-1], kernel_size=1, bias=False)\n"
        "            )",
        "        self.shortcut_path = nn.Sequential()",
    )], {
        "resblock": ["shortcut_path has no Conv2d layers, expected 1", "1x1 Conv2d without bias"],
        "resnet_0": ["feature_extractor[0].shortcut_path has no Conv2d"],
    }),
    "bn_before_dropout": ("w26", [(
        "            if dropout > 0:\n                layers.append(nn.Dropout2d(p=dropout))\n"
        "            if batchnorm:\n                layers.append(nn.BatchNorm2d(c_out))",
        "            if batchnorm:\n                layers.append(nn.BatchNorm2d(c_out))\n"
        "            if dropout > 0:\n                layers.append(nn.Dropout2d(p=dropout))",
    )], {
        "resblock": ["main_path[1] is BatchNorm2d, expected Dropout2d",
                     "CONV -> DROPOUT -> BN -> ACT"],
        "resnet_0": ["feature_extractor[0].main_path[1] is BatchNorm2d, expected Dropout2d"],
    }),
    "pool_remainder": ("solution", [(
        "                layers.append(self._make_pooling())\n        ### END SOLUTION\n"
        "        return nn.Sequential(*layers)\n\n    def _n_features",
        "                layers.append(self._make_pooling())\n"
        "        if len(self.channels) % self.pool_every:\n"
        "            layers.append(self._make_pooling())\n"
        "        ### END SOLUTION\n        return nn.Sequential(*layers)\n\n    def _n_features",
    )], {
        "cnn_2": ["feature_extractor has 2 MaxPool2d layers, expected 1",
                  "the last 5 mod 3 = 2 convs have no pooling after them"],
    }),
    # the other cause of equal structures with other numbers: the order of creation
    "shortcut_first": ("solution", [
        ("        layers = []\n        c_in = in_channels\n        for i, (c_out, k)",
         "        shortcut = nn.Identity() if in_channels == channels[-1] else nn.Sequential(\n"
         "            nn.Conv2d(in_channels, channels[-1], kernel_size=1, bias=False))\n"
         "        layers = []\n        c_in = in_channels\n        for i, (c_out, k)"),
        ("        if in_channels == channels[-1]:\n            self.shortcut_path = nn.Identity()\n"
         "        else:\n            self.shortcut_path = nn.Sequential(\n"
         "                nn.Conv2d(in_channels, channels[-1], kernel_size=1, bias=False)\n"
         "            )",
         "        self.shortcut_path = shortcut"),
    ], {
        "resblock": ["the layers are created in another order: shortcut_path[0] is created "
                     "before main_path[0]"],
    }),
}  # fmt: skip
CORRECT = ("solution", "w26")


def base_files(base: str) -> dict[str, str]:
    root = REPO if base == "solution" else W26
    return {rel: (root / rel).read_text() for rel in STUDENT_FILES}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every mistake and both correct submissions, graded in one batch."""
    submitted = tmp_path_factory.mktemp("submitted")
    for name, (base, replace, _) in MISTAKES.items():
        make_submission(submitted, name, [("hw2/cnn.py", a, b) for a, b in replace],
                        files=base_files(base))  # fmt: skip
    for name in CORRECT:
        make_submission(submitted, name, files=base_files(name))
    out = tmp_path_factory.mktemp("out")
    done = autograde(submitted, out, "--force", timeout=30)
    assert done.returncode == 0, done.stderr
    return out


@requires_sandbox
@pytest.mark.parametrize("name", MISTAKES)
def test_each_mistake_gets_the_hint_that_names_it(graded, name):
    rows = grades(graded)[name]
    for check, wanted in MISTAKES[name][2].items():
        assert rows[check]["status"] in ("failed", "error"), (check, rows[check])
        for text in wanted:
            assert text in rows[check]["hint"], (check, rows[check]["hint"])


@requires_sandbox
def test_every_failed_visible_numeric_check_has_a_hint(graded):
    """Not only the checks named above: whatever a mistake breaks gets explained."""
    for name in MISTAKES:
        for check, row in grades(graded)[name].items():
            if check in diagnose.DIAGNOSED and row["status"] in ("failed", "error"):
                assert row["hint"], (name, check, row["message"])


@requires_sandbox
def test_correct_submissions_pass_and_get_no_hint(graded):
    for name in CORRECT:
        rows = grades(graded)[name]
        assert {c: rows[c]["status"] for c in AUTO} == {c: "passed" for c in AUTO}, name
        assert all(row["hint"] == "" for row in rows.values()), name
        page = (graded / "feedback" / f"{name}.html").read_text()
        assert 'class="hint"' not in page


@requires_sandbox
def test_hints_only_on_failed_visible_checks(graded):
    for name, rows in grades(graded).items():
        for check, row in rows.items():
            if row["hint"]:
                assert not CHECKS_BY_NAME[check].hidden, (name, check)
                assert check in diagnose.DIAGNOSED and row["status"] != "passed", (name, check)
    assert sum(bool(r["hint"]) for rows in grades(graded).values() for r in rows.values()) >= 20


def _descriptions(specs) -> list[str]:
    """Every string a hint could take from these specs: their values as the hints write them
    and their solution modules' layers and parameter shapes."""
    from hw2 import cnn

    strings = []
    for spec in specs:
        for key, value in spec.params.items():
            if isinstance(value, list | tuple) and len(value) > 1:
                strings += [str(list(value)), str(tuple(value)), diagnose.fmt_list(value)]
            elif isinstance(value, dict):
                strings += [f"{k}={v}" for k, v in value.items()]
            else:
                strings.append(f"{key}={value!r}")
        d = harness.describe_module(lambda s=spec: getattr(cnn, s.kind)(**s.params))
        s = diagnose.build_structure(d["modules"], d["params"], d["discarded"], d["init"])
        strings += [diagnose.layer(n) for n in diagnose._walk(s.root) if n.extra]
        strings += [str(p.shape) for p in s.params if len(p.shape) >= 2]
    return strings


def test_hidden_values_are_known_to_the_leak_test():
    """The strings the leak test looks for: many, and none a visible spec could produce."""
    visible = "\n".join(_descriptions(PUBLIC_SPECS))
    secret = {s for s in _descriptions(HIDDEN_SPECS) if s not in visible}
    for example in ("[8, 16, 16]", "(3, 40, 56)", "[16, 8, 16, 16, 4, 16, 32]",
                    "negative_slope=0.3", "(8, 3, 3, 3)"):  # fmt: skip
        assert example in secret
    assert len(secret) > 30


@requires_sandbox
def test_no_hidden_spec_value_in_any_feedback_page(graded):
    visible = "\n".join(_descriptions(PUBLIC_SPECS))
    secret = {s for s in _descriptions(HIDDEN_SPECS) if s not in visible}
    pages = sorted((graded / "feedback").glob("*.html"))
    assert len(pages) == len(MISTAKES) + len(CORRECT)
    for page in pages:
        text = page.read_text()
        leaked = sorted(s for s in secret if s in text)
        assert not leaked, (page.name, leaked)
    for name in MISTAKES:
        hidden = [c for c in results(graded, name)["checks"] if CHECKS_BY_NAME[c["check"]].hidden]
        assert all(c["hint"] == "" for c in hidden)


@requires_sandbox
def test_hint_is_in_the_csv_json_and_a_collapsed_block_of_the_feedback(graded):
    import csv

    with open(graded / "grades.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["student_id"] == "probe_rng"]
    hint = next(r["hint"] for r in rows if r["check"] == "cnn_0")
    assert "feature-count probe" in hint
    doc = json.loads((graded / "grades.json").read_text())
    assert any(r["hint"] == hint for r in doc["rows"])
    top = doc["hints"][0]
    assert top["students"] >= 1 and top["count"] >= top["students"] and top["checks"]
    page = (graded / "feedback" / "probe_rng.html").read_text()
    assert '<details class="hint"><summary>why it differs</summary>' in page
    assert "feature-count probe" in page and "<details open" not in page


MEASURE_HINTS = """
<script>
window.addEventListener("load", () => {
  const table = document.querySelector("#hints");
  const rows = table ? [...table.querySelectorAll("tbody tr")].map((tr) => ({
    cells: [...tr.children].map((td) => td.textContent),
    h: tr.getBoundingClientRect().height,
  })) : [];
  const box = table ? table.getBoundingClientRect() : {width: 0, height: 0};
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({rows, w: box.width, h: box.height});
  document.body.appendChild(out);
});
</script>
"""


@requires_sandbox
def test_report_table_of_common_hints_renders_in_chromium(graded, tmp_path):
    doc = json.loads((graded / "grades.json").read_text())
    measured = measure_in_chromium((graded / "report.html").read_text(), MEASURE_HINTS, tmp_path)
    rows = measured["rows"]
    assert measured["w"] > 0 and measured["h"] > 0
    assert len(rows) == min(len(doc["hints"]), 20) >= len(MISTAKES)
    assert all(r["h"] > 0 for r in rows)
    students = [int(r["cells"][0]) for r in rows]
    assert students == sorted(students, reverse=True)  # most common first
    shown = [r["cells"][3] for r in rows]
    assert [h["hint"] for h in doc["hints"][:20]] == shown
    assert any("feature-count probe" in h for h in shown)
    assert any("CONV -> DROPOUT -> BN -> ACT" in h for h in shown)


@requires_sandbox
def test_hints_are_counted_by_mistake_across_checks_and_students(graded, tmp_path):
    """A second student with the same mistake: the class's most common hint, counted once
    per student, its checks (resblock and the ResNets, in other blocks) together."""
    from tools.grading.report import hint_stats, report_html

    docs = [results(graded, name) for name in (*MISTAKES, *CORRECT)]
    docs.append({**results(graded, "bn_before_dropout"), "student_id": "bn_again"})
    top = hint_stats(docs)[0]
    assert "expected Dropout2d" in top["hint"] and top["students"] == 2
    assert set(top["checks"]) == {"resblock", "resnet_0", "resnet_1"} and top["count"] == 6
    rows = measure_in_chromium(report_html(docs), MEASURE_HINTS, tmp_path)["rows"]
    assert rows[0]["cells"][:2] == ["2", "6"] and "expected Dropout2d" in rows[0]["cells"][3]
    assert all(r["cells"][0] == "1" for r in rows[1:])


MEASURE_DETAILS = """
<script>
window.addEventListener("load", () => {
  const d = document.querySelector("details.hint");
  const text = d.querySelector("p");
  const closed = {h: d.getBoundingClientRect().height, shown: text.checkVisibility()};
  const summary = d.querySelector("summary").getBoundingClientRect().height;
  d.open = true;
  const opened = {h: d.getBoundingClientRect().height, shown: text.checkVisibility()};
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({closed, summary, opened});
  document.body.appendChild(out);
});
</script>
"""


@requires_sandbox
def test_feedback_hint_is_collapsed_until_opened_in_chromium(graded, tmp_path):
    page = (graded / "feedback" / "bn_before_dropout.html").read_text()
    measured = measure_in_chromium(page, MEASURE_DETAILS, tmp_path)
    closed, opened = measured["closed"], measured["opened"]
    assert not closed["shown"] and opened["shown"], measured
    assert 0 < measured["summary"] <= closed["h"] < opened["h"], measured


# ----------------------------------------------------------------------------- without a sandbox


def test_the_structure_task_refuses_hidden_checks():
    for check in harness.SPEC_CHECKS:
        if CHECKS_BY_NAME[check].hidden:
            assert check not in diagnose.DIAGNOSED
            with pytest.raises(KeyError, match="visible spec checks only"):
                harness.run_task(harness.STRUCTURE_PREFIX + check, {})
            assert diagnose.diagnose(check, {}) == ""
    assert set(diagnose.DIAGNOSED) == {
        "cnn_0", "cnn_1", "cnn_2", "resblock", "resblock_bottleneck", "resnet_0", "resnet_1",
    }  # fmt: skip


def _solution_structure(check: str) -> dict:
    return harness.run_task(harness.STRUCTURE_PREFIX + check, {})


def _as_outputs(described: dict) -> dict[str, bytes]:
    import io

    import numpy as np

    files = {}
    for key, value in described.items():
        if isinstance(value, str):
            files[f"{key}.txt"] = value.encode()
        else:
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            files[f"{key}.npy"] = buf.getvalue()
    return files


def test_the_solution_described_in_place_matches_its_reference():
    described = _solution_structure("resblock")
    hint = diagnose.diagnose("resblock", _as_outputs(described))
    assert hint.startswith("the layers, their order and their initial parameters match")


def test_unreadable_descriptions_give_no_hint():
    good = _as_outputs(_solution_structure("cnn_0"))
    broken = [
        {},
        {**good, "modules.txt": b"no tabs here"},
        {**good, "modules.txt": b"x\tCNN\t\t0"},  # the first module is not the root
        {**good, "params.txt": b"w\t3,x\t0"},
        {k: v for k, v in good.items() if k != "init.npy"},
        {**good, "init.npy": good["init.npy"][:40]},
        {
            **good,
            "modules.txt": "\n".join(  # nested too deep to compare
                ["\tCNN\t\t0"]
                + [f"{'.'.join(['a'] * (i + 1))}\tSequential\t\t{i + 1}" for i in range(40)]
            ).encode(),
        },
    ]
    for outputs in broken:
        assert diagnose.diagnose("cnn_0", outputs) == ""


def test_a_hostile_description_is_capped_and_escaped():
    """Names come from student code: a hint quotes them capped, and pages escape them."""
    from tools.grading.feedback import feedback_html

    described = _solution_structure("resblock")
    name = "<script>alert(1)</script>" + "x" * 500
    described["modules"] += f"\n{name}\tSequential\t\t90\n{name}.0\tConv2d\t3, 4\t91"
    hint = diagnose.diagnose("resblock", _as_outputs(described))
    assert hint.startswith("<script>alert(1)</script>xxx") and "is not in the reference" in hint
    assert len(hint) <= diagnose.HINT_CAP
    checks = [{"check": "resblock", "points": 0, "max_points": 10, "status": "failed",
               "message": "m", "output": "", "seconds": 0.0, "hint": hint}]  # fmt: skip
    page = feedback_html({"student_id": "s", "score": 0, "max_score": 100, "notes": [],
                          "checks": checks, "answers": {}}, {})  # fmt: skip
    assert "<script" not in page and "&lt;script&gt;alert(1)" in page


def test_parameters_placed_in_another_order_than_created():
    """Same shapes, each parameter holding another one's initial values (a permutation):
    layers created in one order and placed in another."""
    ref = diagnose.reference("resblock")
    stu = diagnose.build_structure(
        *(_solution_structure("resblock")[k] for k in ("modules", "params", "discarded", "init"))
    )
    # main_path[6] and main_path[10] are BatchNorm2d(4) and BatchNorm2d(6): swap two convs of
    # equal shape instead, main_path[4] (6 -> 4, 5x5) and main_path[12] (6 -> 4, 5x5)
    i = next(k for k, p in enumerate(stu.params) if p.name == "main_path.4.weight")
    j = next(k for k, p in enumerate(stu.params) if p.name == "main_path.12.weight")
    stu.init[[i, j]] = stu.init[[j, i]]
    for p in stu.params:
        p.created = -1  # the order of creation is not known: only the values tell
    hint = diagnose.diagnose_structures("resblock", ref, stu)
    assert "main_path.4.weight holds the initial values of the reference's main_path.12.weight" in (
        hint
    )


def test_lists_are_written_as_the_seed_writes_them():
    assert diagnose.fmt_list([32] * 4) == "[32]*4"
    assert diagnose.fmt_list([32, 64] * 3) == "[32, 64]*3"
    assert diagnose.fmt_list([8, 16, 16]) == "[8, 16, 16]"
    assert diagnose.path("feature_extractor.0.main_path.1") == "feature_extractor[0].main_path[1]"
