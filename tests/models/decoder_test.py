"""Decoder vs the reference golden (decoder_head360), init statistics, output ranges, gradients."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from head360_jax.models import decoder as decoder_lib
from head360_jax.rendering import hexplane


def load_reference_params(decoder: decoder_lib.Decoder, arrays: dict[str, np.ndarray]) -> None:
  """Copies the reference OSGDecoder state dict (``param/net.{0,2}.*``, weights [out, in]) into ``decoder``."""
  for layer, index in ((decoder.hidden, 0), (decoder.output, 2)):
    layer.weight[...] = arrays[f'param/net.{index}.weight'].T
    layer.bias[...] = arrays[f'param/net.{index}.bias']


def test_matches_golden_with_gradients():
  arrays, meta = golden.load_golden('decoder_head360')
  decoder = decoder_lib.Decoder(64, 64, 64, rngs=nnx.Rngs(0))
  load_reference_params(decoder, arrays)

  def forward(sampled):  # the reference decoder averages the planes itself
    out = decoder(hexplane.aggregate(sampled, 'mean'))
    return out['features'], out['sigma']

  (features, sigma), vjp = jax.vjp(forward, jnp.asarray(arrays['in/sampled_features']))
  golden.assert_close(features, meta, arrays, 'out/rgb')
  golden.assert_close(sigma, meta, arrays, 'out/sigma')
  (grad,) = vjp((jnp.asarray(arrays['cot/rgb']), jnp.asarray(arrays['cot/sigma'])))
  golden.assert_close(grad, meta, arrays, 'grad/sampled_features')


def test_init_shapes_ranges_and_gradients():
  decoder = decoder_lib.Decoder(in_features=24, hidden=16, out_features=8, rngs=nnx.Rngs(1))
  assert decoder.hidden.weight.shape == (24, 16) and decoder.output.weight.shape == (16, 9)
  weights = np.concatenate([np.ravel(decoder.hidden.weight[...]), np.ravel(decoder.output.weight[...])])
  assert abs(weights.mean()) < 0.15 and 0.85 < weights.std() < 1.15  # equalised lr: stored N(0, 1)
  assert not np.any(decoder.hidden.bias[...]) and not np.any(decoder.output.bias[...])

  features = 5.0 * jax.random.normal(jax.random.key(0), (2, 7, 24))
  out = decoder(features)
  assert out['sigma'].shape == (2, 7, 1) and out['features'].shape == (2, 7, 8)
  assert np.all(out['features'] >= -0.001) and np.all(out['features'] <= 1.001)

  graphdef, params = nnx.split(decoder, nnx.Param)

  def loss(params):
    out = nnx.merge(graphdef, params)(features)
    return jnp.sum(out['sigma'] ** 2) + jnp.sum(out['features'] ** 2)

  for path, leaf in jax.tree_util.tree_leaves_with_path(jax.grad(loss)(params)):
    assert np.all(np.isfinite(leaf)) and np.any(leaf != 0), path
