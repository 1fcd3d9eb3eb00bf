"""Grading in the trusted parent: what the sandbox returned against what the grader knows.

The sandbox returns plain ``.npy`` arrays (and texts); here they are parsed without pickles,
checked for dtype, shape and finiteness, and compared with the reference tensors at
``atol=1e-3`` (``rtol=1e-5``, as ``torch.allclose`` in the seed). Nothing here runs student code.
"""

import io
import json
import signal
import threading
from dataclasses import asdict, dataclass

import numpy as np

from tools.asset_specs import OVERFIT_CNN, OVERFIT_RUN
from tools.grading import harness

ATOL, RTOL = 1e-3, 1e-5
OVERFIT_MIN_ACCURACY = 90.0
MESSAGE_CAP = 600


@dataclass
class CheckResult:
    """The grade of one check of one student."""

    check: str
    points: int
    max_points: int
    status: str  # passed failed error timeout missing manual
    message: str
    output: str = ""
    seconds: float = 0.0
    hint: str = ""  # why a failed visible numeric check differs (diagnose.py)

    def to_dict(self) -> dict:
        return asdict(self)


class Invalid(ValueError):
    """A returned value that cannot be graded (wrong dtype, shape, not finite, missing)."""


class Expected:
    """Everything the parent compares against; loaded once per batch."""

    def __init__(self):
        import torch

        from tools.asset_specs import ALL_SPECS

        by_file = {s.file: s for s in ALL_SPECS}
        self.tensors = {}
        for check, file in harness.SPEC_CHECKS.items():
            path = by_file[file].path
            if not path.is_file():
                raise FileNotFoundError(
                    f"reference tensor {path} is missing: run `python tools/regen_assets.py`"
                )
            self.tensors[check] = torch.load(path, weights_only=True).numpy().astype(np.float64)
        self.overfit_x, labels = harness.overfit_samples()
        self.overfit_labels = labels.numpy()
        z = harness.hidden_classifier_scores()
        self.hidden_scores = z.numpy().astype(np.float64)
        self.hidden_argmax = z.argmax(dim=1).numpy()
        self.hidden_softmax = torch.softmax(z.double(), dim=1).numpy()


def load_array(outputs: dict[str, bytes], key: str, kind: str = "float") -> np.ndarray:
    """Parse ``<key>.npy``: no pickles, a numeric dtype, finite values."""
    data = outputs.get(f"{key}.npy")
    if data is None:
        raise Invalid(f"no value returned for {key!r}")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise Invalid(f"{key!r} is not a plain numeric array ({e})") from e
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise Invalid(f"{key!r} has dtype {getattr(arr, 'dtype', type(arr))}, not a number type")
    if kind == "float" and arr.dtype.kind != "f":
        raise Invalid(f"{key!r} has dtype {arr.dtype}, expected floating point")
    if kind == "int" and arr.dtype.kind not in "biu":
        raise Invalid(f"{key!r} has dtype {arr.dtype}, expected integer class indices")
    if not np.all(np.isfinite(arr)):
        raise Invalid(f"{key!r} contains NaN or infinite values")
    return arr


def _shape(arr: np.ndarray, shape: tuple, key: str) -> None:
    if tuple(arr.shape) != tuple(shape):
        raise Invalid(f"{key!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")


def compare_tensor(arr: np.ndarray, expected: np.ndarray, key: str = "output") -> str:
    """Raise ``Invalid`` unless ``arr`` matches ``expected``; return a summary."""
    _shape(arr, expected.shape, key)
    diff = float(np.max(np.abs(arr.astype(np.float64) - expected))) if arr.size else 0.0
    if not np.allclose(arr.astype(np.float64), expected, rtol=RTOL, atol=ATOL):
        raise Invalid(f"{key} differs from the reference: max |diff| = {diff:.3g} > {ATOL}")
    return f"matches the reference (max |diff| = {diff:.1e})"


def _grade_spec(check: str, out: dict, exp: Expected, ctx: dict) -> str:
    return compare_tensor(load_array(out, "out"), exp.tensors[check])


def _grade_classifier(check: str, out: dict, exp: Expected, ctx: dict) -> str:
    classify = load_array(out, "classify", kind="int")
    proba = load_array(out, "proba")
    _shape(classify, (1,), "classify(x)")
    _shape(proba, (1, 10), "predict_proba(x)")
    if not 0 <= int(classify[0]) < 10:
        raise Invalid(f"classify(x) returned class {int(classify[0])}, not in 0..9")
    total = float(proba.sum())
    if abs(total - 1.0) > 1e-3:
        raise Invalid(f"predict_proba(x) sums to {total:.4f}, not 1")
    return "shapes (1,) and (1, 10); probabilities sum to 1"


def _grade_hidden_classifier(check: str, out: dict, exp: Expected, ctx: dict) -> str:
    n, c = exp.hidden_scores.shape
    for key in ("classify_scores", "classify"):
        arr = load_array(out, key, kind="int")
        _shape(arr, (n,), key)
        if not np.array_equal(arr, exp.hidden_argmax):
            raise Invalid(f"{key} does not return the class of the highest score in every row")
    compare_tensor(load_array(out, "proba_scores"), exp.hidden_softmax, "predict_proba_scores")
    return "argmax classes and probabilities are right"


SNAPSHOT_CAP = 16 << 20  # bytes of an overfit snapshot's arrays in all


def unpack_snapshot(data: bytes | None) -> dict[str, bytes] | None:
    """The ``.npy`` members of an overfit snapshot (an uncompressed ``.npz``) as outputs
    (``{"accuracies.npy": ..., "param_00.npy": ...}``), or None when it is not a plain,
    small archive. The arrays are checked when graded, as any output."""
    import zipfile

    if not data:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if sum(i.file_size for i in infos) > SNAPSHOT_CAP or len(infos) > 64:
                return None
            if any("/" in n or not n.endswith(".npy") for n in names):
                return None
            return {n: zf.read(n) for n in names}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None


_per_thread = threading.local()


def trusted_overfit_model():
    """The grader's own copy of the seed's overfit model (the solution's CNN, not the
    student's), built once per thread: grading overwrites every parameter."""
    model = getattr(_per_thread, "overfit_model", None)
    if model is None:
        from hw2.classifier import ArgMaxClassifier
        from hw2.cnn import CNN

        model = _per_thread.overfit_model = ArgMaxClassifier(model=CNN(**OVERFIT_CNN))
    return model


def _grade_overfit(check: str, out: dict, exp: Expected, ctx: dict) -> str:
    """Load the returned trained parameters into the trusted model and measure its accuracy on
    the training images here; the trainer's reported numbers are only shown."""
    import torch

    reported = load_array(out, "accuracies")
    epochs = OVERFIT_RUN["num_epochs"]
    if reported.ndim != 1 or not 1 <= len(reported) <= epochs:
        raise Invalid(f"per-epoch accuracies have shape {reported.shape}, expected 1 to {epochs}")
    model = trusted_overfit_model()
    expected = [tuple(p.shape) for p in model.parameters()]
    returned = sorted(k for k in out if k.startswith("param_") and k.endswith(".npy"))
    if len(returned) != len(expected):
        raise Invalid(
            f"the trained model has {len(returned)} parameter tensors, the seed's CNN "
            f"{len(expected)}: build the layers as the seed prints them (see the cnn checks)"
        )
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            arr = load_array(out, f"param_{i:02d}")
            _shape(arr, p.shape, f"trained parameter {i}")
            p.copy_(torch.from_numpy(arr.astype(np.float32)))
        model.train(False)
        predictions = model.model(exp.overfit_x).argmax(dim=1).numpy()
    n = len(exp.overfit_labels)
    accuracy = 100.0 * float(np.mean(predictions == exp.overfit_labels))
    best = float(reported.max())
    summary = f"the trained model classifies {accuracy:.0f}% of the {n} training images"
    if accuracy < OVERFIT_MIN_ACCURACY:
        note = f" (your trainer reported up to {best:.0f}%)" if best >= OVERFIT_MIN_ACCURACY else ""
        raise Invalid(f"{summary}, below {OVERFIT_MIN_ACCURACY:.0f}%{note}")
    return f"{summary} (trainer reported best epoch {best:.0f}%)"


GRADERS = {
    **{name: _grade_spec for name in harness.SPEC_CHECKS},
    "classifier": _grade_classifier,
    "hidden_classifier": _grade_hidden_classifier,
    "overfit": _grade_overfit,
}


def grade_outputs(check: str, outputs: dict, exp: Expected, ctx: dict) -> tuple[bool, str]:
    """Whether ``check`` passed, and why; ``ctx`` holds the task's arguments."""
    try:
        return True, GRADERS[check](check, outputs, exp, ctx)
    except Invalid as e:
        return False, str(e)


def run_failure(reply: dict, outputs: dict[str, bytes]) -> tuple[str, str] | None:
    """``(status, message)`` when the child crashed or failed outside the checks, else
    ``None`` (time limits are told by the caller, who knows them)."""
    sig = reply.get("signal")
    if isinstance(sig, int):
        return "error", f"the process crashed: {_signal_name(sig)}"
    if "error.json" in outputs:
        return "error", _reported_error(outputs["error.json"])
    code = reply.get("exit")
    if code not in (0, None):
        return "error", f"the process exited with code {code} before returning results"
    return None


def _signal_name(sig: int) -> str:
    try:
        name = signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
    why = {
        "SIGXCPU": " (CPU time limit)",
        "SIGSEGV": " (segmentation fault)",
        "SIGKILL": " (killed, possibly for memory)",
        "SIGXFSZ": " (file size limit)",
    }
    return name + why.get(name, "")


def _reported_error(data: bytes) -> str:
    try:
        doc = json.loads(data[:100_000])
        message = str(doc.get("error", "")) if isinstance(doc, dict) else ""
    except ValueError:
        message = ""
    return clip(message or "the code raised an error")


def clip(text: str, cap: int = MESSAGE_CAP) -> str:
    """``text`` on one line, at most ``cap`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= cap else text[: cap - 1] + "…"
