"""Rays vs the reference golden and the projection convention; box clipping; stratified and importance samples."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from head360_jax.geometry import camera
from head360_jax.rendering import ray_sampling


def test_rays_match_golden():
  arrays, meta = golden.load_golden('ray_sampler')
  origins, directions = ray_sampling.rays_from_camera(jnp.asarray(arrays['in/c']), 8)
  golden.assert_close(origins, meta, arrays, 'out/ray_origins')
  golden.assert_close(directions, meta, arrays, 'out/ray_directions')


@pytest.mark.parametrize('view', [0, 30, 53])
def test_rays_are_unit_and_pass_through_pixel_centres(view):
  res = 5
  c = camera.dataset_cameras(focal=3.0)[view : view + 1]  # wide angle: directions differ visibly
  origins, directions = ray_sampling.rays_from_camera(c, res)
  np.testing.assert_allclose(jnp.linalg.norm(directions, axis=-1), 1.0, atol=1e-6)
  cam2world, intrinsics = camera.unpack_label(jnp.asarray(c))
  pixels, depth = camera.project(origins + 7.0 * directions, cam2world, intrinsics, res)
  rows, cols = np.meshgrid(np.arange(res), np.arange(res), indexing='ij')
  np.testing.assert_allclose(pixels[0], np.stack([cols.ravel(), rows.ravel()], -1) + 0.5, atol=1e-4)
  assert np.all(depth > 0)
  # A non-square image: rays are row-major over (h, w).
  _, directions = ray_sampling.rays_from_camera(c, (2, 3))
  pixels, _ = camera.project(origins[:, :6] + directions, cam2world, intrinsics, 1)
  np.testing.assert_allclose(pixels[0], [[(j + 0.5) / 3, (i + 0.5) / 2] for i in range(2) for j in range(3)], atol=1e-5)


def test_ray_box_intersection():
  key_o, key_t = jax.random.split(jax.random.key(0))
  origins = jax.random.normal(key_o, (1, 400, 3)) * 2.0
  targets = jax.random.uniform(key_t, (1, 400, 3), minval=-0.8, maxval=0.8)
  directions = (targets - origins) / jnp.linalg.norm(targets - origins, axis=-1, keepdims=True)
  origins = origins.at[0, 0].set(jnp.asarray([0.1, 0.2, -0.3]))  # starts inside
  directions = directions.at[0, 1].set(jnp.asarray([1.0, 0.0, 0.0]))  # axis-parallel
  origins = origins.at[0, 1].set(jnp.asarray([-3.0, 0.1, 0.2]))
  near, far = (np.asarray(x)[0, :, 0] for x in ray_sampling.ray_box_intersection(origins, directions, 0.5))
  origins, directions = np.asarray(origins)[0], np.asarray(directions)[0]
  hit = far > near
  assert 50 < hit.sum() < 400 and hit[0] and hit[1]
  assert near[0] == 0.0 and near[1] == pytest.approx(2.5) and far[1] == pytest.approx(3.5)
  entry, exit_ = origins + near[:, None] * directions, origins + far[:, None] * directions
  outside = np.abs(origins).max(-1) > 0.5
  np.testing.assert_allclose(np.abs(entry[hit & outside]).max(-1), 0.5, atol=1e-5)
  np.testing.assert_allclose(np.abs(exit_[hit]).max(-1), 0.5, atol=1e-5)
  assert np.all(np.abs((entry + exit_)[hit] / 2).max(-1) < 0.5)
  # Misses: a dense walk along the ray never enters the box.
  t = np.linspace(0, 10, 4001)
  walk = origins[~hit, None] + t[:, None] * directions[~hit, None]
  assert np.all(np.abs(walk).max(-1) > 0.5 - 1e-3)
  assert np.all(near >= 0)


def test_stratified_samples_lie_in_their_bins():
  near = jnp.asarray([[[1.0], [2.0]]])
  far = jnp.asarray([[[3.0], [2.5]]])
  s = 8
  deterministic = ray_sampling.stratified_samples(near, far, s)
  np.testing.assert_allclose(deterministic[0, 0, :, 0], np.linspace(1.0, 3.0, s), atol=1e-6)
  jittered = np.asarray(ray_sampling.stratified_samples(near, far, s, jax.random.key(0)))[..., 0]
  edges = np.asarray(near + (far - near) * jnp.arange(s + 1) / s)  # (1, 2, s + 1)
  assert np.all(jittered >= edges[..., :-1]) and np.all(jittered <= edges[..., 1:])
  assert not np.allclose(jittered, ray_sampling.stratified_samples(near, far, s, jax.random.key(1))[..., 0])
  for samples in (np.asarray(deterministic)[..., 0], jittered):  # every deterministic sample is in its bin too
    assert np.all(samples >= edges[..., :-1] - 1e-6) and np.all(samples <= edges[..., 1:] + 1e-6)
    assert np.all(np.diff(samples, axis=-1) > 0)


def test_importance_samples_match_golden():
  arrays, meta = golden.load_golden('importance_sample')
  for suffix, num in (('', 12), ('_s48', 48)):
    depths = ray_sampling.importance_samples(
      arrays[f'in/z_vals{suffix}'][..., 0], arrays[f'in/weights{suffix}'][..., 0], num
    )
    golden.assert_close(depths[..., None], meta, arrays, f'out/depths_fine{suffix}')
  golden.assert_close(
    ray_sampling.smooth_weights(arrays['in/weights'][..., 0]), meta, arrays, 'out/debug_weights_smoothed'
  )


@pytest.mark.parametrize('key', [None, jax.random.key(3)])
def test_importance_samples_concentrate_where_the_weights_are(key):
  depths = jnp.broadcast_to(jnp.linspace(1.0, 3.0, 33), (2, 3, 33))
  weights = jnp.zeros((2, 3, 32)).at[..., 20].set(1.0)  # interval [depths[20], depths[21]] = [2.25, 2.3125]
  samples = np.asarray(ray_sampling.importance_samples(depths, weights, 64, key))
  assert samples.shape == (2, 3, 64)
  near_peak = np.mean((samples > 2.15) & (samples < 2.42))
  assert near_peak > 0.8  # the smoothed peak (3 bins) holds about 3 / (3 + 0.01 * 30) of the mass
  midpoints = (np.asarray(depths)[..., 1:] + np.asarray(depths)[..., :-1]) / 2
  assert np.all(samples >= midpoints[..., :1] - 1e-6) and np.all(samples <= midpoints[..., -2:-1] + 1e-6)
  grad = jax.grad(lambda w: jnp.sum(ray_sampling.importance_samples(depths, w, 64, key)))(weights)
  assert not np.any(grad)  # stop-gradient: sampling is not differentiated
  with pytest.raises(ValueError, match='s - 1'):
    ray_sampling.importance_samples(depths, weights[..., 1:], 8)
