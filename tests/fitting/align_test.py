"""Alignment: similarity estimation, point/image warps that agree, folding the fitted shift back."""

import numpy as np

from head360_jax.fitting import align, shape


def _similarity(angle, scale, shift):
  c, s = scale * np.cos(angle), scale * np.sin(angle)
  return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def test_similarity_recovers_a_transform_despite_outliers():
  rng = np.random.default_rng(0)
  source = rng.uniform(0, 500, (468, 2))
  truth = _similarity(0.3, 0.7, (12.0, -40.0))
  target = align.transform_points(truth, source)
  target[:40] += rng.uniform(50, 100, (40, 2))  # 8.5 % gross outliers
  estimate = align.similarity(source, target, np.ones(468))
  np.testing.assert_allclose(estimate, truth, atol=1e-3)


def test_warp_puts_a_marker_where_the_points_go():
  """The image warp and ``transform_points`` share one pixel convention (centres at +0.5)."""
  image = np.zeros((300, 400, 3), np.uint8)
  image[100:104, 250:254] = 255  # a 4x4 marker centred at (col, row) = (252, 102)
  matrix = _similarity(-0.4, 0.5, (20.0, 90.0))
  out = align.warp(image, matrix, 256)
  expected = align.transform_points(matrix, np.array([[252.0, 102.0]]))[0]
  weights = out[..., 0].astype(np.float64)
  rows, cols = np.mgrid[:256, :256]
  centroid = np.array([(weights * (cols + 0.5)).sum(), (weights * (rows + 0.5)).sum()]) / weights.sum()
  np.testing.assert_allclose(centroid, expected, atol=0.15)


def test_warp_identity_keeps_a_smooth_image_and_borders_are_filled():
  rows, cols = np.mgrid[:64, :64]
  image = np.stack([2 * rows + 50, 3 * cols + 20, rows + cols + 30], -1).astype(np.uint8)
  same = align.warp(image, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 64)
  # Bilinear at 4x then area-averaged: exact on linear ramps away from the border.
  assert np.abs(same.astype(int) - image)[1:-1, 1:-1].max() <= 1
  shifted = align.warp(image, np.array([[1.0, 0, 32], [0, 1.0, 0]]), 64, border=(255, 255, 255))
  assert (shifted[:, :31] == 255).all()


def test_depth_column_scales_with_the_similarity():
  points = np.array([[10.0, 20.0, 5.0]])
  out = align.transform_points(_similarity(0.2, 2.0, (1.0, 2.0)), points)
  np.testing.assert_allclose(out[0, 2], 10.0)


def test_refine_folds_the_fitted_shift_and_scale_into_the_crop():
  """A point the fit puts at ``scale (p - c) + c + t`` in the first crop is at ``p`` in the refined one."""
  size = 512
  matrix0 = _similarity(0.1, 0.8, (30.0, -10.0))
  pose = shape.Pose(np.zeros(3, np.float32), np.float32(np.log(1.1)), np.array([7.0, -4.0], np.float32))
  head = np.array([[200.0, 300.0], [260.0, 100.0]])  # the head's own projection (p)
  in_first_crop = 1.1 * (head - size / 2) + size / 2 + pose.translation
  photo = align.transform_points(np.linalg.inv(np.vstack([matrix0, [0, 0, 1]]))[:2], in_first_crop)
  refined = align.refine(matrix0, pose, size)
  np.testing.assert_allclose(align.transform_points(refined, photo), head, atol=1e-4)
