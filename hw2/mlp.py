"""A multilayer perceptron built from a list of layer widths and nonlinearities."""

from collections import defaultdict
from collections.abc import Sequence

from torch import Tensor, nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softmax": nn.Softmax,
    "logsoftmax": nn.LogSoftmax,
    "lrelu": nn.LeakyReLU,
    "none": nn.Identity,
    None: nn.Identity,
}

# Arguments for activations whose constructors need one to be well defined. A defaultdict, as
# in the course's template: any name indexes it, e.g.
# ``ACTIVATIONS[name](**ACTIVATION_DEFAULT_KWARGS[name])`` gives ``{}`` for "relu".
ACTIVATION_DEFAULT_KWARGS: defaultdict[str | None, dict] = defaultdict(dict)
ACTIVATION_DEFAULT_KWARGS.update({"softmax": dict(dim=1), "logsoftmax": dict(dim=1)})


def make_activation(nonlin: str | None | nn.Module, **params) -> nn.Module:
    """Return an activation module for a name from ``ACTIVATIONS`` or pass a module through.

    :param nonlin: a key of ``ACTIVATIONS`` (e.g. ``"relu"``, ``"lrelu"``, ``None``) or an
        ``nn.Module`` instance, which is returned as is.
    :param params: keyword arguments for the activation's constructor.
    :raises ValueError: for an unknown name.
    """
    if isinstance(nonlin, nn.Module):
        return nonlin
    if nonlin not in ACTIVATIONS:
        names = ", ".join(repr(k) for k in ACTIVATIONS)
        raise ValueError(f"unknown activation {nonlin!r}; expected one of {names}")
    kwargs = {**ACTIVATION_DEFAULT_KWARGS[nonlin], **params}
    return ACTIVATIONS[nonlin](**kwargs)


class MLP(nn.Module):
    """A fully connected network: ``(Linear -> nonlin) * len(dims)``.

    The ``i``-th layer maps to ``dims[i]`` features and is followed by ``nonlins[i]``.
    """

    def __init__(self, in_dim: int, dims: Sequence[int], nonlins: Sequence[str | nn.Module | None]):
        """
        :param in_dim: number of input features.
        :param dims: output width of each layer; the last one is the output dimension.
        :param nonlins: one nonlinearity per layer, a name from ``ACTIVATIONS`` or a module.
        """
        if len(dims) != len(nonlins):
            raise ValueError(
                f"dims and nonlins must have the same length, got {len(dims)} and {len(nonlins)}"
            )
        if len(dims) == 0:
            raise ValueError("dims must name at least one layer, got []")
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = dims[-1]
        layers = []
        for d_in, d_out, nonlin in zip([in_dim, *dims[:-1]], dims, nonlins, strict=True):
            layers.append(nn.Linear(d_in, d_out, bias=True))
            layers.append(make_activation(nonlin))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """
        :param x: input of shape ``(N, in_dim)``.
        :return: output of shape ``(N, dims[-1])``.
        """
        return self.layers(x)
