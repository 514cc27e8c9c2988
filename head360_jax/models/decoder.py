"""The plane-feature decoder: aggregated plane features -> density and features (reference-spec §3.8).

Legend: ``b`` batch, ``n`` points, ``i`` input features (64: the mean of three 64-channel
planes), ``h`` hidden width, ``o`` output feature channels (64; channels 0-2 are RGB).

Reference ``OSGDecoder`` (``st1/triplane_head360.py`` L416-439): FC i→h, softplus,
FC h→1+o, both EG3D ``FullyConnectedLayer`` (``layers.EqualizedDense``: equalised learning
rate, weights stored N(0, 1) as (in, out) and scaled by ``1/sqrt(in)`` at run time,
learning-rate multiplier 1, biases start at 0). The density
is the raw first output; features get the MipNeRF ``sigmoid·(1 + 2ε) − ε``, ε = 0.001.
No view dependence (the reference passes ray directions and ignores them).
"""

import jax
from flax import nnx
from jaxtyping import Array, Float

from head360_jax.models.layers import EqualizedDense

_SIGMOID_MARGIN = 0.001


class Decoder(nnx.Module):
  """MLP from aggregated plane features to raw density and features.

  Args:
    in_features: width of the aggregated plane features (64 for the mean of 64-channel planes).
    hidden: hidden width (64).
    out_features: feature channels (64); the last layer has ``1 + out_features`` outputs.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, in_features: int = 64, hidden: int = 64, out_features: int = 64, *, rngs: nnx.Rngs):
    self.hidden = EqualizedDense(in_features, hidden, rngs=rngs)
    self.output = EqualizedDense(hidden, 1 + out_features, rngs=rngs)

  def __call__(self, features: Float[Array, 'b n i']) -> dict[str, Float[Array, 'b n _']]:
    """Decodes points' features.

    Returns:
      ``{'sigma': (b, n, 1) raw density (the marcher applies softplus(σ − 1)),
      'features': (b, n, o) in [-0.001, 1.001]}``.
    """
    out = self.output(jax.nn.softplus(self.hidden(features)))
    colors = jax.nn.sigmoid(out[..., 1:]) * (1.0 + 2.0 * _SIGMOID_MARGIN) - _SIGMOID_MARGIN
    return {'sigma': out[..., :1], 'features': colors}
