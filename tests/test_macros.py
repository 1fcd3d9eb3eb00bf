"""tools/grading/macros.py: the notebook's LaTeX macros, defined once in its first cell."""

import json

from tools.asset_specs import ROOT
from tools.grading.macros import SOURCE_NOTEBOOK, expand_macros, notebook_macros, parse_macros
from tools.release import RELEASE_DIR

# The macros the seed's first cell defines (COURSE_TEMPLATE.md, "Answers").
SEED_MACROS = "mat mattr matinv vec vectr rvar rvec diag set norm pderiv bb".split()


def test_the_source_notebooks_first_cell_defines_the_seeds_macros():
    macros = notebook_macros(SOURCE_NOTEBOOK)
    assert sorted(macros) == sorted(SEED_MACROS)
    assert macros["pderiv"].nargs == 2 and macros["diag"].nargs == 0


def test_the_released_notebook_starts_with_the_same_macros():
    nb = json.loads((ROOT / RELEASE_DIR / "Part4_CNN.ipynb").read_text())
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert parse_macros(first) == notebook_macros(SOURCE_NOTEBOOK)


def test_expansion_takes_braced_and_single_token_arguments():
    macros = parse_macros(
        r"\newcommand{\mat}[1]{\boldsymbol {#1}}" r"\newcommand{\pd}[2]{\frac{#1}{#2}}"
    )
    assert expand_macros(r"\mat{W} \mat x \mat\alpha", macros) == (
        r"{\boldsymbol {W}} {\boldsymbol {x}} {\boldsymbol {\alpha}}"
    )
    assert expand_macros(r"\pd{a}{\mat{b}}", macros) == r"{\frac{a}{{\boldsymbol {b}}}}"


def test_other_commands_and_incomplete_calls_are_left_alone():
    macros = parse_macros(r"\newcommand{\pd}[2]{\frac{#1}{#2}}")
    assert expand_macros(r"\frac{1}{2} \pdx \pd{a}", macros) == r"\frac{1}{2} \pdx \pd{a}"
