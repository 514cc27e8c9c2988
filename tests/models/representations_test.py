"""The ablation representations (``model.representation``): geometry vs independent references, and smoke tests.

Hex-planes have their own marker and golden tests (tests/rendering/hexplane_views_test.py) and
the spherical tri-plane its float64 tests (tests/rendering/spherical_test.py); here: the
rasterised tri-plane's markers, the EG3D tri-plane's plane coordinates, NeRF's positional
encoding, and every representation rendering and back-propagating through the generator.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_generator
from flax import nnx

from head360_jax.geometry import camera
from head360_jax.models import generator as generator_lib
from head360_jax.models import nerf
from head360_jax.rendering import hexplane_views, spherical, texture

VIEW_NORMALS = {0: [0.0, 0.0, 1.0], 1: [1.0, 0.0, 0.0], 3: [0.0, 1.0, 0.0]}  # front, +x side, top


def _sampler_projection(world: np.ndarray, plane: int) -> np.ndarray:
  """Reference-spec §3.8 in float64, box_warp 1: plane 0 (x, y), plane 1 (-z, y), plane 2 (x, -z), all x2."""
  x, y, z = (2.0 * np.asarray(world, np.float64)).T
  return np.stack([(x, y), (-z, y), (x, -z)][plane], -1)


def _marker(point: np.ndarray, normal, size: float = 0.012) -> np.ndarray:
  t1 = np.cross(normal, [0.3, 0.5, 0.7])
  t1 /= np.linalg.norm(t1)
  t2 = np.cross(normal, t1)
  angles = np.deg2rad([90, 210, 330])
  return point + size * (np.cos(angles)[:, None] * t1 + np.sin(angles)[:, None] * t2)


def test_triplane_markers_land_in_their_views_plane_only():
  res, channels = 64, 2
  point = np.array([0.031, -0.022, 0.043])
  views = hexplane_views.TRIPLANE_VIEWS
  vertices = np.stack([_marker(point, VIEW_NORMALS[v]) for v in views]).astype(np.float32)
  uv = np.full((1, 3, 2), 0.25, np.float32)
  neural_texture = np.zeros((3, 8, 8, channels), np.float32)
  neural_texture[:, 5:7, 1:3] = [3.0, 7.0]
  out = hexplane_views.triplanes(vertices, np.array([[0, 1, 2]]), uv, neural_texture, resolution=res)
  assert out.planes.shape == (3, 3, res, res, channels) and out.alpha.shape == (3, 3, res, res, 1)
  for index in range(3):
    planes, alpha = np.asarray(out.planes[index]), np.asarray(out.alpha[index])
    plane = index  # front -> plane 0 (xy), +x side -> plane 1 (zy), top -> plane 2 (xz)
    g = _sampler_projection(4.5 * point[None], plane)[0]
    col, row = np.floor((g + 1) * res / 2).astype(int)
    np.testing.assert_allclose(planes[plane, row, col], [3.0, 7.0], rtol=1e-5)
    assert alpha[plane, row, col, 0] == 1.0
    np.testing.assert_allclose(texture.sample_bilinear(planes[plane], g.astype(np.float32)), [3.0, 7.0], rtol=1e-5)
    others = np.ones(planes.shape, bool)
    others[plane] = False
    assert not planes[others].any(), index
  # A marker facing the back is culled in every tri-plane view: the tri-plane never sees the back.
  back = _marker(point, [0.0, 0.0, -1.0]).astype(np.float32)[None]
  hidden = hexplane_views.triplanes(back, np.array([[0, 1, 2]]), uv, neural_texture[:1], resolution=res)
  assert not np.asarray(hidden.planes).any()


def _ramp(resolution: int, scale: float) -> np.ndarray:
  centres = (np.arange(resolution) + 0.5) / resolution * 2 - 1
  gu, gv = np.meshgrid(centres, centres)
  return scale * np.stack([gu, gv], -1)


@pytest.fixture(scope='module')
def mesh():
  return tiny_generator.sphere_mesh()


def _generator(mesh, representation: str, **changes):
  config = generator_lib.GeneratorConfig(**tiny_generator.SIZES, representation=representation)
  return tiny_generator.random_generator(dataclasses.replace(config, **changes), mesh)


def test_eg3d_point_features_read_each_plane_at_its_projection(mesh):
  """Ramp planes (feature = grid coordinate × a per-plane scale): features = the mean of the projections."""
  generator = _generator(mesh, 'eg3d', texture_channels=1)  # 2 channels per plane
  res = generator.config.plane_resolution
  scales = (1.0, 10.0, 100.0)
  scene = jnp.asarray(np.stack([_ramp(res, s) for s in scales])[None], jnp.float32)
  points = np.random.default_rng(0).uniform(-0.45, 0.45, size=(1, 300, 3))
  got = np.asarray(generator.point_features(scene, jnp.asarray(points, jnp.float32)))[0]
  expected = np.mean([s * _sampler_projection(points[0], p) for p, s in enumerate(scales)], axis=0)
  inside = np.all(np.abs(2 * points[0]) < 1 - 1 / res, axis=-1)  # bilinear is exact on a ramp off the border
  np.testing.assert_allclose(got[inside], expected[inside], atol=2e-4)


def test_spherical_point_features_are_the_fused_spherical_samples(mesh):
  generator = _generator(mesh, 'spherical_triplane')
  res, channels = generator.config.plane_resolution, generator.plane_channels
  scene = jax.random.normal(jax.random.key(0), (1, 2, 3, res, res, channels))
  points = jax.random.uniform(jax.random.key(1), (1, 100, 3), minval=-0.5, maxval=0.5)
  expected = jnp.mean(spherical.sample_spherical_planes(scene, points), axis=1)
  np.testing.assert_allclose(generator.point_features(scene, points), expected, rtol=1e-6, atol=1e-6)


def test_nerf_encoding_matches_float64_and_sees_unit_cube_points(mesh):
  x = np.random.default_rng(0).uniform(-1, 1, (7, 3))
  levels = 4
  expected = [x] + [np.sin(2**k * np.pi * x) for k in range(levels)] + [np.cos(2**k * np.pi * x) for k in range(levels)]
  got = np.asarray(nerf.positional_encoding(jnp.asarray(x, jnp.float32), levels))
  # Layout: x, then sin at every frequency (3 values each), then cos at every frequency.
  np.testing.assert_allclose(got, np.concatenate(expected, -1), atol=2e-6)
  generator = _generator(mesh, 'nerf', nerf_frequencies=3, nerf_hidden=16, nerf_layers=4)
  w = jax.random.normal(jax.random.key(0), (1, generator.config.w_dim))
  points = jax.random.uniform(jax.random.key(1), (1, 20, 3), minval=-0.5, maxval=0.5)
  # box_warp 1: world [-0.5, 0.5] is the unit cube [-1, 1] the encoding sees.
  np.testing.assert_allclose(generator.point_features(w, points), generator.field_mlp(2 * points, w), rtol=1e-6)


@pytest.mark.parametrize('representation', generator_lib.REPRESENTATIONS)
def test_every_representation_renders_and_backpropagates(mesh, representation):
  generator = _generator(mesh, representation, nerf_frequencies=4, nerf_hidden=16, nerf_layers=4)
  graphdef, params, rest = nnx.split(generator, nnx.Param, ...)
  b = 2
  labels = jnp.asarray(camera.dataset_cameras()[[30, 42]])
  expression = jnp.zeros((b, 52)).at[1].set(1.0)  # neutral, and every blendshape at 1
  vertices = jnp.broadcast_to(jnp.asarray(mesh[0]), (b, *mesh[0].shape))

  def loss(params):
    g = nnx.merge(graphdef, params, rest)
    ws = g.mapping(jnp.ones((b, 8)), jnp.ones((b, 8)), labels, jnp.ones((b, 8)), expression=expression)
    out = g(ws, labels, vertices, key=jax.random.key(0), hair=jnp.ones(b, jnp.int32))
    return jnp.mean(out['image'] ** 2) + jnp.mean(out['image_alpha']), out

  grads, out = jax.jit(jax.grad(loss, has_aux=True))(params)
  assert out['image'].shape == (b, 32, 32, 3) and np.all(np.isfinite(out['image']))
  assert 0.0 < float(jnp.mean(out['image_alpha'])) < 1.0
  own = {
    'hexplane': 'texture_synthesis',
    'triplane': 'texture_synthesis',
    'eg3d': 'plane_synthesis',
    'spherical_triplane': 'plane_synthesis',
    'nerf': 'field_mlp',
  }[representation]
  for part in (own, 'decoder', 'superres', 'texture_mapping'):
    leaves = jax.tree.leaves(grads[part])
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves), part
    assert sum(float(jnp.abs(leaf).sum()) for leaf in leaves) > 0, part
  # Same codes and camera, two expressions: the styles differ iff the representation maps [c, b].
  g = nnx.merge(graphdef, params, rest)
  ws = g.mapping(jnp.ones((b, 8)), jnp.ones((b, 8)), labels[:1].repeat(2, 0), jnp.ones((b, 8)), expression=expression)
  change = float(jnp.linalg.norm(ws['texture'][0] - ws['texture'][1]) / jnp.linalg.norm(ws['texture'][0]))
  if representation in generator_lib.MESH_REPRESENTATIONS:
    assert change == 0.0
  else:
    assert change > 1e-5  # float32 rounding is ~1e-7 here; these random weights respond weakly to the label
    with pytest.raises(ValueError, match='expression'):
      g.mapping(jnp.ones((b, 8)), jnp.ones((b, 8)), labels, jnp.ones((b, 8)))
    with pytest.raises(ValueError, match='no neural texture|no mesh planes'):
      g.planes(ws, vertices)


def test_mesh_free_representations_refuse_stylenets_and_stage_two(mesh):
  for changes in (dict(mouth_unet=True), dict(blending_unet=True), dict(stage=2)):
    with pytest.raises(ValueError, match='no mesh planes'):
      _generator(mesh, 'eg3d', **changes)
  with pytest.raises(ValueError, match='representation must be one of'):
    _generator(mesh, 'voxels')
