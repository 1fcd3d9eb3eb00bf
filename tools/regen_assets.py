"""Regenerate the reference tensors from the solution modules, deterministically.

Usage:
    python tools/regen_assets.py            # write tests/assets/ (public and hidden)
    python tools/regen_assets.py --check    # exit 1, listing every file that differs or is missing

Each directory gets a ``manifest.json`` with every file's sha256, shape, dtype, the torch
version and this command. The hidden tensors (``tests/assets/hidden/``) are for grading only
and never reach ``release/``.
"""

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from tools import generated  # noqa: E402
from tools.asset_specs import ALL_SPECS, HIDDEN_DIR, PUBLIC_DIR, ROOT, AssetSpec, run_spec  # noqa: E402

COMMAND = "python tools/regen_assets.py"
MANIFEST = "manifest.json"


def tensor_bytes(t: torch.Tensor) -> bytes:
    """Serialize ``t`` with ``torch.save``; the same tensor always gives the same bytes."""
    buf = io.BytesIO()
    torch.save(t.detach().clone().contiguous(), buf)
    return buf.getvalue()


def build_all() -> dict[Path, bytes]:
    """Every asset file and manifest, as bytes, keyed by path."""
    from hw2 import cnn

    files: dict[Path, bytes] = {}
    manifests: dict[Path, dict] = {PUBLIC_DIR: {}, HIDDEN_DIR: {}}
    for spec in ALL_SPECS:
        data = tensor_bytes(run_spec(spec, cnn))
        files[spec.path] = data
        manifests[spec.path.parent][spec.file] = manifest_entry(spec, data)
    for directory, entries in manifests.items():
        doc = {
            "generated_by": COMMAND,
            "source": "hw2/cnn.py (solution)",
            "torch_version": torch.__version__,
            "seed": 42,
            "files": entries,
        }
        files[directory / MANIFEST] = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    return files


def manifest_entry(spec: AssetSpec, data: bytes) -> dict:
    """What the manifest records of one asset."""
    t = torch.load(io.BytesIO(data))
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "shape": list(t.shape),
        "dtype": str(t.dtype).removeprefix("torch."),
        "kind": spec.kind,
        "torch_version": torch.__version__,
        "command": COMMAND,
    }


def differences(files: dict[Path, bytes]) -> list[str]:
    """The files on disk that are missing or differ from ``files``, and stray ``.pt`` files."""
    on_disk = [p for d in (PUBLIC_DIR, HIDDEN_DIR) for p in d.glob("*.pt")]
    return generated.differences(files, on_disk, ROOT, stray="not produced by the solution")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, write nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # same reduction order on every machine
    files = build_all()
    if args.check:
        problems = differences(files)
        if problems:
            fix = f"run `{COMMAND}` and commit tests/assets/"
            generated.report_problems("regen_assets", problems, "asset file(s)", fix)
            return 1
        print(
            f"regen_assets: all {len(files)} files match the solution (torch {torch.__version__})"
        )
        return 0
    generated.write_changed(files)
    print(f"regen_assets: wrote {len(files)} files under {PUBLIC_DIR.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
