"""Sampling the three hex-planes at 3-D points, aggregating planes, composing head and hair planes.

Legend: ``b`` batch, ``p`` planes (3), ``r`` plane resolution, ``c`` channels per plane
(64 in Head360: two 32-channel views, see ``hexplane_views``), ``n`` points.

Plane axes (reference-spec §3.8, changed from EG3D): a world point ``(x, y, z)`` (world
units, docs/conventions.md) scaled by ``2 / box_warp`` projects to the grid coordinates
``(g_u, g_v)`` of

  plane 0 (xy): ( x,  y)
  plane 1 (zy): (-z,  y)
  plane 2 (xz): ( x, -z)

``g_u`` runs along the plane's columns and ``g_v`` along its rows, both in [-1, 1] with
``torch.nn.functional.grid_sample`` semantics (``align_corners=False``, zero padding;
``texture.sample_bilinear``). With ``box_warp = 1`` the planes cover world
[-0.5, 0.5]; each plane bounds only its own two coordinates, so a point outside the cube
still reads the planes whose two coordinates are inside (golden
``sample_from_planes_head360``). ``hexplane_views.hexplanes`` lays its rasters out in
exactly these coordinates for the world point ``4.5 p`` of a mesh point ``p``.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from head360_jax.rendering import texture

NUM_PLANES = 3


def project_onto_planes(points: Float[Array, 'b n 3'], box_warp: float = 1.0) -> Float[Array, 'b 3 n 2']:
  """Grid coordinates of world points on the three planes (reference ``project_onto_planes``).

  Args:
    points: (b, n, 3) world units.
    box_warp: side of the cube the planes span (world units); 1 in Head360.

  Returns:
    (b, 3, n, 2) ``(g_u, g_v)``; in [-1, 1] for points inside the cube.
  """
  points = jnp.asarray(points)
  x, y, z = jnp.moveaxis(points * (2.0 / box_warp), -1, 0)
  return jnp.stack([jnp.stack(uv, axis=-1) for uv in ((x, y), (-z, y), (x, -z))], axis=1)


def sample_planes(
  planes: Float[Array, 'b 3 r r c'], points: Float[Array, 'b n 3'], box_warp: float = 1.0
) -> Float[Array, 'b 3 n c']:
  """Bilinear features of each plane at the points' projections (reference ``sample_from_planes``).

  Args:
    planes: (b, 3, r, r, c) channels-last planes, rows along ``g_v`` (module docstring).
    points: (b, n, 3) world units.
    box_warp: side of the cube the planes span (world units).

  Returns:
    (b, 3, n, c); zero where a projection falls outside its plane. Differentiable with
    respect to ``planes`` and ``points``.

  Raises:
    ValueError: if ``planes`` is not (b, 3, r, r', c) or the batch sizes differ.
  """
  planes, points = jnp.asarray(planes), jnp.asarray(points)
  if planes.ndim != 5 or planes.shape[1] != NUM_PLANES or points.ndim != 3 or planes.shape[0] != points.shape[0]:
    raise ValueError(
      f'need planes (b, 3, r, r, c) and points (b, n, 3) with equal b; got {planes.shape}, {points.shape}'
    )
  grid = project_onto_planes(points, box_warp)
  return jax.vmap(jax.vmap(texture.sample_bilinear))(planes, grid)


def aggregate(features: Float[Array, 'b 3 n c'], mode: str = 'mean') -> Float[Array, 'b n _']:
  """Combines the three planes' features per point (ARCHITECTURE D4).

  Args:
    features: (b, 3, n, c) from ``sample_planes``.
    mode: ``'mean'`` (the reference, ``st1/triplane_head360.py`` L427-429) gives
      (b, n, c); ``'concat'`` gives (b, n, 3c) in plane order.

  Raises:
    ValueError: for another ``mode``.
  """
  if mode == 'mean':
    return jnp.mean(features, axis=1)
  if mode == 'concat':
    b, p, n, c = features.shape
    return jnp.moveaxis(features, 1, 2).reshape(b, n, p * c)
  raise ValueError(f"aggregation mode must be 'mean' or 'concat', got {mode!r}")


def compose_planes(
  tex_planes: Float[Array, 'b 3 r r c'],
  tex_alpha: Float[Array, 'b 3 r r 1'],
  static_planes: Float[Array, 'b 3 r r c'],
  *,
  stage: int = 1,
  hair: Float[Array, ' b'] | None = None,
) -> Float[Array, 'b 3 r r c']:
  """Blends the textured-mesh planes with the static (hair) planes (reference-spec §3.7, ARCHITECTURE D5).

  Stage 1: ``α·P_tex + (1 − α)·P_static`` per plane, so the static planes show only where
  the mesh does not cover; with ``hair`` flags, bald samples (0) get ``α·P_tex`` (static
  planes off: the "bald" render of a stage-1 model, which never learnt to detach hair).
  Stage 2 (hair detachment): ``P_tex + P_static`` for samples with hair and ``P_tex`` for
  bald samples; the alpha is not used.

  Args:
    tex_planes: (b, 3, r, r, c) from ``hexplane_views.hexplanes``.
    tex_alpha: (b, 3, r, r, 1) plane alpha in [0, 1].
    static_planes: (b, 3, r, r, c) from the static-plane generator.
    stage: 1 or 2.
    hair: (b,) flags in {0, 1} (1 = with hair); required for stage 2, optional in stage 1
      (None: all haired).

  Raises:
    ValueError: for an unknown ``stage``, a missing ``hair`` in stage 2 or mismatched shapes.
  """
  if tex_planes.shape != static_planes.shape:
    raise ValueError(f'texture and static planes differ in shape: {tex_planes.shape} vs {static_planes.shape}')
  if stage == 1:
    if hair is not None:
      static_planes = jnp.asarray(hair, static_planes.dtype).reshape(-1, 1, 1, 1, 1) * static_planes
    return tex_alpha * tex_planes + (1.0 - tex_alpha) * static_planes
  if stage == 2:
    if hair is None:
      raise ValueError('stage 2 composition needs the per-sample hair flags')
    hair = jnp.asarray(hair, static_planes.dtype).reshape(-1, 1, 1, 1, 1)
    return tex_planes + hair * static_planes
  raise ValueError(f'stage must be 1 or 2, got {stage}')
