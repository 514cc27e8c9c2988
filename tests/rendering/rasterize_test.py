"""Hard rasteriser vs independent references: float64 point-in-triangle and trimesh ray casting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import trimesh
from trimesh.ray.ray_triangle import RayMeshIntersector

from head360_jax.geometry import camera
from head360_jax.rendering import rasterize as raster

RES = 48


def _cross(a, b):
  return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _edge_distance(tri: np.ndarray, points: np.ndarray) -> np.ndarray:
  """float64 distance (px) from points (n, 2) to the nearest edge line segment of tri (3, 2)."""
  best = np.full(len(points), np.inf)
  for i in range(3):
    a, b = tri[i], tri[(i + 1) % 3]
    t = np.clip(((points - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    best = np.minimum(best, np.linalg.norm(points - a - t[:, None] * (b - a), axis=1))
  return best


def _centres(res):
  rows, cols = np.meshgrid(np.arange(res), np.arange(res), indexing='ij')
  return np.stack([cols + 0.5, rows + 0.5], -1).reshape(-1, 2).astype(np.float64)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_single_triangle_covers_exactly_the_pixel_centres_inside(seed):
  rng = np.random.default_rng(seed)
  # Some corners leave the image: the triangle may span many tiles and be clipped.
  tri = rng.uniform(-10, RES + 10, size=(3, 2)).astype(np.float32)
  fragments = raster.rasterize(tri, np.ones(3, np.float32), np.array([[0, 1, 2]]), RES)
  centres = _centres(RES)
  t = tri.astype(np.float64)
  w = np.stack(
    [
      _cross(t[1] - centres, t[2] - centres),
      _cross(t[2] - centres, t[0] - centres),
      _cross(t[0] - centres, t[1] - centres),
    ],
    -1,
  )
  inside = np.all(w >= 0, -1) | np.all(w <= 0, -1)
  clear = _edge_distance(t, centres) > 1e-3
  coverage = np.asarray(fragments.coverage).reshape(-1)
  assert inside.sum() > 20
  np.testing.assert_array_equal(coverage[clear], inside[clear])
  # Barycentrics reproduce the pixel centre.
  bary = np.asarray(fragments.barycentrics).reshape(-1, 3)[coverage]
  np.testing.assert_allclose(bary @ t, centres[coverage], atol=2e-3)
  assert np.all(np.asarray(fragments.face_id).reshape(-1)[~coverage] == -1)
  assert np.all(np.isinf(np.asarray(fragments.depth).reshape(-1)[~coverage]))


def _meshes():
  sphere = trimesh.creation.icosphere(subdivisions=2, radius=1.0)  # 320 faces
  torus = trimesh.creation.torus(major_radius=0.8, minor_radius=0.3, major_sections=20, minor_sections=12)
  torus.apply_transform(trimesh.transformations.rotation_matrix(0.9, [1.0, 0.3, 0.0]))  # see the hole obliquely
  return {'icosphere': sphere, 'torus': torus}


def _pixel_rays(cam2world, res, focal=None, half_extent=None):
  """float64 rays through the pixel centres of an OpenCV camera (perspective or orthographic)."""
  centres = _centres(res) / res
  rotation, eye = cam2world[:3, :3].astype(np.float64), cam2world[:3, 3].astype(np.float64)
  if focal is not None:
    local = np.concatenate([(centres - 0.5) / focal, np.ones((len(centres), 1))], 1)
    directions = local @ rotation.T
    return np.broadcast_to(eye, directions.shape).copy(), directions / np.linalg.norm(directions, axis=1, keepdims=True)
  local = np.concatenate([(centres * 2 - 1) * half_extent, np.zeros((len(centres), 1))], 1)
  return local @ rotation.T + eye, np.broadcast_to(rotation[:, 2], local.shape).copy()


@pytest.mark.parametrize('name', ['icosphere', 'torus'])
@pytest.mark.parametrize('projection', ['perspective', 'orthographic'])
def test_face_ids_and_depth_match_trimesh_ray_casting(name, projection):
  mesh = _meshes()[name]
  vertices = np.asarray(mesh.vertices, np.float32)
  faces = np.asarray(mesh.faces, np.int32)
  cam2world = np.asarray(camera.orbit_cam2world(35.0, 25.0, radius=4.0))
  if projection == 'perspective':
    focal = 1.2  # wide angle, so perspective matters
    intrinsics = camera.normalized_intrinsics(focal)
    pixels, depth = camera.project(jnp.asarray(vertices), jnp.asarray(cam2world), jnp.asarray(intrinsics), RES)
    origins, directions = _pixel_rays(cam2world, RES, focal=focal)
  else:
    pixels, depth = raster.orthographic_project(vertices, cam2world, 1.3, RES)
    origins, directions = _pixel_rays(cam2world, RES, half_extent=1.3)
  fragments = raster.rasterize(pixels, depth, faces, RES, cull_backfaces=True, perspective=projection == 'perspective')

  hits, rays, locations = RayMeshIntersector(mesh).intersects_id(
    origins, directions, multiple_hits=False, return_locations=True
  )
  expected = np.full(RES * RES, -1)
  expected[rays] = hits
  expected_depth = np.full(RES * RES, np.inf)
  expected_depth[rays] = (locations - cam2world[:3, 3]) @ cam2world[:3, 2].astype(np.float64)
  face_id = np.asarray(fragments.face_id).reshape(-1)
  assert (expected >= 0).mean() > 0.1
  assert np.mean(face_id == expected) >= 0.99
  # Disagreements are only allowed where the ray passes within 0.01 px of an edge.
  pixels64 = np.asarray(pixels, np.float64)
  for p in np.nonzero(face_id != expected)[0]:
    near_edge = min(
      _edge_distance(pixels64[faces[f]], _centres(RES)[p : p + 1])[0] for f in {face_id[p], expected[p]} if f >= 0
    )
    assert near_edge < 0.01, (p, face_id[p], expected[p])
  same = (face_id == expected) & (face_id >= 0)
  np.testing.assert_allclose(np.asarray(fragments.depth).reshape(-1)[same], expected_depth[same], rtol=1e-4)


def test_interpolated_positions_lie_on_the_pixel_rays():
  mesh = _meshes()['torus']
  vertices = np.asarray(mesh.vertices, np.float32)
  faces = np.asarray(mesh.faces, np.int32)
  cam2world = camera.orbit_cam2world(-50.0, 10.0, radius=3.0)
  intrinsics = jnp.asarray(camera.normalized_intrinsics(1.0))
  pixels, depth = camera.project(jnp.asarray(vertices), cam2world, intrinsics, RES)
  fragments = raster.rasterize(pixels, depth, faces, RES, perspective=True)
  points = np.asarray(raster.interpolate(fragments, vertices, faces)).reshape(-1, 3)
  covered = np.asarray(fragments.coverage).reshape(-1)
  reprojected, point_depth = camera.project(jnp.asarray(points[covered]), cam2world, intrinsics, RES)
  np.testing.assert_allclose(reprojected, _centres(RES)[covered], atol=2e-3)
  np.testing.assert_allclose(point_depth, np.asarray(fragments.depth).reshape(-1)[covered], rtol=1e-5)
  # Screen-space barycentrics would miss the ray on this wide-angle view.
  screen = raster.rasterize(pixels, depth, faces, RES, perspective=False)
  off = np.asarray(raster.interpolate(screen, vertices, faces)).reshape(-1, 3)[covered]
  assert (
    np.abs(np.asarray(camera.project(jnp.asarray(off), cam2world, intrinsics, RES)[0]) - _centres(RES)[covered]).max()
    > 0.01
  )


def test_interpolate_per_corner_attributes_keeps_seams():
  pixels = np.array([[2.0, 2.0], [30.0, 2.0], [2.0, 30.0], [30.0, 30.0]], np.float32)
  faces = np.array([[0, 1, 2], [1, 3, 2]])
  corner = np.array([[[1.0], [1.0], [1.0]], [[5.0], [5.0], [5.0]]], np.float32)  # a seam along the diagonal
  fragments = raster.rasterize(pixels, np.ones(4, np.float32), faces, 32)
  image = np.asarray(raster.interpolate(fragments, corner))[..., 0]
  face_id = np.asarray(fragments.face_id)
  np.testing.assert_allclose(image[face_id == 0], 1.0, rtol=1e-6)
  np.testing.assert_allclose(image[face_id == 1], 5.0, rtol=1e-6)
  np.testing.assert_array_equal(image[face_id < 0], 0.0)
  with pytest.raises(ValueError):
    raster.interpolate(fragments, np.ones((4, 2), np.float32))


def test_vmap_and_jit_match_single_calls_and_nearest_face_wins():
  quad = np.array([[4.0, 4.0], [28.0, 4.0], [4.0, 28.0], [28.0, 28.0]], np.float32)
  pixels = np.concatenate([quad, quad + 3.0])
  faces = np.array([[0, 1, 2], [1, 3, 2], [4, 5, 6], [5, 7, 6]])
  depths = np.stack([np.r_[np.full(4, 2.0), np.full(4, 1.0)], np.r_[np.full(4, 1.0), np.full(4, 2.0)]]).astype(
    np.float32
  )
  batched = jax.jit(jax.vmap(lambda d: raster.rasterize(pixels, d, faces, 32)))(depths)
  for i in range(2):
    single = raster.rasterize(pixels, depths[i], faces, 32)
    np.testing.assert_array_equal(batched.face_id[i], single.face_id)
    np.testing.assert_allclose(batched.depth[i], single.depth)
  # Where both quads overlap, the one at depth 1 wins.
  assert set(np.unique(np.asarray(batched.face_id[0])[12:26, 12:26])) <= {2, 3}
  assert set(np.unique(np.asarray(batched.face_id[1])[12:26, 12:26])) <= {0, 1}


def test_culling_removes_back_faces_only():
  tri = np.array([[2.0, 2.0], [30.0, 2.0], [2.0, 30.0]], np.float32)  # positive area: a back face
  faces = np.array([[0, 1, 2]])
  assert not raster.rasterize(tri, np.ones(3, np.float32), faces, 32, cull_backfaces=True).coverage.any()
  assert raster.rasterize(tri, np.ones(3, np.float32), faces, 32, cull_backfaces=True, mirrored=True).coverage.any()
  assert raster.rasterize(tri, np.ones(3, np.float32), faces[:, ::-1], 32, cull_backfaces=True).coverage.any()


def test_interior_gradients_are_finite():
  pixels = np.array([[3.0, 4.0], [27.0, 6.0], [9.0, 29.0]], np.float32)

  def loss(p):
    fragments = raster.rasterize(p, jnp.ones(3), jnp.array([[0, 1, 2]]), 32)
    return jnp.sum(raster.interpolate(fragments, jnp.arange(3.0)[:, None], jnp.array([[0, 1, 2]])))

  grad = jax.grad(loss)(jnp.asarray(pixels))
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_no_cracks_on_edges_through_pixel_centres():
  # A symmetric sphere puts many shared edges exactly through pixel centres; with culling,
  # a centre missed by both faces of an edge would be an uncovered pixel inside the disc.
  sphere = trimesh.creation.uv_sphere(radius=0.63, count=[24, 24])
  vertices = np.asarray(sphere.vertices, np.float32)
  pixels = (vertices[:, :2] * [1, -1] + 1) * 24  # camera at +z, y up on screen
  fragments = raster.rasterize(pixels, 10 - vertices[:, 2], np.asarray(sphere.faces), 48, cull_backfaces=True)
  labels, count = scipy.ndimage.label(~np.asarray(fragments.coverage))
  assert count == 1  # only the outside background


def test_many_small_loop_steps_give_the_same_image():
  mesh = _meshes()['torus']
  pixels, depth = raster.orthographic_project(
    np.asarray(mesh.vertices, np.float32), camera.orbit_cam2world(20.0, 40.0, radius=4.0), 1.3, 32
  )
  faces = np.asarray(mesh.faces)
  one_step = raster.rasterize(pixels, depth, faces, 32)
  many_steps = raster.rasterize(pixels, depth, faces, 32, tile=3, jobs_per_step=7)
  np.testing.assert_array_equal(many_steps.face_id, one_step.face_id)
  np.testing.assert_allclose(many_steps.depth, one_step.depth, rtol=1e-6)
