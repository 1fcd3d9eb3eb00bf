"""Training loops: a generic ``Trainer`` and a ``ClassifierTrainer`` for PyTorch classifiers."""

import itertools
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cs236781.train_results import BatchResult, EpochResult, FitResult


class Trainer(ABC):
    """Trains a model epoch by epoch; subclasses say what one batch of training or testing is."""

    def __init__(self, model: nn.Module, device: torch.device | str | None = None):
        """
        :param model: the model to train.
        :param device: where to run it; the model is moved there (default: leave it where it is).
        """
        self.model = model
        self.device = torch.device(device) if device is not None else None
        if self.device is not None:
            self.model.to(self.device)

    def fit(
        self,
        dl_train: DataLoader,
        dl_test: DataLoader,
        num_epochs: int,
        checkpoints: str | None = None,
        early_stopping: int | None = None,
        print_every: int = 1,
        post_epoch_fn: Callable[[int, EpochResult, EpochResult, bool], None] | None = None,
        **kw,
    ) -> FitResult:
        """Train for ``num_epochs`` epochs, testing after each one.

        :param dl_train: training batches.
        :param dl_test: test batches.
        :param num_epochs: number of epochs.
        :param checkpoints: when given, the model's ``state_dict`` is saved to
            ``f"{checkpoints}.pt"`` whenever the test accuracy improves.
        :param early_stopping: stop after this many epochs without a better test loss.
        :param print_every: show progress bars every this many epochs (and on the last).
        :param post_epoch_fn: called as ``fn(epoch, train_result, test_result, verbose)``.
        :param kw: passed to ``train_epoch`` and ``test_epoch`` (e.g. ``max_batches``).
        :return: per-epoch mean losses and accuracies.
        """
        if num_epochs < 0:
            raise ValueError(f"num_epochs must be >= 0, got {num_epochs!r}")
        train_loss, train_acc, test_loss, test_acc = [], [], [], []
        best_acc, best_loss, epochs_without_improvement = None, None, 0
        actual_num_epochs = 0
        for epoch in range(num_epochs):
            verbose = print_every > 0 and (epoch % print_every == 0 or epoch == num_epochs - 1)
            if verbose:
                print(f"--- EPOCH {epoch + 1}/{num_epochs} ---", file=sys.stderr)
            train_result = self.train_epoch(dl_train, verbose=verbose, **kw)
            test_result = self.test_epoch(dl_test, verbose=verbose, **kw)
            actual_num_epochs += 1
            for losses, accs, result in (
                (train_loss, train_acc, train_result),
                (test_loss, test_acc, test_result),
            ):
                losses.append(sum(result.losses) / max(len(result.losses), 1))
                accs.append(result.accuracy)

            improved = best_acc is None or test_result.accuracy > best_acc
            if improved:
                best_acc = test_result.accuracy
                if checkpoints is not None:
                    self.save_checkpoint(f"{checkpoints}.pt")
            if best_loss is None or test_loss[-1] < best_loss:
                best_loss, epochs_without_improvement = test_loss[-1], 0
            else:
                epochs_without_improvement += 1
            if post_epoch_fn is not None:
                post_epoch_fn(epoch, train_result, test_result, verbose)
            if early_stopping is not None and epochs_without_improvement >= early_stopping:
                break
        return FitResult(actual_num_epochs, train_loss, train_acc, test_loss, test_acc)

    def save_checkpoint(self, path: str | Path) -> None:
        """Save the model's parameters to ``path``."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), path)

    def train_epoch(self, dl_train: DataLoader, **kw) -> EpochResult:
        """Train once over ``dl_train`` (model in train mode); ``kw`` as in ``_foreach_batch``."""
        self.model.train(True)
        return self._foreach_batch(dl_train, self.train_batch, desc="train_batch", **kw)

    def test_epoch(self, dl_test: DataLoader, **kw) -> EpochResult:
        """Evaluate once over ``dl_test`` (model in eval mode, no gradients)."""
        self.model.train(False)
        with torch.no_grad():
            return self._foreach_batch(dl_test, self.test_batch, desc="test_batch", **kw)

    @abstractmethod
    def train_batch(self, batch) -> BatchResult:
        """Run one forward and backward pass and one optimizer step on ``batch``."""

    @abstractmethod
    def test_batch(self, batch) -> BatchResult:
        """Evaluate the model on ``batch`` without updating it."""

    @staticmethod
    def _foreach_batch(
        dl: Iterable,
        forward_fn: Callable[[object], BatchResult],
        verbose: bool = True,
        max_batches: int | None = None,
        desc: str = "batch",
    ) -> EpochResult:
        """Apply ``forward_fn`` to each batch (at most ``max_batches``) with a progress bar.

        :return: the loss of each batch and the accuracy in percent over the samples seen.
        """
        num_batches = len(dl) if hasattr(dl, "__len__") else None
        if max_batches is not None:
            num_batches = max_batches if num_batches is None else min(num_batches, max_batches)
        losses, num_correct, num_samples = [], 0, 0
        with tqdm(total=num_batches, desc=desc, disable=not verbose, file=sys.stdout) as pbar:
            # islice stops before loading a batch beyond max_batches
            for batch in itertools.islice(dl, max_batches):
                result = forward_fn(batch)
                losses.append(result.loss)
                num_correct += result.num_correct
                num_samples += len(batch[1])
                if verbose:  # formatting the postfix costs about 1% of a small batch
                    pbar.set_postfix(loss=f"{result.loss:.3f}", refresh=False)
                pbar.update()
            accuracy = 100.0 * num_correct / max(num_samples, 1)
            avg_loss = sum(losses) / max(len(losses), 1)
            pbar.set_description(f"{desc} (avg loss {avg_loss:.3f}, accuracy {accuracy:.1f})")
        return EpochResult(losses=losses, accuracy=accuracy)


class ClassifierTrainer(Trainer):
    """Trains a ``hw2.classifier.Classifier`` with a loss function and an optimizer."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device | str | None = None,
    ):
        """
        :param model: a ``Classifier`` (its forward returns scores ``(N, C)``, and it has
            ``classify_scores``).
        :param loss_fn: maps scores ``(N, C)`` and labels ``(N,)`` to a scalar loss.
        :param optimizer: an optimizer over the model's parameters.
        :param device: where to run the model and the batches.
        """
        super().__init__(model, device)
        self.loss_fn = loss_fn
        self.optimizer = optimizer

    def _to_device(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.device is None:
            return X, y
        return X.to(self.device), y.to(self.device)

    def train_batch(self, batch: tuple[Tensor, Tensor]) -> BatchResult:
        """
        :param batch: images ``(N, C, H, W)`` and labels ``(N,)``.
        :return: the batch's loss and number of correct predictions (before the step).
        """
        X, y = self._to_device(*batch)
        ### BEGIN SOLUTION
        self.optimizer.zero_grad()
        scores = self.model(X)  # (N, C)
        loss = self.loss_fn(scores, y)
        loss.backward()
        self.optimizer.step()
        batch_loss = loss.item()
        num_correct = int((self.model.classify_scores(scores.detach()) == y).sum())
        ### END SOLUTION
        return BatchResult(batch_loss, num_correct)

    def test_batch(self, batch: tuple[Tensor, Tensor]) -> BatchResult:
        """
        :param batch: images ``(N, C, H, W)`` and labels ``(N,)``.
        :return: the batch's loss and number of correct predictions.
        """
        X, y = self._to_device(*batch)
        with torch.no_grad():
            ### BEGIN SOLUTION
            scores = self.model(X)
            batch_loss = self.loss_fn(scores, y).item()
            num_correct = int((self.model.classify_scores(scores) == y).sum())
            ### END SOLUTION
        return BatchResult(batch_loss, num_correct)
