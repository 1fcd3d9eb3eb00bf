"""The graded checks of hw2 Part 4 and their points: the one place they are defined.

The autograder grades each check by name; the source notebook's autograded cells carry, as
nbgrader points, the sum of the points of the checks they hold (``grade_id`` below), and a
test keeps the two in agreement. The written answers (``kind="manual"``) are graded by the
staff: their points sit on the notebook's task cells (the questions), graded in nbgrader's
formgrader or imported by ``tools/gradebook.py import-manual``.
"""

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Check:
    """One graded check: its name, points, the notebook cell that holds it, what it tests."""

    name: str
    points: int
    grade_id: str
    title: str
    kind: Literal["auto", "manual"] = "auto"
    hidden: bool = False


CHECKS: list[Check] = [
    Check("cnn_0", 5, "test_cnn", "CNN output, seed configuration 0"),
    Check("cnn_1", 5, "test_cnn", "CNN output, seed configuration 1"),
    Check("cnn_2", 5, "test_cnn", "CNN output, seed configuration 2"),
    Check("classifier", 5, "test_classifier", "ArgMaxClassifier shapes and probabilities"),
    Check("overfit", 10, "test_overfit", "ClassifierTrainer overfits 50 images (>= 90%)"),
    Check("resblock", 10, "test_resblock", "ResidualBlock output"),
    Check("resblock_bottleneck", 10, "test_resblock_bottleneck", "ResidualBottleneckBlock output"),
    Check("resnet_0", 10, "test_resnet", "ResNet output, seed configuration 0"),
    Check("resnet_1", 10, "test_resnet", "ResNet output, seed configuration 1 (bottleneck)"),
    Check("hidden_cnn", 5, "test_cnn", "CNN, hidden configuration", hidden=True),
    Check("hidden_classifier", 5, "test_classifier", "ArgMaxClassifier, hidden", hidden=True),
    Check("hidden_resblock", 5, "test_resblock", "ResidualBlock, hidden", hidden=True),
    Check(
        "hidden_resblock_bottleneck", 5, "test_resblock_bottleneck",
        "ResidualBottleneckBlock, hidden configuration", hidden=True,
    ),
    Check("hidden_resnet", 10, "test_resnet", "ResNet, hidden configuration", hidden=True),
    # Graded by the staff: each question's Markdown cell is an nbgrader task cell with these points.
    Check("part4_q1", 5, "task_q1", "Question 1 (bottleneck vs regular block)", kind="manual"),
    Check("part4_q2", 5, "task_q2", "Question 2 (residual gradients)", kind="manual"),
]  # fmt: skip

CHECKS_BY_NAME = {c.name: c for c in CHECKS}
MAX_AUTO_POINTS = sum(c.points for c in CHECKS if c.kind == "auto")
MAX_MANUAL_POINTS = sum(c.points for c in CHECKS if c.kind == "manual")
MAX_POINTS = MAX_AUTO_POINTS + MAX_MANUAL_POINTS

# The only files taken from a submission (DESIGN.md, contract 5).
STUDENT_FILES = ("hw2/cnn.py", "hw2/classifier.py", "hw2/training.py", "hw2/answers.py")


def points_by_cell() -> dict[str, int]:
    """The nbgrader points each autograded notebook cell must carry."""
    totals: dict[str, int] = {}
    for c in CHECKS:
        if c.kind == "auto":
            totals[c.grade_id] = totals.get(c.grade_id, 0) + c.points
    return totals


def task_points_by_cell() -> dict[str, int]:
    """The nbgrader points each manually graded task cell (a question) must carry."""
    return {c.grade_id: c.points for c in CHECKS if c.kind == "manual"}
