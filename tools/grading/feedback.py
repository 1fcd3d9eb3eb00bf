"""Each student's feedback page: per-check results and the rendered answers.

Answers are Markdown with ``$...$`` / ``$$...$$`` math, rendered as the notebook renders them:
the notebook's LaTeX macros (its first cell, see ``macros.py``) are expanded, and the math
becomes MathML (latex2mathml), which browsers lay out natively: the page needs no script, CDN
or network. HTML a student writes (``<br>``, ``<b>``, ``<sub>``...) is kept through nh3's
allow-list sanitizer: no scripts, event handlers, ``javascript:`` links, styles or images.
"""

import html
from functools import cache

from cs236781.answers import clean_answer, is_unanswered
from tools.checks import CHECKS_BY_NAME
from tools.grading.macros import expand_macros

STATUS_COLORS = {
    "passed": "#1a7f37",
    "failed": "#cf222e",
    "error": "#9a6700",
    "timeout": "#9a6700",
    "missing": "#6e7781",
    "manual": "#0969da",
}

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1f2328; line-height: 1.5; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #d0d7de; padding: .35rem .5rem; text-align: left;
         vertical-align: top; }
.status { font-weight: 600; }
pre { background: #f6f8fa; padding: .5rem; overflow-x: auto; font-size: .85em; }
.answer { border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem 1rem; margin: 1rem 0; }
math[display="block"] { margin: .6rem 0; }
.tex-error { color: #cf222e; }
"""


def _math(content: str, options: dict) -> str:
    from latex2mathml.converter import convert

    display = "block" if options.get("display_mode") else "inline"
    try:
        return convert(expand_macros(content.strip()), display=display)
    except Exception:  # noqa: BLE001 - any TeX latex2mathml cannot read is shown as source
        return f'<code class="tex-error">{html.escape(content)}</code>'


@cache
def _markdown():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark", {"html": True, "linkify": False})
    md.disable("image")
    md.use(dollarmath_plugin, allow_space=True, allow_digits=True, double_inline=True,
           renderer=_math)  # fmt: skip
    return md


# The sanitizer's allow-list: nh3's default tags without images, plus MathML (what
# latex2mathml writes) with its presentation attributes.
MATHML_TAGS = {
    "math", "semantics", "annotation", "mrow", "mi", "mo", "mn", "ms", "mtext", "mspace",
    "msub", "msup", "msubsup", "mfrac", "msqrt", "mroot", "mover", "munder", "munderover",
    "mtable", "mtr", "mtd", "mstyle", "menclose", "mpadded", "mphantom", "merror",
}  # fmt: skip
MATHML_ATTRIBUTES = {
    "xmlns", "display", "mathvariant", "stretchy", "fence", "form", "separator", "lspace",
    "rspace", "accent", "accentunder", "movablelimits", "minsize", "maxsize", "symmetric",
    "linethickness", "columnalign", "columnspacing", "rowspacing", "notation", "width",
    "height", "depth", "scriptlevel", "displaystyle", "encoding",
}  # fmt: skip


def sanitize(fragment: str) -> str:
    """``fragment`` through nh3's allow-list (see ``MATHML_TAGS``); links only to http(s)
    and mailto, made ``rel="noopener noreferrer"``."""
    import nh3

    attributes = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
    attributes.pop("img", None)
    for tag in MATHML_TAGS:
        attributes[tag] = attributes.get(tag, set()) | MATHML_ATTRIBUTES
    attributes["code"] = attributes.get("code", set()) | {"class"}
    return nh3.clean(
        fragment,
        tags=(set(nh3.ALLOWED_TAGS) - {"img", "map", "area"}) | MATHML_TAGS,
        attributes=attributes,
        url_schemes={"http", "https", "mailto"},
    )


def render_markdown(text: str) -> str:
    """Sanitized HTML of a Markdown answer: the notebook's macros expanded, math as MathML."""
    return sanitize(_markdown().render(text))


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML page."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def status_cell(status: str) -> str:
    color = STATUS_COLORS.get(status, "#1f2328")
    return f'<td class="status" style="color:{color}">{html.escape(status)}</td>'


HIDDEN_MESSAGES = {
    "passed": "passed",
    "failed": "the result differs from the reference on a configuration you have not seen "
    "(the visible checks, their messages and hints help find why)",
    "error": "your code raised an error on a configuration you have not seen",
    "timeout": "did not finish within its time limit",
}
# Messages that do not depend on a check's configuration: they may be shown for hidden checks.
SAFE_PREFIXES = ("importing hw2/", "hw2/", "not run: ", "stopped when the submission's time")


def points_cell(check: dict) -> str:
    """``3 / 5``; a written answer not graded yet shows no points but who grades it."""
    if check.get("status") == "manual":
        return f"– / {check['max_points']} (graded by the staff)"
    return f"{check['points']} / {check['max_points']}"


def student_message(check: dict, hidden: bool) -> str:
    """The message a student reads: a hidden check's own message could reveal its
    configuration (a shape, a size in an error), so it says only how the check ended."""
    message = str(check.get("message", ""))
    if not hidden or message.startswith(SAFE_PREFIXES):
        return message
    return HIDDEN_MESSAGES.get(check.get("status", ""), check.get("status", ""))


def feedback_html(doc: dict, titles: dict[str, str]) -> str:
    """The feedback page of one student's results document."""
    e = html.escape
    parts = [
        f"<h1>hw2 Part 4: feedback for {e(doc['student_id'])}</h1>",
        f"<p><strong>Automatic score: {doc['score']} / {doc['max_score']}</strong>. "
        "The written answers are graded by the course staff.</p>",
    ]
    if doc.get("notes"):
        notes = "".join(f"<li>{e(n)}</li>" for n in doc["notes"])
        parts.append(f"<h2>About your files</h2><ul>{notes}</ul>")
    rows = []
    for c in doc["checks"]:
        output = ""
        hidden = c["check"] in CHECKS_BY_NAME and CHECKS_BY_NAME[c["check"]].hidden
        if c.get("output") and not hidden:  # a hidden check's prints could reveal its setup
            output = f"<details><summary>output</summary><pre>{e(c['output'])}</pre></details>"
        if c.get("hint") and not hidden:  # a hidden check's structure would reveal it too
            output = (
                f'<details class="hint"><summary>why it differs</summary><p>{e(c["hint"])}</p>'
                f"</details>{output}"
            )
        rows.append(
            f"<tr><td>{e(c['check'])}<br><small>{e(titles.get(c['check'], ''))}</small></td>"
            f"{status_cell(c['status'])}<td>{points_cell(c)}</td>"
            f"<td>{e(student_message(c, hidden))}{output}</td></tr>"
        )
    parts.append(
        "<h2>Checks</h2><table><thead><tr><th>check</th><th>status</th><th>points</th>"
        f"<th>details</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    parts.append("<h2>Your answers</h2>")
    for name in ("part4_q1", "part4_q2"):
        text = doc.get("answers", {}).get(name)
        if text is None:
            body = "<p><em>(not available: see the check above)</em></p>"
        elif is_unanswered(text):
            body = "<p><em>(unanswered)</em></p>"
        else:
            body = render_markdown(clean_answer(text))
        parts.append(f'<h3>{e(titles.get(name, name))}</h3><div class="answer">{body}</div>')
    return page(f"hw2 feedback: {doc['student_id']}", "\n".join(parts))
