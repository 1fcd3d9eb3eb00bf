"""tools/asset_specs.py: hidden specs stay inside the documented contract (DESIGN.md, 6)."""

import dataclasses

import pytest

from tools import regen_assets as regen
from tools.asset_specs import CONTRACT, HIDDEN_SPECS, PUBLIC_SPECS, contract_violations


@pytest.mark.parametrize("spec", HIDDEN_SPECS, ids=lambda s: s.file)
def test_every_hidden_spec_uses_only_documented_choices(spec):
    assert contract_violations(spec) == []
    # the template's docstrings: CNN and the blocks support "relu" or "lrelu"; pooling "max"
    # or "avg"; nothing outside each class's documented signature
    assert spec.params.get("activation_type", "relu") in ("relu", "lrelu")
    if spec.kind in ("CNN", "ResNet"):
        assert spec.params.get("pooling_type", "max") in ("max", "avg")
    assert set(spec.params) <= CONTRACT[spec.kind]["args"]


@pytest.mark.parametrize("spec", HIDDEN_SPECS, ids=lambda s: s.file)
def test_every_hidden_spec_names_the_clause_it_exercises(spec):
    assert spec.notes.startswith(spec.kind + ":")
    assert len(spec.notes.split()) >= 6


def test_the_hidden_specs_cover_every_class():
    assert {s.kind for s in HIDDEN_SPECS} == set(CONTRACT)


def _with(spec, **params):
    return dataclasses.replace(spec, params={**spec.params, **params})


CNN = next(s for s in HIDDEN_SPECS if s.kind == "CNN")
BLOCK = next(s for s in HIDDEN_SPECS if s.kind == "ResidualBlock")
RESNET = next(s for s in HIDDEN_SPECS if s.kind == "ResNet")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (_with(CNN, activation_type="tanh"), "activation_type='tanh' is not promised"),
        (_with(CNN, pooling_type="lp"), "pooling_type='lp' is not promised"),
        (_with(CNN, activation_params=dict(alpha=1.0)), "activation_params ['alpha']"),
        (_with(CNN, hidden_dims=[]), "hidden_dims must be a non-empty list"),
        (_with(CNN, channels=(8, 16)), "channels must be a non-empty list"),
        (_with(CNN, in_size=(3, 40, 40)), "does not match in_size"),
        (_with(CNN, dilation=2), "outside the documented signature: ['dilation']"),
        (_with(BLOCK, kernel_sizes=[3, 2, 5]), "kernel_sizes must hold odd positive ints"),
        (_with(BLOCK, dropout=1.0), "dropout must be in [0, 1)"),
        (_with(RESNET, conv_params=dict(kernel_size=5)), "['conv_params']"),
        (_with(RESNET, channels=[16, 16, 16, 16]), "too short for a bottleneck"),
        (dataclasses.replace(CNN, notes=""), "no notes"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_spec_outside_the_contract_is_named(spec, expected):
    assert any(expected in p for p in contract_violations(spec)), contract_violations(spec)


def test_the_seeds_own_tanh_resnet_is_outside_the_documented_choices():
    """The seed's public ResNet test uses tanh, which no docstring promises: the contract
    checker sees it (public specs are the seed's cells and are kept as they are)."""
    resnet_1 = next(s for s in PUBLIC_SPECS if s.file == "expected_resnet_out_01.pt")
    assert any("'tanh'" in p for p in contract_violations(resnet_1))


def test_regen_assets_refuses_a_hidden_spec_outside_the_contract(monkeypatch, capsys):
    monkeypatch.setattr(regen, "HIDDEN_SPECS", [_with(CNN, activation_type="tanh")])
    assert regen.main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "hidden_cnn.pt leaves the documented contract" in err and "asset_specs.py" in err
