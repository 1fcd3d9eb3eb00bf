"""Classifiers that wrap a model producing class scores."""

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class Classifier(nn.Module, ABC):
    """Wraps a model that outputs class scores; adds probabilities and class predictions."""

    def __init__(self, model: nn.Module):
        """
        :param model: a module mapping ``(N, *in_size)`` inputs to ``(N, C)`` class scores.
        """
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """
        :param x: ``(N, *in_size)``.
        :return: class scores, ``(N, C)``.
        """
        z = self.model(x)
        assert z.shape[0] == x.shape[0] and z.ndim == 2, "raw model output shape"
        return z

    def predict_proba(self, x: Tensor) -> Tensor:
        """
        :param x: ``(N, *in_size)``.
        :return: class probabilities, ``(N, C)``; each row sums to 1.
        """
        return self.predict_proba_scores(self.forward(x))

    def predict_proba_scores(self, z: Tensor) -> Tensor:
        """
        :param z: class scores, ``(N, C)``.
        :return: class probabilities, ``(N, C)``.
        """
        return torch.softmax(z, dim=1)

    def classify(self, x: Tensor) -> Tensor:
        """
        :param x: ``(N, *in_size)``.
        :return: predicted class index of each sample, ``(N,)`` of dtype ``torch.long``.
        """
        return self._classify(self.predict_proba(x))

    def classify_scores(self, z: Tensor) -> Tensor:
        """
        :param z: class scores, ``(N, C)``.
        :return: predicted class index of each sample, ``(N,)``.
        """
        return self._classify(self.predict_proba_scores(z))

    @abstractmethod
    def _classify(self, y_proba: Tensor) -> Tensor:
        """Map probabilities ``(N, C)`` to class indices ``(N,)``."""


class ArgMaxClassifier(Classifier):
    """Predicts the class with the highest probability."""

    def _classify(self, y_proba: Tensor) -> Tensor:
        """
        :param y_proba: ``(N, C)``.
        :return: ``(N,)``, the index of each row's largest probability.
        """
        ### BEGIN SOLUTION
        return torch.argmax(y_proba, dim=1)
        ### END SOLUTION
