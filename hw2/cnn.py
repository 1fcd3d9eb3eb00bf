"""Convolutional and residual networks for image classification.

Architectures (N convolutions, a pooling layer after every P of them, M hidden FC layers)::

    CNN:     [(CONV -> ACT)*P -> POOL]*(N/P) -> (FC -> ACT)*M -> FC

    ResNet:  [-> (CONV -> ACT)*P -> POOL]*(N/P) -> (FC -> ACT)*M -> FC
              \\------- SKIP ------/
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .mlp import ACTIVATION_DEFAULT_KWARGS, ACTIVATIONS, MLP, make_activation  # noqa: F401

POOLINGS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


def _check_channels(name: str, values: Sequence[int]) -> None:
    if len(values) == 0 or any(not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive ints, got {values!r}")


def _check_choice(name: str, value, table: dict) -> None:
    if value not in table:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(map(str, table))}")


class CNN(nn.Module):
    """A convolutional classifier: ``[(CONV -> ACT)*P -> POOL]*(N/P) -> (FC -> ACT)*M -> FC``."""

    def __init__(
        self,
        in_size: Sequence[int],
        out_classes: int,
        channels: Sequence[int],
        pool_every: int,
        hidden_dims: Sequence[int],
        conv_params: dict = {},
        activation_type: str = "relu",
        activation_params: dict = {},
        pooling_type: str = "max",
        pooling_params: dict = {},
    ):
        """
        :param in_size: size of one input image, ``(C, H, W)``.
        :param out_classes: number of classes to output scores for.
        :param channels: output channels of each of the N convolutional layers.
        :param pool_every: P, the number of convolutions before each pooling layer.
        :param hidden_dims: output features of each of the M hidden linear layers.
        :param conv_params: keyword arguments of every ``nn.Conv2d`` (kernel_size, padding, ...).
        :param activation_type: activation after each conv and hidden linear layer, either
            "relu" or "lrelu" (this implementation also takes any other name of
            ``hw2.mlp.ACTIVATIONS``; graded configurations use only the two).
        :param activation_params: keyword arguments of the activation (e.g. negative_slope).
        :param pooling_type: "max" or "avg".
        :param pooling_params: keyword arguments of the pooling layer (kernel_size, ...).
        """
        super().__init__()
        if len(in_size) != 3:
            raise ValueError(f"in_size must be (C, H, W), got {in_size!r}")
        _check_channels("channels", channels)
        if not isinstance(pool_every, int) or pool_every < 1:
            raise ValueError(f"pool_every must be an int >= 1, got {pool_every!r}")
        if hidden_dims:
            _check_channels("hidden_dims", hidden_dims)
        _check_choice("activation_type", activation_type, ACTIVATIONS)
        _check_choice("pooling_type", pooling_type, POOLINGS)

        self.in_size = tuple(in_size)
        self.out_classes = out_classes
        self.channels = list(channels)
        self.pool_every = pool_every
        self.hidden_dims = list(hidden_dims)
        self.conv_params = conv_params
        self.activation_type = activation_type
        self.activation_params = activation_params
        self.pooling_type = pooling_type
        self.pooling_params = pooling_params

        self.feature_extractor = self._make_feature_extractor()
        self.mlp = self._make_mlp()

    def _make_activation(self) -> nn.Module:
        return make_activation(self.activation_type, **self.activation_params)

    def _make_pooling(self) -> nn.Module:
        return POOLINGS[self.pooling_type](**self.pooling_params)

    def _make_feature_extractor(self) -> nn.Sequential:
        """Build ``[(CONV -> ACT)*P -> POOL]*(N/P)``; a remainder of N % P convs gets no pooling."""
        in_channels, in_h, in_w = tuple(self.in_size)
        layers = []
        ### BEGIN SOLUTION
        for i, out_channels in enumerate(self.channels):
            layers.append(nn.Conv2d(in_channels, out_channels, **self.conv_params))
            layers.append(self._make_activation())
            in_channels = out_channels
            if (i + 1) % self.pool_every == 0:
                layers.append(self._make_pooling())
        ### END SOLUTION
        return nn.Sequential(*layers)

    def _n_features(self) -> int:
        """The number of features the feature extractor outputs for one image of ``in_size``.

        Found by a forward pass on a dummy image. The global RNG state is saved and restored
        around it so that building a model consumes random numbers only for its parameters.
        """
        rng_state = torch.get_rng_state()
        try:
            ### BEGIN SOLUTION
            # Eval mode: the probe must not consume dropout's random numbers or update
            # batchnorm running statistics.
            was_training = self.feature_extractor.training
            self.feature_extractor.eval()
            with torch.no_grad():
                features = self.feature_extractor(torch.zeros(1, *self.in_size))
            self.feature_extractor.train(was_training)
            return features[0].numel()
            ### END SOLUTION
        finally:
            torch.set_rng_state(rng_state)

    def _make_mlp(self) -> MLP:
        """Build ``(FC -> ACT)*M -> FC`` on the flattened features; the output layer has no ACT."""
        ### BEGIN SOLUTION
        nonlins = [self._make_activation() for _ in self.hidden_dims] + ["none"]
        mlp = MLP(self._n_features(), dims=[*self.hidden_dims, self.out_classes], nonlins=nonlins)
        ### END SOLUTION
        return mlp

    def forward(self, x: Tensor) -> Tensor:
        """
        :param x: a batch of images, ``(N, C, H, W)``.
        :return: class scores, ``(N, out_classes)``.
        """
        ### BEGIN SOLUTION
        features = self.feature_extractor(x)  # (N, C', H', W')
        out = self.mlp(features.reshape(features.shape[0], -1))
        ### END SOLUTION
        return out


class ResidualBlock(nn.Module):
    """A residual block: ``relu(main_path(x) + shortcut_path(x))``.

    The main path is ``CONV -> [DROPOUT] -> [BN] -> ACT`` between convolutions and ends with a
    plain CONV. The shortcut is the identity, or a bias-free 1x1 conv when the number of
    channels changes.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        kernel_sizes: Sequence[int],
        batchnorm: bool = False,
        dropout: float = 0.0,
        activation_type: str = "relu",
        activation_params: dict = {},
        **kwargs,
    ):
        """
        :param in_channels: number of input channels.
        :param channels: output channels of each conv of the main path.
        :param kernel_sizes: kernel size of each conv of the main path (odd, so that padding
            ``k // 2`` keeps the spatial size).
        :param batchnorm: add ``BatchNorm2d`` between convolutions.
        :param dropout: probability of ``Dropout2d`` between convolutions (none when 0).
        :param activation_type: activation between convolutions ("relu", "lrelu", ...).
        :param activation_params: keyword arguments of the activation.
        """
        super().__init__()
        _check_channels("channels", channels)
        if len(channels) != len(kernel_sizes):
            raise ValueError(
                f"channels and kernel_sizes must have the same length, "
                f"got {len(channels)} and {len(kernel_sizes)}"
            )
        if any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive ints, got {list(kernel_sizes)!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        _check_choice("activation_type", activation_type, ACTIVATIONS)

        self.main_path, self.shortcut_path = None, None
        ### BEGIN SOLUTION
        layers = []
        c_in = in_channels
        for i, (c_out, k) in enumerate(zip(channels, kernel_sizes, strict=True)):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=k, padding=k // 2, bias=True))
            if i < len(channels) - 1:
                if dropout > 0:
                    layers.append(nn.Dropout2d(dropout))
                if batchnorm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(make_activation(activation_type, **activation_params))
            c_in = c_out
        self.main_path = nn.Sequential(*layers)

        if in_channels == channels[-1]:
            self.shortcut_path = nn.Identity()
        else:
            self.shortcut_path = nn.Sequential(
                nn.Conv2d(in_channels, channels[-1], kernel_size=1, bias=False)
            )
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """
        :param x: ``(N, in_channels, H, W)``.
        :return: ``(N, channels[-1], H, W)``.
        """
        out = self.main_path(x)
        out = out + self.shortcut_path(x)
        return torch.relu(out)


class ResidualBottleneckBlock(ResidualBlock):
    """A residual bottleneck block: 1x1 conv down, inner KxK convs, 1x1 conv back up.

    The shortcut is always the identity, since the block's input and output have the same
    number of channels.
    """

    def __init__(
        self,
        in_out_channels: int,
        inner_channels: Sequence[int],
        inner_kernel_sizes: Sequence[int],
        **kwargs,
    ):
        """
        :param in_out_channels: number of input and output channels.
        :param inner_channels: output channels of each inner conv; the first 1x1 conv projects
            ``in_out_channels`` down to ``inner_channels[0]``, the last one back up.
        :param inner_kernel_sizes: kernel size of each inner conv.
        :param kwargs: any other argument of ``ResidualBlock`` (batchnorm, dropout, ...).
        """
        _check_channels("inner_channels", inner_channels)
        if len(inner_channels) != len(inner_kernel_sizes):
            raise ValueError(
                f"inner_channels and inner_kernel_sizes must have the same length, "
                f"got {len(inner_channels)} and {len(inner_kernel_sizes)}"
            )
        ### BEGIN SOLUTION
        super().__init__(
            in_channels=in_out_channels,
            channels=[inner_channels[0], *inner_channels, in_out_channels],
            kernel_sizes=[1, *inner_kernel_sizes, 1],
            **kwargs,
        )
        ### END SOLUTION


class ResNet(CNN):
    """A CNN whose every P convolutions are grouped into one residual block."""

    def __init__(
        self,
        in_size: Sequence[int],
        out_classes: int,
        channels: Sequence[int],
        pool_every: int,
        hidden_dims: Sequence[int],
        batchnorm: bool = False,
        dropout: float = 0.0,
        bottleneck: bool = False,
        **kwargs,
    ):
        """
        See ``CNN.__init__`` for the shared arguments; the convolutions are 3x3, keeping the size.

        :param batchnorm: add batchnorm inside the residual blocks' main paths.
        :param dropout: dropout probability inside the residual blocks' main paths.
        :param bottleneck: use a ``ResidualBottleneckBlock`` for a group of P >= 3 convs when
            its input and output channels match (``group[1:-1]`` become the inner channels).
        """
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.bottleneck = bottleneck
        super().__init__(in_size, out_classes, channels, pool_every, hidden_dims, **kwargs)

    def _make_feature_extractor(self) -> nn.Sequential:
        """Build ``[-> (CONV -> ACT)*P -> POOL]*(N/P)`` with a residual block per P convs."""
        in_channels, in_h, in_w = tuple(self.in_size)
        layers = []
        ### BEGIN SOLUTION
        block_kwargs = dict(
            batchnorm=self.batchnorm,
            dropout=self.dropout,
            activation_type=self.activation_type,
            activation_params=self.activation_params,
        )
        for start in range(0, len(self.channels), self.pool_every):
            group = self.channels[start : start + self.pool_every]
            if self.bottleneck and len(group) >= 3 and in_channels == group[-1]:
                block = ResidualBottleneckBlock(
                    in_out_channels=in_channels,
                    inner_channels=group[1:-1],
                    inner_kernel_sizes=[3] * (len(group) - 2),
                    **block_kwargs,
                )
            else:
                block = ResidualBlock(
                    in_channels, group, kernel_sizes=[3] * len(group), **block_kwargs
                )
            layers.append(block)
            in_channels = group[-1]
            if len(group) == self.pool_every:
                layers.append(self._make_pooling())
        ### END SOLUTION
        return nn.Sequential(*layers)
