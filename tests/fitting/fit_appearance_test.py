"""Appearance fit machinery: Poisson blending, smoothing, and the two-pass optimiser on a toy renderer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from head360_jax.fitting import appearance
from head360_jax.metrics import lpips as lpips_lib


@pytest.fixture(scope='module')
def lpips_params():
  return lpips_lib.load_lpips()


def test_blend_face_changes_only_the_mask():
  rng = np.random.default_rng(0)
  photo = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
  render = np.full((64, 64, 3), 200, np.uint8)
  mask = np.zeros((64, 64), bool)
  mask[20:44, 16:40] = True
  out = appearance.blend_face(photo, render, mask)
  np.testing.assert_array_equal(out[~mask], render[~mask])
  # Inside, the photo's gradients come through (seamless cloning keeps its detail).
  inside = out[22:42, 18:38].astype(float)
  assert np.std(inside) > 0.5 * np.std(photo[22:42, 18:38].astype(float))


def test_smooth_is_a_bias_corrected_ema():
  np.testing.assert_allclose(appearance.smooth(np.full(5, 3.0), 0.9), 3.0)
  curve = appearance.smooth(np.array([4.0, 2.0]), 0.5)
  np.testing.assert_allclose(curve, [4.0, (0.25 * 4 + 0.5 * 2) / 0.75])


def _toy_image(frozen, texture, w_hair):
  """An image from a 'texture' and a 'hair style': enough structure to test the optimiser."""
  image = jnp.tanh(texture[..., :3] + frozen['bias'])
  image = jax.image.resize(image, (32, 32, 3), 'linear')
  return image.at[:8].add(jnp.tanh(w_hair[:3]) - image[:8])  # the top rows are "hair"


def _toy_renderer(frozen, texture, w_hair, labels):
  """One toy image per label; a label's first entry shifts the image ("another view")."""
  image = _toy_image(frozen, texture, w_hair)
  return jnp.stack([jnp.roll(image, 1, axis=1) * (1 - label[0]) + image * label[0] for label in labels])


def _targets(face, full):
  return appearance.single_view_targets(np.ones(25, np.float32), face, full)


def test_two_passes_fit_texture_then_hair(lpips_params):
  rng = np.random.default_rng(0)
  frozen = {'bias': jnp.float32(0.1)}
  true_texture = rng.normal(size=(16, 16, 4)).astype(np.float32) * 0.5
  true_w = np.array([0.8, -0.5, 0.3, 0.0], np.float32)
  target = np.asarray(_toy_image(frozen, true_texture, true_w))
  texture0, w0 = np.zeros((16, 16, 4), np.float32), np.zeros(4, np.float32)
  options = appearance.AppearanceOptions(
    face_steps=40, hair_steps=40, texture_learning_rate=0.05, style_learning_rate=0.05, lpips_weight=0.0
  )  # L1 only: VGG's gradients would dominate the time; test_weighted_loss_* and fit_pipeline_test cover LPIPS
  fit = appearance.fit_appearance(
    _toy_renderer, frozen, texture0, w0, _targets(target, target), lpips_params, options, progress=False
  )
  assert fit.losses.shape == (80,) and (fit.passes == np.repeat([0, 1], 40)).all()
  face, hair = fit.losses[:40], fit.losses[40:]
  assert face[-1] < 0.5 * face[0] and hair[-1] < 0.5 * hair[0]
  # The face pass leaves the hair style alone; the hair pass moves it towards the truth.
  assert np.linalg.norm(fit.w_hair[:3] - true_w[:3]) < 0.5 * np.linalg.norm(true_w[:3])
  for pass_index in (0, 1):
    smoothed = fit.smoothed[fit.passes == pass_index]
    assert np.all(np.diff(smoothed) <= 1e-6)


def test_face_pass_does_not_touch_the_hair_style(lpips_params):
  frozen = {'bias': jnp.float32(0.0)}
  target = np.asarray(_toy_image(frozen, np.ones((16, 16, 4), np.float32), np.ones(4, np.float32)))
  options = appearance.AppearanceOptions(face_steps=5, hair_steps=0, lpips_weight=0.0)
  w0 = np.full(4, 0.2, np.float32)
  fit = appearance.fit_appearance(
    _toy_renderer,
    frozen,
    np.zeros((16, 16, 4), np.float32),
    w0,
    _targets(target, target),
    lpips_params,
    options,
    progress=False,
  )
  np.testing.assert_array_equal(fit.w_hair, w0)


def test_rejects_targets_of_the_wrong_shape(lpips_params):
  with pytest.raises(ValueError, match='target_face'):
    _targets(np.zeros((16, 16, 3), np.float32), np.zeros((32, 32, 3), np.float32))
  with pytest.raises(ValueError, match='render shape'):
    appearance.fit_appearance(
      _toy_renderer,
      {'bias': jnp.float32(0.0)},
      np.zeros((16, 16, 4), np.float32),
      np.zeros(4, np.float32),
      _targets(np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 3), np.float32)),
      lpips_params,
      progress=False,
    )


def test_step_views_cycle_through_the_reprojected_views():
  assert appearance.step_views(0, 1).tolist() == [0]
  assert [appearance.step_views(i, 4).tolist() for i in range(4)] == [[0, 1], [0, 2], [0, 3], [0, 1]]


def test_weighted_loss_ignores_zero_weight_pixels_and_weighs_views(lpips_params):
  rng = np.random.default_rng(1)
  target = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  image = target.at[:, :16].set(0.3)  # differs from the target only in the top half
  top = jnp.zeros((2, 32, 32)).at[:, :16].set(1.0)
  kwargs = dict(lpips_weight=1.0, lpips_resolution=64)
  zero = appearance.weighted_image_loss(lpips_params, image, target, 1 - top, jnp.ones(2), **kwargs)
  assert float(zero) == pytest.approx(0.0, abs=1e-6)
  ones = jnp.ones((2, 32, 32))
  l1 = jnp.mean(jnp.abs(image - target), axis=(1, 2, 3))
  lp = lpips_lib.lpips(lpips_params, image, target)
  loss = appearance.weighted_image_loss(lpips_params, image, target, ones, jnp.array([1.0, 3.0]), **kwargs)
  np.testing.assert_allclose(float(loss), float(jnp.sum(jnp.array([1.0, 3.0]) * (l1 + lp)) / 4), rtol=1e-5)
  half = appearance.weighted_image_loss(
    lpips_params, image, target, 0.5 * ones, jnp.ones(2), lpips_weight=0.0, lpips_resolution=64
  )
  np.testing.assert_allclose(float(half), 0.5 * float(jnp.mean(l1)), rtol=1e-5)


def test_multiview_targets_fit_both_views(lpips_params):
  """With a second view (label[0] = 1: unshifted), the fit must match both views, not just the first."""
  frozen = {'bias': jnp.float32(0.0)}
  rng = np.random.default_rng(2)
  true_texture = rng.normal(size=(16, 16, 4)).astype(np.float32) * 0.5
  labels = np.zeros((2, 25), np.float32)
  labels[1, 0] = 1.0
  images = np.asarray(_toy_renderer(frozen, true_texture, np.zeros(4, np.float32), jnp.asarray(labels)))
  ones = jnp.ones((2, 32, 32))
  targets = appearance.Targets(jnp.asarray(labels), jnp.asarray(images), jnp.asarray(images), ones, ones)
  options = appearance.AppearanceOptions(face_steps=60, hair_steps=0, texture_learning_rate=0.05, lpips_weight=0.0)
  fit = appearance.fit_appearance(
    _toy_renderer,
    frozen,
    np.zeros((16, 16, 4), np.float32),
    np.zeros(4, np.float32),
    targets,
    lpips_params,
    options,
    progress=False,
  )
  rendered = np.asarray(_toy_renderer(frozen, fit.texture, fit.w_hair, jnp.asarray(labels)))
  errors = np.abs(rendered - images).mean(axis=(1, 2, 3))
  start = np.abs(images).mean(axis=(1, 2, 3))
  assert (errors < 0.5 * start).all(), (errors, start)
