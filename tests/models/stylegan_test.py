"""Mapping and synthesis networks vs the PyTorch goldens, plus truncation and noise properties."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from head360_jax.models import layers, stylegan


def _mapping_from_golden():
  arrays, meta = golden.load_golden('mapping_head360')
  params = golden.params_with_prefix(arrays)
  w_avg = jnp.asarray(params.pop('w_avg'))
  mapping = golden.build(lambda: stylegan.MappingNetwork(50, 25, 64, num_layers=2, rngs=nnx.Rngs(0)), params)
  return mapping, w_avg, arrays, meta


def test_mapping_matches_golden_head360():
  mapping, w_avg, arrays, meta = _mapping_from_golden()

  def fn(z, c):
    ws = stylegan.broadcast(mapping(z, c), 4)
    return {
      'ws_psi1': ws,
      'ws_psi05': stylegan.truncate(ws, w_avg, psi=0.5),
      'ws_psi05_cutoff2': stylegan.truncate(ws, w_avg, psi=0.5, cutoff=2),
    }

  golden.check_golden(fn, arrays, meta, ('z', 'c'))
  w = mapping(arrays['in/z'], arrays['in/c'])
  golden.assert_close(stylegan.update_w_avg(w_avg, w, beta=0.998), meta, arrays, 'out/w_avg_after_update')


def test_truncation_psi_zero_gives_w_avg_and_psi_one_is_identity():
  ws = jax.random.normal(jax.random.key(0), (2, 5, 8))
  w_avg = jnp.arange(8.0)
  np.testing.assert_array_equal(stylegan.truncate(ws, w_avg, psi=0.0), jnp.broadcast_to(w_avg, ws.shape))
  np.testing.assert_array_equal(stylegan.truncate(ws, w_avg, psi=1.0), ws)
  cut = stylegan.truncate(ws, w_avg, psi=0.0, cutoff=2)
  np.testing.assert_array_equal(cut[:, 2:], ws[:, 2:])


def test_mapping_label_only_and_latent_only():
  """z_dim 0 (the discriminator's camera mapping: embed width w_dim) and c_dim 0 both work."""
  label_only = stylegan.MappingNetwork(0, 25, 32, num_layers=8, rngs=nnx.Rngs(0))
  assert label_only.embed.weight.shape == (25, 32)
  assert label_only(None, jnp.ones((3, 25))).shape == (3, 32)
  latent_only = stylegan.MappingNetwork(16, 0, 32, rngs=nnx.Rngs(0))
  assert latent_only.embed is None
  assert latent_only(jnp.ones((3, 16)), None).shape == (3, 32)
  with pytest.raises(ValueError, match='z_dim'):
    stylegan.MappingNetwork(0, 0, 32, rngs=nnx.Rngs(0))


def test_synthesis_network_matches_golden_small():
  arrays, meta = golden.load_golden('synthesis_network_small')
  factory = lambda: stylegan.SynthesisNetwork(64, 32, 32, channel_base=512, channel_max=32, rngs=nnx.Rngs(0))
  network = golden.build(factory, golden.params_with_prefix(arrays))
  assert network.num_ws == 8
  fn = lambda ws: {'img': golden.nhwc_to_nchw(network(ws, noise_mode='const'))}
  golden.check_golden(fn, arrays, meta, ('ws',))


def test_synthesis_network_noise_and_shapes():
  factory = lambda: stylegan.SynthesisNetwork(8, 8, 3, channel_base=64, channel_max=8, rngs=nnx.Rngs(0))
  network = golden.random_build(factory)  # noise strengths non-zero, so the noise is visible
  ws = np.random.default_rng(0).standard_normal((2, network.num_ws, 8), np.float32)
  const = network(ws, noise_mode='const')
  assert const.shape == (2, 8, 8, 3)
  np.testing.assert_array_equal(const, network(ws, noise_mode='const'))
  first = network(ws, key=jax.random.key(1))
  np.testing.assert_array_equal(first, network(ws, key=jax.random.key(1)))
  assert not np.allclose(first, network(ws, key=jax.random.key(2)))
  with pytest.raises(ValueError, match='PRNG key'):
    network(ws)
  with pytest.raises(ValueError, match='ws'):
    network(ws[:, :-1], noise_mode='none')
  assert layers.parameter_count(network) > 0


def test_synthesis_network_gradients_reach_every_parameter_under_jit():
  factory = lambda: stylegan.SynthesisNetwork(8, 8, 3, channel_base=64, channel_max=8, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(golden.random_build(factory), nnx.Param, ...)
  ws = np.random.default_rng(1).standard_normal((2, 4, 8), np.float32)

  @jax.jit
  def loss(params, key):
    image = nnx.merge(graphdef, params, rest)(ws, key=key)
    return jnp.mean(jnp.square(image))

  grads = jax.grad(loss)(params, jax.random.key(0))
  for path, grad in jax.tree.leaves_with_path(grads):
    assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.any(grad != 0)), path


def test_style_mixing_cutoffs_and_mix():
  key = jax.random.key(0)
  np.testing.assert_array_equal(stylegan.mixing_cutoffs(key, 64, 14, 0.0), np.full(64, 14))
  always = np.asarray(stylegan.mixing_cutoffs(key, 512, 14, 1.0))
  assert always.dtype == np.int32 and always.min() == 1 and always.max() == 13  # uniform over [1, 14)
  assert len(np.unique(always)) == 13
  some = np.asarray(stylegan.mixing_cutoffs(jax.random.key(1), 4000, 14, 0.3))
  assert abs(np.mean(some < 14) - 0.3) < 0.03  # per sample, with probability 0.3
  with pytest.raises(ValueError, match='num_ws'):
    stylegan.mixing_cutoffs(key, 4, 1, 0.5)

  ws, ws_mix = jnp.zeros((3, 5, 2)), jnp.ones((3, 5, 2))
  mixed = np.asarray(stylegan.mix_styles(ws, ws_mix, jnp.array([1, 3, 5])))
  np.testing.assert_array_equal(mixed[..., 0], [[0, 1, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]])


def test_layer_styles_broadcast_or_validate():
  w = jnp.arange(6.0).reshape(2, 3)
  per_layer = stylegan.layer_styles(w, 4)
  np.testing.assert_array_equal(per_layer, np.broadcast_to(np.asarray(w)[:, None], (2, 4, 3)))
  assert stylegan.layer_styles(per_layer, 4) is per_layer
  with pytest.raises(ValueError, match='styles must be'):
    stylegan.layer_styles(per_layer, 5)
