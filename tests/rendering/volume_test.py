"""Compositing vs the reference golden (ray_marcher); weights, background and gradient properties."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from head360_jax.rendering import volume


def test_matches_golden_with_gradients():
  arrays, meta = golden.load_golden('ray_marcher')
  inputs = [jnp.asarray(arrays[f'in/{name}']) for name in ('colors', 'densities', 'depths')]

  def forward(*inputs):
    features, _, weights, _ = volume.composite(*inputs, depth_clamp='batch')
    return features, weights

  (features, weights), vjp = jax.vjp(forward, *inputs)
  _, depth, _, weights_sum = volume.composite(*inputs, depth_clamp='batch')
  golden.assert_close(features, meta, arrays, 'out/rgb')
  golden.assert_close(weights, meta, arrays, 'out/weights')
  golden.assert_close(depth, meta, arrays, 'out/depth')
  golden.assert_close(weights_sum, meta, arrays, 'out/weights_sum')
  golden.assert_close(volume.composite(*inputs, white_background=False)[0], meta, arrays, 'out/rgb_no_white_back')
  grads = vjp((jnp.asarray(arrays['cot/rgb']), jnp.asarray(arrays['cot/weights'])))
  for name, grad in zip(('colors', 'densities', 'depths'), grads, strict=True):
    golden.assert_close(grad, meta, arrays, f'grad/{name}')
  # Per-ray clamping changes only the empty rays ([0, 3] and [1, 7]), which get their own last depth.
  ray_depth = np.asarray(volume.composite(*inputs)[1])
  empty = np.asarray(weights_sum)[..., 0] == 0
  np.testing.assert_array_equal(ray_depth[~empty], np.asarray(depth)[~empty])
  np.testing.assert_allclose(ray_depth[empty, 0], arrays['in/depths'][empty][:, -1, 0])


def _random_rays(key, empty_rays=True):
  key_c, key_s, key_d = jax.random.split(key, 3)
  colors = jax.random.uniform(key_c, (2, 6, 10, 5))
  densities = 4.0 * jax.random.normal(key_s, (2, 6, 10, 1))
  if empty_rays:
    densities = densities.at[0, 0].set(-200.0)
  depths = 20.0 + jnp.cumsum(jax.random.uniform(key_d, (2, 6, 10, 1), minval=0.0, maxval=0.3), axis=-2)
  return colors, densities, depths


@pytest.mark.parametrize('depth_clamp', ['ray', 'batch'])
def test_weights_sum_to_at_most_one_and_gradients_are_finite(depth_clamp):
  colors, densities, depths = _random_rays(jax.random.key(0))
  features, depth, weights, weights_sum = volume.composite(colors, densities, depths, depth_clamp=depth_clamp)
  assert weights.shape == (2, 6, 9, 1) and features.shape == (2, 6, 5) and depth.shape == (2, 6, 1)
  assert np.all(weights >= 0) and np.all(weights_sum <= 1.0 + 1e-6)
  np.testing.assert_allclose(weights_sum, jnp.sum(weights, axis=-2), atol=1e-6)
  assert weights_sum[0, 0, 0] == 0.0 and np.all(np.isfinite(depth))
  within = (depth >= depths.min(axis=-2) - 1e-4) & (depth <= depths.max(axis=-2) + 1e-4)
  assert np.all(within[weights_sum > 0])  # 'batch' puts the empty ray at the batch's last depth
  assert depth_clamp == 'batch' or np.all(within)

  def loss(colors, densities, depths):  # depth included: finite gradients on the empty ray too
    features, depth, _, weights_sum = volume.composite(colors, densities, depths, depth_clamp=depth_clamp)
    return jnp.sum(features**2) + jnp.sum(depth) + jnp.sum(weights_sum)

  for grad in jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(colors, densities, depths):
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_white_background_and_opaque_rays():
  colors = jnp.broadcast_to(jnp.asarray([0.2, 0.7, 0.0, 1.0]), (1, 2, 6, 4))
  densities = jnp.stack([jnp.full((6, 1), -200.0), jnp.full((6, 1), 1e4)])[None]  # empty ray, opaque ray
  depths = jnp.broadcast_to(jnp.linspace(1.0, 2.0, 6)[:, None], (1, 2, 6, 1))
  features, depth, _, weights_sum = volume.composite(colors, densities, depths)
  np.testing.assert_allclose(weights_sum[0, :, 0], [0.0, 1.0], atol=1e-6)
  np.testing.assert_allclose(features[0, 0], 1.0)  # empty ray: white (+1) on every channel, as the reference
  np.testing.assert_allclose(features[0, 1], 2.0 * colors[0, 0, 0] - 1.0, atol=1e-5)
  np.testing.assert_allclose(depth[0, :, 0], [2.0, 1.1], atol=1e-5)  # empty: the far end; opaque: first midpoint
  black = volume.composite(colors, densities, depths, white_background=False)[0]
  np.testing.assert_allclose(black[0, 0], -1.0)
  with pytest.raises(ValueError, match='depth_clamp'):
    volume.composite(colors, densities, depths, depth_clamp='global')
