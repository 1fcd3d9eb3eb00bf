"""Plots for hw2: training curves and grids of images."""

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .train_results import FitResult


def tensors_as_images(
    tensors: Sequence[torch.Tensor] | torch.Tensor,
    nrows: int = 1,
    figsize: tuple[float, float] = (8, 8),
    titles: Sequence[str] | None = None,
    cmap: str | None = None,
):
    """Plot images ``(C, H, W)`` (or ``(H, W)``) in a grid of ``nrows`` rows.

    :return: the figure and its axes.
    """
    n = len(tensors)
    ncols = max(1, math.ceil(n / nrows))
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        image = tensors[i].detach().cpu()
        if image.ndim == 3:
            image = image.permute(1, 2, 0)  # (H, W, C)
        image = image.numpy()
        lo, hi = float(np.min(image)), float(np.max(image))
        ax.imshow((image - lo) / (hi - lo) if hi > lo else image * 0, cmap=cmap)
        if titles is not None and i < len(titles):
            ax.set_title(titles[i])
    return fig, axes


def dataset_first_n(dataset, n: int, show_classes: bool = False, class_labels=None, **kw):
    """Plot the first ``n`` images of a dataset of ``(image, label)`` pairs."""
    images, titles = [], []
    for i in range(min(n, len(dataset))):
        x, y = dataset[i]
        images.append(x)
        label = class_labels[y] if class_labels is not None else str(y)
        titles.append(label)
    return tensors_as_images(images, titles=titles if show_classes else None, **kw)


def plot_fit(
    fit_res: FitResult,
    fig=None,
    log_loss: bool = False,
    legend: str | None = None,
    train_test_overlay: bool = False,
):
    """Plot the losses and accuracies of a ``FitResult``, one panel per (split, metric).

    Pass the returned figure back as ``fig`` to overlay several runs, each with its ``legend``.
    :return: the figure and its axes.
    """
    if fig is None:
        nrows = 1 if train_test_overlay else 2
        fig, axes = plt.subplots(nrows, 2, figsize=(16, 5 * nrows), sharex="col", squeeze=False)
        axes = axes.reshape(-1)
    else:
        axes = fig.axes
    for ax in axes:
        for line in ax.lines:
            if line.get_label() == "_nolegend_":
                line.remove()
    for i, (traintest, lossacc) in enumerate(
        (t, m) for t in ("train", "test") for m in ("loss", "acc")
    ):
        ax = axes[(i % 2) if train_test_overlay else i]
        values = getattr(fit_res, f"{traintest}_{lossacc}")
        label = traintest if train_test_overlay else legend
        ax.plot(np.arange(1, len(values) + 1), values, label=label)
        ax.set_title(lossacc if train_test_overlay else f"{traintest}_{lossacc}")
        ax.set_xlabel("epoch")
        if lossacc == "loss":
            ax.set_ylabel("loss")
            if log_loss:
                ax.set_yscale("log")
        else:
            ax.set_ylabel("accuracy (%)")
        if legend or train_test_overlay:
            ax.legend()
        ax.grid(True)
    return fig, axes
