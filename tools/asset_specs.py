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
            activation_type="tanh", pooling_type="avg", pooling_params=dict(kernel_size=2),
        ),
        (3, 3, 40, 56), input="randn", hidden=True,
        notes="non-square input, a batch of 3, a remainder conv without pooling, tanh",
    ),
    AssetSpec(
        "hidden_resblock.pt", "ResidualBlock",
        dict(
            in_channels=5, channels=[8, 3, 5], kernel_sizes=[3, 1, 5], batchnorm=True,
            dropout=0.3, activation_type="lrelu", activation_params=dict(negative_slope=0.2),
        ),
        (2, 5, 12, 20), input="randn", hidden=True,
        notes="identity shortcut, mixed kernel sizes, leaky relu",
    ),
    AssetSpec(
        "hidden_resblock_bottleneck.pt", "ResidualBottleneckBlock",
        dict(
            in_out_channels=24, inner_channels=[8, 12], inner_kernel_sizes=[5, 3],
            batchnorm=True, dropout=0.0,
        ),
        (2, 24, 10, 10), input="randn", hidden=True,
        notes="batchnorm without dropout, two inner convs",
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
        notes="a plain first block, a bottleneck block, a remainder block without pooling",
    ),
]  # fmt: skip

ALL_SPECS = PUBLIC_SPECS + HIDDEN_SPECS


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
