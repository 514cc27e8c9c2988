"""Losses against hand computation, R1 against finite differences, the blur kernel against a direct sum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from head360_jax.training import losses


def _softplus(x):
  return np.log1p(np.exp(x))


def test_gan_losses_match_hand_computation():
  fake = np.array([[-2.0], [0.0], [3.0]], np.float32)
  real = np.array([[1.0], [-0.5], [40.0]], np.float32)
  np.testing.assert_allclose(losses.generator_loss(fake), np.mean(_softplus(-fake)), rtol=1e-6)
  np.testing.assert_allclose(losses.discriminator_loss_fake(fake), np.mean(_softplus(fake)), rtol=1e-6)
  np.testing.assert_allclose(losses.discriminator_loss_real(real), np.mean(_softplus(-real)), rtol=1e-6)
  # softplus form stays finite where log(1 + e^x) overflows.
  assert np.isfinite(losses.discriminator_loss_fake(jnp.array([[1e4]])))


def test_density_and_l1_are_mean_absolute_differences():
  a = np.arange(12, dtype=np.float32).reshape(2, 6, 1)
  b = a[::-1] * 0.5
  np.testing.assert_allclose(losses.density_regularisation(a, b), np.mean(np.abs(a - b)), rtol=1e-6)
  np.testing.assert_allclose(losses.l1_photometric(a, b), np.mean(np.abs(a - b)), rtol=1e-6)


def test_r1_penalty_matches_finite_differences():
  """‖∇D‖² from autodiff vs central differences of a float64 twin of a small dual discriminator."""
  rng = np.random.default_rng(0)
  image, raw = rng.normal(size=(2, 4, 4, 3)), rng.normal(size=(2, 2, 2, 3))
  w_image, w_raw = rng.normal(size=(4, 4, 3)) * 0.3, rng.normal(size=(2, 2, 3)) * 0.3

  def d_np(x, r):  # per-sample logits, float64
    return np.tanh(np.sum(x * w_image, axis=(1, 2, 3)) + np.sum(r**2 * w_raw, axis=(1, 2, 3)))

  def d_sum(x, r):
    return jnp.sum(jnp.tanh(jnp.sum(x * w_image, axis=(1, 2, 3)) + jnp.sum(r**2 * w_raw, axis=(1, 2, 3))))

  grad_image, grad_raw = jax.grad(d_sum, argnums=(0, 1))(jnp.asarray(image, jnp.float32), jnp.asarray(raw, jnp.float32))
  penalty = np.asarray(losses.r1_penalty(grad_image, grad_raw))

  def fd(array, fn):
    grads, eps = np.zeros_like(array), 1e-6
    for index in np.ndindex(array.shape[1:]):
      plus, minus = array.copy(), array.copy()
      plus[(slice(None), *index)] += eps
      minus[(slice(None), *index)] -= eps
      grads[(slice(None), *index)] = (fn(plus) - fn(minus)) / (2 * eps)  # samples are independent
    return grads

  expected = np.sum(fd(image, lambda x: d_np(x, raw)) ** 2, axis=(1, 2, 3))
  expected += np.sum(fd(raw, lambda r: d_np(image, r)) ** 2, axis=(1, 2, 3))
  assert penalty.shape == (2,)
  np.testing.assert_allclose(penalty, expected, rtol=1e-4)


def _blur_np(images, sigma):
  size = int(np.floor(3 * sigma))
  x = np.arange(-size, size + 1)
  taps = np.exp2(-((x / sigma) ** 2))
  taps /= taps.sum()
  padded = np.pad(images, ((0, 0), (size, size), (size, size), (0, 0)))
  h, w = images.shape[1:3]
  rows = sum(taps[i] * padded[:, :, i : i + w] for i in range(2 * size + 1))
  return sum(taps[i] * rows[:, i : i + h] for i in range(2 * size + 1))


@pytest.mark.parametrize('sigma', [0.4, 1.5, 2.0])
def test_blur_matches_direct_sum_inside_a_larger_kernel(sigma):
  images = np.random.default_rng(1).normal(size=(2, 9, 7, 3)).astype(np.float32)
  out = losses.blur(jnp.asarray(images), jnp.float32(sigma), max_sigma=2.0)
  np.testing.assert_allclose(out, _blur_np(images.astype(np.float64), sigma), atol=1e-5)


def test_blur_with_zero_sigma_is_identity():
  images = np.random.default_rng(2).normal(size=(1, 5, 5, 3)).astype(np.float32)
  np.testing.assert_allclose(losses.blur(jnp.asarray(images), 0.0, max_sigma=3.0), images, atol=1e-7)
  np.testing.assert_array_equal(losses.blur(jnp.asarray(images), 1.0, max_sigma=0.0), images)
