"""hw2/answers.py: the numbers in the written answers, recomputed; and the answer helpers."""

import math
import re

import pytest
import torch
from torch import nn

import hw2.answers
from cs236781.answers import ANSWER_STUB, clean_answer, display_answer, is_unanswered
from hw2.answers import part4_optim_hp

# Question 1's blocks, from the seed's diagram: two 3x3 convs on 256 channels, and
# 1x1 (256 -> 64), 3x3 (64 -> 64), 1x1 (64 -> 256).
REGULAR = [nn.Conv2d(256, 256, 3, padding=1), nn.Conv2d(256, 256, 3, padding=1)]
BOTTLENECK = [nn.Conv2d(256, 64, 1), nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 256, 1)]


def n_params(convs: list[nn.Conv2d]) -> int:
    return sum(p.numel() for conv in convs for p in conv.parameters())


def macs_per_position(convs: list[nn.Conv2d]) -> int:
    """Multiply-adds per output pixel: each output channel takes ``K*K*C_in`` of them."""
    return sum(c.out_channels * c.in_channels * math.prod(c.kernel_size) for c in convs)


def receptive_field(convs: list[nn.Conv2d]) -> int:
    return 1 + sum(c.kernel_size[0] - 1 for c in convs)


def normalized(text: str) -> str:
    """Digit groups written ``1{,}180{,}160`` or ``1,180,160`` become ``1180160``; runs of
    white space become one space."""
    return re.sub(r"(?<=\d)(?:\{,\}|,)(?=\d{3}\b)", "", " ".join(text.split()))


def big_numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\d{4,}", normalized(text))}


def test_normalized_digit_groups():
    assert normalized(r"$1{,}180{,}160$ and 70,016, (a, b)") == "$1180160$ and 70016, (a, b)"


def test_q1_parameter_counts():
    text = normalized(hw2.answers.part4_q1)
    counts = [n_params([c]) for c in REGULAR[:1] + BOTTLENECK]
    for n in [*counts, n_params(REGULAR), n_params(BOTTLENECK)]:
        assert str(n) in text, n
    ratio = round(n_params(REGULAR) / n_params(BOTTLENECK))
    assert f"${ratio}$ times fewer parameters" in text


def test_q1_operation_counts():
    text = normalized(hw2.answers.part4_q1)
    regular, bottleneck = macs_per_position(REGULAR), macs_per_position(BOTTLENECK)
    assert str(regular) in text and str(bottleneck) in text
    assert f"about ${round(regular / bottleneck)}$ times fewer" in text


def test_q1_receptive_fields():
    text = normalized(hw2.answers.part4_q1)
    regular = receptive_field(REGULAR)
    spatial = receptive_field([c for c in BOTTLENECK if c.kernel_size != (1, 1)])
    assert f"${regular}\\times {regular}$ neighbourhood" in text
    assert f"receptive field is only ${spatial}\\times {spatial}$" in text


def test_q1_has_no_other_numbers():
    # every number of four digits or more is one of those recomputed above
    computed = {
        n_params(REGULAR),
        n_params(REGULAR[:1]),
        n_params(BOTTLENECK),
        *(n_params([c]) for c in BOTTLENECK),
        macs_per_position(REGULAR),
        macs_per_position(BOTTLENECK),
    }
    assert big_numbers(hw2.answers.part4_q1) == computed


def test_q2_vanishing_factor():
    text = normalized(hw2.answers.part4_q2)
    rho, k = 0.5, 20
    mantissa, exponent = f"{rho**k:.1e}".split("e")
    assert f"$\\rho = {rho}$ and $k = {k}$" in text
    assert f"{mantissa} \\times 10^{{{int(exponent)}}}" in text


def test_q2_has_the_two_jacobians():
    text = normalized(hw2.answers.part4_q2)
    assert r"= M^\top \frac{\partial L}{\partial y_1}" in text
    assert r"(I + M)^\top \frac{\partial L}{\partial y_2}" in text


def test_q2_residual_gradient_matches_autograd():
    # the formula the answer derives, checked with autograd on a random instance
    g = torch.Generator().manual_seed(0)
    m, x, dy = (torch.rand(4, 4, generator=g) - 0.5, torch.randn(4), torch.randn(4))
    x.requires_grad_(True)
    (x + m @ x).backward(dy)
    torch.testing.assert_close(x.grad, dy + m.T @ dy)


def test_optim_hp():
    hp = part4_optim_hp()
    assert set(hp) == {"lr", "weight_decay", "momentum", "loss_fn"}
    assert isinstance(hp["loss_fn"], nn.Module)
    assert hp["lr"] > 0 and hp["weight_decay"] >= 0 and 0 <= hp["momentum"] < 1
    loss = hp.pop("loss_fn")(torch.zeros(2, 3), torch.tensor([0, 2]))
    assert loss.ndim == 0
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], **hp)
    assert "loss_fn" in part4_optim_hp(), "each call returns a fresh dict"


@pytest.mark.parametrize("name", ["part4_q1", "part4_q2"])
def test_display_answer_prints_plain_text_without_markers(capsys, name):
    text = getattr(hw2.answers, name)
    assert "### BEGIN SOLUTION" in text, "the instructor's copy keeps nbgrader's markers"
    display_answer(text)
    out = capsys.readouterr().out
    assert out == clean_answer(text) + "\n"
    assert "SOLUTION" not in out and out.startswith("**1.")


def test_display_answer_of_nothing(capsys):
    display_answer("\n### BEGIN SOLUTION\n### END SOLUTION\n")
    assert capsys.readouterr().out == "*(no answer yet)*\n"


def test_is_unanswered():
    assert is_unanswered(ANSWER_STUB)
    assert is_unanswered(f"\n{ANSWER_STUB}\n")
    assert is_unanswered("")
    assert not is_unanswered(hw2.answers.part4_q1)
    assert not is_unanswered(hw2.answers.part4_q2)
    assert not is_unanswered(f"{ANSWER_STUB}\nThe bottleneck has fewer parameters.")


def test_answers_must_be_strings():
    with pytest.raises(TypeError, match="str"):
        clean_answer(None)


# The course template's placeholder as a student's file holds it: a raw triple-quoted string,
# indented and re-wrapped the way editors leave it (our own copy of the listed facts).
TEMPLATE_STYLE_PLACEHOLDER = r"""
**Your answer:**


Write your answer using **markdown** and $\LaTeX$:
```python
# A code block
a = 2
```
An equation: $e^{i\pi} -1 = 0$

"""


def test_the_template_placeholder_is_unanswered():
    assert is_unanswered(TEMPLATE_STYLE_PLACEHOLDER)
    assert is_unanswered(TEMPLATE_STYLE_PLACEHOLDER.replace("\n", "\n    "))
    assert is_unanswered("**Your answer:**\n\n")


def test_an_answer_written_after_the_placeholder_counts():
    answer = TEMPLATE_STYLE_PLACEHOLDER + "\nThe bottleneck uses fewer parameters.\n"
    assert not is_unanswered(answer)
    assert not is_unanswered(TEMPLATE_STYLE_PLACEHOLDER.replace("a = 2", "a = 3"))
