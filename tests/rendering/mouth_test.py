"""Mouth crop/paste: resampling values against independent numpy, hard-box paste, boxes leaving the canvas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from head360_jax.rendering import mouth

R = 64  # canvas side used here (the reference's is 256; the math does not depend on it)


def _ramp(size=R, channels=2):
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  image = np.stack([0.5 * rows + 0.25 * cols + 1.0, -0.75 * rows + 0.5 * cols], axis=-1)
  return image[..., :channels].astype(np.float32)


def _smooth(size=R):
  rows, cols = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing='ij')
  return np.stack([np.sin(rows / 9.0) * np.cos(cols / 11.0), np.cos((rows + cols) / 13.0)], axis=-1).astype(np.float32)


def test_crop_of_linear_ramp_is_the_ramp_at_the_box_grid():
  """Up-sampling (box 12-16 px -> 16²) of a linear image: bilinear is exact; checked with numpy."""
  image = _ramp()
  boxes = np.array([[20, 32, 24, 36], [10, 26, 5, 21], [33, 47, 40, 54]], np.int32)
  size = 16
  crops = np.asarray(mouth.mouth_crop(np.stack([image] * 3), boxes, size))
  for crop, (r0, r1, c0, c1) in zip(crops, boxes, strict=True):
    # Output pixel t samples the continuous image at a + (t + 0.5) S / n; pixel j is centred at j + 0.5.
    rows = r0 + (np.arange(size) + 0.5) * (r1 - r0) / size - 0.5
    cols = c0 + (np.arange(size) + 0.5) * (c1 - c0) / size - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing='ij')
    expected = np.stack([0.5 * rr + 0.25 * cc + 1.0, -0.75 * rr + 0.5 * cc], axis=-1)
    np.testing.assert_allclose(crop, expected, atol=1e-4)


def test_crop_of_large_box_is_antialiased_box_mean():
  """A box of 32 px onto 8 px (x1/4): the triangle is 4 px wide, so a checkerboard averages to its mean."""
  checker = ((np.add.outer(np.arange(R), np.arange(R)) % 2) * 2.0 - 1.0).astype(np.float32)[None, :, :, None] + 3.0
  crop = mouth.mouth_crop(checker, np.array([[16, 48, 16, 48]], np.int32), 8)
  np.testing.assert_allclose(crop, 3.0, atol=1e-5)


def test_paste_equals_resized_patch_inside_the_box_and_front_outside_exactly():
  rng = np.random.default_rng(0)
  front = rng.standard_normal((2, R, R, 3)).astype(np.float32)
  patch = rng.standard_normal((2, 48, 48, 3)).astype(np.float32)
  boxes = np.array([[10, 22, 30, 42], [40, 50, 3, 13]], np.int32)
  out = np.asarray(mouth.mouth_paste(front, patch, boxes))
  for i, (r0, r1, c0, c1) in enumerate(boxes):
    # Antialiased bilinear down-sizing (torch's interpolate(antialias=True); golden resize_bilinear_aa).
    resized = jax.image.resize(patch[i], (r1 - r0, c1 - c0, 3), method='linear', antialias=True)
    np.testing.assert_allclose(out[i, r0:r1, c0:c1], resized, atol=1e-5)
    mask = np.ones((R, R), bool)
    mask[r0:r1, c0:c1] = False
    np.testing.assert_array_equal(out[i][mask], front[i][mask])


def test_paste_of_upsampled_crop_restores_a_smooth_front():
  front = _smooth()[None]
  box = np.array([[18, 42, 20, 44]], np.int32)
  crop = mouth.mouth_crop(front, box, 32)
  patch = jax.image.resize(crop, (1, 128, 128, 2), method='linear')
  out = np.asarray(mouth.mouth_paste(front, patch, box))
  np.testing.assert_allclose(out, front, atol=0.02)
  assert np.abs(out - front).max() > 0  # the box was really rewritten


def test_boxes_partly_outside_the_canvas():
  """Canvas is zero outside; pasted pixels beyond the canvas are dropped; rest unchanged."""
  image = _ramp(channels=1)
  box = np.array([[-8, 8, 56, 72]], np.int32)  # top-right corner, half outside both ways
  crop = np.asarray(mouth.mouth_crop(image[None], box, 16))[0]
  rows = -8 + (np.arange(16) + 0.5) - 0.5
  cols = 56 + (np.arange(16) + 0.5) - 0.5
  inside = (rows[:, None] >= 0) & (cols[None, :] <= R - 1)
  expected = 0.5 * rows[:, None] + 0.25 * cols[None, :] + 1.0
  np.testing.assert_allclose(crop[..., 0][inside], expected[inside], atol=1e-4)
  np.testing.assert_allclose(crop[:8], 0.0, atol=1e-6)  # box rows -8..-1 lie above the canvas
  np.testing.assert_allclose(crop[:, 8:], 0.0, atol=1e-6)  # columns 64..71 right of it

  patch = np.full((1, 32, 32, 1), 7.0, np.float32)
  out = np.asarray(mouth.mouth_paste(image[None], patch, box))[0, ..., 0]
  np.testing.assert_allclose(out[:8, 56:], 7.0, atol=1e-5)
  mask = np.ones((R, R), bool)
  mask[:8, 56:] = False
  np.testing.assert_array_equal(out[mask], image[..., 0][mask])

  far = np.array([[-40, -20, 100, 120]], np.int32)  # entirely outside
  np.testing.assert_array_equal(mouth.mouth_paste(image[None], patch, far), image[None])
  np.testing.assert_array_equal(mouth.mouth_crop(image[None], far, 8), 0.0)


def test_jit_vmap_and_gradients():
  rng = np.random.default_rng(1)
  front = jnp.asarray(rng.standard_normal((2, R, R, 2)), jnp.float32)
  patch = jnp.asarray(rng.standard_normal((2, 32, 32, 2)), jnp.float32)
  boxes = jnp.array([[20, 36, 22, 38], [-4, 10, 50, 66]], jnp.int32)

  def loss(front, patch, boxes):
    crop = mouth.mouth_crop(front, boxes, 16)
    return jnp.sum(mouth.mouth_paste(front, patch, boxes) ** 2) + jnp.sum(crop**3)

  value, (g_front, g_patch) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(front, patch, boxes)
  assert np.isfinite(value)
  assert np.all(np.isfinite(g_front)) and np.all(np.isfinite(g_patch))
  assert np.all(np.abs(g_patch).sum(axis=(1, 2, 3)) > 0)
  assert np.abs(g_front[0, 20:36, 22:38]).sum() > 0  # through the crop
  # vmap over an extra leading axis gives the same as the batched call.
  stacked = jax.vmap(lambda f, p, b: mouth.mouth_paste(f, p, b))(front[:, None], patch[:, None], boxes[:, None])
  np.testing.assert_allclose(stacked[:, 0], mouth.mouth_paste(front, patch, boxes), atol=1e-6)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match='box'):
    mouth.mouth_crop(np.zeros((1, 8, 8, 1)), np.zeros((2, 4), np.int32))
  with pytest.raises(ValueError, match='square'):
    mouth.mouth_paste(np.zeros((1, 8, 8, 1)), np.zeros((1, 4, 5, 1)), np.zeros((1, 4), np.int32))
