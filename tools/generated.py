"""What the tools that make committed files share: compare with disk, write, report."""

import sys
from collections.abc import Iterable
from pathlib import Path


def differences(
    files: dict[Path, bytes], on_disk: Iterable[Path], root: Path, stray: str = "not generated"
) -> list[str]:
    """Files of ``files`` missing or differing on disk, and files of ``on_disk`` (what the
    tool owns there now) that it would not produce; paths shown relative to ``root``."""
    problems = []
    for path, data in files.items():
        if not path.is_file():
            problems.append(f"missing: {path.relative_to(root)}")
        elif path.read_bytes() != data:
            problems.append(f"differs: {path.relative_to(root)}")
    for path in sorted(on_disk):
        if path not in files:
            problems.append(f"{stray}: {path.relative_to(root)}")
    return problems


def report_problems(tool: str, problems: list[str], what: str, fix: str) -> None:
    """Print what a ``--check`` found out of date and how to fix it, on stderr."""
    print(f"{tool}: {len(problems)} {what} out of date:", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    print(fix, file=sys.stderr)


def write_changed(files: dict[Path, bytes]) -> int:
    """Write the files whose bytes differ from disk (unchanged files keep their mtime);
    return how many were written."""
    written = 0
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
            written += 1
    return written


# Tensors are compared by value, not by bytes: torch picks CPU-specific kernels
# (ATEN_CPU_CAPABILITY) whose float32 sums round differently. The tolerance is 100x tighter
# than the graders' atol=1e-3, so any real change of the solution still shows.
ATOL = 1e-5
RTOL = 1e-5
TOLERANCE = f"|new - committed| <= {ATOL:g} + {RTOL:g} * |committed|"


def tensor_deviation(new: bytes, old: bytes) -> tuple[bool, str]:
    """Whether two ``torch.save`` payloads hold the same tensor within ``TOLERANCE``, and the
    largest deviation found (or why they cannot be compared)."""
    import io

    import torch

    try:
        a = torch.load(io.BytesIO(new), weights_only=True)
        b = torch.load(io.BytesIO(old), weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt file is simply "not the same"
        return False, f"unreadable ({type(e).__name__})"
    if a.shape != b.shape or a.dtype != b.dtype:
        return False, f"{a.dtype}{list(a.shape)} vs committed {b.dtype}{list(b.shape)}"
    if a.numel() == 0:
        return True, "max |a-b| = 0 (empty)"
    diff = (a.double() - b.double()).abs()
    bound = ATOL + RTOL * b.double().abs()
    ok = bool(torch.all(diff <= bound)) and not bool(torch.isnan(diff).any())
    return ok, f"max |a-b| = {diff.max().item():.3g}"


def keep_equivalent(files: dict[Path, bytes]) -> tuple[dict[Path, bytes], dict[Path, str]]:
    """``files`` with each generated file replaced by the committed bytes on disk when
    ``same_content`` says they hold the same content; also each file's deviation.

    Writing the result leaves equivalent files untouched, and comparing it byte for byte
    with disk is then a check by content."""
    kept, notes = {}, {}
    for path, data in files.items():
        kept[path] = data
        if path.is_file():
            old = path.read_bytes()
            ok, notes[path] = same_content(path.name, data, old)
            if ok:
                kept[path] = old
        else:
            notes[path] = "missing"
    return kept, notes


# Figures are compared by decoded pixels: PNG bytes depend on matplotlib, freetype and zlib.
# Same size, and at most 1% of the pixels differ by more than 0.1 (of 1.0) in a channel
# (anti-aliasing and hinting move edges by a pixel; a changed drawing moves far more).
PNG_CHANNEL_TOL = 0.1
PNG_PIXEL_SHARE = 0.01
PNG_TOLERANCE = (
    f"same size, <= {PNG_PIXEL_SHARE:.0%} of pixels off by > {PNG_CHANNEL_TOL} in a channel"
)


def png_deviation(new: bytes, old: bytes) -> tuple[bool, str]:
    """Whether two PNGs show the same picture within the tolerance above, and how far off."""
    import io

    import numpy as np
    from matplotlib import image

    try:
        a, b = (image.imread(io.BytesIO(d), format="png") for d in (new, old))
    except Exception as e:  # noqa: BLE001 - a corrupt file is simply "not the same"
        return False, f"unreadable ({type(e).__name__})"
    if a.shape != b.shape:
        return False, f"size {list(a.shape)} vs committed {list(b.shape)}"
    off = np.abs(a.astype(float) - b.astype(float)).max(axis=-1) > PNG_CHANNEL_TOL
    share = float(off.mean())
    return share <= PNG_PIXEL_SHARE, f"{share:.2%} of pixels differ by > {PNG_CHANNEL_TOL}"


def same_content(name: str, new: bytes, old: bytes) -> tuple[bool, str]:
    """Compare a generated file with the committed one by content: tensors by value, PNGs by
    pixels, everything else byte for byte."""
    if new == old:
        return True, "identical"
    if name.endswith(".pt"):
        return tensor_deviation(new, old)
    if name.endswith(".png"):
        return png_deviation(new, old)
    return False, "bytes differ"
