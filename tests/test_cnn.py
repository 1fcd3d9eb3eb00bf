"""hw2/cnn.py: the seed's cells, properties over random configurations, torch as the oracle."""

import re
from itertools import pairwise

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from cs236781.assets import load_expected
from hw2 import cnn
from hw2.cnn import CNN, ResidualBlock, ResidualBottleneckBlock, ResNet
from hw2.mlp import ACTIVATIONS
from tools import asset_specs
from tools.asset_specs import PUBLIC_SPECS, SEED, run_spec

ATOL = 1e-3  # the seed's tolerance
PROPERTIES = settings(max_examples=20, deadline=None, derandomize=True, database=None)
SPECS_BY_FILE = {s.file: s for s in PUBLIC_SPECS}
# The seed cells that print a module, and the reference files of what they build, in order.
SEED_CELL_ASSETS = {
    3: ["expected_conv_out_00.pt", "expected_conv_out_01.pt", "expected_conv_out_02.pt"],
    7: ["expected_resblock_out.pt"],
    8: ["expected_resblock_bn_out.pt"],
    9: ["expected_resnet_out_00.pt", "expected_resnet_out_01.pt"],
}


def normalized_repr(module: nn.Module) -> str:
    """``repr(module)`` without the ``bias=True`` field that torch 2.14 adds to BatchNorm2d."""
    return re.sub(r"(BatchNorm2d\([^\n]*?), bias=True", r"\1", repr(module))


def seed_test_params(cell: str) -> list[dict]:
    """The ``test_params = [...]`` list of a seed cell, evaluated."""
    m = re.search(r"^test_params = (\[\n.*?\n\])$", cell, re.DOTALL | re.MULTILINE)
    assert m, "the seed cell defines test_params"
    return eval(m.group(1), {"__builtins__": {}, "dict": dict})


def build(spec) -> nn.Module:
    torch.manual_seed(SEED)
    return getattr(cnn, spec.kind)(**spec.params)


# --- The seed's cells ---------------------------------------------------------------------


@pytest.mark.parametrize("cell", [3, 9])
def test_asset_specs_are_the_seed_test_params(seed_cells, cell):
    files = SEED_CELL_ASSETS[cell]
    assert [SPECS_BY_FILE[f].params for f in files] == seed_test_params(seed_cells[cell])


@pytest.mark.parametrize(
    ("cell", "callee", "file"),
    [
        (7, "ResidualBlock", "expected_resblock_out.pt"),
        (8, "ResidualBottleneckBlock", "expected_resblock_bn_out.pt"),
    ],
)
def test_asset_specs_are_the_seed_block_arguments(seed_cells, seed_call, cell, callee, file):
    args, kwargs = seed_call(seed_cells[cell], callee)
    assert args == () and SPECS_BY_FILE[file].params == kwargs


def test_seed_printed_every_module_cell(seed_printed_modules):
    # The seed shows one printout for each cell that prints modules; cell 3 and 9 only the
    # first of their configurations.
    assert [(p.cell, p.name) for p in seed_printed_modules] == [
        (3, "CNN"),
        (7, "ResidualBlock"),
        (8, "ResidualBottleneckBlock"),
        (9, "ResNet"),
    ]


@pytest.mark.parametrize("cell", sorted(SEED_CELL_ASSETS))
def test_printed_structure_matches_seed(seed_printed_modules, cell):
    (shown,) = [p for p in seed_printed_modules if p.cell == cell]
    ours = normalized_repr(build(SPECS_BY_FILE[SEED_CELL_ASSETS[cell][0]]))
    if shown.complete:
        assert ours == shown.text
    else:  # the seed's printout was cut off: compare the part it shows
        assert len(shown.text) > 200
        assert ours[: len(shown.text)] == shown.text


def test_normalized_repr_drops_only_batchnorm_bias():
    text = normalized_repr(nn.Sequential(nn.BatchNorm2d(3), nn.Linear(2, 2)))
    assert "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)" in text
    assert "Linear(in_features=2, out_features=2, bias=True)" in text


@pytest.mark.parametrize("file", [f for files in SEED_CELL_ASSETS.values() for f in files])
def test_output_matches_reference(file):
    spec = SPECS_BY_FILE[file]
    out = run_spec(spec, cnn)
    expected = load_expected(spec.path)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)


def test_cnn_0_output_is_the_original_courses(seed_cells):
    # The seed printed the original course's output for CNN test 0: an independent oracle.
    printed = seed_cells[3].split("test_out=tensor(", 1)[1]
    values = re.findall(r"-?\d+\.\d+", printed)
    assert len(values) == 9
    out = run_spec(SPECS_BY_FILE["expected_conv_out_00.pt"], cnn)[0]
    for ours, shown in zip(out.tolist(), values, strict=False):
        # the last value is cut off in the seed ("0.05"): compare the digits shown
        assert f"{ours:.4f}".startswith(shown), (ours, shown)


@pytest.mark.parametrize("cell", [7, 8])
def test_block_output_shape_is_the_seeds(seed_cells, cell):
    (shown,) = re.findall(r"^test_out\.shape=(torch\.Size\(.*\))$", seed_cells[cell], re.M)
    out = run_spec(SPECS_BY_FILE[SEED_CELL_ASSETS[cell][0]], cnn)
    assert f"{out.shape}" == shown


def test_hidden_specs_differ_from_public():
    public = [s.params for s in PUBLIC_SPECS]
    assert all(s.params not in public and s.hidden for s in asset_specs.HIDDEN_SPECS)


# --- Random valid configurations ----------------------------------------------------------


def feature_shape(params: dict) -> tuple[int, int, int] | None:
    """``(C, H, W)`` after a CNN's feature extractor, from the size formulas of conv and
    pooling; ``None`` when a feature map would vanish."""
    _, h, w = params["in_size"]
    conv = params["conv_params"]
    k, s, p = conv["kernel_size"], conv.get("stride", 1), conv.get("padding", 0)
    pk = params["pooling_params"]["kernel_size"]
    for i in range(len(params["channels"])):
        h, w = ((x + 2 * p - k) // s + 1 for x in (h, w))
        if (i + 1) % params["pool_every"] == 0 and min(h, w) >= 1:
            h, w = ((x - pk) // pk + 1 for x in (h, w))
        if min(h, w) < 1:
            return None
    return params["channels"][-1], h, w


GRAD_FRIENDLY = ("lrelu", "tanh")  # no dead units: every parameter must get a gradient


@st.composite
def cnn_configs(draw, activations=("relu", "lrelu", "tanh", "sigmoid")):
    kernel = draw(st.integers(1, 3))
    params = dict(
        in_size=(draw(st.integers(1, 3)), draw(st.integers(4, 12)), draw(st.integers(4, 12))),
        out_classes=draw(st.integers(1, 5)),
        channels=draw(st.lists(st.integers(2, 6), min_size=1, max_size=4)),
        pool_every=draw(st.integers(1, 3)),
        hidden_dims=draw(st.lists(st.integers(4, 8), max_size=2)),
        conv_params=dict(
            kernel_size=kernel,
            stride=draw(st.integers(1, 2)),
            padding=draw(st.integers(0, kernel // 2)),
        ),
        activation_type=draw(st.sampled_from(activations)),
        pooling_type=draw(st.sampled_from(sorted(cnn.POOLINGS))),
        pooling_params=dict(kernel_size=draw(st.integers(1, 2))),
    )
    assume(feature_shape(params) is not None)
    return params


@st.composite
def resnet_configs(draw, activations=("relu", "lrelu", "tanh")):
    channels = draw(st.lists(st.sampled_from([2, 3, 4]), min_size=1, max_size=6))
    pool_every = draw(st.integers(1, 4))
    side = 2 ** (len(channels) // pool_every)
    return dict(
        in_size=(draw(st.integers(1, 3)), side * draw(st.integers(1, 2)), side + 1),
        out_classes=draw(st.integers(1, 5)),
        channels=channels,
        pool_every=pool_every,
        hidden_dims=draw(st.lists(st.integers(4, 8), max_size=2)),
        activation_type=draw(st.sampled_from(activations)),
        pooling_type=draw(st.sampled_from(sorted(cnn.POOLINGS))),
        pooling_params=dict(kernel_size=2),
        batchnorm=draw(st.booleans()),
        dropout=draw(st.sampled_from([0.0, 0.25])),
        bottleneck=draw(st.booleans()),
    )


@st.composite
def block_configs(draw, activations=("relu", "lrelu", "tanh")):
    n = draw(st.integers(1, 4))
    channels = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
    return dict(
        in_channels=draw(st.sampled_from([channels[-1], draw(st.integers(1, 6))])),
        channels=channels,
        kernel_sizes=draw(st.lists(st.sampled_from([1, 3, 5]), min_size=n, max_size=n)),
        batchnorm=draw(st.booleans()),
        dropout=draw(st.sampled_from([0.0, 0.2])),
        activation_type=draw(st.sampled_from(activations)),
    )


@st.composite
def bottleneck_configs(draw):
    n = draw(st.integers(1, 3))
    return dict(
        in_out_channels=draw(st.integers(1, 8)),
        inner_channels=draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)),
        inner_kernel_sizes=draw(st.lists(st.sampled_from([1, 3, 5]), min_size=n, max_size=n)),
        batchnorm=draw(st.booleans()),
        dropout=draw(st.sampled_from([0.0, 0.1])),
    )


def seeded(cls, **params) -> nn.Module:
    torch.manual_seed(0)
    return cls(**params)


def images(n: int, c: int, h: int, w: int) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(1))


def layer_kinds(module: nn.Module) -> list[type]:
    return [type(m) for m in module]


@PROPERTIES
@given(cnn_configs(), st.integers(1, 3))
def test_cnn_shapes_and_layers(params, n):
    net = seeded(CNN, **params)
    x = images(n, *params["in_size"])
    assert net(x).shape == (n, params["out_classes"])
    assert net.feature_extractor(x).shape == (n, *feature_shape(params))

    act, pool = type(ACTIVATIONS[params["activation_type"]]()), cnn.POOLINGS[params["pooling_type"]]
    expected = []
    for i in range(len(params["channels"])):
        expected += [nn.Conv2d, act] + ([pool] if (i + 1) % params["pool_every"] == 0 else [])
    assert layer_kinds(net.feature_extractor) == expected
    linears = [m for m in net.mlp.modules() if isinstance(m, nn.Linear)]
    c, h, w = feature_shape(params)
    dims = [c * h * w, *params["hidden_dims"], params["out_classes"]]
    assert [(m.in_features, m.out_features) for m in linears] == list(pairwise(dims))


@PROPERTIES
@given(cnn_configs())
def test_cnn_equals_torch_layers_built_in_the_same_order(params):
    net = seeded(CNN, **params)
    act = ACTIVATIONS[params["activation_type"]]
    pool = cnn.POOLINGS[params["pooling_type"]]
    torch.manual_seed(0)
    layers, c_in = [], params["in_size"][0]
    for i, c_out in enumerate(params["channels"]):
        layers += [nn.Conv2d(c_in, c_out, **params["conv_params"]), act()]
        if (i + 1) % params["pool_every"] == 0:
            layers.append(pool(**params["pooling_params"]))
        c_in = c_out
    layers.append(nn.Flatten())
    dims = [int(torch.tensor(feature_shape(params)).prod()), *params["hidden_dims"]]
    for d_in, d_out in pairwise(dims):
        layers += [nn.Linear(d_in, d_out), act()]
    layers.append(nn.Linear(dims[-1], params["out_classes"]))
    reference = nn.Sequential(*layers)

    ours, theirs = list(net.parameters()), list(reference.parameters())
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)), (
        "parameter creation order"
    )
    x = images(2, *params["in_size"])
    torch.testing.assert_close(net(x), reference(x))


@PROPERTIES
@given(resnet_configs())
def test_resnet_shapes_and_blocks(params):
    net = seeded(ResNet, **params)
    x = images(2, *params["in_size"])
    assert net(x).shape == (2, params["out_classes"])

    channels, p = params["channels"], params["pool_every"]
    groups = [channels[i : i + p] for i in range(0, len(channels), p)]
    blocks = [m for m in net.feature_extractor if isinstance(m, ResidualBlock)]
    pools = [
        m for m in net.feature_extractor if isinstance(m, cnn.POOLINGS[params["pooling_type"]])
    ]
    assert len(blocks) == len(groups) and len(pools) == len(channels) // p
    in_channels = params["in_size"][0]
    for group, block in zip(groups, blocks, strict=True):
        wants_bottleneck = params["bottleneck"] and len(group) >= 3 and in_channels == group[-1]
        assert isinstance(block, ResidualBottleneckBlock) == wants_bottleneck
        convs = [m for m in block.main_path if isinstance(m, nn.Conv2d)]
        assert convs[-1].out_channels == group[-1] and convs[0].in_channels == in_channels
        if not wants_bottleneck:
            assert [c.out_channels for c in convs] == group
            assert all(c.kernel_size == (3, 3) for c in convs)
        in_channels = group[-1]
    side = 2 ** len(pools)
    _, h, w = params["in_size"]
    assert net.feature_extractor(x).shape == (2, channels[-1], h // side, w // side)


@PROPERTIES
@given(block_configs(), st.integers(1, 6), st.integers(1, 6))
def test_residual_block_keeps_size_and_projects_channels(params, h, w):
    block = seeded(ResidualBlock, **params)
    x = images(2, params["in_channels"], h, w)
    assert block(x).shape == (2, params["channels"][-1], h, w)
    assert (block(x) >= 0).all(), "the sum of both paths goes through a ReLU"

    if params["in_channels"] == params["channels"][-1]:
        assert isinstance(block.shortcut_path, nn.Identity)
        assert list(block.shortcut_path.parameters()) == []
    else:
        (conv,) = list(block.shortcut_path.modules())[1:]
        assert isinstance(conv, nn.Conv2d) and conv.bias is None
        assert conv.weight.shape == (params["channels"][-1], params["in_channels"], 1, 1)


@PROPERTIES
@given(block_configs())
def test_residual_block_equals_torch_layers(params):
    block = seeded(ResidualBlock, **params)
    act = ACTIVATIONS[params["activation_type"]]
    torch.manual_seed(0)
    layers, c_in = [], params["in_channels"]
    n = len(params["channels"])
    for i, (c_out, k) in enumerate(zip(params["channels"], params["kernel_sizes"], strict=True)):
        layers.append(nn.Conv2d(c_in, c_out, k, padding=k // 2))
        if i < n - 1:
            layers += [nn.Dropout2d(params["dropout"])] if params["dropout"] else []
            layers += [nn.BatchNorm2d(c_out)] if params["batchnorm"] else []
            layers.append(act())
        c_in = c_out
    main = nn.Sequential(*layers)
    shortcut = (
        nn.Conv2d(params["in_channels"], c_in, 1, bias=False)
        if params["in_channels"] != c_in
        else nn.Identity()
    )
    assert layer_kinds(block.main_path) == layer_kinds(main)
    ours = list(block.parameters())
    theirs = [*main.parameters(), *shortcut.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))

    x = images(3, params["in_channels"], 5, 4)
    for train in (True, False):  # dropout and batchnorm differ between the modes
        block.train(train)
        main.train(train)
        torch.manual_seed(7)
        out = block(x)
        torch.manual_seed(7)
        torch.testing.assert_close(out, torch.relu(main(x) + shortcut(x)))


@PROPERTIES
@given(bottleneck_configs())
def test_bottleneck_block_structure(params):
    block = seeded(ResidualBottleneckBlock, **params)
    c, inner = params["in_out_channels"], params["inner_channels"]
    convs = [m for m in block.main_path if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == list(
        zip([c, inner[0], *inner], [inner[0], *inner, c], strict=True)
    )
    kernels = [1, *params["inner_kernel_sizes"], 1]
    assert [m.kernel_size for m in convs] == [(k, k) for k in kernels]
    assert isinstance(block.shortcut_path, nn.Identity)
    x = images(2, c, 4, 3)
    assert block(x).shape == x.shape


def first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


@PROPERTIES
@given(
    st.one_of(
        cnn_configs(activations=GRAD_FRIENDLY).map(lambda p: (CNN, p)),
        resnet_configs(activations=GRAD_FRIENDLY).map(lambda p: (ResNet, p)),
    )
)
def test_gradients_reach_every_parameter(cls_params):
    cls, params = cls_params
    net = seeded(cls, **params)
    net(images(2, *params["in_size"])).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
    assert first_conv(net).weight.grad.abs().sum() > 0


def replay_parameter_init(net: nn.Module, seed: int) -> torch.Tensor:
    """Re-initialize ``net``'s layers in module order from ``seed``; return the RNG state after.

    ``reset_parameters`` draws exactly what a layer's constructor draws, so this replays the
    random numbers a model needs for its parameters and nothing else.
    """
    torch.manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return torch.get_rng_state()


@PROPERTIES
@given(
    st.one_of(
        cnn_configs().map(lambda p: (CNN, p)),
        resnet_configs().map(lambda p: (ResNet, p)),
        block_configs().map(lambda p: (ResidualBlock, p)),
    )
)
def test_building_draws_random_numbers_only_for_parameters(cls_params):
    cls, params = cls_params
    net = seeded(cls, **params)
    after_build = torch.get_rng_state()
    built = [p.detach().clone() for p in net.parameters()]
    after_replay = replay_parameter_init(net, 0)
    assert torch.equal(after_build, after_replay)
    assert all(torch.equal(a, b) for a, b in zip(built, net.parameters(), strict=True))
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        # the feature-count probe must not touch batchnorm's running statistics
        assert bn.num_batches_tracked == 0
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


@pytest.mark.parametrize("file", ["expected_conv_out_01.pt", "expected_resnet_out_00.pt"])
def test_rng_after_building_is_the_same_without_the_probe(monkeypatch, file):
    spec = SPECS_BY_FILE[file]
    with_probe = build(spec)
    state_with_probe = torch.get_rng_state()
    n_features = with_probe.mlp.in_dim
    monkeypatch.setattr(CNN, "_n_features", lambda self: n_features)
    without_probe = build(spec)
    assert torch.equal(torch.get_rng_state(), state_with_probe)
    for a, b in zip(
        with_probe.state_dict().values(), without_probe.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_building_keeps_the_train_mode():
    net = build(SPECS_BY_FILE["expected_resnet_out_00.pt"])
    assert all(m.training for m in net.modules())


# --- Bad arguments ------------------------------------------------------------------------

CNN_OK = dict(in_size=(3, 8, 8), out_classes=2, channels=[4], pool_every=1, hidden_dims=[])
BLOCK_OK = dict(in_channels=3, channels=[4, 4], kernel_sizes=[3, 3])


@pytest.mark.parametrize(
    ("cls", "params", "argument", "echo"),
    [
        (CNN, dict(CNN_OK, activation_type="swish"), "activation_type", "'swish'"),
        (CNN, dict(CNN_OK, pooling_type="median"), "pooling_type", "'median'"),
        (CNN, dict(CNN_OK, channels=[]), "channels", "[]"),
        (CNN, dict(CNN_OK, channels=[4, 0]), "channels", "[4, 0]"),
        (CNN, dict(CNN_OK, pool_every=0), "pool_every", "0"),
        (CNN, dict(CNN_OK, in_size=(8, 8)), "in_size", "(8, 8)"),
        (ResNet, dict(CNN_OK, activation_type="gelu"), "activation_type", "'gelu'"),
        (ResNet, dict(CNN_OK, pool_every=-1), "pool_every", "-1"),
        (ResidualBlock, dict(BLOCK_OK, kernel_sizes=[3, 4]), "kernel_sizes", "[3, 4]"),
        (ResidualBlock, dict(BLOCK_OK, channels=[], kernel_sizes=[]), "channels", "[]"),
        (ResidualBlock, dict(BLOCK_OK, kernel_sizes=[3]), "channels and kernel_sizes", "2 and 1"),
        (ResidualBlock, dict(BLOCK_OK, dropout=1.0), "dropout", "1.0"),
        (ResidualBlock, dict(BLOCK_OK, activation_type="elu"), "activation_type", "'elu'"),
        (
            ResidualBottleneckBlock,
            dict(in_out_channels=8, inner_channels=[4], inner_kernel_sizes=[3, 3]),
            "inner_channels and inner_kernel_sizes",
            "1 and 2",
        ),
        (
            ResidualBottleneckBlock,
            dict(in_out_channels=8, inner_channels=[4, 4], inner_kernel_sizes=[3, 2]),
            "kernel_sizes",
            "2",
        ),
    ],
)
def test_bad_arguments_raise_value_error(cls, params, argument, echo):
    with pytest.raises(ValueError) as error:
        cls(**params)
    message = str(error.value)
    assert argument in message and echo in message, message
