"""SphereHead's dual spherical tri-plane vs an independent float64 numpy statement: coordinates, poles, seam."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from head360_jax.rendering import spherical


def _np_sphere_points(q: np.ndarray) -> list[np.ndarray]:
  """The two spheres' frames written out as signed axis permutations (SphereHead's Ry(90°), Ry(-90°)Rz(-90°))."""
  x, y, z = q.T
  return [np.stack([z, y, -x], -1), np.stack([-z, -x, y], -1)]


def _np_spherical(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Textbook spherical coordinates in float64: polar angle from +z, azimuth from +x towards +y, radius."""
  r = np.linalg.norm(q, axis=-1)
  polar = np.arccos(np.clip(q[:, 2] / np.maximum(r, 1e-300), -1, 1))
  azimuth = np.arctan2(q[:, 1], q[:, 0])
  return 2 * polar / np.pi - 1, azimuth / np.pi, 2 * r / np.sqrt(3) - 1


def _ramp_planes(resolution: int) -> np.ndarray:
  """(2, 3, r, r, 2) planes whose channels are the texel centres' grid coordinates (g_u, g_v)."""
  centres = (np.arange(resolution) + 0.5) / resolution * 2 - 1
  gu, gv = np.meshgrid(centres, centres)  # columns along g_u, rows along g_v
  return np.broadcast_to(np.stack([gu, gv], -1), (2, 3, resolution, resolution, 2)).astype(np.float32)


def test_coordinates_match_float64_including_poles_and_axes():
  rng = np.random.default_rng(0)
  q = rng.uniform(-1, 1, size=(500, 3))
  # The poles and equators of both spheres, and the seam half-planes.
  special = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [0.3, 1e-7, -0.5], [1e-7, 0.4, 0.6]]
  )
  q = np.concatenate([q, 0.7 * special])
  grid, weights = spherical.plane_coordinates(jnp.asarray(q, jnp.float32))
  for sphere, qs in enumerate(_np_sphere_points(q)):
    theta, phi, rho = _np_spherical(qs)
    expected = np.stack([np.stack(uv, -1) for uv in ((theta, phi), (theta, rho), (phi, rho))])
    got = np.asarray(grid[sphere], np.float64)
    # φ is ±1 on the seam: both ends are the same direction, so compare angles modulo 2.
    diff = got - expected
    diff[0, :, 1] = (diff[0, :, 1] + 1) % 2 - 1
    diff[2, :, 0] = (diff[2, :, 0] + 1) % 2 - 1
    on_axis = np.hypot(qs[:, 0], qs[:, 1]) < 1e-9  # on this sphere's polar axis the azimuth is undefined
    diff[0, on_axis, 1] = diff[2, on_axis, 0] = 0
    assert np.abs(diff).max() < 2e-6, sphere
    w = 0.25 * (1 + np.cos(np.pi * theta)) * (1 + np.cos(np.pi * phi))
    np.testing.assert_allclose(np.asarray(weights[sphere]), w, atol=1e-6)
  # Every point but the origin has a total weight above 0.2: some sphere sees it away from its poles and seam.
  total = np.asarray(weights.sum(0))
  assert total.min() > 0.2
  # Poles: sphere 0's on the x axis (weight 0, sphere 1 takes over), sphere 1's on the y axis.
  pole_x, pole_y = len(q) - 8, len(q) - 6
  assert float(weights[0, pole_x]) < 1e-12 and float(weights[1, pole_x]) > 0.4
  assert float(weights[1, pole_y]) < 1e-12 and float(weights[0, pole_y]) > 0.4


def test_marker_on_sphere_zero_reads_its_coordinates_weighted():
  """Ramp planes on sphere 0, zeros on sphere 1: the fused features are w0/(w0+w1) times sphere 0's coordinates."""
  res = 64
  planes = _ramp_planes(res).copy()
  planes[1] = 0
  rng = np.random.default_rng(1)
  q = rng.uniform(-0.8, 0.8, size=(200, 3))
  q0, q1 = _np_sphere_points(q)
  theta0, phi0, rho0 = _np_spherical(q0)
  theta1, phi1, _ = _np_spherical(q1)
  w0 = 0.25 * (1 + np.cos(np.pi * theta0)) * (1 + np.cos(np.pi * phi0))
  w1 = 0.25 * (1 + np.cos(np.pi * theta1)) * (1 + np.cos(np.pi * phi1))
  share = w0 / (w0 + w1 + spherical.FUSION_EPS)
  box_warp = 1.0
  points = q * box_warp / 2  # world points of unit-cube q
  out = np.asarray(spherical.sample_spherical_planes(planes[None], jnp.asarray(points[None], jnp.float32), box_warp))
  for plane, (u, v) in enumerate(((theta0, phi0), (theta0, rho0), (phi0, rho0))):
    inside = (np.abs(u) < 1 - 1 / res) & (np.abs(v) < 1 - 1 / res)  # bilinear is exact on a ramp away from borders
    expected = share[:, None] * np.stack([u, v], -1)
    np.testing.assert_allclose(out[0, plane][inside], expected[inside], atol=2e-5, err_msg=str(plane))


def _smooth_planes(resolution: int) -> np.ndarray:
  centres = (np.arange(resolution) + 0.5) / resolution * 2 - 1
  gu, gv = np.meshgrid(centres, centres)
  channels = [np.sin(2.1 * gu + 0.3) * np.cos(1.7 * gv), gu * gv + 0.5 * gv, np.cos(3.0 * gu - gv)]
  planes = np.stack(channels, -1)
  return np.stack([np.stack([planes, 0.5 * planes, planes**2]), np.stack([-planes, planes + 1, 2 * planes])]).astype(
    np.float32
  )


@pytest.mark.parametrize(
  'name, base, offset',
  [
    ('sphere 0 seam (y = 0, z < 0)', [0.2, 0.0, -0.6], [0.0, 1.0, 0.0]),
    ('sphere 1 seam (x = 0, z > 0)', [0.0, 0.25, 0.55], [1.0, 0.0, 0.0]),
    ('sphere 0 pole (x axis)', [0.6, 0.0, 0.0], [0.0, 0.6, 0.8]),
    ('sphere 1 pole (y axis)', [0.0, -0.5, 0.0], [0.8, 0.0, -0.6]),
  ],
)
def test_features_are_continuous_across_seams_and_poles(name, base, offset):
  planes = jnp.asarray(_smooth_planes(48))[None]
  base, offset = np.asarray(base), np.asarray(offset)
  eps = 1e-6
  points = jnp.asarray(np.stack([base - eps * offset, base + eps * offset])[None] / 2, jnp.float32)
  out = np.asarray(spherical.sample_spherical_planes(planes, points))
  assert np.abs(out[0, :, 0] - out[0, :, 1]).max() < 1e-5, name
  # Without the fusion, the sphere with the seam/pole would jump there: its own features differ a lot.
  grid, _ = spherical.plane_coordinates(points[0] * 2)
  assert np.abs(np.asarray(grid[:, :, 0] - grid[:, :, 1])).max() > 0.5, name


def test_rotations_are_proper_and_gradients_reach_the_planes():
  for rotation in spherical.SPHERE_ROTATIONS:
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-7)
    assert np.isclose(np.linalg.det(rotation), 1.0)
  planes = jnp.asarray(_smooth_planes(16))[None]
  points = jnp.asarray(np.random.default_rng(2).uniform(-0.4, 0.4, (1, 50, 3)), jnp.float32)
  grad = jax.grad(lambda p: jnp.sum(spherical.sample_spherical_planes(p, points) ** 2))(planes)
  assert (
    np.all(np.isfinite(grad)) and np.abs(np.asarray(grad[0, 0])).sum() > 0 and np.abs(np.asarray(grad[0, 1])).sum() > 0
  )
  with pytest.raises(ValueError, match='planes'):
    spherical.sample_spherical_planes(planes[:, 0], points)
