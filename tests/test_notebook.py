"""Executing the notebooks: the source passes every assert with the solution; the student
release fails only in the cells that need student code. Offline data, one thread."""

import os
import shutil
from contextlib import contextmanager

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from tools import release
from tools.checks import points_by_cell

REPO = release.ROOT
pytestmark = pytest.mark.slow

ENV = {"HW2_OFFLINE_DATA": "1", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@contextmanager
def environment(values: dict[str, str]):
    """Set environment variables (inherited by the kernel) for the duration of a block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(nb: nbformat.NotebookNode, cwd) -> nbformat.NotebookNode:
    with environment(ENV):
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(cwd)}},
        )
        client.execute()
    return nb


def errors(nb: nbformat.NotebookNode) -> dict[str, list]:
    """The error outputs of each code cell that has any, by grade_id (or cell id)."""
    found = {}
    for cell in nb.cells:
        errs = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if errs:
            found[cell.metadata.get("nbgrader", {}).get("grade_id", cell.get("id"))] = errs
    return found


@pytest.fixture(scope="session")
def executed_source() -> nbformat.NotebookNode:
    """The source notebook, hidden tests included, run with the solution from the repo root."""
    nb = jupytext.read(REPO / release.SOURCE_NOTEBOOK)
    return execute(nb, REPO)


@pytest.fixture(scope="session")
def executed_release(tmp_path_factory) -> nbformat.NotebookNode:
    """The released notebook run in a copy of release/hw2/, with the untouched stubs."""
    copy = tmp_path_factory.mktemp("release") / "hw2"
    shutil.copytree(REPO / release.RELEASE_DIR, copy)
    nb = nbformat.read(copy / f"{release.NOTEBOOK}.ipynb", as_version=4)
    return execute(nb, copy)


def test_source_notebook_passes_every_assert(executed_source):
    found = errors(executed_source)
    assert not found, {k: [f"{e.ename}: {e.evalue}" for e in v] for k, v in found.items()}


def test_source_notebook_ran_the_hidden_tests(executed_source):
    hidden_cells = [c for c in executed_source.cells if "BEGIN HIDDEN TESTS" in c.source]
    assert len(hidden_cells) == 5
    assert all(c.execution_count for c in hidden_cells)


def test_source_notebook_shows_the_answers_and_offline_notice(executed_source):
    shown = {
        c.metadata["nbgrader"]["grade_id"]: c.outputs
        for c in executed_source.cells
        if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("answer_")
    }
    assert set(shown) == {"answer_q1", "answer_q2"}
    for outputs in shown.values():
        assert any("text/markdown" in o.get("data", {}) for o in outputs)
    text = "".join(o.get("text", "") for c in executed_source.cells for o in c.get("outputs", []))
    assert "OFFLINE DATA" in text


def test_released_notebook_fails_only_where_student_code_is_needed(executed_release):
    found = errors(executed_release)
    assert set(found) == set(points_by_cell())
    for grade_id, errs in found.items():
        assert [e.ename for e in errs] == ["NotImplementedError"], grade_id


def test_released_notebook_shows_unanswered_questions(executed_release):
    from cs236781.answers import ANSWER_STUB

    answers = [
        c for c in executed_release.cells if "display_answer(hw2.answers.part4_q" in c.source
    ]
    assert len(answers) == 2
    for cell in answers:
        (out,) = cell.outputs
        assert ANSWER_STUB in out["data"]["text/markdown"]
