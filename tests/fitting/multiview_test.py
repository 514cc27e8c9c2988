"""Multi-view targets: the photo projected through the fitted mesh, checked against ray casting on a sphere."""

import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from head360_jax.fitting import multiview
from head360_jax.geometry import camera

pytestmark = pytest.mark.usefixtures('fast_compilation')  # tests/fitting/conftest.py

RADIUS = 0.06  # mesh units (world = camera.WORLD_PER_MESH x; the sphere spans ~2/3 of the view)
SIZE = 64


@pytest.fixture(scope='module')
def sphere():
  mesh = trimesh.creation.icosphere(subdivisions=4, radius=RADIUS)
  return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


def _photo():
  rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
  return np.stack([rows, cols, 0.5 * (rows + cols)], -1)


def _rays(label, size):
  """World-space ray origins and directions through the pixel centres of a camera (independent of camera.project)."""
  cam2world, intrinsics = (np.asarray(x[0], np.float64) for x in camera.unpack_label(jnp.asarray(label)[None]))
  rows, cols = np.mgrid[0:size, 0:size] + 0.5
  x = (cols / size - intrinsics[0, 2]) / intrinsics[0, 0]
  y = (rows / size - intrinsics[1, 2]) / intrinsics[1, 1]
  directions = np.stack([x, y, np.ones_like(x)], -1) @ cam2world[:3, :3].T
  directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
  return np.broadcast_to(cam2world[:3, 3], directions.shape).reshape(-1, 3), directions.reshape(-1, 3)


def test_view_labels_are_the_dataset_orbit():
  labels = multiview.view_labels((0.0,), (0.0,))
  np.testing.assert_allclose(labels[0], camera.dataset_cameras()[camera.FRONTAL_VIEW], atol=1e-5)
  assert multiview.view_labels().shape == (7, 25)
  with pytest.raises(ValueError, match='as many'):
    multiview.view_labels((0.0, 10.0), (0.0,))


def test_projecting_into_the_photos_own_view_gives_the_photo_back(sphere):
  vertices, faces = sphere
  label = multiview.view_labels((0.0,), (0.0,))[0]
  photo = _photo()
  colours, weights = multiview.project_photo(
    vertices, faces, photo, np.ones((SIZE, SIZE)), label, label[None], SIZE, depth_resolution=128
  )
  seen = np.asarray(weights[0]) > 0
  origins, directions = _rays(label, SIZE)
  hit = trimesh.Trimesh(vertices * camera.WORLD_PER_MESH, faces).ray.intersects_any(origins, directions)
  # Every pixel that sees the sphere is seen (up to silhouette pixels), and the colours are the photo's own.
  assert np.mean(seen == hit.reshape(SIZE, SIZE)) > 0.98
  np.testing.assert_allclose(np.asarray(colours[0])[seen], photo[seen], atol=2e-3)


def test_only_surface_the_photo_saw_gets_weight_and_weights_are_cosines(sphere):
  vertices, faces = sphere
  photo_label = multiview.view_labels((0.0,), (0.0,))[0]
  side = multiview.view_labels((90.0,), (0.0,))
  _, weights = multiview.project_photo(
    vertices, faces, _photo(), np.ones((SIZE, SIZE)), photo_label, side, SIZE, depth_resolution=128
  )
  weights = np.asarray(weights[0]).reshape(-1)
  origins, directions = _rays(side[0], SIZE)
  world = trimesh.Trimesh(vertices * camera.WORLD_PER_MESH, faces)
  points, ray_index, _ = world.ray.intersects_location(origins, directions, multiple_hits=False)
  # Analytic: a sphere point p is seen by the photo's camera at eye e iff (e - p)·p > 0; weight = |cos|.
  eye = np.asarray(camera.unpack_label(jnp.asarray(photo_label)[None])[0][0, :3, 3], np.float64)
  normal = points / np.linalg.norm(points, axis=-1, keepdims=True)
  to_eye = (eye - points) / np.linalg.norm(eye - points, axis=-1, keepdims=True)
  cosine = np.sum(normal * to_eye, -1)
  # Leave out grazing angles: near the terminator the depth test against a 128² depth map is
  # decided by steep depth slopes (those pixels fall below the fit's MIN_VISIBILITY anyway).
  clear = np.abs(cosine) > 0.3
  got = weights[ray_index]
  assert np.mean((got > 0)[clear] == (cosine > 0)[clear]) > 0.99
  front = clear & (cosine > 0) & (got > 0)
  assert front.sum() > 100
  np.testing.assert_allclose(got[front], cosine[front], atol=0.05)
  # Pixels that miss the sphere have no weight.
  missed = np.ones(SIZE * SIZE, bool)
  missed[ray_index] = False
  assert (weights[missed] == 0).all()


def test_face_mask_limits_the_weights(sphere):
  vertices, faces = sphere
  label = multiview.view_labels((0.0,), (0.0,))[0]
  mask = np.zeros((SIZE, SIZE), np.float32)
  mask[:, : SIZE // 2] = 1.0  # left half of the photo only
  _, weights = multiview.project_photo(vertices, faces, _photo(), mask, label, label[None], SIZE)
  weights = np.asarray(weights[0])
  assert weights[:, : SIZE // 2 - 1].max() > 0.5 and weights[:, SIZE // 2 + 1 :].max() == 0
