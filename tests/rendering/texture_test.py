"""Bilinear texture sampling vs an independent float64 numpy grid_sample (zeros, align_corners=False)."""

import jax
import jax.numpy as jnp
import numpy as np

from head360_jax.rendering import texture


def _reference(image: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Per-sample float64 loop: the texel centre of column i is at g = (2i + 1) / w - 1."""
  height, width, channels = image.shape
  out = np.zeros((len(grid), channels))
  for n, (gu, gv) in enumerate(grid):
    x, y = ((gu + 1) * width - 1) / 2, ((gv + 1) * height - 1) / 2
    for row in (int(np.floor(y)), int(np.floor(y)) + 1):
      for col in (int(np.floor(x)), int(np.floor(x)) + 1):
        weight = (1 - abs(x - col)) * (1 - abs(y - row))
        if 0 <= row < height and 0 <= col < width:
          out[n] += weight * image[row, col]
  return out


def test_matches_float64_reference_including_zero_padding():
  rng = np.random.default_rng(0)
  image = rng.normal(size=(5, 7, 3))
  grid = rng.uniform(-1.3, 1.3, size=(200, 2))  # about a third outside [-1, 1]
  ours = texture.sample_bilinear(image.astype(np.float32), grid.astype(np.float32).reshape(10, 20, 2))
  np.testing.assert_allclose(np.asarray(ours).reshape(200, 3), _reference(image, grid), atol=2e-6)


def test_texel_centres_and_uv_convention():
  image = np.arange(12.0, dtype=np.float32).reshape(3, 4, 1)
  rows, cols = np.meshgrid(np.arange(3), np.arange(4), indexing='ij')
  uv = np.stack([(cols + 0.5) / 4, 1 - (rows + 0.5) / 3], -1)  # OBJ v up: row 0 holds v near 1
  np.testing.assert_allclose(texture.sample_bilinear(image, texture.uv_to_grid(uv))[..., 0], image[..., 0], atol=1e-5)
  assert float(texture.sample_bilinear(image, np.array([np.nan, 0.0]))[0]) == 0.0


def test_gradients_are_finite_and_match_finite_differences():
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.normal(size=(6, 6, 2)), jnp.float32)
  grid = jnp.asarray(rng.uniform(-0.8, 0.8, size=(8, 2)), jnp.float32)  # all taps inside
  weights = jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)
  loss = lambda img, g: jnp.sum(texture.sample_bilinear(img, g) * weights)
  grad_image, grad_grid = jax.grad(loss, argnums=(0, 1))(image, grid)
  assert np.all(np.isfinite(grad_image)) and np.all(np.isfinite(grad_grid))
  # Linear in the image: the gradient is the bilinear weights times the cotangent, summing to sum(weights).
  np.testing.assert_allclose(grad_image.sum(axis=(0, 1)), weights.sum(0), rtol=1e-5)
  eps = 1e-3
  for n in range(8):
    for k in range(2):
      delta = jnp.zeros_like(grid).at[n, k].set(eps)
      numeric = (loss(image, grid + delta) - loss(image, grid - delta)) / (2 * eps)
      np.testing.assert_allclose(grad_grid[n, k], numeric, rtol=2e-2, atol=2e-3)
