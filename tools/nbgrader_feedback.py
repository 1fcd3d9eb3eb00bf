"""An nbgrader preprocessor for feedback: errors raised in a hidden test lose their traceback.

``ClearHiddenTests`` removes the hidden test code from a feedback notebook's cells, but an
error raised while a hidden test ran still shows that code in its traceback (IPython prints
the lines around the failing one). This step, placed before ``ClearHiddenTests`` in
``GenerateFeedback.preprocessors`` (see ``nbgrader_config.py``), replaces the traceback of
every such error with its one-line summary.
"""

import re

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOTE = "(raised while a hidden test ran; its code is not shown)"


def hidden_lines(source: str) -> list[str]:
    """The non-blank lines between the hidden test markers of a cell, stripped."""
    lines, inside = [], False
    for line in source.splitlines():
        if BEGIN in line:
            inside = True
        elif END in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


class ClearHiddenTestTracebacks(NbGraderPreprocessor):
    """Shorten error outputs whose traceback shows any line of the cell's hidden tests."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict, cell_index: int):
        hidden = hidden_lines(cell.source) if cell.cell_type == "code" else []
        if not hidden:
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            text = _ANSI.sub("", "\n".join(output.get("traceback", [])))
            if any(line in text for line in hidden):
                output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}", NOTE]
        return cell, resources
