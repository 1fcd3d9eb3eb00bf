"""Plain records of what training returns: per batch, per epoch and per fit."""

from typing import NamedTuple


class BatchResult(NamedTuple):
    """The loss of one batch and how many of its samples were classified correctly."""

    loss: float
    num_correct: int


class EpochResult(NamedTuple):
    """The loss of each batch of one epoch and the epoch's accuracy, in percent."""

    losses: list[float]
    accuracy: float


class FitResult(NamedTuple):
    """Per-epoch losses and accuracies (percent) over a whole ``Trainer.fit`` run."""

    num_epochs: int
    train_loss: list[float]
    train_acc: list[float]
    test_loss: list[float]
    test_acc: list[float]
