"""tools/regen_assets.py and cs236781/assets.py: the reference tensors and their manifest."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from cs236781 import assets
from cs236781.assets import load_expected
from tools import asset_specs
from tools import regen_assets as regen
from tools.asset_specs import ALL_SPECS, HIDDEN_DIR, PUBLIC_DIR, ROOT


def build_single_threaded() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tool does
    try:
        return regen.build_all()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def built() -> dict:
    return build_single_threaded()


@pytest.fixture
def asset_copy(tmp_path, monkeypatch, built, torch_state):
    """The committed assets copied under ``tmp_path``, with the tool pointed at the copy."""
    shutil.copytree(PUBLIC_DIR, tmp_path / "tests" / "assets")
    public, hidden = (tmp_path / d.relative_to(ROOT) for d in (PUBLIC_DIR, HIDDEN_DIR))
    for module in (asset_specs, regen):
        monkeypatch.setattr(module, "PUBLIC_DIR", public)
        monkeypatch.setattr(module, "HIDDEN_DIR", hidden)
    monkeypatch.setattr(regen, "ROOT", tmp_path)
    fresh = {tmp_path / p.relative_to(ROOT): d for p, d in built.items() if p.suffix == ".pt"}
    monkeypatch.setattr(regen, "fresh_tensors", lambda: fresh)
    return public


def test_check_passes_on_the_committed_assets():
    run = subprocess.run(
        [sys.executable, "tools/regen_assets.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"all {len(ALL_SPECS) + 2} files match" in run.stdout


def test_committed_assets_are_what_the_solution_builds(built):
    assert regen.differences(built) == []
    assert {p for p in built if p.suffix == ".pt"} == {s.path for s in ALL_SPECS}


def test_build_is_byte_for_byte_deterministic(built):
    assert build_single_threaded() == built


def test_check_passes_on_an_untouched_copy(asset_copy, capsys):
    assert regen.main(["--check"]) == 0
    assert "match the solution" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "file", "listed"),
    [
        ("tamper", "expected_conv_out_01.pt", "differs: tests/assets/expected_conv_out_01.pt"),
        ("delete", "hidden/hidden_cnn.pt", "missing: tests/assets/hidden/hidden_cnn.pt"),
        ("delete", "manifest.json", "missing: tests/assets/manifest.json"),
        ("stray", "expected_old.pt", "not produced by the solution: tests/assets/expected_old.pt"),
    ],
)
def test_check_fails_and_lists_the_file(asset_copy, capsys, change, file, listed):
    path = asset_copy / file
    if change == "tamper":
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF
        path.write_bytes(bytes(data))
    elif change == "delete":
        path.unlink()
    else:
        path.write_bytes(b"stray")
    assert regen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert listed in err and "1 asset file(s) out of date" in err
    assert regen.COMMAND in err, "says how to fix it"


def test_regenerating_repairs_the_copy(asset_copy, built):
    (asset_copy / "expected_resnet_out_00.pt").unlink()
    (asset_copy / "hidden" / "manifest.json").write_text("{}")
    assert regen.main([]) == 0
    assert regen.main(["--check"]) == 0


@pytest.mark.parametrize("directory", [PUBLIC_DIR, HIDDEN_DIR], ids=["public", "hidden"])
def test_manifest_describes_the_files(directory):
    manifest = json.loads((directory / regen.MANIFEST).read_text())
    assert manifest["torch_version"] == torch.__version__
    assert manifest["generated_by"] == regen.COMMAND
    assert set(manifest["files"]) == {p.name for p in directory.glob("*.pt")}
    kinds = {s.file: s.kind for s in ALL_SPECS}
    for name, entry in manifest["files"].items():
        data = (directory / name).read_bytes()
        tensor = torch.load(directory / name, weights_only=True)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["shape"] == list(tensor.shape)
        assert entry["dtype"] == str(tensor.dtype).removeprefix("torch.")
        assert entry["torch_version"] == torch.__version__
        assert entry["command"] == regen.COMMAND
        assert entry["kind"] == kinds[name]


def test_load_expected_loads_the_tensor():
    path = PUBLIC_DIR / "expected_conv_out_00.pt"
    assert torch.equal(load_expected(path), torch.load(path, weights_only=True))


def test_load_expected_warns_once_for_another_torch(monkeypatch):
    monkeypatch.setattr(assets, "_warned", set())
    monkeypatch.setattr(torch, "__version__", "2.0.0")
    made_with = json.loads((PUBLIC_DIR / "manifest.json").read_text())["torch_version"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_expected(PUBLIC_DIR / "expected_conv_out_00.pt")
        load_expected(PUBLIC_DIR / "expected_resnet_out_01.pt")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert made_with in message and "2.0.0" in message


def test_load_expected_is_quiet_for_the_same_torch(monkeypatch):
    monkeypatch.setattr(assets, "_warned", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_expected(PUBLIC_DIR / "expected_conv_out_00.pt")


def test_load_expected_names_a_missing_file_and_the_fix(tmp_path):
    missing = tmp_path / "expected_conv_out_00.pt"
    with pytest.raises(FileNotFoundError) as error:
        load_expected(missing)
    assert str(missing) in str(error.value) and regen.COMMAND in str(error.value)


# --- by-value comparison: machine-independent, yet strict ------------------------------------


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_check_passes_under_other_cpu_kernels(capability):
    """Other kernels round float32 sums differently; the check compares by value."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    run = subprocess.run(
        [sys.executable, "tools/regen_assets.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "max |a-b| = " in run.stdout, "prints each file's largest deviation"


def test_a_one_line_mutation_of_the_solution_fails_the_check(monkeypatch, capsys, torch_state):
    """``return torch.relu(out)`` of ResidualBlock.forward becomes ``... out * 1.001``."""
    import types

    import hw2
    from hw2 import cnn

    source = (ROOT / "hw2" / "cnn.py").read_text()
    line = "        return torch.relu(out)\n"
    assert source.count(line) == 1
    mutated = types.ModuleType("hw2.cnn")
    mutated.__file__ = cnn.__file__
    exec(
        compile(source.replace(line, line.rstrip() + " * 1.001\n"), cnn.__file__, "exec"),
        mutated.__dict__,
    )
    monkeypatch.setitem(sys.modules, "hw2.cnn", mutated)
    monkeypatch.setattr(hw2, "cnn", mutated)
    assert regen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "differs: tests/assets/expected_resblock_out.pt" in err
    assert "differs: tests/assets/manifest.json" in err


def _save(path, tensor):
    path.write_bytes(regen.tensor_bytes(tensor))


def test_within_tolerance_is_kept_untouched(asset_copy, capsys):
    """A committed tensor a float32 rounding away from the new values stays byte for byte."""
    path = asset_copy / "expected_resnet_out_00.pt"
    nudged = torch.load(path, weights_only=True)
    nudged = nudged + 1e-7 * nudged.abs().clamp(min=1)  # far inside 1e-5 + 1e-5|b|
    _save(path, nudged)
    before = {p: p.read_bytes() for p in asset_copy.rglob("*") if p.is_file()}
    assert regen.main([]) == 0
    assert path.read_bytes() == before[path], "the nudged tensor was not rewritten"
    capsys.readouterr()
    assert regen.main(["--check"]) == 0
    assert "expected_resnet_out_00.pt: max |a-b| = " in capsys.readouterr().out


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t + 1e-3,  # the graders' tolerance: a real change
        lambda t: t.double(),
        lambda t: t.reshape(-1),
    ],
    ids=["values", "dtype", "shape"],
)
def test_out_of_tolerance_dtype_or_shape_fails(asset_copy, capsys, change):
    path = asset_copy / "expected_conv_out_01.pt"
    _save(path, change(torch.load(path, weights_only=True)))
    assert regen.main(["--check"]) == 1
    assert "differs: tests/assets/expected_conv_out_01.pt" in capsys.readouterr().err
    assert regen.main([]) == 0
    assert regen.main(["--check"]) == 0


def test_manifest_must_describe_the_files(asset_copy, capsys):
    manifest = asset_copy / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["files"]["expected_conv_out_00.pt"]["shape"] = [2, 10]
    manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    assert regen.main(["--check"]) == 1
    assert "differs: tests/assets/manifest.json" in capsys.readouterr().err
