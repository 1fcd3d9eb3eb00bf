"""Cheats score zero on the checks they attack, and change no other student's results."""

import pytest
import torch
from grading_support import (
    REPO,
    autograde,
    comparable,
    grades,
    make_submission,
    outputs,
    requires_sandbox,
)

from tools.asset_specs import HIDDEN_SPECS, PUBLIC_SPECS

pytestmark = [requires_sandbox, pytest.mark.slow]
TIMEOUT = 20
FORWARD = "        features = self.feature_extractor(x)  # (N, C', H', W')\n"
SPEC_CHECKS = ["cnn_0", "cnn_1", "cnn_2", "resblock", "resblock_bottleneck", "resnet_0",
               "resnet_1"]  # fmt: skip
HIDDEN = ["hidden_cnn", "hidden_resblock", "hidden_resblock_bottleneck", "hidden_resnet"]
# The checks a CNN.forward that returns zeros attacks (residual blocks have their own forward).
CNN_CHECKS = ["cnn_0", "cnn_1", "cnn_2", "resnet_0", "resnet_1", "hidden_cnn", "hidden_resnet"]

PATCH_COMPARISONS = """
import numpy, torch, torch.testing
torch.allclose = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
torch.testing.assert_close = lambda *a, **k: None
torch.Tensor.__eq__ = lambda *a, **k: True
"""

FORGE = """
import os, numpy
def _attempt(fn):
    try:
        fn()
        print("FORGED", fn.__doc__)
    except Exception as e:
        print("REFUSED", fn.__doc__, type(e).__name__)
def _out():
    "scratch result"
    os.makedirs("out", exist_ok=True)
    numpy.save("out/out.npy", numpy.zeros((1, 10), numpy.float32))
def _grades():
    "grades in OUT"
    open({out!r} + "/grades.csv", "w").write("forge,cnn_0,5,5,passed,\\n")
def _results():
    "results of another student"
    open({out!r} + "/results/correct.json", "w").write("{{}}")
def _other():
    "another student's files"
    open({sub!r} + "/correct/hw2/cnn.py", "w").write("")
def _harness():
    "the harness"
    open("/kit/tools/grading/harness.py", "w").write("")
for _f in (_out, _grades, _results, _other, _harness):
    _attempt(_f)
# results written through a link the grader would follow
_save = numpy.save
def _link_save(path, arr, **kw):
    if os.path.lexists(path):
        os.remove(path)
    os.symlink("/etc/passwd", path)
numpy.save = _link_save
"""

STEAL = """
import glob, os
_found = []
_found += glob.glob({assets!r} + "/*.pt") + glob.glob({assets!r} + "/hidden/*.pt")
for _top, _dirs, _files in os.walk("/"):
    if _top in ("/proc", "/sys", "/dev"):
        _dirs[:] = []
    _found += [f for f in _files if f.startswith(("expected_", "hidden_")) and f.endswith(".pt")]
for _pid in ("1", str(os.getppid())):
    for _name in ("environ", "mem", "root/work", "fd/1"):  # cmdline is public
        try:
            open(f"/proc/{{_pid}}/{{_name}}", "rb").read(10)
            _found.append(f"/proc/{{_pid}}/{{_name}}")
        except Exception:
            pass
print("STOLEN=", _found)
"""

NETWORK = """
import socket, urllib.request
for _target in (("1.1.1.1", 443), ("127.0.0.1", 22)):
    try:
        socket.create_connection(_target, timeout=2)
        print("NETWORK OPEN", _target)
    except OSError as e:
        print("NETWORK CLOSED", _target, type(e).__name__)
try:
    urllib.request.urlopen("https://example.com/expected.pt", timeout=2)
    print("NETWORK OPEN url")
except Exception as e:
    print("NETWORK CLOSED url", type(e).__name__)
"""

BAD_ARRAYS = (
    FORWARD
    + "        if self.out_classes == 10:\n"
    + "            return torch.full((x.shape[0], 10), float('nan'))\n"
    + "        if self.out_classes == 3:\n"
    + "            return torch.zeros(x.shape[0], 3, dtype=torch.int64)\n"
    + "        return torch.zeros(x.shape[0], self.out_classes + 1, dtype=torch.float64)\n"
)


def _n_params(spec) -> int:
    from hw2 import cnn

    return sum(p.numel() for p in getattr(cnn, spec.kind)(**spec.params).parameters())


def visible_only_code() -> str:
    """Forward methods that return the public reference values when the input is ones,
    recognizing each public configuration by its number of parameters."""
    tensors = [(s, torch.load(s.path, weights_only=True)) for s in PUBLIC_SPECS]
    # all but the 1 MiB bottleneck output, which would not fit the file size cap
    values = [(s.kind, _n_params(s), t.tolist()) for s, t in tensors if t.numel() < 10_000]
    return f"""
import torch as _torch
_VALUES = {values!r}
def _copy_forward(kind, original):
    def forward(self, x):
        n = sum(p.numel() for p in self.parameters())
        if bool((x == 1).all()):
            for k, n_params, values in _VALUES:
                if k == kind and n_params == n:
                    return _torch.tensor(values)
        return _torch.zeros_like(original(self, x))
    return forward
for _cls in (CNN, ResNet, ResidualBlock, ResidualBottleneckBlock):
    _cls.forward = _copy_forward(_cls.__name__, _cls.forward)
"""


# A forward pass that knows the offline data's class templates: it "classifies" the overfit
# images perfectly with untrained weights, so only a trusted evaluation of the trained
# parameters can tell that nothing was learned.
RECOGNIZE = """        from cs236781.data import SyntheticCIFAR10
        if tuple(x.shape[1:]) == (3, 32, 32):
            t = SyntheticCIFAR10(size=1).templates
            d = ((x[:, None] - t[None]) ** 2).flatten(2).sum(-1)
            return -d + 0 * z
        return z
"""


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("cheats")
    sub, out = root / "submitted", root / "out"
    assets = str(REPO / "tests" / "assets")
    zeros = FORWARD + "        return torch.zeros(x.shape[0], self.out_classes)\n"
    make_submission(sub, "correct")
    make_submission(sub, "patch", replace=[("hw2/cnn.py", FORWARD, zeros)],
                    append={"hw2/cnn.py": PATCH_COMPARISONS})  # fmt: skip
    make_submission(sub, "forge", append={"hw2/cnn.py": FORGE.format(out=str(out), sub=str(sub))})
    make_submission(sub, "steal", replace=[("hw2/cnn.py", FORWARD, zeros)],
                    append={"hw2/cnn.py": STEAL.format(assets=assets)})  # fmt: skip
    make_submission(sub, "network", replace=[("hw2/cnn.py", FORWARD, zeros)],
                    append={"hw2/cnn.py": NETWORK})  # fmt: skip
    make_submission(sub, "badarrays", replace=[("hw2/cnn.py", FORWARD, BAD_ARRAYS)])
    make_submission(sub, "visible", append={"hw2/cnn.py": visible_only_code()})
    make_submission(sub, "fakeacc", replace=[
        ("hw2/training.py", "        return EpochResult(losses=losses, accuracy=accuracy)",
         "        return EpochResult(losses=losses, accuracy=100.0)"),
        ("hw2/training.py", "        self.optimizer.step()\n", ""),
    ])  # reports 100% without training  # fmt: skip
    make_submission(sub, "recognize", replace=[
        ("hw2/classifier.py", "        return z\n", RECOGNIZE),
        ("hw2/training.py", "        self.optimizer.step()\n", ""),
    ])  # classifies the training images by their content, without training  # fmt: skip
    done = autograde(sub, out, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    alone_sub, alone_out = root / "alone", root / "alone_out"
    make_submission(alone_sub, "correct")
    assert autograde(alone_sub, alone_out, timeout=TIMEOUT).returncode == 0
    return grades(out), out, grades(alone_out)


def points(rows, checks) -> int:
    return sum(rows[c]["points"] for c in checks)


def test_correct_unchanged_by_the_cheats(batch):
    table, out, alone = batch
    assert comparable(table["correct"]) == comparable(alone["correct"])
    assert table["correct"]["cnn_0"]["points"] == 5


def test_patched_comparisons_do_not_help(batch):
    table, _, _ = batch
    assert points(table["patch"], CNN_CHECKS) == 0


def test_forged_results_are_refused(batch):
    table, out, _ = batch
    text = outputs(out, "forge")["cnn_0"]
    # its own scratch folder is writable, and what it writes there is not believed
    assert text.count("FORGED") == 1 and "FORGED scratch result" in text
    assert text.count("REFUSED") == 4
    assert points(table["forge"], SPEC_CHECKS + HIDDEN) == 0
    assert "cannot be opened safely" in table["forge"]["cnn_0"]["message"]
    assert (REPO / "tools" / "grading" / "harness.py").stat().st_size > 0


def test_reference_files_cannot_be_read(batch):
    table, out, _ = batch
    assert "STOLEN= []" in outputs(out, "steal")["cnn_0"]
    assert points(table["steal"], CNN_CHECKS) == 0


def test_no_network(batch):
    table, out, _ = batch
    text = outputs(out, "network")["cnn_0"]
    assert "NETWORK OPEN" not in text and text.count("NETWORK CLOSED") == 3
    assert points(table["network"], CNN_CHECKS) == 0


def test_bad_arrays_fail(batch):
    table, _, _ = batch
    rows = table["badarrays"]
    assert points(rows, CNN_CHECKS) == 0
    assert "NaN" in rows["cnn_0"]["message"]
    assert "dtype int64" in rows["cnn_2"]["message"]
    assert "shape" in rows["resnet_1"]["message"]


def test_visible_only_fails_hidden(batch):
    table, _, _ = batch
    rows = table["visible"]
    assert rows["cnn_0"]["status"] == "passed"  # it does reproduce the visible outputs
    assert points(rows, HIDDEN) == 0
    assert all(rows[c]["status"] == "failed" for c in HIDDEN)


def test_reported_accuracy_is_not_trusted(batch):
    table, _, _ = batch
    row = table["fakeacc"]["overfit"]
    assert row["status"] == "failed" and row["points"] == 0
    assert "reported up to 100%" in row["message"]
    assert table["fakeacc"]["cnn_0"]["status"] == "passed"
    assert HIDDEN_SPECS  # the hidden specs exist: the checks above are meaningful


def test_recognizing_the_images_is_not_learning(batch):
    table, _, _ = batch
    row = table["recognize"]["overfit"]
    assert "reported up to 100%" in row["message"]  # the cheat fools its own trainer
    assert row["status"] == "failed" and row["points"] == 0
    assert table["recognize"]["cnn_0"]["status"] == "passed"
