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


def is_unanswered(text: str) -> bool:
    """Whether an answer string is empty or still the release's stub."""
    return clean_answer(text).replace(ANSWER_STUB, "").strip() == ""


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
