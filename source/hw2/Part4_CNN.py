# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# $$
# \newcommand{\mat}[1]{\boldsymbol {#1}}
# \newcommand{\mattr}[1]{\boldsymbol {#1}^\top}
# \newcommand{\matinv}[1]{\boldsymbol {#1}^{-1}}
# \newcommand{\vec}[1]{\boldsymbol {#1}}
# \newcommand{\vectr}[1]{\boldsymbol {#1}^\top}
# \newcommand{\rvar}[1]{\mathrm {#1}}
# \newcommand{\rvec}[1]{\boldsymbol{\mathrm{#1}}}
# \newcommand{\diag}{\mathop{\mathrm {diag}}}
# \newcommand{\set}[1]{\mathbb {#1}}
# \newcommand{\norm}[1]{\left\lVert#1\right\rVert}
# \newcommand{\pderiv}[2]{\frac{\partial #1}{\partial #2}}
# \newcommand{\bb}[1]{\boldsymbol{#1}}
# $$
# # Part 4: Convolutional Neural Networks
# <a id=part4></a>
#
# This part is about networks built from convolutions. You will implement a configurable
# deep CNN made of repeated blocks, then the same design with residual (skip) connections,
# including the bottleneck variant used by deep ResNets.
#
# Work in the `hw2/` modules named in each **TODO**; the cells below import your code and
# compare it with reference outputs. Run the notebook from its own folder, so that `hw2/`,
# `cs236781/` and `tests/assets/` are found.

# %%
import unittest

import matplotlib.pyplot as plt
import torch

from cs236781.assets import load_expected

# %matplotlib inline
# %load_ext autoreload
# %autoreload 2

# %%
seed = 42
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
plt.rcParams.update({"font.size": 12})
test = unittest.TestCase()

# %% [markdown]
# ## Convolutional layers and networks, a recap
# <a id=part4_1></a>
#
# In image models, a convolutional layer maps a volume of activations (a 3D tensor of
# channels x height x width) to another volume. It is best pictured as a bank of small
# learnable filters. Every filter is as deep as its input volume but covers only a few
# pixels in height and width. The filter is moved across the input ("slid" over it); at
# each position it computes a dot product with the patch of the input under it, adds a bias,
# and the result, after a nonlinearity, is one activation. The activations of one filter at
# all positions form a 2D **feature map**, and stacking the feature maps of all the filters
# gives the layer's output volume.
#
# <img src="imgs/cnn_filters.png" width="600" />
#
# Because the same filter weights are used at every position, the layer is translation
# equivariant: moving a pattern in the input moves its response in the output by the same
# amount. A feature is therefore detected wherever it appears in the image, with a number
# of parameters that does not depend on the image size.
#
# Classic CNN architectures repeat a simple block: a few convolutions, each followed by a
# nonlinearity (usually ReLU), then a pooling layer that shrinks the spatial size. Deeper
# blocks usually have more channels. This part of the network extracts features; a few
# fully-connected layers on top turn the features into one score per class.

# %% [markdown]
# ## Building convolutional networks with PyTorch
# <a id=part4_2></a>
#
# [`torch.nn`](https://pytorch.org/docs/stable/nn.html) has every layer we need. Our first
# network follows the pattern
#
#     [(CONV -> ACT)*P -> POOL]*(N/P) -> (FC -> ACT)*M -> FC
#
# with $N$ convolutional layers in total, a pooling layer after every $P$ of them, and $M$
# hidden fully-connected layers before the output layer. When $P$ does not divide $N$, the
# last $N \bmod P$ convolutions are not followed by pooling.
#
# **TODO**: Implement the `CNN` class in `hw2/cnn.py`, using `nn.Conv2d` and `nn.MaxPool2d`
# (or `nn.AvgPool2d`) for the convolutions and pooling. Working through its methods in
# order is the easiest path. Note that `_n_features` must not change the random number
# generator's state: the reference outputs below depend on it.

# %% nbgrader={"grade": true, "grade_id": "test_cnn", "locked": true, "points": 20, "schema_version": 3, "solution": false, "task": false}
from hw2.cnn import CNN

test_params = [
    dict(
        in_size=(3,100,100), out_classes=10,
        channels=[32]*4, pool_every=2, hidden_dims=[100]*2,
        conv_params=dict(kernel_size=3, stride=1, padding=1),
        activation_type='relu', activation_params=dict(),
        pooling_type='max', pooling_params=dict(kernel_size=2),
    ),
    dict(
        in_size=(3,100,100), out_classes=10,
        channels=[32]*4, pool_every=2, hidden_dims=[100]*2,
        conv_params=dict(kernel_size=5, stride=2, padding=3),
        activation_type='lrelu', activation_params=dict(negative_slope=0.05),
        pooling_type='avg', pooling_params=dict(kernel_size=3),
    ),
    dict(
        in_size=(3,100,100), out_classes=3,
        channels=[16]*5, pool_every=3, hidden_dims=[100]*1,
        conv_params=dict(kernel_size=2, stride=2, padding=2),
        activation_type='lrelu', activation_params=dict(negative_slope=0.1),
        pooling_type='max', pooling_params=dict(kernel_size=2),
    ),
]

for i, params in enumerate(test_params):
    torch.manual_seed(seed)
    net = CNN(**params)
    print(f"\n=== test {i=} ===")
    print(net)

    torch.manual_seed(seed)
    test_out = net(torch.ones(1, 3, 100, 100))
    print(f'{test_out=}')

    expected_out = load_expected(f'tests/assets/expected_conv_out_{i:02d}.pt')
    print(f'max_diff={torch.max(torch.abs(test_out - expected_out)).item()}')
    test.assertTrue(torch.allclose(test_out, expected_out, atol=1e-3))

### BEGIN HIDDEN TESTS
torch.manual_seed(seed)
hidden_net = CNN(
    in_size=(3, 40, 56), out_classes=7, channels=[8, 16, 16], pool_every=2,
    hidden_dims=[50, 30], conv_params=dict(kernel_size=3, padding=1),
    activation_type="lrelu", activation_params=dict(negative_slope=0.3),
    pooling_type="avg", pooling_params=dict(kernel_size=2),
)
hidden_in = torch.randn(3, 3, 40, 56, generator=torch.Generator().manual_seed(seed))
torch.manual_seed(seed)
with torch.no_grad():
    hidden_out = hidden_net.train(True)(hidden_in)
test.assertTrue(
    torch.allclose(hidden_out, load_expected("tests/assets/hidden/hidden_cnn.pt"), atol=1e-3)
)
### END HIDDEN TESTS

# %% [markdown]
# As in the previous parts, the network is wrapped in a `Classifier`, which turns class
# scores into probabilities and predicted labels. Here the prediction rule is the simplest
# one: the class with the largest score.
#
# **TODO**: Implement `ArgMaxClassifier` in `hw2/classifier.py`.

# %% nbgrader={"grade": true, "grade_id": "test_classifier", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
from hw2.classifier import ArgMaxClassifier

model = ArgMaxClassifier(model=CNN(**test_params[0]))

test_image = torch.randint(low=0, high=256, size=(3, 100, 100), dtype=torch.float).unsqueeze(0)
test.assertEqual(model.classify(test_image).shape, (1,))
test.assertEqual(model.predict_proba(test_image).shape, (1, 10))
test.assertAlmostEqual(torch.sum(model.predict_proba(test_image)).item(), 1.0, delta=1e-3)

### BEGIN HIDDEN TESTS
torch.manual_seed(seed)
hidden_clf = ArgMaxClassifier(model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)))
hidden_x = torch.randn(6, 3, 2, 2, generator=torch.Generator().manual_seed(seed))
hidden_proba = hidden_clf.predict_proba(hidden_x)
test.assertEqual(hidden_proba.shape, (6, 4))
test.assertTrue(torch.allclose(hidden_proba.sum(dim=1), torch.ones(6), atol=1e-5))
hidden_pred = hidden_clf.classify(hidden_x)
test.assertEqual(hidden_pred.dtype, torch.long)
test.assertTrue(torch.equal(hidden_pred, hidden_proba.argmax(dim=1)))
hidden_scores = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9], [-5.0, -4.0, -4.5]])
test.assertEqual(hidden_clf.classify_scores(hidden_scores).tolist(), [1, 0, 1])
### END HIDDEN TESTS

# %% [markdown]
# Next, the data: CIFAR-10, 60,000 small colour images in 10 classes.
# `cs236781.data.load_cifar10` downloads it with torchvision the first time (to
# `~/.pytorch-datasets`). On a machine without network access, setting the environment
# variable `HW2_OFFLINE_DATA=1` replaces it with a synthetic stand-in of the same shapes;
# a message says so whenever that happens.

# %%
from cs236781.data import load_cifar10

ds_train, ds_test = load_cifar10()

print(f'Train: {len(ds_train)} samples')
print(f'Test: {len(ds_test)} samples')

x0, _ = ds_train[0]
in_size = x0.shape
num_classes = 10
print('input image size =', in_size)

# %% [markdown]
# Before training on the whole dataset, a sanity check: a model that is implemented and
# trained correctly must be able to memorize a handful of images. We train a small CNN on
# the first 50 training images only and expect it to fit almost all of them.
#
# **TODO**:
# 1. Implement the `ClassifierTrainer` class in `hw2/training.py` (if you have not already),
#    which adapts the generic `Trainer` to PyTorch classifiers.
# 2. Choose the optimizer's hyperparameters and the loss in `part4_optim_hp()` in
#    `hw2/answers.py`.

# %% nbgrader={"grade": true, "grade_id": "test_overfit", "locked": true, "points": 10, "schema_version": 3, "solution": false, "task": false}
from hw2.training import ClassifierTrainer
from hw2.answers import part4_optim_hp

torch.manual_seed(seed)

# Define a tiny part of the CIFAR-10 dataset to overfit it
batch_size = 2
max_batches = 25
dl_train = torch.utils.data.DataLoader(ds_train, batch_size, shuffle=False)

# Create model, loss and optimizer instances
model = ArgMaxClassifier(
    model=CNN(
        in_size, num_classes, channels=[32], pool_every=1, hidden_dims=[100],
        conv_params=dict(kernel_size=3, stride=1, padding=1),
        pooling_params=dict(kernel_size=2),
    )
)

hp_optim = part4_optim_hp()
loss_fn = hp_optim.pop('loss_fn')
optimizer = torch.optim.SGD(params=model.parameters(), **hp_optim)

# Use ClassifierTrainer to run only the training loop a few times.
trainer = ClassifierTrainer(model, loss_fn, optimizer, device)
best_acc = 0
for i in range(25):
    res = trainer.train_epoch(dl_train, max_batches=max_batches, verbose=(i%5==0))
    best_acc = res.accuracy if res.accuracy > best_acc else best_acc

# Test overfitting
test.assertGreaterEqual(best_acc, 90)

# %% [markdown]
# ## Residual networks
# <a id=part4_3></a>
#
# Most modern image classifiers add **shortcut connections** to the plain pattern above.
# Introduced by [He et al. (2016)](https://www.cv-foundation.org/openaccess/content_cvpr_2016/papers/He_Deep_Residual_Learning_CVPR_2016_paper.pdf),
# they are what makes networks with tens or hundreds of layers trainable at all.
#
# A shortcut (or skip connection) carries a block's input around a few convolutional
# layers and adds it to their output. Below, on the left, a block of two 3x3 convolutions;
# on the right, a *bottleneck* block, discussed further down.
#
# <img src="imgs/resnet_block2.png" width="700" />
#
# With the shortcut, the layers of a block no longer have to produce the whole mapping
# from its input to its output, only a **residual**: the correction to add to the input.
# Doing nothing, the identity, becomes easy (weights near zero), so adding a block can
# hardly make the network worse.
#
# Our residual block has three parts:
# - A **main path**: a sequence of convolutions. Between two consecutive convolutions there
#   is, in this order, an optional dropout layer, an optional batch normalization layer and
#   the activation. The main path ends with its last convolution.
# - A **shortcut path**: the identity; when the main path changes the number of channels,
#   a `1x1` convolution (without bias) that projects the input to the output's channels.
# - The sum of both paths, passed through a ReLU, is the block's output.
#
# **TODO**: Implement `ResidualBlock.__init__()` in `hw2/cnn.py`.

# %% nbgrader={"grade": true, "grade_id": "test_resblock", "locked": true, "points": 15, "schema_version": 3, "solution": false, "task": false}
from hw2.cnn import ResidualBlock

torch.manual_seed(seed)

resblock = ResidualBlock(
    in_channels=3, channels=[6, 4]*2, kernel_sizes=[3, 5]*2,
    batchnorm=True, dropout=0.2
)
print(resblock)

torch.manual_seed(seed)
test_out = resblock(torch.ones(1, 3, 32, 32))
print(f'{test_out.shape=}')

expected_out = load_expected('tests/assets/expected_resblock_out.pt')
print(f'max_diff={torch.max(torch.abs(test_out - expected_out)).item()}')
test.assertTrue(torch.allclose(test_out, expected_out, atol=1e-3))

### BEGIN HIDDEN TESTS
torch.manual_seed(seed)
hidden_block = ResidualBlock(
    in_channels=5, channels=[8, 3, 5], kernel_sizes=[3, 1, 5], batchnorm=True,
    dropout=0.3, activation_type="lrelu", activation_params=dict(negative_slope=0.2),
)
hidden_in = torch.randn(2, 5, 12, 20, generator=torch.Generator().manual_seed(seed))
torch.manual_seed(seed)
with torch.no_grad():
    hidden_out = hidden_block.train(True)(hidden_in)
test.assertTrue(
    torch.allclose(hidden_out, load_expected("tests/assets/hidden/hidden_resblock.pt"), atol=1e-3)
)
### END HIDDEN TESTS

# %% [markdown]
# ### Bottleneck blocks
#
# The block on the right of the figure is a bottleneck block. It is meant for the deep
# stages of a network, where the number of channels is large. A KxK convolution on all of
# those channels would be expensive, so the block first uses a 1x1 convolution to project
# the input onto fewer channels, applies the KxK convolution(s) in that narrower space, and
# projects back to the original number of channels with another 1x1 convolution. Its input
# and output have the same number of channels, so its shortcut is the identity.
#
# **TODO**: Implement `ResidualBottleneckBlock` in `hw2/cnn.py`.

# %% nbgrader={"grade": true, "grade_id": "test_resblock_bottleneck", "locked": true, "points": 15, "schema_version": 3, "solution": false, "task": false}
from hw2.cnn import ResidualBottleneckBlock

torch.manual_seed(seed)
resblock_bn = ResidualBottleneckBlock(
    in_out_channels=256, inner_channels=[64, 32, 64], inner_kernel_sizes=[3, 5, 3],
    batchnorm=False, dropout=0.1, activation_type="lrelu"
)
print(resblock_bn)

# Test a forward pass
torch.manual_seed(seed)
test_in  = torch.ones(1, 256, 32, 32)
test_out = resblock_bn(test_in)
print(f'{test_out.shape=}')
assert test_out.shape == test_in.shape

expected_out = load_expected('tests/assets/expected_resblock_bn_out.pt')
print(f'max_diff={torch.max(torch.abs(test_out - expected_out)).item()}')
test.assertTrue(torch.allclose(test_out, expected_out, atol=1e-3))

### BEGIN HIDDEN TESTS
torch.manual_seed(seed)
hidden_block = ResidualBottleneckBlock(
    in_out_channels=24, inner_channels=[8, 12], inner_kernel_sizes=[5, 3],
    batchnorm=True, dropout=0.0,
)
hidden_in = torch.randn(2, 24, 10, 10, generator=torch.Generator().manual_seed(seed))
torch.manual_seed(seed)
with torch.no_grad():
    hidden_out = hidden_block.train(True)(hidden_in)
test.assertTrue(
    torch.allclose(
        hidden_out, load_expected("tests/assets/hidden/hidden_resblock_bottleneck.pt"), atol=1e-3
    )
)
### END HIDDEN TESTS

# %% [markdown]
# Now put the blocks together into a residual network (our own ResNet variant):
#
#     [-> (CONV -> ACT)*P -> POOL]*(N/P) -> (FC -> ACT)*M -> FC
#      \------- SKIP ------/
#
# $N$, $P$ and $M$ mean what they meant for the `CNN`; in addition, every group of $P$
# consecutive convolutions is now one residual block, i.e. $P$ also sets how many
# convolutions each skip connection spans.
#
# **TODO**: Implement the `ResNet` class in `hw2/cnn.py`. Build it from your
# `ResidualBlock`s, or `ResidualBottleneckBlock`s where requested, one per group of $P$
# convolutions.

# %% nbgrader={"grade": true, "grade_id": "test_resnet", "locked": true, "points": 30, "schema_version": 3, "solution": false, "task": false}
from hw2.cnn import ResNet

test_params = [
    dict(
        in_size=(3,100,100), out_classes=10, channels=[32, 64]*3,
        pool_every=4, hidden_dims=[100]*2,
        activation_type='lrelu', activation_params=dict(negative_slope=0.01),
        pooling_type='avg', pooling_params=dict(kernel_size=2),
        batchnorm=True, dropout=0.1,
        bottleneck=False
    ),
    dict(
        # create 64->16->64 bottlenecks
        in_size=(3,100,100), out_classes=5, channels=[64, 16, 64]*4,
        pool_every=3, hidden_dims=[64]*1,
        activation_type='tanh',
        pooling_type='max', pooling_params=dict(kernel_size=2),
        batchnorm=True, dropout=0.1,
        bottleneck=True
    )
]

for i, params in enumerate(test_params):
    torch.manual_seed(seed)
    net = ResNet(**params)
    print(f"\n=== test {i=} ===")
    print(net)

    torch.manual_seed(seed)
    test_out = net(torch.ones(1, 3, 100, 100))
    print(f'{test_out=}')

    expected_out = load_expected(f'tests/assets/expected_resnet_out_{i:02d}.pt')
    print(f'max_diff={torch.max(torch.abs(test_out - expected_out)).item()}')
    test.assertTrue(torch.allclose(test_out, expected_out, atol=1e-3))

### BEGIN HIDDEN TESTS
torch.manual_seed(seed)
hidden_net = ResNet(
    in_size=(3, 48, 48), out_classes=4, channels=[16, 8, 16, 16, 4, 16, 32],
    pool_every=3, hidden_dims=[40], activation_type="relu",
    pooling_type="max", pooling_params=dict(kernel_size=2),
    batchnorm=False, dropout=0.2, bottleneck=True,
)
hidden_in = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(seed))
torch.manual_seed(seed)
with torch.no_grad():
    hidden_out = hidden_net.train(True)(hidden_in)
test.assertTrue(
    torch.allclose(hidden_out, load_expected("tests/assets/hidden/hidden_resnet.pt"), atol=1e-3)
)
### END HIDDEN TESTS

# %% [markdown]
# ## Questions
# <a id=part4_4></a>
#
# **TODO**: Answer the questions below in the variables `part4_q1` and `part4_q2` of
# `hw2/answers.py`, in Markdown (math between `$...$` or `$$...$$`). The cells under each
# question show your answer as it will be read.

# %%
from cs236781.answers import display_answer
import hw2.answers

# %% [markdown] nbgrader={"grade": false, "grade_id": "task_q1", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": true}
# ### Question 1
#
# Take the bottleneck block on the right of the residual block figure, which works on 256
# channels, and compare it with a plain block that applies two 3x3 convolutions directly
# to the 256-channel input (the structure on the left of the figure, but with 256 channels
# instead of 64). Explain how the two blocks differ in:
#
# 1. The number of parameters. Compute the exact numbers for both blocks and show your work.
# 2. The number of floating point operations needed to compute an output (a qualitative
#    assessment is enough).
# 3. Their ability to combine the input (1) spatially, within feature maps, and (2) across
#    feature maps.

# %% nbgrader={"grade": false, "grade_id": "answer_q1", "locked": true, "schema_version": 3, "solution": false, "task": false}
display_answer(hw2.answers.part4_q1)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task_q2", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": true}
# ### Question 2
#
# This question looks at another effect of the skip connections in the figure: what they
# do to the gradients when training deep networks. Consider a toy model.
#
# Let $M$ be an $m \times n$ matrix whose entries are all small, $|M_{i,j}| < 1$ for all
# $i, j$ (a realistic assumption: think of Xavier initialization).
#
# 1. Let $y_1 = M \cdot x_1$. Given $\frac{\partial L}{\partial y_1}$, derive
#    $\frac{\partial L}{\partial x_1}$.
# 2. Let $y_2 = x_2 + M \cdot x_2$. Given $\frac{\partial L}{\partial y_2}$, derive
#    $\frac{\partial L}{\partial x_2}$.
# 3. Using these two results, explain why the residual form helps against vanishing
#    gradients in a deep network made of many such layers, one after the other.
#
# Show your work and explain your answer.

# %% nbgrader={"grade": false, "grade_id": "answer_q2", "locked": true, "schema_version": 3, "solution": false, "task": false}
display_answer(hw2.answers.part4_q2)
