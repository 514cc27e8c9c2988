"""Hex-plane sampling vs the reference golden, constant planes, aggregation, composition, and the
rasterised hex-planes read back at mesh surface points."""

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from head360_jax.geometry import camera
from head360_jax.rendering import hexplane, hexplane_views


def _planes_from_nchw(planes: np.ndarray) -> np.ndarray:
  """Reference planes (b, 3, c, h, w) -> ours (b, 3, h, w, c)."""
  return np.transpose(planes, (0, 1, 3, 4, 2))


def test_sample_planes_matches_golden_with_gradients():
  arrays, meta = golden.load_golden('sample_from_planes_head360')
  planes, points = jnp.asarray(_planes_from_nchw(arrays['in/plane_features'])), jnp.asarray(arrays['in/coordinates'])
  features, vjp = jax.vjp(hexplane.sample_planes, planes, points)
  golden.assert_close(features, meta, arrays, 'out/features')
  golden.assert_close(hexplane.aggregate(features, 'mean'), meta, arrays, 'out/features_mean')
  golden.assert_close(hexplane.project_onto_planes(points)[0], meta, arrays, 'out/projected')
  grad_planes, grad_points = vjp(jnp.asarray(arrays['cot/features']))
  golden.assert_close(np.transpose(grad_planes, (0, 1, 4, 2, 3)), meta, arrays, 'grad/plane_features')
  golden.assert_close(grad_points, meta, arrays, 'grad/coordinates')


@pytest.mark.parametrize('box_warp', [1.0, 2.0])
def test_constant_planes_return_the_constant_inside_the_box(box_warp):
  value = jnp.asarray([0.5, -2.0, 3.0])
  planes = jnp.broadcast_to(value, (2, 3, 16, 16, 3))  # zero padding fades the outer half texel (1/32)
  inside = jax.random.uniform(jax.random.key(0), (2, 50, 3), minval=-0.45, maxval=0.45) * box_warp
  np.testing.assert_allclose(hexplane.sample_planes(planes, inside, box_warp), jnp.broadcast_to(value, (2, 3, 50, 3)))
  # Outside all three planes' squares the features are zero; outside the cube along z only,
  # plane 0 (x, y) still reads the constant (reference-spec §3.8).
  far = jnp.asarray([[[0.9, 0.9, 0.9], [0.1, -0.2, 0.9]]]) * box_warp
  features = np.asarray(hexplane.sample_planes(planes[:1], far, box_warp))
  assert not features[0, :, 0].any()
  np.testing.assert_allclose(features[0, 0, 1], value)
  assert not features[0, 1:, 1].any()


def test_projection_axes_and_aggregation():
  point = jnp.asarray([[[0.1, 0.2, 0.3]]])
  np.testing.assert_allclose(hexplane.project_onto_planes(point)[0, :, 0], [[0.2, 0.4], [-0.6, 0.4], [0.2, -0.6]])
  np.testing.assert_allclose(
    hexplane.project_onto_planes(point, box_warp=2.0)[0, :, 0], [[0.1, 0.2], [-0.3, 0.2], [0.1, -0.3]]
  )
  features = jax.random.normal(jax.random.key(1), (2, 3, 5, 4))
  assert hexplane.aggregate(features, 'concat').shape == (2, 5, 12)
  np.testing.assert_array_equal(hexplane.aggregate(features, 'concat')[:, :, 4:8], features[:, 1])
  with pytest.raises(ValueError, match='aggregation'):
    hexplane.aggregate(features, 'sum')


def test_compose_planes_stage_1_and_2():
  key_tex, key_static, key_alpha = jax.random.split(jax.random.key(2), 3)
  tex = jax.random.normal(key_tex, (2, 3, 4, 4, 6))
  static = jax.random.normal(key_static, (2, 3, 4, 4, 6))
  alpha = jax.random.uniform(key_alpha, (2, 3, 4, 4, 1))
  np.testing.assert_allclose(hexplane.compose_planes(tex, alpha, static), alpha * tex + (1 - alpha) * static, atol=1e-6)
  np.testing.assert_allclose(hexplane.compose_planes(tex, jnp.ones_like(alpha), static), tex)
  stage1 = hexplane.compose_planes(tex, alpha, static, hair=jnp.asarray([1, 0]))  # bald: static planes off
  np.testing.assert_allclose(stage1[0], alpha[0] * tex[0] + (1 - alpha[0]) * static[0], atol=1e-6)
  np.testing.assert_allclose(stage1[1], alpha[1] * tex[1], atol=1e-6)
  stage2 = hexplane.compose_planes(tex, alpha, static, stage=2, hair=jnp.asarray([1, 0]))
  np.testing.assert_allclose(stage2[0], tex[0] + static[0])
  np.testing.assert_allclose(stage2[1], tex[1])
  with pytest.raises(ValueError, match='hair'):
    hexplane.compose_planes(tex, alpha, static, stage=2)
  with pytest.raises(ValueError, match='stage'):
    hexplane.compose_planes(tex, alpha, static, stage=3)


def test_rasterised_constant_texture_reads_back_on_the_mesh_surface():
  """hexplane_views' layout is where sample_planes looks: on an off-centre sphere textured with a
  constant, every plane whose projection of a surface point lies well inside the silhouette returns
  the constant in both halves (front|back, +x|-x, top|bottom), and zero well outside it."""
  radius, centre = 0.07, np.array([0.02, -0.012, 0.015])  # mesh units; off-centre catches axis flips
  sphere = trimesh.creation.uv_sphere(radius=radius, count=[16, 16])
  vertices = (np.asarray(sphere.vertices) + centre).astype(np.float32)
  faces = np.asarray(sphere.faces, np.int32)
  face_uvs = np.full((len(faces), 3, 2), 0.5, np.float32)  # one texel region, away from the UV border
  value = np.array([2.0, -5.0], np.float32)
  neural_texture = np.broadcast_to(value, (1, 4, 4, 2))
  out = jax.jit(lambda v, t: hexplane_views.hexplanes(v, faces, face_uvs, t, resolution=64))(
    vertices[None], neural_texture
  )

  surface = vertices.astype(np.float64)
  offplane = centre + np.array([[0.0, 0.0, 0.0], [1.6, 1.6, 1.6]]) * radius  # centre; outside every silhouette
  points = np.concatenate([surface, offplane])
  world = jnp.asarray(camera.WORLD_PER_MESH * points, jnp.float32)[None]
  features = np.asarray(hexplane.sample_planes(out.planes, world))[0]  # (3, n, 4)
  in_plane_axes = ((0, 1), (2, 1), (0, 2))
  for plane, axes in enumerate(in_plane_axes):
    distance = np.linalg.norm((points - centre)[:, axes], axis=-1)
    interior = distance < 0.75 * radius
    assert interior.sum() > 20
    np.testing.assert_allclose(features[plane, interior], np.tile(value, (interior.sum(), 2)), rtol=1e-5, err_msg=plane)
    assert not features[plane, distance > 1.3 * radius].any(), plane
