"""Build the student release ``release/hw2/`` from the solution modules and the source notebook.

Usage:
    python tools/release.py            # stage nbgrader's source, generate, write release/hw2/
    python tools/release.py --check    # build in a temp dir; exit 1 listing what release/ lacks

Steps, in order (each needs the one before):
1. strip the solution regions from the ``hw2/`` modules with nbgrader's ``ClearSolutions``
   (each module becomes a small notebook; regions inside string literals get the answer stub);
2. convert ``source/hw2/Part4_CNN.py`` (jupytext) to ``.ipynb`` with fixed cell ids;
3. stage nbgrader's source folder ``nbgrader_build/source/hw2``: the notebook, the figures it
   shows, the stubs, ``cs236781/`` and every reference tensor, hidden ones included, because
   ``nbgrader autograde`` copies this folder into each ``autograded/`` folder;
4. run nbgrader's ``GenerateAssignment`` on it, ignoring ``hidden/`` (so no hidden tensor
   reaches even nbgrader's own release folder); it locks and checksums the test cells and
   removes the hidden tests;
5. assemble ``release/hw2/`` from an allow-list of nbgrader's output, add the student README
   and requirements, and refuse to write anything that still holds a marker.
"""

import argparse
import io
import os
import re
import shutil
import sys
import tempfile
import tokenize
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jupytext  # noqa: E402
import nbformat  # noqa: E402
from nbgrader.preprocessors import ClearSolutions  # noqa: E402

from cs236781.answers import ANSWER_STUB  # noqa: E402
from tools import generated  # noqa: E402
from tools.asset_specs import PUBLIC_SPECS  # noqa: E402
from tools.checks import STUDENT_FILES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python tools/release.py"
ASSIGNMENT = "hw2"
NOTEBOOK = "Part4_CNN"
SOURCE_NOTEBOOK = Path("source") / ASSIGNMENT / f"{NOTEBOOK}.py"
RELEASE_DIR = Path("release") / ASSIGNMENT
BUILD_DIR = Path("nbgrader_build")  # must match nbgrader_config.py
NB_SOURCE = BUILD_DIR / "source" / ASSIGNMENT
NB_RELEASE = BUILD_DIR / "release" / ASSIGNMENT

# The allow-list. Modules are stubs made from the solution; helpers and public tensors are
# copied as they are; figures are the ones the notebook shows (found in its Markdown).
MODULES = ("hw2/__init__.py", "hw2/mlp.py", *STUDENT_FILES)
HELPERS = tuple(
    f"cs236781/{name}.py"
    for name in ("__init__", "answers", "assets", "data", "plot", "submit", "train_results")
)
PUBLIC_ASSETS = tuple(
    f"tests/assets/{name}" for name in (*(s.file for s in PUBLIC_SPECS), "manifest.json")
)
HIDDEN_ASSETS = "tests/assets/hidden"  # staged for autograde only
# Nothing that matches these may reach release/: nbgrader's and our markers.
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
CACHES = ("__pycache__", ".ipynb_checkpoints")


class ReleaseError(Exception):
    """A problem the staff must fix; the message names the file and what to do."""


# --- step 1: modules --------------------------------------------------------------------------


def module_as_notebook(text: str) -> nbformat.NotebookNode:
    """``text`` split into cells: each string literal holding a solution region becomes a
    Markdown cell (so ``ClearSolutions`` writes its text stub there), the rest code cells."""
    lines = text.split("\n")
    in_string = [False] * len(lines)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING and "BEGIN SOLUTION" in tok.string:
            for row in range(tok.start[0] - 1, tok.end[0]):
                in_string[row] = True
    cells, start = [], 0
    for i in range(1, len(lines) + 1):
        if i == len(lines) or in_string[i] != in_string[start]:
            source = "\n".join(lines[start:i])
            make = nbformat.v4.new_markdown_cell if in_string[start] else nbformat.v4.new_code_cell
            cells.append(make(source, id=f"part-{len(cells)}"))
            start = i
    return nbformat.v4.new_notebook(cells=cells, metadata={"language_info": {"name": "python"}})


def strip_module(text: str, name: str) -> str:
    """The student version of a solution module: each region replaced by nbgrader's stub."""
    nb = module_as_notebook(text)
    for cell in nb.cells:
        if cell.cell_type == "code" and any(
            line.startswith("###") and "BEGIN SOLUTION" in line for line in cell.source.split("\n")
        ):
            raise ReleaseError(
                f"{name}: a solution region at module level would break the import; "
                f"move it into a function body (DESIGN.md, contract 1)"
            )
    clear = ClearSolutions(text_stub=ANSWER_STUB, enforce_metadata=False)
    nb, _ = clear.preprocess(nb, {})
    stub = "\n".join(cell.source for cell in nb.cells)
    try:
        compile(stub, name, "exec")
    except SyntaxError as e:
        raise ReleaseError(
            f"{name}: the stripped module does not parse (line {e.lineno}): check that its "
            f"solution markers pair up and sit inside a function body or a string"
        ) from e
    header = (
        f"# generated by {COMMAND} from {name} (solution regions replaced by stubs);\n"
        f"# course staff: do not edit, edit {name} and rerun the command\n"
    )
    return header + stub


# --- steps 2-3: notebook and stage ------------------------------------------------------------


def notebook_ipynb(root: Path) -> nbformat.NotebookNode:
    """The source notebook as ``.ipynb``, with fixed cell ids and no jupytext metadata."""
    path = root / SOURCE_NOTEBOOK
    if not path.is_file():
        raise ReleaseError(f"{SOURCE_NOTEBOOK}: missing; it is the notebook's only source")
    nb = jupytext.read(path)
    nb.metadata.pop("jupytext", None)
    nb.metadata["hw2"] = {"generated_by": COMMAND, "source": str(SOURCE_NOTEBOOK)}
    for i, cell in enumerate(nb.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cell.id = grade_id or f"cell-{i:02d}"
    nbformat.validate(nb)
    return nb


def figures_of(nb: nbformat.NotebookNode) -> list[str]:
    """The image files the notebook's Markdown shows (``<img src="imgs/...">``)."""
    names = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for part in cell.source.split('src="')[1:]:
                names.append(part.split('"', 1)[0])
    return names


def read(root: Path, rel: str) -> bytes:
    path = root / rel
    if not path.is_file():
        raise ReleaseError(f"{rel}: missing; restore it (assets: python tools/regen_assets.py)")
    return path.read_bytes()


def stage(root: Path, course: Path) -> dict[str, bytes]:
    """Write nbgrader's source folder under ``course`` and return the files students get."""
    nb = notebook_ipynb(root)
    files = {f"{NOTEBOOK}.ipynb": nbformat.writes(nb).encode() + b"\n"}
    for rel in figures_of(nb):
        files[rel] = read(root / SOURCE_NOTEBOOK.parent, rel)
    for rel in MODULES:
        files[rel] = strip_module(read(root, rel).decode(), rel).encode()
    for rel in (*HELPERS, *PUBLIC_ASSETS):
        files[rel] = read(root, rel)
    hidden = sorted((root / HIDDEN_ASSETS).glob("*"))
    if not hidden:
        raise ReleaseError(f"{HIDDEN_ASSETS}: no hidden tensors; run python tools/regen_assets.py")

    staged = course / NB_SOURCE
    _clear(staged)
    for rel, data in files.items():
        _write(staged / rel, data)
    for path in hidden:
        _write(staged / HIDDEN_ASSETS / path.name, path.read_bytes())
    return files


def _clear(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- step 4: nbgrader -------------------------------------------------------------------------


def nbgrader_config(root: Path, course: Path):
    """The course's ``nbgrader_config.py``, pointed at ``course``."""
    from traitlets.config.loader import PyFileConfigLoader

    if not (root / "nbgrader_config.py").is_file():
        raise ReleaseError("nbgrader_config.py: missing at the repository root; restore it")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    cfg.CourseDirectory.root = str(course)
    return cfg


def generate_assignment(root: Path, course: Path) -> None:
    """``nbgrader generate_assignment hw2 --force`` in ``course``, in-process, without hidden/."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    cfg = nbgrader_config(root, course)
    cfg.CourseDirectory.ignore = [*cfg.CourseDirectory.ignore, Path(HIDDEN_ASSETS).name]
    # The gradebook runs nbgrader's `alembic` console script: find it beside this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
    result = api.generate_assignment(ASSIGNMENT, force=True)
    if not result["success"]:
        text = (result.get("log") or "") + "\n" + (result.get("error") or "")
        causes = [
            line.strip()
            for line in text.splitlines()
            if re.match(r"\s*[\w.]+(Error|Exception): ", line) and "NbGraderException" not in line
        ]
        raise ReleaseError(
            f"{SOURCE_NOTEBOOK}: nbgrader generate_assignment failed "
            f"({causes[-1] if causes else 'see nbgrader log'}); check the cells' nbgrader metadata"
        )


# --- step 5: release --------------------------------------------------------------------------


def student_notebook(course: Path) -> bytes:
    """nbgrader's student notebook, validated and written in nbformat's canonical form."""
    path = course / NB_RELEASE / f"{NOTEBOOK}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nbformat.writes(nb).encode() + b"\n"


def pins(root: Path) -> dict[str, str]:
    """The exact version pins of pyproject.toml's dependencies, by package name."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return dict(req.split("==", 1) for req in project["dependencies"] if "==" in req)


def student_docs(root: Path) -> dict[str, bytes]:
    """The release's README.md and requirements.txt."""
    v = pins(root)
    # The student environment is pyproject.toml's [project] dependencies, all of them.
    requirements = "".join(f"{n}=={version}\n" for n, version in v.items())
    readme = f"""# hw2, Part 4: convolutional and residual networks

<!-- generated by {COMMAND}; course staff: edit tools/release.py, not this file -->

Open `{NOTEBOOK}.ipynb` with Jupyter from this folder and follow it. Your code goes in the
`hw2/` modules, wherever it says `# YOUR CODE HERE` (replace the `raise NotImplementedError()`
under it); your written answers go in the strings of `hw2/answers.py`.

## Versions

The reference outputs in `tests/assets/` were computed with **torch {v["torch"]}** and
**torchvision {v["torchvision"]}**. Dropout draws different random numbers in other torch
versions, so install exactly these (`pip install -r requirements.txt`) to compare exactly;
with another version the notebook warns once.

## Data

The notebook downloads CIFAR-10 with torchvision to `~/.pytorch-datasets` the first time.
Without network access, `HW2_OFFLINE_DATA=1` gives a synthetic stand-in with the same shapes
(announced when used; it says nothing about results on the real data).

## Files

- `{NOTEBOOK}.ipynb`: the notebook; its test cells are locked and graded.
- `hw2/`: the modules you complete (`cnn.py`, `classifier.py`, `training.py`, `answers.py`).
- `cs236781/`: helpers (plots, data, answers display); do not change them.
- `tests/assets/`: reference outputs of the test cells.
- `imgs/`: the notebook's figures.

To submit, run `python -m cs236781.submit --id STUDENT_ID` here and upload the zip.
"""
    return {"README.md": readme.encode(), "requirements.txt": requirements.encode()}


def check_no_leak(files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        if "hidden" in Path(rel).parts:
            raise ReleaseError(f"{rel}: a hidden file is about to be released; fix the allow-list")
        text = data.decode("utf-8", errors="ignore")
        for marker in MARKERS:
            if marker in text:
                raise ReleaseError(
                    f"{rel}: still holds '{marker}' after stripping; check its markers pair up"
                )


def build(root: Path, course: Path) -> dict[str, bytes]:
    """Every file of ``release/hw2/``, by path relative to it; ``course`` is nbgrader's root."""
    files = stage(root, course)
    generate_assignment(root, course)
    files[f"{NOTEBOOK}.ipynb"] = student_notebook(course)
    files.update(student_docs(root))
    check_no_leak(files)
    return dict(sorted(files.items()))


def released_files(directory: Path) -> dict[str, bytes]:
    """The files under ``directory``, caches left out."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not any(part in CACHES for part in p.parts)
    }


def differences(expected: dict[str, bytes], actual: dict[str, bytes]) -> list[str]:
    """What ``actual`` lacks, holds in excess, or holds differently from ``expected``."""
    problems = [f"missing: {rel}" for rel in expected if rel not in actual]
    for rel in expected:
        if rel in actual:
            same, note = generated.same_content(rel, expected[rel], actual[rel])
            if not same:
                problems.append(f"differs: {rel} ({note})")
    problems += [f"not produced by the source: {rel}" for rel in actual if rel not in expected]
    return problems


def write_tree(directory: Path, files: dict[str, bytes]) -> None:
    """Make ``directory`` hold exactly ``files``: rewrite what differs, delete the rest
    (caches included), leave identical files untouched."""
    for rel, data in files.items():
        path = directory / rel
        if not path.is_file() or not generated.same_content(rel, data, path.read_bytes())[0]:
            _write(path, data)
    for path in sorted(directory.rglob("*"), reverse=True):
        rel = str(path.relative_to(directory))
        if path.is_file() and rel not in files:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify release/, write nothing")
    args = parser.parse_args(argv)
    release = ROOT / RELEASE_DIR
    try:
        if args.check:
            with tempfile.TemporaryDirectory(prefix="hw2-release-") as tmp:
                files = build(ROOT, Path(tmp))
            problems = differences(files, released_files(release))
            if problems:
                print(f"release: {RELEASE_DIR}/ is out of date with its sources:", file=sys.stderr)
                for p in problems:
                    print(f"  {p}", file=sys.stderr)
                print(f"run `{COMMAND}` and commit {RELEASE_DIR}/", file=sys.stderr)
                return 1
            print(f"release: {RELEASE_DIR}/ matches its sources ({len(files)} files)")
            return 0
        files = build(ROOT, ROOT)
        write_tree(release, files)
    except ReleaseError as e:
        print(f"release: {e}", file=sys.stderr)
        return 1
    print(f"release: wrote {len(files)} files to {RELEASE_DIR}/ (nbgrader source: {NB_SOURCE}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
