r"""
Answers to the hw2 Part 4 questions and the optimizer hyperparameters of the overfit check.

Write each answer as Markdown in the string it belongs to; ``$...$`` and ``$$...$$`` are
rendered as LaTeX math by ``cs236781.answers.display_answer``.
"""

import torch


def part4_optim_hp() -> dict:
    """Hyperparameters of ``torch.optim.SGD`` for the overfit check, and the loss function.

    :return: a dict with the keys ``lr``, ``weight_decay``, ``momentum`` and ``loss_fn``
        (an ``nn.Module`` mapping scores ``(N, C)`` and labels ``(N,)`` to a scalar).
    """
    hp = dict(lr=0.0, weight_decay=0.0, momentum=0.0, loss_fn=None)
    ### BEGIN SOLUTION
    hp = dict(lr=0.01, weight_decay=0.0, momentum=0.9, loss_fn=torch.nn.CrossEntropyLoss())
    ### END SOLUTION
    return hp


part4_q1 = r"""
### BEGIN SOLUTION
**1. Parameters.** A $K\times K$ convolution from $C_{in}$ to $C_{out}$ channels has
$K^2 C_{in} C_{out}$ weights and $C_{out}$ biases.

The regular block applies two $3\times 3$ convolutions, $256 \to 256$ each:

$$2 \cdot (3^2 \cdot 256 \cdot 256 + 256) = 2 \cdot 590{,}080 = 1{,}180{,}160.$$

The bottleneck block projects down with a $1\times 1$ convolution, applies one $3\times 3$
convolution in the narrow space and projects back up:

$$
\underbrace{(256 \cdot 64 + 64)}_{16{,}448}
+ \underbrace{(3^2 \cdot 64 \cdot 64 + 64)}_{36{,}928}
+ \underbrace{(64 \cdot 256 + 256)}_{16{,}640}
= 70{,}016.
$$

The bottleneck block has about $17$ times fewer parameters.

**2. Floating point operations.** With stride 1 and "same" padding every convolution computes
$K^2 C_{in}$ multiply-adds for each of its $H \cdot W \cdot C_{out}$ outputs. Per output
position the regular block needs $2 \cdot 3^2 \cdot 256 \cdot 256 = 1{,}179{,}648$
multiply-adds and the bottleneck block $256 \cdot 64 + 3^2 \cdot 64 \cdot 64 + 64 \cdot 256
= 69{,}632$: again about $17$ times fewer. The cost of both grows linearly with $H \cdot W$;
the bottleneck saves by doing its only spatial convolution on 64 channels instead of 256.
The additions of the shortcut and the activations are $O(H W C)$ and negligible next to these.

**3. Combining the input.**
- *Spatially (within feature maps):* two stacked $3\times 3$ convolutions see a $5\times 5$
  neighbourhood of each input position; the bottleneck block has a single $3\times 3$
  convolution, so its receptive field is only $3\times 3$. The regular block mixes more of
  the neighbourhood, and does it on all 256 channels.
- *Across feature maps:* every layer of both blocks mixes all of its input channels. The
  bottleneck's $1\times 1$ convolutions do nothing but that: the first compresses the 256
  maps into 64 combinations, the last expands them back, so channel mixing is cheap and
  explicit but passes through a 64-dimensional bottleneck, which limits how much of the
  input's channel information the spatial convolution can use.
### END SOLUTION
"""

part4_q2 = r"""
### BEGIN SOLUTION
**1.** $y_1 = M x_1$ is linear with Jacobian $\frac{\partial y_1}{\partial x_1} = M$, so the
chain rule gives
$$\frac{\partial L}{\partial x_1} = M^\top \frac{\partial L}{\partial y_1}.$$

**2.** $y_2 = x_2 + M x_2 = (I + M) x_2$ has Jacobian $I + M$, so
$$\frac{\partial L}{\partial x_2} = (I + M)^\top \frac{\partial L}{\partial y_2}
= \frac{\partial L}{\partial y_2} + M^\top \frac{\partial L}{\partial y_2}.$$

**3.** Stack $k$ layers and back-propagate from the output $x^{(k)}$ to the input $x^{(0)}$.
Without shortcuts the gradient is multiplied by one transposed weight matrix per layer:
$$\frac{\partial L}{\partial x^{(0)}} = M_1^\top M_2^\top \cdots M_k^\top
\frac{\partial L}{\partial x^{(k)}}.$$
When the entries of each $M_i$ are small its norm is below one, say
$\lVert M_i \rVert \le \rho < 1$, and the gradient's norm is at most $\rho^k$ times that at the
output: it vanishes exponentially with depth. With $\rho = 0.5$ and $k = 20$ layers,
$\rho^k \approx 9.5 \times 10^{-7}$.

With shortcuts each factor is $(I + M_i)^\top$ instead. Expanding the product,
$$\prod_{i=1}^{k} (I + M_i)^\top = I + \sum_i M_i^\top + \sum_{i<j} M_i^\top M_j^\top + \dots,$$
which always contains the identity term: the gradient at the output reaches the input
unchanged, plus corrections through the weights. However small the $M_i$ are, the gradient
does not shrink below what the identity path carries, so the early layers keep receiving a
useful training signal even in very deep networks.
### END SOLUTION
"""
