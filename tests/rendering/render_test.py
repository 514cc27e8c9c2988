"""Two-pass renderer vs the reference golden (renderer_small); box clipping, jitter and density sampling."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from head360_jax.models import decoder as decoder_lib
from head360_jax.rendering import hexplane, ray_sampling, render


def test_matches_golden_with_gradients():
  arrays, meta = golden.load_golden('renderer_small')
  decoder = decoder_lib.Decoder(64, 64, 64, rngs=nnx.Rngs(0))
  for layer, index in ((decoder.hidden, 0), (decoder.output, 2)):
    layer.weight[...] = arrays[f'param/net.{index}.weight'].T
    layer.bias[...] = arrays[f'param/net.{index}.bias']
  planes = jnp.asarray(np.transpose(arrays['in/planes'], (0, 1, 3, 4, 2)))
  origins, directions = jnp.asarray(arrays['in/ray_origins']), jnp.asarray(arrays['in/ray_directions'])
  reference_settings = {'clip_to_box': False, 'ray_start': 20.0, 'ray_end': 25.0, 'depth_clamp': 'batch'}

  @jax.jit
  def forward(planes):
    out = render.render_rays(
      decoder, planes, origins, directions, num_coarse=48, num_fine=48, key=None, **reference_settings
    )
    return out['features'], out

  features, vjp, out = jax.vjp(forward, planes, has_aux=True)
  golden.assert_close(features, meta, arrays, 'out/features')
  golden.assert_close(out['depth'], meta, arrays, 'out/depth')
  golden.assert_close(out['weights_sum'], meta, arrays, 'out/weights_sum')
  (grad,) = vjp(jnp.asarray(arrays['cot/features']))
  golden.assert_close(np.transpose(grad, (0, 1, 4, 2, 3)), meta, arrays, 'grad/planes')


def _density_decoder(features):
  """Density 200 where the aggregated feature is 1 (inside the cube), -20 where it is 0; constant colours."""
  return {
    'sigma': 220.0 * features[..., :1] - 20.0,
    'features': jnp.broadcast_to(jnp.asarray([0.25, 0.75]), (*features.shape[:-1], 2)),
  }


def test_clipped_rays_start_at_the_box_and_misses_are_background():
  planes = jnp.ones((1, 3, 16, 16, 1))
  cam2world = np.eye(4)
  cam2world[:3, :3] = np.diag([-1.0, 1.0, -1.0])  # looking along -z from +z
  cam2world[2, 3] = 3.0
  c = jnp.asarray(np.concatenate([cam2world.ravel(), [1.5, 0, 0.5, 0, 1.5, 0.5, 0, 0, 1]])[None], jnp.float32)
  origins, directions = ray_sampling.rays_from_camera(c, 8)  # the outer rays miss the unit cube
  near, far = ray_sampling.ray_box_intersection(origins, directions)
  hit = np.asarray(far > near)[0, :, 0]
  assert 0 < hit.sum() < hit.size

  run = jax.jit(
    lambda planes, key: render.render_rays(
      _density_decoder, planes, origins, directions, num_coarse=16, num_fine=16, key=key
    )
  )
  for key in (None, jax.random.key(0)):
    out = run(planes, key)
    weights_sum, depth = np.asarray(out['weights_sum'])[0, :, 0], np.asarray(out['depth'])[0, :, 0]
    np.testing.assert_allclose(weights_sum[~hit], 0.0)
    np.testing.assert_allclose(out['features'][0, ~hit], 1.0)  # white background
    assert np.all(weights_sum[hit] > 0.99)  # opaque inside the cube
    np.testing.assert_allclose(out['features'][0, hit], [[-0.5, 0.5]] * int(hit.sum()), atol=0.02)
    # The surface is the box's entry face: the first interval's midpoint (the jitter moves it up to one bin).
    bin_size = (far - near)[0, hit, 0] / 16
    assert np.all(depth[hit] >= near[0, hit, 0]) and np.all(depth[hit] - near[0, hit, 0] < 1.6 * bin_size)
  grad = jax.grad(lambda p: jnp.sum(run(p, jax.random.key(1))['features'] ** 2))(planes)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_sample_density_and_argument_checks():
  planes = jax.random.normal(jax.random.key(0), (2, 3, 8, 8, 4))
  points = jax.random.uniform(jax.random.key(1), (2, 10, 3), minval=-0.6, maxval=0.6)
  sigma = render.sample_density(_density_decoder, planes, points)
  expected = _density_decoder(hexplane.aggregate(hexplane.sample_planes(planes, points)))['sigma']
  assert sigma.shape == (2, 10, 1)
  np.testing.assert_allclose(sigma, expected)
  origins = jnp.zeros((2, 4, 3))
  with pytest.raises(ValueError, match='ray_start'):
    render.render_rays(_density_decoder, planes, origins, origins, num_coarse=8, num_fine=8, clip_to_box=False)
