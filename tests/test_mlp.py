"""hw2/mlp.py against a stack of torch.nn.Linear layers."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hw2.mlp import ACTIVATIONS, MLP, make_activation

# The torch layer each activation name stands for, written out independently of ACTIVATIONS.
TORCH_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=1),
    "logsoftmax": lambda: nn.LogSoftmax(dim=1),
    "lrelu": nn.LeakyReLU,
    "none": nn.Identity,
}


def test_every_activation_name_has_a_torch_layer():
    assert set(ACTIVATIONS) - {None} == set(TORCH_ACTIVATIONS)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    st.integers(1, 6),
    st.lists(
        st.tuples(st.integers(1, 6), st.sampled_from(sorted(TORCH_ACTIVATIONS))),
        min_size=1,
        max_size=4,
    ),
    st.integers(1, 4),
)
def test_mlp_equals_a_linear_stack(in_dim, layers, n):
    dims, nonlins = [d for d, _ in layers], [a for _, a in layers]
    torch.manual_seed(0)
    mlp = MLP(in_dim, dims, nonlins)
    torch.manual_seed(0)
    reference = nn.Sequential()
    for d_in, d_out, name in zip([in_dim, *dims[:-1]], dims, nonlins, strict=True):
        reference.append(nn.Linear(d_in, d_out))
        reference.append(TORCH_ACTIVATIONS[name]())

    assert mlp.in_dim == in_dim and mlp.out_dim == dims[-1]
    assert [type(m) for m in mlp.layers] == [type(m) for m in reference]
    ours, theirs = list(mlp.parameters()), list(reference.parameters())
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    x = torch.randn(n, in_dim, generator=torch.Generator().manual_seed(1))
    out = mlp(x)
    assert out.shape == (n, dims[-1])
    torch.testing.assert_close(out, reference(x))


def test_modules_pass_through_as_nonlinearities():
    act = nn.LeakyReLU(0.3)
    mlp = MLP(4, [3, 2], [act, None])
    assert mlp.layers[1] is act
    assert isinstance(mlp.layers[3], nn.Identity)


def test_softmax_defaults_to_the_class_dimension():
    x = torch.randn(5, 3)
    torch.testing.assert_close(make_activation("softmax")(x).sum(dim=1), torch.ones(5))


def test_activation_params_reach_the_constructor():
    assert make_activation("lrelu", negative_slope=0.25).negative_slope == 0.25


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: MLP(4, [3, 2], ["relu"]), ["dims and nonlins", "2 and 1"]),
        (lambda: MLP(4, [], []), ["dims", "[]"]),
        (lambda: MLP(4, [3], ["swish"]), ["activation", "'swish'"]),
        (lambda: make_activation("gelu"), ["activation", "'gelu'"]),
    ],
)
def test_bad_arguments_raise_value_error(call, words):
    with pytest.raises(ValueError) as error:
        call()
    assert all(w in str(error.value) for w in words), str(error.value)


def test_activation_default_kwargs_is_indexed_as_the_template_documents():
    """The template's use: ``ACTIVATIONS[name](**ACTIVATION_DEFAULT_KWARGS[name])`` for any
    name; softmax and logsoftmax get dim=1."""
    from collections import defaultdict

    from hw2.mlp import ACTIVATION_DEFAULT_KWARGS, ACTIVATIONS

    assert isinstance(ACTIVATION_DEFAULT_KWARGS, defaultdict)
    assert ACTIVATION_DEFAULT_KWARGS["relu"] == {}
    assert ACTIVATION_DEFAULT_KWARGS["softmax"] == {"dim": 1}
    assert ACTIVATION_DEFAULT_KWARGS["logsoftmax"] == {"dim": 1}
    for name in ("relu", "tanh", "sigmoid", "softmax", "logsoftmax", "lrelu", "none", None):
        ACTIVATIONS[name](**ACTIVATION_DEFAULT_KWARGS[name])


def test_cnn_module_exports_the_template_names():
    from torch import nn

    from hw2 import cnn

    assert cnn.POOLINGS == {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
    assert cnn.ACTIVATION_DEFAULT_KWARGS is not None and cnn.ACTIVATIONS["lrelu"] is nn.LeakyReLU
