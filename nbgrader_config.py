"""nbgrader configuration of the hw2 course directory, which is this repository's root.

Run nbgrader only from here (elsewhere it creates a stray ``gradebook.db``), and build the
assignment with ``python tools/release.py``, never with ``nbgrader generate_assignment``
alone: the tool converts the jupytext source to ``.ipynb``, stages nbgrader's source folder
(``nbgrader_build/source/hw2``: the notebook, the figures, the trusted helper modules and
every reference tensor, hidden ones included, which ``nbgrader autograde`` copies into each
``autograded/`` folder) and assembles the student release ``release/hw2/`` from an
allow-list. nbgrader's own release output goes to ``nbgrader_build/release``, which is not
what students get.
"""

import sys
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tools.checks import STUDENT_FILES  # noqa: E402
from tools.nbgrader_feedback import ClearHiddenTestTracebacks  # noqa: E402

c = get_config()  # noqa: F821 (defined by traitlets when it loads this file)

# Build leftovers and the jupytext source are never copied by nbgrader.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints", "__pycache__", "*.pyc", "feedback", ".DS_Store", "*~",
    "Part4_CNN.py", "*.egg-info", ".pytest_cache",
]  # fmt: skip
c.CourseDirectory.source_directory = "nbgrader_build/source"
c.CourseDirectory.release_directory = "nbgrader_build/release"

# The student modules of a submission are graded as submitted, never replaced by the
# staged copies (DESIGN.md, contract 5).
c.Autograde.exclude_overwriting = {"hw2": list(STUDENT_FILES)}

# Feedback shows neither the hidden tests nor the tracebacks of their errors; the
# tracebacks must be shortened while the hidden code is still there to recognize them.
c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTestTracebacks,
    ClearHiddenTests,
    CSSHTMLHeaderPreprocessor,
]

# The overfit cell trains for a few seconds on a laptop; a loaded grading machine needs more.
c.Execute.timeout = 300
