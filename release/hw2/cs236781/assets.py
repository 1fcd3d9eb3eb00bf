"""Load the reference tensors, warning once when torch differs from the one that made them."""

import json
import warnings
from pathlib import Path

import torch

_warned: set[str] = set()


def load_expected(path: str | Path) -> torch.Tensor:
    """Load a reference tensor saved by ``tools/regen_assets.py``.

    Dropout's random numbers depend on the torch version; if the running torch differs from
    the one recorded in the ``manifest.json`` beside the file, a one-line warning says so.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"reference tensor {path} is missing: run the notebook from the hw2 folder "
            f"(instructors: python tools/regen_assets.py)"
        )
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        made_with = json.loads(manifest.read_text()).get("torch_version")
        if made_with and made_with != torch.__version__ and made_with not in _warned:
            _warned.add(made_with)
            warnings.warn(
                f"reference tensors were made with torch {made_with}, this is torch "
                f"{torch.__version__}: outputs with dropout may differ; "
                f"install torch=={made_with} to compare exactly",
                stacklevel=2,
            )
    return torch.load(path, weights_only=True)
