"""Show a written answer: rendered Markdown with math in Jupyter, readable text elsewhere."""

import re

# nbgrader's region markers: the instructor's copy of answers.py keeps them inside the strings.
_MARKER = re.compile(r"^\s*#{3}\s*(BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$", re.MULTILINE)


def clean_answer(text: str) -> str:
    """``text`` without nbgrader markers and surrounding blank lines."""
    if not isinstance(text, str):
        raise TypeError(f"an answer must be a str of Markdown, got {type(text).__name__}")
    return _MARKER.sub("", text).strip()


# What an unanswered question holds in the student release (tools/release.py writes it in
# place of each solution region of hw2/answers.py).
ANSWER_STUB = "**Your answer:** (write it here, in Markdown; math between $...$ or $$...$$)"


# What the course's own template puts in an unanswered question (COURSE_TEMPLATE.md): the
# "**Your answer:**" heading, an invitation to write Markdown and LaTeX, a sample python code
# block and a sample equation. Matched with all whitespace removed, so re-indented or
# re-wrapped copies of it count as unanswered too.
TEMPLATE_PLACEHOLDER = "\n".join(
    [
        "**Your answer:**",
        "Write your answer using **markdown** and $\\LaTeX$:",
        "```python",
        "# A code block",
        "a = 2",
        "```",
        "An equation: $e^{i\\pi} -1 = 0$",
    ]
)
_ANSWER_HEADING = "**Your answer:**"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def is_unanswered(text: str) -> bool:
    """Whether an answer string is empty or holds nothing but a placeholder: the release's
    stub, the course template's placeholder, or a bare "**Your answer:**" heading."""
    rest = _squash(clean_answer(text))
    for placeholder in (ANSWER_STUB, TEMPLATE_PLACEHOLDER, _ANSWER_HEADING):
        rest = rest.replace(_squash(placeholder), "")
    return rest == ""


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def display_answer(text: str) -> None:
    """Display an answer string written in Markdown with ``$...$`` / ``$$...$$`` math.

    In a Jupyter kernel the Markdown is rendered (math included); elsewhere it is printed.
    """
    body = clean_answer(text) or "*(no answer yet)*"
    if _in_notebook():
        from IPython.display import Markdown, display

        display(Markdown(body))
    else:
        print(body)
