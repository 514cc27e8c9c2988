"""Camera conventions (docs/conventions.md) against independent float64 computations."""

import numpy as np
import pytest

from head360_jax.geometry import camera


def _pinhole(points, cam2world, intrinsics, resolution):
  """Independent float64 pinhole projection: world -> camera (inverse rigid transform) -> pixels."""
  world2cam = np.linalg.inv(np.asarray(cam2world, np.float64))
  homogeneous = np.concatenate([points, np.ones((len(points), 1))], 1) @ world2cam.T
  cam = homogeneous[:, :3]
  pix = (np.asarray(intrinsics, np.float64) @ (cam / cam[:, 2:3]).T).T[:, :2] * resolution
  return pix, cam[:, 2]


def test_pack_unpack_round_trip():
  labels = camera.dataset_cameras()
  cam2world, intrinsics = camera.unpack_label(labels)
  np.testing.assert_array_equal(camera.pack_label(cam2world, intrinsics), labels)
  with pytest.raises(ValueError, match='25'):
    camera.unpack_label(np.zeros((3, 77)))


def test_dataset_cameras_orbit_the_origin():
  cam2world, intrinsics = (np.asarray(x) for x in camera.unpack_label(camera.dataset_cameras()))
  assert cam2world.shape == (72, 4, 4)
  np.testing.assert_allclose(np.linalg.norm(cam2world[:, :3, 3], axis=-1), camera.CAMERA_RADIUS, rtol=1e-6)
  # Rotations are proper and orthonormal.
  rotation = cam2world[:, :3, :3]
  np.testing.assert_allclose(rotation @ rotation.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (72, 3, 3)), atol=1e-6)
  np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-6)
  # Every camera looks at the origin: it projects to the image centre.
  for i in range(72):
    pix, depth = _pinhole(np.zeros((1, 3)), cam2world[i], intrinsics[i], 128)
    np.testing.assert_allclose(pix, [[64.0, 64.0]], atol=1e-3)
    np.testing.assert_allclose(depth, camera.CAMERA_RADIUS, rtol=1e-6)
  # No camera is repeated.
  assert len({tuple(np.round(c[:3, 3], 4)) for c in cam2world}) == 72


def test_frontal_view_orientation():
  cam2world, intrinsics = camera.unpack_label(camera.dataset_cameras()[camera.FRONTAL_VIEW])
  np.testing.assert_allclose(np.asarray(cam2world)[:3, 3], [0, 0, camera.CAMERA_RADIUS], atol=1e-5)
  pixels, _ = camera.project(np.array([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]], np.float32), cam2world, intrinsics, 128)
  pixels = np.asarray(pixels)
  assert pixels[0, 0] > 64  # +x (subject's left) is on the image right
  assert pixels[1, 1] < 64  # +y (up) is towards row 0


def test_yaw_90_sees_the_subjects_left():
  cam2world = np.asarray(camera.orbit_cam2world(90.0, 0.0))
  np.testing.assert_allclose(cam2world[:3, 3], [camera.CAMERA_RADIUS, 0, 0], atol=1e-5)


@pytest.mark.parametrize('yaw,pitch', [(0.0, 0.0), (37.0, 12.0), (-150.0, -20.0), (200.0, 89.0), (10.0, -90.0)])
def test_project_matches_independent_pinhole(yaw, pitch):
  rng = np.random.default_rng(0)
  points = rng.uniform(-0.5, 0.5, size=(50, 3)).astype(np.float32)
  cam2world = camera.orbit_cam2world(yaw, pitch)
  intrinsics = camera.normalized_intrinsics()
  pixels, depth = camera.project(points, cam2world, intrinsics, 256)
  ref_pixels, ref_depth = _pinhole(points, cam2world, intrinsics, 256)
  np.testing.assert_allclose(pixels, ref_pixels, atol=2e-3)
  np.testing.assert_allclose(depth, ref_depth, rtol=1e-5)


def test_look_at_equals_orbit():
  eye = np.array([3.0, 5.0, 20.0])
  radius = np.linalg.norm(eye)
  yaw, pitch = np.rad2deg(np.arctan2(eye[0], eye[2])), np.rad2deg(np.arcsin(eye[1] / radius))
  np.testing.assert_allclose(camera.look_at(eye, np.zeros(3)), camera.orbit_cam2world(yaw, pitch, radius), atol=1e-5)
