"""A conditioned vanilla NeRF MLP: the 'nerf' representation of the ablations (paper Table 3, "NeRF").

Legend: ``b`` batch, ``n`` points, ``L`` positional-encoding frequencies, ``w`` style size,
``h`` hidden width, ``o`` output features.

NeRF (Mildenhall et al. 2020, §5.1 and Fig. 7): positions pass through the positional
encoding ``γ(x) = (x, sin(2^k π x), cos(2^k π x))_{k<L}`` (L = 10 for positions) into an MLP
of ReLU layers (8 × 256 in NeRF) whose fifth layer sees ``γ(x)`` again (a skip). Conditioned
here, as the generator needs it, by concatenating the style ``w`` (identity, camera and
expression: ``Head360Generator.mapping``) to the encoded position at the input and at the
skip. Its output features take the place of the aggregated plane features: the same
``Decoder``, volume renderer and super-resolution follow, so only the representation
differs. No view dependence (as the Head360 decoder).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from head360_jax.models.layers import EqualizedDense


def positional_encoding(x: Float[Array, '... 3'], frequencies: int) -> Float[Array, '... e']:
  """NeRF's ``γ(x)``: ``x`` then ``sin(2^k π x)``, ``cos(2^k π x)`` for ``k < frequencies``; e = 3 (1 + 2L)."""
  scales = jnp.pi * 2.0 ** jnp.arange(frequencies, dtype=x.dtype)
  angles = (x[..., None, :] * scales[:, None]).reshape(*x.shape[:-1], 3 * frequencies)
  return jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)], axis=-1)


class NerfMLP(nnx.Module):
  """Positional-encoded, style-conditioned NeRF MLP (module docstring).

  Args:
    w_dim: style size.
    out_features: output width (the decoder's input, 2 × texture channels).
    frequencies: positional-encoding frequencies L (NeRF: 10).
    hidden: hidden width h (NeRF: 256).
    num_layers: hidden layers (NeRF: 8); the layer after the first half sees the input again.
    rngs: ``nnx.Rngs`` with a ``params`` stream.

  Raises:
    ValueError: for fewer than 2 layers or a negative number of frequencies.
  """

  def __init__(
    self,
    w_dim: int,
    out_features: int,
    *,
    frequencies: int = 10,
    hidden: int = 256,
    num_layers: int = 8,
    rngs: nnx.Rngs,
  ):
    if num_layers < 2 or frequencies < 0:
      raise ValueError(f'need num_layers >= 2 and frequencies >= 0, got {num_layers}, {frequencies}')
    self.frequencies = frequencies
    self.skip = num_layers // 2
    in_features = 3 * (1 + 2 * frequencies) + w_dim
    self.in_features = in_features
    widths = [in_features] + [hidden + (in_features if i == self.skip else 0) for i in range(1, num_layers)]
    self.hidden_layers = nnx.List([EqualizedDense(width, hidden, rngs=rngs) for width in widths])
    self.output = EqualizedDense(hidden, out_features, rngs=rngs)

  def __call__(self, points: Float[Array, 'b n 3'], w: Float[Array, 'b w']) -> Float[Array, 'b n o']:
    """Features of points in the unit cube (world points × 2 / box_warp) under styles ``w``."""
    encoded = positional_encoding(points, self.frequencies)
    inputs = jnp.concatenate([encoded, jnp.broadcast_to(w[:, None, :], (*points.shape[:2], w.shape[-1]))], axis=-1)
    x = inputs
    for index, layer in enumerate(self.hidden_layers):
      if index == self.skip:
        x = jnp.concatenate([x, inputs], axis=-1)
      # ReLU with He gain: the equalised layers scale weights by 1/sqrt(in), so sqrt(2) keeps the variance.
      x = jax.nn.relu(layer(x)) * math.sqrt(2.0)
    return self.output(x)
