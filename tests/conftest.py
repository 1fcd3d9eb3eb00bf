"""Shared fixtures of the kit's test suite.

The seed notebook (``shared/seed/part4_cnn_seed.md``, beside the repository) is the contract:
fixtures here expose its cells and the module structures it printed, so that tests compare
against the seed's own text rather than against copies of it.
"""

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `pytest tests` without `python -m` or an install

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` already runs N processes: more threads each only oversubscribe the cores
    # (tiny batches then run several times slower).
    torch.set_num_threads(1)

SEED_NOTEBOOK = REPO.parent / "shared" / "seed" / "part4_cnn_seed.md"

# A cell of the seed starts with "In [N]:" on a line of its own; its code and printed
# output follow, up to the next cell.
_CELL = re.compile(r"^In \[(\d+)\]:$", re.MULTILINE)
# A printed module starts at column 0 with its class name and "(", and ends with ")" at
# column 0; a printout the seed cut off ends at the first blank line instead.
_MODULE_START = re.compile(r"^([A-Z]\w*)\($", re.MULTILINE)


@dataclass(frozen=True)
class SeedPrint:
    """A module structure printed by a seed cell: the text shown, and whether it is whole."""

    cell: int
    name: str
    text: str
    complete: bool


@pytest.fixture(scope="session")
def seed_text() -> str:
    """The seed notebook's text; tests that need it are skipped when it is absent."""
    if not SEED_NOTEBOOK.is_file():
        pytest.skip(f"seed notebook not found at {SEED_NOTEBOOK} (shared/ beside the repo)")
    return SEED_NOTEBOOK.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def seed_cells(seed_text: str) -> dict[int, str]:
    """Each seed cell's code and printed output, by its ``In [N]`` number."""
    parts = _CELL.split(seed_text)
    return {int(n): body for n, body in zip(parts[1::2], parts[2::2], strict=True)}


@pytest.fixture(scope="session")
def seed_printed_modules(seed_cells: dict[int, str]) -> list[SeedPrint]:
    """Every module structure the seed printed, in order."""
    found = []
    for cell, body in seed_cells.items():
        for m in _MODULE_START.finditer(body):
            lines = []
            complete = False
            for line in body[m.start() :].split("\n"):
                if not line.strip():
                    break
                lines.append(line)
                if line == ")":
                    complete = True
                    break
            found.append(SeedPrint(cell, m.group(1), "\n".join(lines), complete))
    return found


def _call_arguments(text: str, callee: str, names: dict) -> tuple[tuple, dict]:
    start = text.index(f"{callee}(") + len(callee) + 1
    depth, end = 1, start
    while depth:
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        end += 1
    namespace = {"__builtins__": {}, "dict": dict, **names}
    return eval(f"(lambda *a, **k: (a, k))({text[start : end - 1]})", namespace)


@pytest.fixture(scope="session")
def seed_call():
    """``seed_call(text, callee, **names)``: the arguments of the first ``callee(...)`` in a
    seed cell's code, evaluated with ``names`` bound (e.g. ``in_size``), as ``(args, kwargs)``.
    """
    return lambda text, callee, **names: _call_arguments(text, callee, names)


@pytest.fixture
def torch_state():
    """Restore torch's global RNG state and thread count after the test."""
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    yield
    torch.set_rng_state(state)
    torch.set_num_threads(threads)
