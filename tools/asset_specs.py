"""The model configurations whose outputs are the reference tensors, public and hidden.

One place for them: ``tools/regen_assets.py`` computes each spec's expected output from the
solution, and the autograder runs the same spec on a submission. Public specs are the seed
notebook's test cells, parameter for parameter; hidden specs are configurations students never
see, so that a submission which only reproduces the visible outputs fails them.

Every spec is run the seed's way: ``torch.manual_seed(SEED)``; build; ``torch.manual_seed(SEED)``;
forward on the input in train mode.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_DIR = ROOT / "tests" / "assets"
HIDDEN_DIR = ROOT / "tests" / "assets" / "hidden"
SEED = 42

Kind = Literal["CNN", "ResidualBlock", "ResidualBottleneckBlock", "ResNet"]


@dataclass(frozen=True)
class AssetSpec:
    """One reference tensor: which class to build with which arguments, and its input."""

    file: str
    kind: Kind
    params: dict
    in_shape: tuple[int, ...]
    # "ones" as in the seed; "randn" draws the input from torch.Generator seeded with SEED.
    input: Literal["ones", "randn"] = "ones"
    hidden: bool = False
    notes: str = field(default="", compare=False)

    @property
    def path(self) -> Path:
        """Where the tensor is stored."""
        return (HIDDEN_DIR if self.hidden else PUBLIC_DIR) / self.file


def _cnn(**kw) -> dict:
    return dict(in_size=(3, 100, 100), **kw)


CNN_TEST_PARAMS = [
    _cnn(
        out_classes=10, channels=[32] * 4, pool_every=2, hidden_dims=[100] * 2,
        conv_params=dict(kernel_size=3, stride=1, padding=1),
        activation_type="relu", activation_params=dict(),
        pooling_type="max", pooling_params=dict(kernel_size=2),
    ),
    _cnn(
        out_classes=10, channels=[32] * 4, pool_every=2, hidden_dims=[100] * 2,
        conv_params=dict(kernel_size=5, stride=2, padding=3),
        activation_type="lrelu", activation_params=dict(negative_slope=0.05),
        pooling_type="avg", pooling_params=dict(kernel_size=3),
    ),
    _cnn(
        out_classes=3, channels=[16] * 5, pool_every=3, hidden_dims=[100] * 1,
        conv_params=dict(kernel_size=2, stride=2, padding=2),
        activation_type="lrelu", activation_params=dict(negative_slope=0.1),
        pooling_type="max", pooling_params=dict(kernel_size=2),
    ),
]  # fmt: skip

RESBLOCK_PARAMS = dict(
    in_channels=3, channels=[6, 4] * 2, kernel_sizes=[3, 5] * 2, batchnorm=True, dropout=0.2
)

RESBLOCK_BN_PARAMS = dict(
    in_out_channels=256, inner_channels=[64, 32, 64], inner_kernel_sizes=[3, 5, 3],
    batchnorm=False, dropout=0.1, activation_type="lrelu",
)  # fmt: skip

RESNET_TEST_PARAMS = [
    _cnn(
        out_classes=10, channels=[32, 64] * 3, pool_every=4, hidden_dims=[100] * 2,
        activation_type="lrelu", activation_params=dict(negative_slope=0.01),
        pooling_type="avg", pooling_params=dict(kernel_size=2),
        batchnorm=True, dropout=0.1, bottleneck=False,
    ),
    _cnn(
        # 64->16->64 bottlenecks
        out_classes=5, channels=[64, 16, 64] * 4, pool_every=3, hidden_dims=[64] * 1,
        activation_type="tanh",
        pooling_type="max", pooling_params=dict(kernel_size=2),
        batchnorm=True, dropout=0.1, bottleneck=True,
    ),
]  # fmt: skip

# The seed's overfit check (In [6]): this CNN on CIFAR-10-sized images, 25 epochs of 25 batches
# of 2 images. Used by the autograder and the training benchmark.
OVERFIT_CNN = dict(
    in_size=(3, 32, 32), out_classes=10, channels=[32], pool_every=1, hidden_dims=[100],
    conv_params=dict(kernel_size=3, stride=1, padding=1), pooling_params=dict(kernel_size=2),
)  # fmt: skip
OVERFIT_RUN = dict(num_epochs=25, max_batches=25, batch_size=2)

PUBLIC_SPECS = [
    *(
        AssetSpec(f"expected_conv_out_{i:02d}.pt", "CNN", p, (1, 3, 100, 100))
        for i, p in enumerate(CNN_TEST_PARAMS)
    ),
    AssetSpec("expected_resblock_out.pt", "ResidualBlock", RESBLOCK_PARAMS, (1, 3, 32, 32)),
    AssetSpec(
        "expected_resblock_bn_out.pt", "ResidualBottleneckBlock", RESBLOCK_BN_PARAMS,
        (1, 256, 32, 32),
    ),
    *(
        AssetSpec(f"expected_resnet_out_{i:02d}.pt", "ResNet", p, (1, 3, 100, 100))
        for i, p in enumerate(RESNET_TEST_PARAMS)
    ),
]  # fmt: skip

HIDDEN_SPECS = [
    AssetSpec(
        "hidden_cnn.pt", "CNN",
        dict(
            in_size=(3, 40, 56), out_classes=7, channels=[8, 16, 16], pool_every=2,
            hidden_dims=[50, 30], conv_params=dict(kernel_size=3, padding=1),
            activation_type="lrelu", activation_params=dict(negative_slope=0.3),
            pooling_type="avg", pooling_params=dict(kernel_size=2),
        ),
        (3, 3, 40, 56), input="randn", hidden=True,
        notes="CNN: a non-square input (in_size is (C, H, W)), a batch of 3, N mod P = 1 "
        "remainder conv with no pooling after it, lrelu with its parameter, avg pooling",
    ),
    AssetSpec(
        "hidden_resblock.pt", "ResidualBlock",
        dict(
            in_channels=5, channels=[8, 3, 5], kernel_sizes=[3, 1, 5], batchnorm=True,
            dropout=0.3, activation_type="lrelu", activation_params=dict(negative_slope=0.2),
        ),
        (2, 5, 12, 20), input="randn", hidden=True,
        notes="ResidualBlock: in_channels == channels[-1] (identity shortcut), odd kernel sizes "
        "of several sizes including 1, batchnorm and dropout, lrelu with its parameter",
    ),
    AssetSpec(
        "hidden_resblock_bottleneck.pt", "ResidualBottleneckBlock",
        dict(
            in_out_channels=24, inner_channels=[8, 12], inner_kernel_sizes=[5, 3],
            batchnorm=True, dropout=0.0,
        ),
        (2, 24, 10, 10), input="randn", hidden=True,
        notes="ResidualBottleneckBlock: two inner convs (inner_channels of length 2), "
        "batchnorm with dropout 0 (no dropout layer), the default relu",
    ),
    AssetSpec(
        "hidden_resnet.pt", "ResNet",
        dict(
            in_size=(3, 48, 48), out_classes=4, channels=[16, 8, 16, 16, 4, 16, 32],
            pool_every=3, hidden_dims=[40], activation_type="relu",
            pooling_type="max", pooling_params=dict(kernel_size=2),
            batchnorm=False, dropout=0.2, bottleneck=True,
        ),
        (2, 3, 48, 48), input="randn", hidden=True,
        notes="ResNet: bottleneck=True, a first group whose channels do not match (a plain "
        "block), a matching group (a bottleneck), N mod P = 1 remainder block without pooling, "
        "relu, max pooling, dropout without batchnorm",
    ),
]  # fmt: skip

ALL_SPECS = PUBLIC_SPECS + HIDDEN_SPECS

# What the course's template docstrings and the seed promise each class accepts (DESIGN.md,
# contract 6): a hidden spec varies sizes, batches and corners within these, never a choice
# outside them. ``contract_violations`` checks a spec against it; regen_assets.py refuses to
# generate a hidden tensor that breaks it, and a test checks every hidden spec.
_BLOCK_ARGS = {"batchnorm", "dropout", "activation_type", "activation_params"}
CONTRACT: dict[str, dict] = {
    "CNN": dict(
        args={"in_size", "out_classes", "channels", "pool_every", "hidden_dims", "conv_params",
              "activation_type", "activation_params", "pooling_type", "pooling_params"},
        choices={"activation_type": ("relu", "lrelu"), "pooling_type": ("max", "avg")},
    ),
    "ResidualBlock": dict(
        args={"in_channels", "channels", "kernel_sizes", *_BLOCK_ARGS},
        choices={"activation_type": ("relu", "lrelu")},
    ),
    "ResidualBottleneckBlock": dict(
        args={"in_out_channels", "inner_channels", "inner_kernel_sizes", *_BLOCK_ARGS},
        choices={"activation_type": ("relu", "lrelu")},
    ),
    "ResNet": dict(
        # the template's ResNet uses its own dimension-preserving 3x3 convs: no conv_params
        args={"in_size", "out_classes", "channels", "pool_every", "hidden_dims",
              "activation_type", "activation_params", "pooling_type", "pooling_params",
              "batchnorm", "dropout", "bottleneck"},
        choices={"activation_type": ("relu", "lrelu"), "pooling_type": ("max", "avg")},
    ),
}  # fmt: skip
# The keyword arguments a documented choice's torch class is given in the template:
# ``<dict argument>: (the argument that chooses the class, its default, {choice: keys})``.
_POOL_KEYS = {"kernel_size", "stride", "padding"}
CONTRACT_KWARGS = {
    "activation_params": ("activation_type", "relu", {"relu": set(), "lrelu": {"negative_slope"}}),
    "pooling_params": ("pooling_type", "max", {"max": _POOL_KEYS, "avg": _POOL_KEYS}),
    "conv_params": (None, "conv", {"conv": {"kernel_size", "stride", "padding"}}),
}


def _int_list(value, name: str, problems: list[str], odd: bool = False) -> None:
    # the template concatenates these with list literals, so they must be lists
    if not isinstance(value, list) or not value:
        problems.append(f"{name} must be a non-empty list, got {value!r}")
    elif any(not isinstance(v, int) or v < 1 or (odd and v % 2 == 0) for v in value):
        what = "odd positive ints" if odd else "positive ints"
        problems.append(f"{name} must hold {what}, got {value!r}")


def contract_violations(spec: AssetSpec) -> list[str]:
    """Every way ``spec`` asks more than the documented contract of its class promises."""
    contract, p, problems = CONTRACT[spec.kind], spec.params, []
    extra = sorted(set(p) - contract["args"])
    if extra:
        problems.append(f"arguments outside the documented signature: {extra}")
    for arg, allowed in contract["choices"].items():
        if arg in p and p[arg] not in allowed:
            problems.append(f"{arg}={p[arg]!r} is not promised (only {list(allowed)})")
    for arg, (chooser, default, keys) in CONTRACT_KWARGS.items():
        choice = p.get(chooser, default) if chooser else default
        unknown = sorted(set(p.get(arg, {})) - keys.get(choice, set()))
        if unknown:
            problems.append(f"{arg} {unknown} are not documented arguments for {choice!r}")
    if "dropout" in p and not 0.0 <= p["dropout"] < 1.0:
        problems.append(f"dropout must be in [0, 1), got {p['dropout']!r}")
    if spec.kind in ("CNN", "ResNet"):
        _int_list(p["channels"], "channels", problems)
        _int_list(p["hidden_dims"], "hidden_dims", problems)  # the template asserts both
        if not isinstance(p["pool_every"], int) or p["pool_every"] < 1:
            problems.append(f"pool_every must be an int >= 1, got {p['pool_every']!r}")
        if tuple(spec.in_shape[1:]) != tuple(p["in_size"]) or len(p["in_size"]) != 3:
            problems.append(f"input {spec.in_shape} does not match in_size {p['in_size']}")
    if spec.kind == "ResNet" and p.get("bottleneck") and not problems:
        c_in, size = p["in_size"][0], p["pool_every"]
        for start in range(0, len(p["channels"]), size):
            group = p["channels"][start : start + size]
            if c_in == group[-1] and len(group) < 3:
                problems.append(f"group {group} matches its input but is too short for a "
                                "bottleneck (2 + len(inner_channels) convs)")  # fmt: skip
            c_in = group[-1]
    if spec.kind == "ResidualBlock":
        _int_list(p["channels"], "channels", problems)
        _int_list(p["kernel_sizes"], "kernel_sizes", problems, odd=True)
        if len(p["channels"]) != len(p["kernel_sizes"]):
            problems.append("channels and kernel_sizes differ in length")
        if spec.in_shape[1] != p["in_channels"]:
            problems.append(f"input {spec.in_shape} does not have {p['in_channels']} channels")
    if spec.kind == "ResidualBottleneckBlock":
        _int_list(p["inner_channels"], "inner_channels", problems)
        _int_list(p["inner_kernel_sizes"], "inner_kernel_sizes", problems, odd=True)
        if len(p["inner_channels"]) != len(p["inner_kernel_sizes"]):
            problems.append("inner_channels and inner_kernel_sizes differ in length")
        if spec.in_shape[1] != p["in_out_channels"]:
            problems.append(f"input {spec.in_shape} does not have {p['in_out_channels']} channels")
    if not spec.notes:
        problems.append("no notes saying which clause of the contract it exercises")
    return problems


def make_input(spec: AssetSpec):
    """The input tensor of ``spec``; a separate generator leaves the global RNG alone."""
    import torch

    if spec.input == "ones":
        return torch.ones(*spec.in_shape)
    return torch.randn(*spec.in_shape, generator=torch.Generator().manual_seed(SEED))


def run_spec(spec: AssetSpec, cnn_module):
    """Build ``spec.kind`` from ``cnn_module`` (a solution's or a submission's ``hw2.cnn``)
    and return its output on the spec's input, seeded the seed's way, in train mode."""
    import torch

    cls = getattr(cnn_module, spec.kind)
    x = make_input(spec)
    torch.manual_seed(SEED)
    net = cls(**spec.params)
    net.train(True)
    torch.manual_seed(SEED)
    with torch.no_grad():
        return net(x)
