"""Regenerate the reference tensors from the solution modules, deterministically.

Usage:
    python tools/regen_assets.py            # write tests/assets/ (public and hidden)
    python tools/regen_assets.py --check    # exit 1, listing every file that differs or is missing

Tensors are compared by value (``tools/generated.TOLERANCE``, 1e-5 absolute + 1e-5 relative,
100x tighter than the graders' 1e-3): float32 sums round differently with the CPU kernels torch
picks (``ATEN_CPU_CAPABILITY``). A committed tensor within tolerance of the new values is kept
byte for byte, so regenerating on another machine changes nothing. Each directory gets a
``manifest.json`` with every file's sha256 (of the committed bytes), shape, dtype, the torch
version and this command; it is rebuilt from the kept bytes and compared byte for byte, so it
must describe the files on disk. ``--check`` prints each tensor's largest deviation.
The hidden tensors (``tests/assets/hidden/``) are for grading only and never reach ``release/``.
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
from tools.asset_specs import (  # noqa: E402
    ALL_SPECS,
    HIDDEN_DIR,
    HIDDEN_SPECS,
    PUBLIC_DIR,
    ROOT,
    AssetSpec,
    contract_violations,
    run_spec,
)

COMMAND = "python tools/regen_assets.py"
MANIFEST = "manifest.json"


def tensor_bytes(t: torch.Tensor) -> bytes:
    """Serialize ``t`` with ``torch.save``; the same tensor always gives the same bytes."""
    buf = io.BytesIO()
    torch.save(t.detach().clone().contiguous(), buf)
    return buf.getvalue()


DEVIATIONS: dict[Path, str] = {}  # of the last build_all(), per tensor file


def fresh_tensors() -> dict[Path, bytes]:
    """Every asset tensor as the solution computes it now, serialized, keyed by path."""
    from hw2 import cnn

    return {spec.path: tensor_bytes(run_spec(spec, cnn)) for spec in ALL_SPECS}


def build_all() -> dict[Path, bytes]:
    """Every asset file and manifest, as bytes, keyed by path; a tensor within tolerance of
    the committed one keeps the committed bytes (see ``generated.keep_equivalent``)."""
    files, notes = generated.keep_equivalent(fresh_tensors())
    DEVIATIONS.clear()
    DEVIATIONS.update(notes)
    manifests: dict[Path, dict] = {PUBLIC_DIR: {}, HIDDEN_DIR: {}}
    for spec in ALL_SPECS:
        manifests[spec.path.parent][spec.file] = manifest_entry(spec, files[spec.path])
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
    for spec in HIDDEN_SPECS:  # DESIGN.md, contract 6
        problems = contract_violations(spec)
        if problems:
            why = "; ".join(problems)
            print(
                f"regen_assets: hidden spec {spec.file} leaves the documented contract: {why}; "
                "fix it in tools/asset_specs.py",
                file=sys.stderr,
            )
            return 2
    files = build_all()
    print(f"regen_assets: tensors compared by value, {generated.TOLERANCE}")
    for path, note in DEVIATIONS.items():
        print(f"  {path.relative_to(ROOT)}: {note}")
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
    changed = generated.write_changed(files)
    where = PUBLIC_DIR.relative_to(ROOT)
    print(f"regen_assets: {changed} of {len(files)} files changed under {where}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
