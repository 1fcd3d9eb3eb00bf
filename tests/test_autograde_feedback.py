"""Feedback pages: answers rendered from Markdown, math as MathML that a browser lays out."""

from grading_support import measure_in_chromium

from tools.checks import CHECKS
from tools.grading.feedback import feedback_html, render_markdown

ANSWER = r"""**Parameters.** A conv has $K^2 C_{in} C_{out}$ weights:

$$2 \cdot (3^2 \cdot 256 \cdot 256 + 256) = \frac{1{,}180{,}160}{1}$$

<script>alert("x")</script> and [a link](javascript:alert(1)) ![img](http://example.com/x.png)
"""


def doc(answer: str = ANSWER) -> dict:
    checks = [
        {"check": c.name, "points": 0, "max_points": c.points, "status": "failed",
         "message": "<b>not bold</b>", "output": "", "seconds": 0.0}
        for c in CHECKS
    ]  # fmt: skip
    return {"student_id": "s1", "score": 0, "max_score": 100, "notes": [], "checks": checks,
            "answers": {"part4_q1": answer, "part4_q2": "### BEGIN SOLUTION\n$x$\n"}}  # fmt: skip


def test_math_becomes_mathml_and_scripts_are_dropped():
    out = render_markdown(ANSWER)
    assert out.count("<math") == 2 and 'display="block"' in out and "<mfrac>" in out
    assert "<script" not in out and "alert(" not in out.split("</math>")[-1].split("and")[0]
    assert 'href="javascript' not in out and "<img" not in out  # nothing runs or is fetched


def test_students_html_is_sanitized_with_an_allow_list():
    out = render_markdown(
        'line one<br>line two, <b>bold</b>, H<sub>2</sub>O, <i onclick="steal()">it</i>, '
        '<a href="javascript:alert(1)">js</a> <a href="https://example.org">ok</a> '
        '<span style="position:fixed">s</span> <img src="http://example.com/x.png">'
        "<iframe src='http://example.com'></iframe>"
    )
    for kept in ("<br>", "<b>bold</b>", "<sub>2</sub>", "<i>it</i>", 'href="https://example.org"'):
        assert kept in out
    for dropped in ("onclick", "javascript:", "style=", "<img", "<iframe", "steal"):
        assert dropped not in out


def test_the_notebooks_macros_are_expanded_before_conversion():
    """The source notebook's first cell defines the macros (as the course's notebook does);
    answers using them render as math, not as the raw macro name."""
    out = render_markdown(r"$\mat{W}\vec{x}$, $\pderiv{L}{\vec x}$ and $\norm{\mattr{A}}$")
    assert "\\mat" not in out and "\\pderiv" not in out and "\\norm" not in out
    assert out.count('mathvariant="bold-italic"') >= 4 and "<mfrac>" in out and "∂" in out


def test_page_is_self_contained_and_escapes_messages():
    d = doc()
    for c in d["checks"]:
        c["output"] = f"printed by {c['check']}"
    page = feedback_html(d, {c.name: c.title for c in CHECKS})
    assert "printed by cnn_0" in page and "printed by hidden_cnn" not in page
    assert "<b>not bold</b>" not in page and "&lt;b&gt;not bold" in page
    for fetch in ("<script", "<link", "<img", 'src="'):
        assert fetch not in page
    assert "BEGIN SOLUTION" not in page  # markers are cleaned from answers


def test_bad_tex_is_shown_as_source():
    out = render_markdown(r"$\frac{1}{$ and $\undefinedmacro{x}$")
    assert "<" in out  # rendered something, did not raise


MEASURE = """
<script>
window.addEventListener("load", () => {
  const boxes = [...document.querySelectorAll("math")].map((m) => {
    const r = m.getBoundingClientRect();
    return {display: m.getAttribute("display"), w: r.width, h: r.height,
            mathml: m instanceof MathMLElement};
  });
  const frac = document.querySelector("mfrac");
  const parts = frac ? [...frac.children].map((c) => c.getBoundingClientRect().top) : [];
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({boxes, parts});
  document.body.appendChild(out);
});
</script>
"""


def test_chromium_lays_out_the_math(tmp_path):
    page = feedback_html(doc(), {c.name: c.title for c in CHECKS})
    measured = measure_in_chromium(page, MEASURE, tmp_path)
    boxes = measured["boxes"]
    assert len(boxes) >= 3  # 2 in answer 1, 1 in answer 2
    assert all(b["mathml"] and b["w"] > 0 and b["h"] > 0 for b in boxes), boxes
    block = [b for b in boxes if b["display"] == "block"]
    assert block and block[0]["h"] > max(b["h"] for b in boxes if b["display"] != "block")
    numerator, denominator = measured["parts"]
    assert denominator > numerator  # the fraction is stacked, not inline text


def test_a_hidden_checks_own_message_is_not_shown_to_the_student():
    """A hidden check's message may reveal its configuration (an output shape, a size in an
    error): the student reads only how it ended; messages that do not depend on it stay."""
    d = doc()
    by_name = {c["check"]: c for c in d["checks"]}
    by_name["hidden_resnet"]["message"] = "'out' has shape (3, 7), expected (3, 10)"
    by_name["hidden_cnn"].update(status="error", message="RuntimeError: size 13 must match 17")
    by_name["hidden_resblock"].update(status="error", message="importing hw2/cnn.py failed: X")
    by_name["cnn_0"]["message"] = "'out' has shape (1, 7), expected (1, 10)"
    page = feedback_html(d, {})
    assert "(3, 10)" not in page and "size 13" not in page
    assert "differs from the reference on a configuration you have not seen" in page
    assert "raised an error on a configuration you have not seen" in page
    assert "importing hw2/cnn.py failed: X" in page  # about the files, not the configuration
    assert "expected (1, 10)" in page  # visible checks keep their message


def test_a_written_answer_not_yet_graded_shows_no_points():
    d = doc()
    for c in d["checks"]:
        if c["check"].startswith("part4_q"):
            c.update(status="manual", message="answered (3 words); graded by the staff")
    page = feedback_html(d, {})
    assert "– / 5 (graded by the staff)" in page and page.count("(graded by the staff)") == 2
