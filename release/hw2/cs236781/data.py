"""CIFAR-10 for hw2: torchvision's real dataset, or an announced offline stand-in.

The stand-in exists for tests and CI on machines that cannot download CIFAR-10. It has the
same sizes, shapes, dtypes and label range, and it is used only when asked for: by
``offline=True`` or by the environment variable ``HW2_OFFLINE_DATA=1``. Each use prints a
line that says so. When the real data was asked for and cannot be had, loading fails with a
message naming the folder; it never falls back silently.
"""

import os
import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

OFFLINE_ENV = "HW2_OFFLINE_DATA"
DEFAULT_ROOT = "~/.pytorch-datasets"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


class SyntheticCIFAR10(Dataset):
    """A deterministic stand-in for CIFAR-10: ``(3, 32, 32)`` float images in [0, 1], 10 labels.

    Each class has a smooth random template; a sample is its class's template plus noise,
    generated from the sample's index, so the data costs no memory and is the same everywhere.
    """

    classes = CIFAR10_CLASSES

    def __init__(self, train: bool = True, size: int | None = None, seed: int = 0):
        """
        :param train: the training split (50,000 samples) or the test split (10,000).
        :param size: override the number of samples.
        :param seed: seed of the class templates and noise.
        """
        self.train = train
        self.size = size if size is not None else (50_000 if train else 10_000)
        self.seed = seed + (0 if train else 1_000_003)
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(len(self.classes), 3, 4, 4, generator=g)
        self.templates = torch.nn.functional.interpolate(
            coarse, size=(32, 32), mode="bilinear", align_corners=False
        )  # (10, 3, 32, 32)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} samples")
        g = torch.Generator().manual_seed(self.seed * 100_003 + index)
        label = int(torch.randint(len(self.classes), (1,), generator=g))
        noise = 0.15 * torch.randn(3, 32, 32, generator=g)
        return (self.templates[label] + noise).clamp(0.0, 1.0), label


def offline_requested(offline: bool | None = None) -> bool:
    """Whether the offline stand-in was asked for, by argument or by ``HW2_OFFLINE_DATA=1``."""
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def load_cifar10(
    root: str | os.PathLike = DEFAULT_ROOT, offline: bool | None = None, download: bool = True
) -> tuple[Dataset, Dataset]:
    """Return ``(ds_train, ds_test)``: CIFAR-10 as tensors in [0, 1], ``(3, 32, 32)`` each.

    :param root: where torchvision keeps (or downloads) the data.
    :param offline: use the synthetic stand-in; ``None`` reads ``HW2_OFFLINE_DATA``.
    :param download: let torchvision download the data when it is not in ``root``.
    """
    if offline_requested(offline):
        print(
            f"OFFLINE DATA: using SyntheticCIFAR10, a stand-in with CIFAR-10's shapes "
            f"({OFFLINE_ENV}=1 or offline=True); results say nothing about real CIFAR-10",
            file=sys.stderr,
        )
        return SyntheticCIFAR10(train=True), SyntheticCIFAR10(train=False)

    import torchvision  # costs about a second: imported only on the real path
    import torchvision.transforms as tvtf

    root = Path(root).expanduser()
    try:
        return tuple(
            torchvision.datasets.CIFAR10(
                root=str(root), download=download, train=train, transform=tvtf.ToTensor()
            )
            for train in (True, False)
        )
    except (OSError, RuntimeError) as e:
        raise RuntimeError(
            f"could not load CIFAR-10 from {root} ({e.__class__.__name__}: {e}); check the "
            f"network, or put cifar-10-batches-py there; to run without it, set "
            f"{OFFLINE_ENV}=1 for a synthetic stand-in"
        ) from e
