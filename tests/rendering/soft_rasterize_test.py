"""Soft rasteriser: gradients vs central finite differences (float64) and the hard limit."""

import jax
import jax.numpy as jnp
import numpy as np

from head360_jax.rendering import rasterize as raster
from head360_jax.rendering import soft_rasterize as soft

PIXELS = np.array([[3.2, 2.7], [12.5, 4.1], [5.3, 13.4], [14.2, 13.9], [9.1, 8.3]])
DEPTH = np.array([2.0, 2.5, 3.0, 2.2, 1.5])
FACES = np.array([[0, 1, 2], [1, 3, 2], [0, 4, 2]])  # the third face overlaps the first, nearer
ATTRIBUTES = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.9], [0.7, 0.1]])


def test_gradients_match_central_finite_differences():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    w_silhouette, w_attributes = rng.normal(size=(16, 16)), rng.normal(size=(16, 16, 2))

    def loss(pixels, depth, attributes):
      out = soft.soft_rasterize(
        pixels, depth, FACES, 16, attributes, sigma=1.0, gamma=0.2, depth_range=(1.0, 4.0), tile=2, jobs_per_step=16
      )  # several loop steps
      return jnp.sum(out.silhouette * w_silhouette) + jnp.sum(out.attributes * w_attributes)

    loss_jit = jax.jit(loss)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(PIXELS, DEPTH, ATTRIBUTES)
    eps = 1e-6
    for arg, (value, grad) in enumerate(zip((PIXELS, DEPTH, ATTRIBUTES), grads, strict=True)):
      numeric = np.zeros_like(value)
      for index in np.ndindex(value.shape):
        delta = np.zeros_like(value)
        delta[index] = eps
        plus = [PIXELS, DEPTH, ATTRIBUTES]
        minus = list(plus)
        plus[arg], minus[arg] = value + delta, value - delta
        numeric[index] = (loss_jit(*plus) - loss_jit(*minus)) / (2 * eps)
      assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 1e-3
      np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_small_sigma_and_gamma_approach_the_hard_rasteriser():
  # Two separate overlapping triangles, the second nearer everywhere, plus a neighbour.
  pixels = np.array(
    [[2.5, 2.2], [13.6, 3.1], [4.2, 13.7], [6.1, 5.3], [14.4, 9.2], [8.3, 14.6], [14.5, 13.8]], np.float32
  )
  depth = np.array([3.0, 3.2, 3.1, 1.5, 1.6, 1.4, 3.0], np.float32)
  faces = np.array([[0, 1, 2], [3, 4, 5], [1, 6, 2]])
  attributes = np.arange(14, dtype=np.float32).reshape(7, 2) / 14
  # Soft weights are D exp(z / gamma) with log D ~ -d^2 / sigma outside: at 0.5 px from an
  # edge d^2 / sigma = 125 outweighs any depth advantage 1 / gamma = 100. The depth range
  # keeps every face's normalised depth >= 0.25, far above the background's 1e-3.
  out = soft.soft_rasterize(pixels, depth, faces, 16, attributes, sigma=0.002, gamma=0.01, depth_range=(1.0, 4.0))
  hard = raster.rasterize(pixels, depth, faces, 16)
  expected = np.asarray(raster.interpolate(hard, attributes, faces))
  coverage = np.asarray(hard.coverage)
  rows, cols = np.meshgrid(np.arange(16) + 0.5, np.arange(16) + 0.5, indexing='ij')
  centres = np.stack([cols, rows], -1).reshape(-1, 2)
  distance = np.full(len(centres), np.inf)
  for face in faces:
    for i in range(3):
      a, b = pixels[face[i]], pixels[face[(i + 1) % 3]]
      t = np.clip(((centres - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
      distance = np.minimum(distance, np.linalg.norm(centres - a - t[:, None] * (b - a), axis=1))
  clear = (distance > 0.5).reshape(16, 16)
  silhouette = np.asarray(out.silhouette)
  np.testing.assert_allclose(silhouette[clear], coverage[clear].astype(np.float32), atol=1e-6)
  inside = clear & coverage
  assert inside.sum() > 30 and np.any(np.asarray(hard.face_id)[inside] == 1)
  np.testing.assert_allclose(np.asarray(out.attributes)[inside], expected[inside], atol=1e-4)
  assert np.all((silhouette >= 0) & (silhouette <= 1))


def test_vmap_matches_single_calls():
  pixels = np.stack([PIXELS, PIXELS + 1.5]).astype(np.float32)
  batched = jax.vmap(lambda p: soft.soft_rasterize(p, DEPTH.astype(np.float32), FACES, 16, sigma=0.5))(pixels)
  for i in range(2):
    single = soft.soft_rasterize(pixels[i], DEPTH.astype(np.float32), FACES, 16, sigma=0.5)
    np.testing.assert_allclose(batched.silhouette[i], single.silhouette, atol=1e-6)
