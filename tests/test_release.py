"""tools/release.py and the committed student release ``release/hw2/``: nothing leaks, the
stubs keep the solution's contract, the notebook is nbgrader's, the build is reproducible."""

import ast
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from cs236781.answers import ANSWER_STUB
from tools import release
from tools.checks import STUDENT_FILES, points_by_cell

REPO = release.ROOT
RELEASED = REPO / release.RELEASE_DIR
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
# Lines too generic to tell a leak from an ordinary line of the released files.
GENERIC = re.compile(r"^[\W_]*$|^(return \w+|\*\*\d\.\*\*|else:|try:|\)|\]|\}|pass)$")


def released_files() -> dict[str, bytes]:
    return release.released_files(RELEASED)


def released_lines() -> dict[str, set[str]]:
    """The stripped lines of every released text file (of a notebook: its cells' sources)."""
    lines = {}
    for rel, data in released_files().items():
        if rel.endswith(".pt") or rel.endswith(".png"):
            continue
        text = data.decode()
        if rel.endswith(".ipynb"):
            text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
        lines[rel] = {line.strip() for line in text.splitlines()}
    return lines


def solution_regions(text: str) -> list[list[str]]:
    """The lines between each pair of solution markers of a module."""
    regions, current = [], None
    for line in text.splitlines():
        if BEGIN in line:
            current = []
        elif END in line:
            regions.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return regions


def public_lines() -> set[str]:
    """The stripped lines of the solution modules outside their regions: released anyway."""
    public = set()
    for module in release.MODULES:
        inside = False
        for line in (REPO / module).read_text().splitlines():
            inside = (inside or BEGIN in line) and END not in line
            if not inside:
                public.add(line.strip())
    return public


def distinctive(lines: list[str]) -> list[str]:
    """The stripped lines of a region that would give it away anywhere else."""
    public = public_lines()
    return [
        s
        for s in (line.strip() for line in lines)
        if len(s) >= 12 and not GENERIC.match(s) and s not in public
    ]


def hidden_regions(source: str) -> list[str]:
    parts = re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", source, re.DOTALL)
    assert parts, "no hidden tests found"
    return parts


@pytest.fixture(scope="module")
def source_nb() -> nbformat.NotebookNode:
    return release.notebook_ipynb(REPO)


@pytest.fixture(scope="module")
def student_nb() -> nbformat.NotebookNode:
    return nbformat.read(RELEASED / f"{release.NOTEBOOK}.ipynb", as_version=4)


# --- nothing leaks ----------------------------------------------------------------------------


@pytest.mark.parametrize("module", STUDENT_FILES)
def test_no_line_of_any_solution_region_is_released(module):
    lines = [s for r in solution_regions((REPO / module).read_text()) for s in distinctive(r)]
    assert lines
    leaks = [
        (rel, line) for rel, found in released_lines().items() for line in lines if line in found
    ]
    assert not leaks, f"solution lines of {module} in release/: {leaks[:5]}"


def test_every_solution_module_has_regions_to_strip():
    for module in STUDENT_FILES:
        assert solution_regions((REPO / module).read_text()), module


def test_no_marker_and_no_hidden_test_is_released(source_nb):
    hidden_part = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.DOTALL)
    visible = {
        line.strip()
        for cell in source_nb.cells
        for line in hidden_part.sub("", cell.source).split("\n")
    }
    hidden = [
        line
        for cell in source_nb.cells
        if "BEGIN HIDDEN TESTS" in cell.source
        for part in hidden_regions(cell.source)
        for line in distinctive(part.splitlines())
        if line not in visible
    ]
    assert len(hidden) > 20
    lines = released_lines()
    for rel, data in released_files().items():
        text = data.decode("utf-8", errors="ignore")
        for marker in release.MARKERS:
            assert marker not in text, f"{marker!r} in release/{rel}"
        assert "hidden" not in Path(rel).parts, rel
        leaked = [line for line in hidden if line in lines.get(rel, ())]
        assert not leaked, f"hidden test lines in release/{rel}: {leaked[:3]}"


def test_the_release_is_exactly_the_allow_list():
    figures = [f"imgs/{name}" for name in ("cnn_filters.png", "resnet_block2.png")]
    expected = {
        f"{release.NOTEBOOK}.ipynb",
        "README.md",
        "requirements.txt",
        *release.MODULES,
        *release.HELPERS,
        *release.PUBLIC_ASSETS,
        *figures,
    }
    assert set(released_files()) == expected


def test_public_assets_are_released_byte_for_byte():
    for rel in release.PUBLIC_ASSETS:
        assert (RELEASED / rel).read_bytes() == (REPO / rel).read_bytes(), rel


def test_student_docs_name_the_exact_torch_versions():
    pins = release.pins(REPO)
    readme = (RELEASED / "README.md").read_text()
    requirements = (RELEASED / "requirements.txt").read_text().split()
    for name in ("torch", "torchvision"):
        assert f"{name} {pins[name]}" in readme
        assert f"{name}=={pins[name]}" in requirements


# --- the stubs keep the contract --------------------------------------------------------------


def definitions(tree: ast.Module) -> dict[str, ast.AST]:
    """Every class and function of a module by qualified name."""
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found[name] = child
                visit(child, name + ".")

    visit(tree, "")
    return found


def signature(node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):
        return "class(" + ", ".join(ast.unparse(b) for b in node.bases) + ")"
    returns = ast.unparse(node.returns) if node.returns else ""
    return f"({ast.unparse(node.args)}) -> {returns}"


def enclosing_function(defs: dict[str, ast.AST], lineno: int) -> str:
    """The innermost function whose body holds line ``lineno``."""
    best = None
    for name, node in defs.items():
        if isinstance(node, ast.FunctionDef) and node.lineno <= lineno <= node.end_lineno:
            if best is None or node.lineno > defs[best].lineno:
                best = name
    return best or "<module>"


@pytest.mark.parametrize("module", release.MODULES)
def test_stub_keeps_signatures_docstrings_and_everything_outside_the_regions(module):
    solution = (REPO / module).read_text()
    stub = (RELEASED / module).read_text()
    sol_tree, stub_tree = ast.parse(solution), ast.parse(stub)
    assert ast.get_docstring(stub_tree) == ast.get_docstring(sol_tree)
    sol_defs, stub_defs = definitions(sol_tree), definitions(stub_tree)
    assert list(stub_defs) == list(sol_defs)
    for name, node in sol_defs.items():
        assert signature(stub_defs[name]) == signature(node), f"{module}: {name}"
        assert ast.get_docstring(stub_defs[name]) == ast.get_docstring(node), f"{module}: {name}"

    # Outside the regions the text is the solution's, line for line (after the header).
    stub_lines = {"# YOUR CODE HERE", "raise NotImplementedError()", ANSWER_STUB}

    def outside(text):
        kept, inside = [], False
        for line in text.splitlines():
            if BEGIN in line:
                inside = True
            elif END in line:
                inside = False
            elif not inside and line.strip() not in stub_lines:
                kept.append(line)
        return kept

    header, body = stub.split("\n", 2)[:2], stub.split("\n", 2)[2]
    assert header[0].startswith(f"# generated by {release.COMMAND} from {module}")
    assert outside(body) == outside(solution)


@pytest.mark.parametrize("module", release.MODULES)
def test_stub_raises_not_implemented_exactly_where_the_code_regions_were(module):
    solution = (REPO / module).read_text()
    sol_defs = definitions(ast.parse(solution))
    expected = sorted(
        enclosing_function(sol_defs, i + 1)
        for i, line in enumerate(solution.splitlines())
        if BEGIN in line and line.lstrip().startswith("###")
    )
    stub = (RELEASED / module).read_text()
    stub_defs = definitions(ast.parse(stub))
    raises = sorted(
        enclosing_function(stub_defs, node.lineno)
        for node in ast.walk(ast.parse(stub))
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and getattr(node.exc.func, "id", "") == "NotImplementedError"
    )
    assert raises == [e for e in expected if e != "<module>"]
    assert stub.count(ANSWER_STUB) == expected.count("<module>")  # regions inside strings


def test_answer_stubs_keep_the_module_importable_and_unanswered():
    stub = (RELEASED / "hw2/answers.py").read_text()
    namespace: dict = {}
    exec(compile(stub, "answers.py", "exec"), namespace)
    from cs236781.answers import is_unanswered

    assert is_unanswered(namespace["part4_q1"]) and is_unanswered(namespace["part4_q2"])
    with pytest.raises(NotImplementedError):
        namespace["part4_optim_hp"]()


INSPECT = textwrap.dedent(
    """
    import importlib, inspect, json, sys
    out = {}
    for mod in sys.argv[1:]:
        m = importlib.import_module(mod)
        out[mod] = {"__doc__": m.__doc__}
        for name, obj in vars(m).items():
            if getattr(obj, "__module__", None) != mod:
                continue
            members = [(name, obj)]
            if inspect.isclass(obj):
                members += [(f"{name}.{k}", v) for k, v in vars(obj).items() if callable(v)]
            for qual, f in members:
                try:
                    sig = str(inspect.signature(f))
                except (TypeError, ValueError):
                    sig = None
                out[mod][qual] = [sig, inspect.getdoc(f)]
    print(json.dumps(out))
    """
)


def inspect_modules(root: Path) -> dict:
    modules = [
        m.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for m in release.MODULES
    ]
    run = subprocess.run(
        [sys.executable, "-B", "-c", INSPECT, *modules],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_released_modules_import_with_the_solutions_signatures_and_docstrings(tmp_path):
    copy = tmp_path / "hw2"
    shutil.copytree(RELEASED, copy)
    assert inspect_modules(copy) == inspect_modules(REPO)


STUB_CALLS = textwrap.dedent(
    """
    import torch
    from hw2 import answers, classifier, cnn, training
    from tools_params import *
    calls = {
        "CNN": lambda: cnn.CNN(**CNN_TEST_PARAMS[0]),
        "ResidualBlock": lambda: cnn.ResidualBlock(**RESBLOCK_PARAMS),
        "ResidualBottleneckBlock": lambda: cnn.ResidualBottleneckBlock(**RESBLOCK_BN_PARAMS),
        "ResNet": lambda: cnn.ResNet(**RESNET_TEST_PARAMS[0]),
        "ArgMaxClassifier._classify": lambda: classifier.ArgMaxClassifier(
            torch.nn.Linear(2, 3))._classify(torch.ones(1, 3)),
        "part4_optim_hp": answers.part4_optim_hp,
        "ClassifierTrainer.train_batch": lambda: training.ClassifierTrainer(
            classifier.ArgMaxClassifier(torch.nn.Linear(2, 3)), None, None
        ).train_batch((torch.ones(1, 2), torch.zeros(1, dtype=torch.long))),
    }
    for name, call in calls.items():
        try:
            call()
        except NotImplementedError:
            continue
        raise SystemExit(f"{name} did not raise NotImplementedError")
    print("ok")
    """
)


def test_released_stubs_raise_not_implemented_when_called(tmp_path):
    copy = tmp_path / "hw2"
    shutil.copytree(RELEASED, copy)
    shutil.copy(REPO / "tools" / "asset_specs.py", copy / "tools_params.py")
    run = subprocess.run(
        [sys.executable, "-B", "-c", STUB_CALLS],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr + run.stdout


def test_strip_module_gives_string_regions_the_answer_stub_and_code_regions_the_raise():
    text = textwrap.dedent(
        '''
        def f(x):
            """Doc."""
            ### BEGIN SOLUTION
            y = x + 1
            ### END SOLUTION
            return y


        q = r"""
        ### BEGIN SOLUTION
        The answer is 42.
        ### END SOLUTION
        """
        '''
    )
    stub = release.strip_module(text, "hw2/example.py")
    assert "x + 1" not in stub and "42" not in stub
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()\n    return y" in stub
    assert f'q = r"""\n{ANSWER_STUB}\n"""' in stub
    assert stub.startswith("# generated by python tools/release.py from hw2/example.py")


def test_strip_module_refuses_a_region_at_module_level():
    with pytest.raises(release.ReleaseError, match="hw2/bad.py: a solution region at module"):
        release.strip_module(f"{BEGIN}\nX = 1\n{END}\n", "hw2/bad.py")


def test_strip_module_refuses_unpaired_markers():
    with pytest.raises(RuntimeError, match="no end solution"):
        release.strip_module(f"def f():\n    {BEGIN}\n    return 1\n", "hw2/bad.py")


# --- the notebook -----------------------------------------------------------------------------


def graded(nb) -> dict[str, dict]:
    return {
        c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }


def test_source_notebook_points_agree_with_the_checks_table(source_nb):
    assert {k: v["points"] for k, v in graded(source_nb).items()} == points_by_cell()


def test_released_notebook_is_valid_with_locked_checksummed_test_cells(student_nb):
    nbformat.validate(student_nb)
    cells = graded(student_nb)
    assert {k: v["points"] for k, v in cells.items()} == points_by_cell()
    for meta in cells.values():
        assert meta["locked"] and not meta["solution"] and meta.get("checksum")
    for cell in student_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") or meta.get("grade_id", "").startswith("answer_"):
            assert (
                cell.metadata.get("editable") is False and cell.metadata.get("deletable") is False
            )
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    answers = [
        c
        for c in student_nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("answer_")
    ]
    assert [c.metadata.nbgrader.grade_id for c in answers] == ["answer_q1", "answer_q2"]
    assert "jupytext" not in student_nb.metadata
    assert student_nb.metadata["hw2"]["generated_by"] == release.COMMAND


SEED_CELLS = {
    3: "test_cnn",
    4: "test_classifier",
    6: "test_overfit",
    7: "test_resblock",
    8: "test_resblock_bottleneck",
    9: "test_resnet",
}


def _normalized(text: str) -> list[str]:
    text = text.replace("load_expected(", "torch.load(")
    return [line.rstrip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("number,grade_id", SEED_CELLS.items())
def test_each_seed_test_cell_is_there_with_its_exact_code(seed_cells, student_nb, number, grade_id):
    (cell,) = [
        c for c in student_nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    ]
    ours = _normalized(cell.source)
    seed = _normalized(seed_cells[number])
    assert seed[: len(ours)] == ours
    rest = "\n".join(seed[len(ours) :])
    assert "test.assert" not in rest and "assert " not in rest


def test_hidden_tests_run_the_hidden_specs_literally(source_nb, seed_call):
    from tools.asset_specs import HIDDEN_SPECS

    hidden = [
        part
        for cell in source_nb.cells
        if "HIDDEN" in cell.source
        for part in hidden_regions(cell.source)
    ]
    for spec in HIDDEN_SPECS:
        (block,) = [part for part in hidden if f'"tests/assets/hidden/{spec.file}"' in part]
        args, kwargs = seed_call(block, spec.kind)
        assert not args and kwargs == spec.params, spec.file
        import torch

        shape, _ = seed_call(block, "torch.randn", torch=torch, seed=42)
        assert shape == spec.in_shape, spec.file


def test_notebook_shows_the_figures_it_ships(source_nb):
    assert release.figures_of(source_nb) == ["imgs/cnn_filters.png", "imgs/resnet_block2.png"]


# --- reproducibility --------------------------------------------------------------------------


def test_check_passes_on_the_committed_release():
    run = subprocess.run(
        [sys.executable, "tools/release.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith("release: release/hw2/ matches")
    assert len(run.stdout.strip().splitlines()) == 1


def test_differences_lists_each_missing_changed_and_extra_file():
    expected = {"a": b"1", "b": b"2", "c": b"3"}
    actual = {"a": b"1", "b": b"x", "d": b"4"}
    assert release.differences(expected, actual) == [
        "missing: c",
        "differs: b (bytes differ)",
        "not produced by the source: d",
    ]


def test_build_is_byte_identical_twice(tmp_path):
    first = release.build(REPO, tmp_path / "one")
    second = release.build(REPO, tmp_path / "two")
    assert first == second
    staged = tmp_path / "one" / release.NB_SOURCE
    assert sorted(p.name for p in (staged / release.HIDDEN_ASSETS).glob("*.pt"))
    nbgrader_release = tmp_path / "one" / release.NB_RELEASE
    assert not any("hidden" in p.parts for p in nbgrader_release.rglob("*"))


def test_a_missing_source_file_is_a_one_line_error(tmp_path):
    fake = tmp_path / "repo"
    shutil.copytree(REPO / "source", fake / "source")
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from tools import release; "
         f"release.ROOT = __import__('pathlib').Path({str(fake)!r}); sys.exit(release.main([]))"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0
    assert run.stderr.startswith("release: hw2/__init__.py: missing")
    assert not (fake / "release").exists()


def test_figures_are_reproducible():
    """By decoded pixels (PNG bytes depend on matplotlib/freetype); released byte for byte."""
    from tools import figures, generated

    for path, data in figures.build_all().items():
        same, note = generated.same_content(path.name, data, path.read_bytes())
        assert same, f"{path.name}: {note}; run python tools/figures.py"
        assert (RELEASED / "imgs" / path.name).read_bytes() == path.read_bytes()


def test_a_different_figure_fails_the_pixel_comparison():
    from tools import figures, generated

    a, b = (figures.render(draw) for draw in figures.FIGURES.values())
    assert not generated.same_content("x.png", a, b)[0]
    assert not generated.same_content("x.png", b"not a png", b)[0]


def test_feedback_step_hides_tracebacks_that_show_hidden_tests():
    from tools.nbgrader_feedback import NOTE, ClearHiddenTestTracebacks

    source = "visible_check()\n### BEGIN HIDDEN TESTS\nsecret_check(7)\n### END HIDDEN TESTS"
    cell = nbformat.v4.new_code_cell(source)
    hidden_error = nbformat.v4.new_output(
        "error", ename="AssertionError", evalue="nope",
        traceback=["\x1b[0;31mAssertionError\x1b[0m", "----> 3 \x1b[0msecret_check(7)"],
    )  # fmt: skip
    visible_error = nbformat.v4.new_output(
        "error", ename="NotImplementedError", evalue="", traceback=["----> 1 visible_check()"]
    )
    cell.outputs = [hidden_error, visible_error]
    out, _ = ClearHiddenTestTracebacks().preprocess_cell(cell, {}, 0)
    assert out.outputs[0].traceback == ["AssertionError: nope", NOTE]
    assert out.outputs[1].traceback == ["----> 1 visible_check()"]
