"""Hex-plane views vs the reference golden, marker placement vs the tri-plane sampler, hole filling."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import trimesh

from head360_jax import assets
from head360_jax.rendering import hexplane_views as hexplane
from head360_jax.rendering import texture

# The reference golden (17 KB) lives beside the shared data (../shared/golden).
GOLDEN_DIR = pathlib.Path(os.environ.get('HEAD360_GOLDEN', assets.REPO_ROOT.parent / 'shared' / 'golden'))
# View direction towards the viewer (the surface normal a view sees) per view.
VIEW_NORMALS = np.array([[0, 0, 1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, 0, -1], [0, -1, 0]], np.float64)


def _sampler_projection(world: np.ndarray, plane: int) -> np.ndarray:
  """Independent float64 re-statement of reference-spec §3.8: box_warp 1, so coordinates x2."""
  x, y, z = (2.0 * world).T
  return np.stack([(x, y), (-z, y), (x, -z)][plane], -1)


@pytest.fixture(scope='module')
def golden():
  if not (GOLDEN_DIR / 'hexplane_views.npz').exists():
    pytest.skip(f'golden hexplane_views not found in {GOLDEN_DIR} (set HEAD360_GOLDEN)')
  return np.load(GOLDEN_DIR / 'hexplane_views.npz'), json.loads((GOLDEN_DIR / 'hexplane_views.json').read_text())


def test_view_transforms_match_golden(golden):
  data, meta = golden
  tol = meta['parity']['recommended_tolerance']
  points = data['in/points']
  for view in range(6):
    np.testing.assert_allclose(
      hexplane.angle2matrix(hexplane.VIEW_ANGLES_DEG[view]),
      data['out/R'][view],
      rtol=tol['out/R']['rtol'],
      atol=tol['out/R']['atol'],
    )
    q = np.asarray(hexplane.view_transform(points, view))
    for key, ours in [
      ('out/q', q),
      ('out/ndc_xy', -q[:, :2]),
      ('out/zbuf', q[:, 2]),
      ('out/g_raster', q[:, :2]),
      ('out/pixel_colrow', (q[:, :2] + 1) * 128 - 0.5),
    ]:  # golden pixel centres at integers
      np.testing.assert_allclose(ours, data[key][view], rtol=tol[key]['rtol'], atol=tol[key]['atol'], err_msg=key)
    g_plane, _ = hexplane.plane_coordinates(points, view)
    np.testing.assert_allclose(g_plane, data['out/g_plane_fixed'][view], rtol=1e-5, atol=5e-7)
    # Our plane coordinates are the sampler's projection of the world point 4.5 p.
    plane = hexplane.PLANE_OF_VIEW[view]
    np.testing.assert_allclose(g_plane, _sampler_projection(4.5 * points.astype(np.float64), plane), atol=5e-7)
    np.testing.assert_allclose(g_plane, data['out/g_sampler_of_4p5p'][plane], rtol=1e-5, atol=5e-7)
  # The reference's bottom view is 180-degree rotated; ours is not.
  assert np.abs(np.asarray(hexplane.plane_coordinates(points, 5)[0]) - data['out/g_plane_reference'][5]).max() > 0.1
  np.testing.assert_array_equal(hexplane.PLANE_OF_VIEW, data['out/plane_index'])
  np.testing.assert_array_equal(np.array(hexplane.HALF_OF_VIEW) * 32, data['out/channel_offset'])
  np.testing.assert_array_equal(hexplane.mouth_box(data['in/landmarks']), data['out/mouth_box'])


def _marker(point: np.ndarray, normal: np.ndarray, size: float = 0.012):
  """A triangle around ``point``, counter-clockwise seen from ``normal`` (its outside)."""
  t1 = np.cross(normal, [0.3, 0.5, 0.7])
  t1 /= np.linalg.norm(t1)
  t2 = np.cross(normal, t1)  # t1 x t2 = normal
  angles = np.deg2rad([90, 210, 330])
  return point + size * (np.cos(angles)[:, None] * t1 + np.sin(angles)[:, None] * t2)


def test_markers_land_where_the_triplane_sampler_reads_them():
  res, channels = 64, 2
  point = np.array([0.031, -0.022, 0.043])  # off every axis, so any wrong mirror moves the marker
  # One marker mesh per view (a batch of six), each facing that view.
  vertices = np.stack([_marker(point, normal) for normal in VIEW_NORMALS]).astype(np.float32)
  uv = np.full((1, 3, 2), 0.25, np.float32)  # the whole marker samples one texel region
  neural_texture = np.zeros((6, 8, 8, channels), np.float32)
  neural_texture[:, 5:7, 1:3] = [3.0, 7.0]  # around uv (0.25, 0.25): rows from the top = 1 - v
  out = jax.jit(lambda v, t: hexplane.hexplanes(v, np.array([[0, 1, 2]]), uv, t, resolution=res))(
    vertices, neural_texture
  )
  for view in range(6):
    planes, alpha = np.asarray(out.planes[view]), np.asarray(out.alpha[view])
    plane, half = hexplane.PLANE_OF_VIEW[view], hexplane.HALF_OF_VIEW[view]
    channel = slice(half * channels, (half + 1) * channels)
    g = _sampler_projection(4.5 * point[None], plane)[0]
    col, row = np.floor((g + 1) * res / 2).astype(int)
    np.testing.assert_allclose(planes[plane, row, col, channel], [3.0, 7.0], rtol=1e-5, err_msg=str(view))
    assert alpha[plane, row, col, 0] == 1.0
    # Bilinear plane lookup at the sampler's coordinate (what the decoder reads) finds it too.
    np.testing.assert_allclose(
      texture.sample_bilinear(planes[plane], g.astype(np.float32))[channel], [3.0, 7.0], rtol=1e-5
    )
    # Seen by exactly one view: every other view is edge-on or sees the back face (culled).
    mask = np.ones(planes.shape, bool)
    mask[plane, :, :, channel] = False
    assert not planes[mask].any(), view


def test_uncovered_pixels_have_zero_features_and_plane_alpha_is_the_union():
  sphere = trimesh.creation.uv_sphere(radius=0.07, count=[16, 16])
  vertices = np.asarray(sphere.vertices, np.float32) + [0.03, 0.0, 0.0]  # off-centre: views differ
  faces = np.asarray(sphere.faces, np.int32)
  uv = np.stack([np.arctan2(vertices[:, 0], vertices[:, 2]) / (2 * np.pi) + 0.5, vertices[:, 1] / 0.14 + 0.5], -1)
  face_uvs = uv[faces].astype(np.float32)
  neural_texture = jnp.asarray(np.random.default_rng(0).uniform(1, 2, size=(2, 16, 16, 3)), jnp.float32)
  fn = jax.jit(lambda t: hexplane.hexplanes(np.stack([vertices, vertices]), faces, face_uvs, t, resolution=48))
  out = fn(neural_texture)
  coverage = np.asarray(out.views.coverage[0])
  planes = np.asarray(out.planes[0])
  for view in range(6):
    plane, half = hexplane.PLANE_OF_VIEW[view], hexplane.HALF_OF_VIEW[view]
    features = planes[plane, ..., half * 3 : (half + 1) * 3]
    assert np.all(features[~coverage[view]] == 0)
    assert np.all(features[coverage[view]] > 0)  # texture values are in [1, 2] (faded at the UV border)
  for plane, (a, b) in enumerate(hexplane.VIEWS_OF_PLANE):
    np.testing.assert_array_equal(out.alpha[0, plane, ..., 0], coverage[a] | coverage[b])
  # Opposite views of a convex mesh, mirrored into plane coordinates, share the silhouette.
  for a, b in hexplane.VIEWS_OF_PLANE:
    assert np.mean(coverage[a] == coverage[b]) > 0.99 and coverage[a].sum() > 200
  grad = jax.grad(lambda t: jnp.sum(fn(t).planes ** 2))(neural_texture)
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_uv_mask_holes_are_filled_when_enclosed():
  sphere = trimesh.creation.uv_sphere(radius=0.07, count=[24, 24])
  vertices = np.asarray(sphere.vertices, np.float32)
  faces = np.asarray(sphere.faces, np.int32)
  uv = np.stack([np.arctan2(vertices[:, 0], vertices[:, 2]) / (2 * np.pi) + 0.5, vertices[:, 1] / 0.14 + 0.5], -1)
  mask = np.ones((32, 32), np.float32)
  mask[12:20, 12:20] = 0.0  # a UV patch around the front (u, v) = (0.5, 0.5): an eye slit

  @jax.jit
  def run(face_uvs):
    views = hexplane.rasterize_views(vertices, faces, face_uvs, resolution=48)
    return views, hexplane.views_alpha(views, mask)

  views, alpha = run(uv[faces].astype(np.float32))
  alpha = np.asarray(alpha)
  raw = np.asarray(views.coverage[0]) * np.asarray(texture.sample_bilinear(mask[..., None], views.grid[0]))[..., 0]
  assert np.sum(np.asarray(views.coverage[0]) & (raw == 0)) > 10  # the mask did cut a hole
  np.testing.assert_array_equal(alpha[0] > 0, np.asarray(views.coverage[0]))  # ... which is filled


def _reference_background(empty: np.ndarray) -> np.ndarray:
  labels, _ = scipy.ndimage.label(empty)  # 4-connectivity
  border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
  return np.isin(labels, border[border > 0])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_fill_holes_matches_connected_components(seed):
  rng = np.random.default_rng(seed)
  blobs = scipy.ndimage.gaussian_filter(rng.normal(size=(40, 56)), 1.5)
  alpha = np.where(blobs > 0.02, rng.uniform(0.2, 1.0, blobs.shape), 0.0).astype(np.float32)
  filled = np.asarray(jax.jit(hexplane.fill_holes)(alpha))
  background = _reference_background(alpha <= 0)
  assert background.any() and (~background & (alpha <= 0)).any()  # both kinds of empty pixels occur
  np.testing.assert_array_equal(filled, np.where(background, 0.0, np.where(alpha <= 0, 1.0, alpha)))


def test_fill_holes_fills_a_ring_but_not_an_open_cup():
  alpha = np.zeros((12, 12), np.float32)
  alpha[2:9, 2:9] = 1.0
  alpha[4:7, 4:7] = 0.0  # enclosed hole
  cup = alpha.copy()
  cup[4:6, 6:9] = 0.0  # opened to the right, connected to the border background
  np.testing.assert_array_equal(hexplane.fill_holes(alpha)[2:9, 2:9], 1.0)
  filled_cup = np.asarray(hexplane.fill_holes(cup))
  assert np.all(filled_cup[4:6, 4:9] == 0.0) and np.all(filled_cup[6, 4:7] == 0.0)
