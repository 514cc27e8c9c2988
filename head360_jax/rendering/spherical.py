"""SphereHead's dual spherical tri-plane: sampling features at 3-D points in spherical coordinates.

Legend: ``b`` batch, ``s`` spheres (2), ``p`` planes per sphere (3), ``r`` plane resolution,
``c`` channels per plane, ``n`` points.

SphereHead (Li et al., ECCV 2024, arXiv 2404.05680, §3 "spherical tri-plane") replaces the
Cartesian tri-plane by planes over spherical coordinates, so that the front and the back of
the head, which a Cartesian plane projects onto the same texels (the "mirroring" artifact),
land on different texels. Stated here from the paper and its released model code
(``lhyfst/SphereHead``, ``training/volumetric_rendering/renderer.py``), not copied:

1. A world point is scaled to the unit cube, ``q = p · 2 / box_warp`` (|q_i| <= 1 inside).
2. Each of two spheres rotates it, ``q_k = R_k q`` (``SPHERE_ROTATIONS``): sphere 0 has its
   polar axis along ``-x`` (the ears) and ``φ = 0`` at the face (+z); sphere 1 has its polar
   axis along ``+y`` (crown and neck) and ``φ = 0`` at the back of the head (-z).
3. Normalised spherical coordinates of ``q_k = (x, y, z)``, each in [-1, 1]:
   ``θ = 2 atan2(√(x² + y²), z) / π − 1`` (polar angle), ``φ = atan2(y, x) / π`` (azimuth;
   the seam at ±1 is the half-plane ``y = 0, x < 0``), ``ρ = 2 |q| / √3 − 1`` (radius).
4. Three planes per sphere are sampled bilinearly (``torch.grid_sample`` semantics, zero
   padding, first coordinate along the columns): plane 0 at ``(θ, φ)``, plane 1 at ``(θ, ρ)``,
   plane 2 at ``(φ, ρ)``.
5. The spheres are fused per plane with weights ``w = (1 + cos πθ)/2 · (1 + cos πφ)/2``,
   ``f = (w_0 f_0 + w_1 f_1) / (w_0 + w_1 + 1e-8)``: a sphere's weight is 0 at its poles and on
   its seam, where its coordinates are singular or discontinuous, and the other sphere, whose
   equator passes there, takes over. The fused features are continuous everywhere.

The result is (b, 3, n, c), aggregated by the caller like a tri-plane (mean, ``hexplane.aggregate``).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from head360_jax.rendering import texture

NUM_SPHERES = 2
PLANES_PER_SPHERE = 3
FUSION_EPS = 1e-8


def _rot_y(angle: float) -> np.ndarray:
  c, s = math.cos(angle), math.sin(angle)
  return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(angle: float) -> np.ndarray:
  c, s = math.cos(angle), math.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# q_k = R_k q: sphere 0 = Ry(90°) (polar axis -x, φ = 0 at +z); sphere 1 = Ry(-90°) Rz(-90°)
# (polar axis +y, φ = 0 at -z). Rounded to exact 0/±1 (both are axis permutations with signs).
SPHERE_ROTATIONS = np.round(np.stack([_rot_y(math.pi / 2), _rot_y(-math.pi / 2) @ _rot_z(-math.pi / 2)])).astype(
  np.float32
)


def cartesian_to_spherical(q: Float[Array, '... 3']) -> tuple[Array, Array, Array]:
  """Normalised spherical coordinates ``(θ, φ, ρ)`` of points ``q`` in the unit cube (module docstring, step 3).

  Args:
    q: (..., 3) points scaled so that the cube the planes cover is [-1, 1]³.

  Returns:
    ``θ`` in [-1, 1] (-1 on the +z pole, 1 on the -z pole), ``φ`` in (-1, 1] (0 on +x; ±1 on
    the seam ``y = 0, x < 0``), ``ρ`` in [-1, 1] for points inside the cube (-1 at the origin,
    1 at its corners); each (...,).
  """
  x, y, z = q[..., 0], q[..., 1], q[..., 2]
  theta = 2.0 * jnp.arctan2(jnp.sqrt(x * x + y * y), z) / jnp.pi - 1.0
  phi = jnp.arctan2(y, x) / jnp.pi
  rho = 2.0 * jnp.sqrt(x * x + y * y + z * z) / math.sqrt(3.0) - 1.0
  return theta, phi, rho


def sphere_weights(theta: Array, phi: Array) -> Array:
  """Fusion weight of one sphere, ``(1 + cos πθ)/2 · (1 + cos πφ)/2`` in [0, 1]: 0 at its poles and seam."""
  return 0.25 * (1.0 + jnp.cos(jnp.pi * theta)) * (1.0 + jnp.cos(jnp.pi * phi))


def plane_coordinates(q: Float[Array, 'n 3']) -> tuple[Float[Array, '2 3 n 2'], Float[Array, '2 n']]:
  """Grid coordinates of unit-cube points on every plane of both spheres, and the spheres' weights.

  Returns:
    ``(grid (2, 3, n, 2), weights (2, n))``: plane 0 ``(θ, φ)``, plane 1 ``(θ, ρ)``, plane 2
    ``(φ, ρ)`` per sphere (``(g_u, g_v)``: columns, rows, as ``texture.sample_bilinear``).
  """
  grids, weights = [], []
  for rotation in SPHERE_ROTATIONS:
    theta, phi, rho = cartesian_to_spherical(q @ jnp.asarray(rotation).T)
    grids.append(jnp.stack([jnp.stack(uv, axis=-1) for uv in ((theta, phi), (theta, rho), (phi, rho))]))
    weights.append(sphere_weights(theta, phi))
  return jnp.stack(grids), jnp.stack(weights)


def sample_spherical_planes(
  planes: Float[Array, 'b 2 3 r r c'], points: Float[Array, 'b n 3'], box_warp: float = 1.0
) -> Float[Array, 'b 3 n c']:
  """Dual spherical tri-plane features at world points (module docstring; SphereHead §3).

  Args:
    planes: (b, 2, 3, r, r, c) channels-last planes, sphere-major.
    points: (b, n, 3) world units.
    box_warp: side of the cube the planes span (world units); points are scaled by ``2 / box_warp``.

  Returns:
    (b, 3, n, c) per plane, the two spheres fused by their weights. Differentiable with respect
    to ``planes`` and ``points`` (away from the origin and the polar axes, where the angles are
    not differentiable but their weights vanish).

  Raises:
    ValueError: if ``planes`` is not (b, 2, 3, r, r', c) or the batch sizes differ.
  """
  planes, points = jnp.asarray(planes), jnp.asarray(points)
  if planes.ndim != 6 or planes.shape[1:3] != (NUM_SPHERES, PLANES_PER_SPHERE) or points.shape[0] != planes.shape[0]:
    raise ValueError(
      f'need planes (b, 2, 3, r, r, c) and points (b, n, 3) with equal b; got {planes.shape}, {points.shape}'
    )

  def one(sample_planes, sample_points):
    grid, weights = plane_coordinates(sample_points * (2.0 / box_warp))
    features = jax.vmap(jax.vmap(texture.sample_bilinear))(sample_planes, grid)  # (2, 3, n, c)
    fused = jnp.einsum('spnc,sn->pnc', features, weights)
    return fused / (jnp.sum(weights, axis=0)[None, :, None] + FUSION_EPS)

  return jax.vmap(one)(planes, points)
