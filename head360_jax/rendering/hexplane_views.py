"""The six orthographic views of the textured mesh, packed into three 64-channel hex-planes.

Legend: ``b`` batch, ``v`` vertices, ``f`` faces, ``n`` points, ``r`` plane resolution
(256), ``H W`` neural-texture rows/columns, ``c`` texture channels (32), ``m`` UV-mask
rows/columns, ``l`` landmarks.

Views (reference-spec §3.4; Euler angles (pitch, yaw, roll) in degrees, in this order):
0 front (0,0,0), 1 +x side (0,90,0), 2 -x side (0,-90,0), 3 top (90,0,0), 4 back
(0,180,0), 5 bottom (-90,0,0). A mesh point ``p`` (mesh units) goes to
``q = (flip_y(p) @ R) * 9`` with ``R = Rz Ry Rx`` (``angle2matrix``), then ``q_y, q_z``
are negated and ``q_z += 10``; ``(q_x, q_y)`` is the raw raster's grid coordinate and
``q_z`` its depth (smaller = nearer). Views 2 and 4 are mirrored along the width and
view 5 along the height, which puts every view in the coordinates the tri-plane sampler
(reference-spec §3.8) uses for the world point ``4.5 p``:

  plane 0 (xy): front | back    g = (9x, 9y)    front keeps max z, back min z
  plane 1 (zy): +x | -x side    g = (-9z, 9y)   +x side keeps max x, -x side min x
  plane 2 (xz): top | bottom    g = (9x, -9z)   top keeps max y, bottom min y

Fixes of reference bugs (ARCHITECTURE.md D1, reference-spec §8.2): the bottom view is
mirrored along the height, not the width (the reference puts bottom features at the
180-degree rotated place); uncovered pixels carry zero features (the reference samples
the texture at UV (0.5, 0.5) there); the alpha of each plane is the union of its two
views (the reference uses view 0 for plane 0, view 1 twice for plane 1, view 3 for
plane 2).

Layout: planes are (b, 3, r, r, 2c) channels-last, channels ``[:c]`` from the first view
of the pair and ``[c:]`` from the second; alpha is (b, 3, r, r, 1); rows follow ``g_v``
(so plane 0 and 1 images show the head upside down, which is what the sampler expects).
Rasterisation: back faces culled, nearest surface kept, per-corner UVs interpolated with
screen-space barycentrics (exact for orthographic views), all in ``rasterize.py``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from head360_jax.rendering import rasterize as raster
from head360_jax.rendering import texture

VIEW_ANGLES_DEG = (
  (0.0, 0.0, 0.0),
  (0.0, 90.0, 0.0),
  (0.0, -90.0, 0.0),
  (90.0, 0.0, 0.0),
  (0.0, 180.0, 0.0),
  (-90.0, 0.0, 0.0),
)
VIEW_NAMES = ('front', 'side_pos_x', 'side_neg_x', 'top', 'back', 'bottom')
PLANE_OF_VIEW = (0, 1, 1, 2, 0, 2)
HALF_OF_VIEW = (0, 0, 1, 0, 1, 1)  # 0: channels [:c], 1: channels [c:]
VIEWS_OF_PLANE = ((0, 4), (1, 2), (3, 5))
# (sign of g_u, sign of g_v) taking each raw view into its plane; (1, -1) on view 5 is the
# bottom-flip fix (the reference has (-1, 1)).
PLANE_MIRROR = ((1, 1), (1, 1), (-1, 1), (1, 1), (-1, 1), (1, -1))
# The tri-plane ablation (paper Table 3 "Tri-plane"; Next3D's rasterised tri-plane): one view per
# plane, front -> plane 0, +x side -> plane 1, top -> plane 2, each in its plane's coordinates.
TRIPLANE_VIEWS = (0, 1, 3)
ORTH_SCALE = 9.0
DEPTH_OFFSET = 10.0
RESOLUTION = 256


def angle2matrix(angles_deg: tuple[float, float, float]) -> np.ndarray:
  """``R = Rz Ry Rx`` for Euler angles (pitch x, yaw y, roll z) in degrees, row-vector use ``p @ R``.

  Reference-spec §3.4 (``angle2matrix``, renderer.py L528-557). Returns (3, 3) float32.
  """
  x, y, z = np.deg2rad(np.asarray(angles_deg, np.float64))
  rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
  rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
  return (rz @ ry @ rx).astype(np.float32)


def view_transform(points: Float[Array, 'n 3'], view: int) -> Float[Array, 'n 3']:
  """Raw raster coordinates ``q`` of mesh points in ``view`` (reference-spec §3.4 steps 1-3).

  Returns:
    (n, 3): ``q[:, :2]`` is the raw raster's grid coordinate (g_u, g_v), ``q[:, 2]`` the
    depth (about 10 +- 1; smaller = nearer).
  """
  points = jnp.asarray(points)
  flipped = points * jnp.asarray([1.0, -1.0, 1.0], points.dtype)
  q = flipped @ jnp.asarray(angle2matrix(VIEW_ANGLES_DEG[view]), points.dtype) * ORTH_SCALE
  return q * jnp.asarray([1.0, -1.0, -1.0], points.dtype) + jnp.asarray([0.0, 0.0, DEPTH_OFFSET], points.dtype)


def plane_coordinates(points: Float[Array, 'n 3'], view: int) -> tuple[Float[Array, 'n 2'], Float[Array, ' n']]:
  """Grid coordinate of mesh points on the plane of ``view`` (mirrors applied) and their depth."""
  q = view_transform(points, view)
  return q[:, :2] * jnp.asarray(PLANE_MIRROR[view], q.dtype), q[:, 2]


def view_is_mirrored(view: int) -> bool:
  """Whether the map mesh point -> plane (col, row, depth) of ``view`` has negative determinant.

  Passed to ``rasterize(..., mirrored=...)`` so back-face culling keeps the faces whose
  outside looks towards the viewer (views 0, 1 and 3 are mirrored: their rows follow +y
  or -z, the image of a camera flipped upside down).
  """
  linear = (
    np.diag([*PLANE_MIRROR[view], 1.0])
    @ np.diag([1.0, -1.0, -1.0])
    @ angle2matrix(VIEW_ANGLES_DEG[view]).T.astype(np.float64)
    @ np.diag([1.0, -1.0, 1.0])
  )
  return bool(np.linalg.det(linear) < 0)


class ViewRaster(NamedTuple):
  """The k views of one mesh in plane coordinates (six, or three for ``triplanes``; texture-independent).

  Attributes:
    grid: (k, r, r, 2) neural-texture grid coordinates (``texture.uv_to_grid`` of the UVs),
      0 where uncovered.
    coverage: (k, r, r) bool.
  """

  grid: Float[Array, 'k r r 2']
  coverage: Bool[Array, 'k r r']


def rasterize_views(
  vertices: Float[Array, 'v 3'],
  faces: Int[Array, 'f 3'],
  face_uvs: Float[Array, 'f 3 2'],
  resolution: int = RESOLUTION,
  views: tuple[int, ...] = tuple(range(6)),
) -> ViewRaster:
  """Rasterises orthographic views of one mesh (the six by default) and interpolates its UVs.

  Args:
    vertices: (v, 3) mesh units (the head fits ``|x|, |y|, |z| < 1/9``).
    faces: (f, 3) triangles, counter-clockwise seen from outside.
    face_uvs: (f, 3, 2) per-corner OBJ UVs (v up, [0, 1]).
    resolution: plane side in pixels.
    views: which views, in this order (``TRIPLANE_VIEWS`` for the tri-plane ablation).

  Returns:
    ``ViewRaster`` with one entry per view in ``views``; differentiable with respect to
    ``face_uvs`` (and ``vertices`` inside triangles).

  Raises:
    ValueError: for malformed shapes.
  """
  vertices, faces, face_uvs = jnp.asarray(vertices), jnp.asarray(faces), jnp.asarray(face_uvs)
  if vertices.ndim != 2 or vertices.shape[1] != 3 or face_uvs.shape != (*faces.shape, 2):
    raise ValueError(
      f'need vertices (v, 3), faces (f, 3), face_uvs (f, 3, 2); got {vertices.shape}, {faces.shape}, {face_uvs.shape}'
    )
  grids, coverages = [], []
  for view in views:
    g, depth = plane_coordinates(vertices, view)
    fragments = raster.rasterize(
      (g + 1.0) * (resolution / 2.0), depth, faces, resolution, cull_backfaces=True, mirrored=view_is_mirrored(view)
    )
    uv = raster.interpolate(fragments, face_uvs)
    grids.append(jnp.where(fragments.coverage[..., None], texture.uv_to_grid(uv), 0.0))
    coverages.append(fragments.coverage)
  return ViewRaster(jnp.stack(grids), jnp.stack(coverages))


def _run_sweep(background: Array, empty: Array) -> Array:
  """Spreads ``background`` along each row through runs of empty pixels (4-connected)."""
  height, width = empty.shape
  run = jnp.cumsum(~empty, axis=1) + jnp.arange(height)[:, None] * (width + 1)
  reached = jnp.zeros(height * (width + 1), jnp.int32).at[run.reshape(-1)].max(background.reshape(-1).astype(jnp.int32))
  return empty & (reached[run] > 0)


def fill_holes(alpha: Float[Array, 'h w']) -> Float[Array, 'h w']:
  """Sets enclosed empty regions (mouth opening, masked eye slits) of a coverage alpha to 1.

  Background = pixels with ``alpha <= 0`` connected to the image border through such
  pixels (4-connectivity, as OpenCV's flood fill in the reference, reference-spec §3.5);
  every other empty pixel is a hole. Found by alternating row and column sweeps that
  spread the border seeds along whole runs of empty pixels, until nothing changes (a
  handful of sweeps for head silhouettes, instead of one iteration per pixel of
  distance for a 3x3 dilation).

  Returns:
    (h, w): 0 on the background, 1 in holes, ``alpha`` elsewhere.
  """
  empty = alpha <= 0
  border = jnp.zeros(alpha.shape, bool).at[0].set(True).at[-1].set(True).at[:, 0].set(True).at[:, -1].set(True)

  def body(carry):
    background, _ = carry
    swept = _run_sweep(_run_sweep(background, empty).T, empty.T).T
    return swept, jnp.any(swept != background)

  background, _ = jax.lax.while_loop(lambda carry: carry[1], body, (empty & border, jnp.bool_(True)))
  return jnp.where(background, 0.0, jnp.where(empty, 1.0, alpha)).astype(alpha.dtype)


def views_alpha(views: ViewRaster, uv_mask: Float[Array, 'm m'] | None = None) -> Float[Array, 'k r r']:
  """Per-view alpha: coverage x UV-mask lookup, enclosed holes filled (reference-spec §3.5).

  Args:
    views: from ``rasterize_views``.
    uv_mask: optional (m, m) mask over UV space in [0, 1] (row 0 = v = 1), sampled
      bilinearly at each pixel's UV (excludes e.g. eye texels, whose slits then fill).
  """
  alpha = views.coverage.astype(views.grid.dtype)
  if uv_mask is not None:
    lookup = jax.vmap(lambda g: texture.sample_bilinear(jnp.asarray(uv_mask)[..., None], g)[..., 0])(views.grid)
    alpha = alpha * lookup
  return jax.vmap(fill_holes)(jax.lax.stop_gradient(alpha))


def pack_planes(
  neural_texture: Float[Array, 'H W c'], views: ViewRaster, alpha: Float[Array, '6 r r']
) -> tuple[Float[Array, '3 r r 2*c'], Float[Array, '3 r r 1']]:
  """Looks the neural texture up in every view and packs the views into three planes.

  Returns:
    ``(planes (3, r, r, 2c), plane_alpha (3, r, r, 1))``: uncovered pixels have zero
    features; a plane's alpha is the maximum (union) of its two views' alphas.
  """
  features = jax.vmap(lambda g: texture.sample_bilinear(neural_texture, g))(views.grid)
  features = jnp.where(views.coverage[..., None], features, 0.0)
  planes = jnp.stack([jnp.concatenate([features[a], features[b]], axis=-1) for a, b in VIEWS_OF_PLANE])
  plane_alpha = jnp.stack([jnp.maximum(alpha[a], alpha[b]) for a, b in VIEWS_OF_PLANE])
  return planes, plane_alpha[..., None]


class HexPlanes(NamedTuple):
  """Batched output of ``hexplanes``.

  Attributes:
    planes: (b, 3, r, r, 2c) features, see the module docstring for the layout.
    alpha: (b, 3, r, r, 1) per-plane alpha in [0, 1].
    views: ``ViewRaster`` with a leading batch axis (grids and coverage per view).
  """

  planes: Float[Array, 'b 3 r r 2*c']
  alpha: Float[Array, 'b 3 r r 1']
  views: ViewRaster


class MeshRaster(NamedTuple):
  """What ``hexplanes``/``triplanes`` compute from the meshes alone, for a batch (``rasterize_meshes``).

  Attributes:
    views: ``ViewRaster`` with a leading batch axis: grids (b, k, r, r, 2), coverage (b, k, r, r).
    alpha: (b, k, r, r) per-view alpha in [0, 1] (``views_alpha``).
  """

  views: ViewRaster
  alpha: Float[Array, 'b k r r']


def rasterize_meshes(
  vertices: Float[Array, 'b v 3'],
  faces: Int[Array, 'f 3'],
  face_uvs: Float[Array, 'f 3 2'],
  uv_mask: Float[Array, 'm m'] | None = None,
  resolution: int = RESOLUTION,
  views: tuple[int, ...] = tuple(range(6)),
) -> MeshRaster:
  """The parameter-free half of ``hexplanes``: each mesh's orthographic views and their alphas.

  Args:
    vertices: (b, v, 3) mesh units; faces, face_uvs, uv_mask, resolution: as ``hexplanes``.
    views: as ``rasterize_views`` (``TRIPLANE_VIEWS`` for ``triplanes``).

  Returns:
    ``MeshRaster`` with k = ``len(views)``.

  Raises:
    ValueError: for malformed shapes.
  """
  vertices = jnp.asarray(vertices)
  if vertices.ndim != 3:
    raise ValueError(f'need vertices (b, v, 3), got {vertices.shape}')

  def one(verts: Array) -> MeshRaster:
    raster = rasterize_views(verts, faces, face_uvs, resolution, views=views)
    return MeshRaster(raster, views_alpha(raster, uv_mask))

  return jax.vmap(one)(vertices)


def _check_raster(raster: MeshRaster, batch: int, num_views: int, resolution: int) -> None:
  expected = (batch, num_views, resolution, resolution)
  if raster.alpha.shape != expected or raster.views.grid.shape != (*expected, 2):
    raise ValueError(
      f'raster must hold {num_views} views of {batch} meshes at {resolution}²: alpha {expected}, '
      f'got alpha {raster.alpha.shape} and grid {raster.views.grid.shape}'
    )


def hexplanes(
  vertices: Float[Array, 'b v 3'],
  faces: Int[Array, 'f 3'],
  face_uvs: Float[Array, 'f 3 2'],
  neural_texture: Float[Array, 'b H W c'],
  uv_mask: Float[Array, 'm m'] | None = None,
  resolution: int = RESOLUTION,
  raster: MeshRaster | None = None,
) -> HexPlanes:
  """Textured six-view hex-planes of a batch of meshes sharing one topology (paper Fig. 2, D4).

  Args:
    vertices: (b, v, 3) mesh units.
    faces: (f, 3) triangles, counter-clockwise seen from outside.
    face_uvs: (f, 3, 2) per-corner OBJ UVs.
    neural_texture: (b, H, W, c) UV-space features (NHWC, row 0 = v = 1).
    uv_mask: optional (m, m) UV-space mask for the alpha.
    resolution: plane side (256 in the reference).
    raster: the meshes' ``rasterize_meshes`` (same faces, UVs, mask and resolution), when the
      caller already has it: the rasterisation depends on the meshes only, so a training
      iteration computes it once for all its phases. None: rasterised here.

  Returns:
    ``HexPlanes``. Gradients reach ``neural_texture`` (and ``face_uvs`` when ``raster`` is
    None); the alpha is not differentiable.

  Raises:
    ValueError: if batch sizes differ or shapes (``raster``'s included) are malformed.
  """
  vertices, neural_texture = jnp.asarray(vertices), jnp.asarray(neural_texture)
  if vertices.ndim != 3 or neural_texture.ndim != 4 or vertices.shape[0] != neural_texture.shape[0]:
    raise ValueError(
      f'need vertices (b, v, 3) and neural_texture (b, H, W, c) with equal b; got '
      f'{vertices.shape}, {neural_texture.shape}'
    )

  if raster is None:
    raster = rasterize_meshes(vertices, faces, face_uvs, uv_mask, resolution)
  _check_raster(raster, vertices.shape[0], len(VIEWS_OF_PLANE) * 2, resolution)
  planes, alpha = jax.vmap(pack_planes)(neural_texture, raster.views, raster.alpha)
  return HexPlanes(planes, alpha, raster.views)


def mouth_box(landmarks: Float[Array, 'l 3'], resolution: int = RESOLUTION) -> Int[Array, '4']:
  """Square mouth crop in the front plane, ``[row0, row1, col0, col1]`` (reference ``gen_mouth_mask``).

  Landmarks (the reference's 12 lip landmarks, mesh units) go to front-plane pixels
  ``(g + 1) r / 2``; the centre is the midpoint of landmarks 0 and 6 and the side
  ``int(1.2 * max extent)``; bounds are truncated to int and not clamped to the canvas
  (reference-spec §8.2), so callers must handle boxes that leave the plane.
  """
  g, _ = plane_coordinates(landmarks, 0)
  pixels = (g + 1.0) * (resolution / 2.0)
  centre = (pixels[0] + pixels[6]) / 2.0
  side = jnp.trunc(1.2 * jnp.max(pixels.max(axis=0) - pixels.min(axis=0)))
  half = jnp.floor(side / 2.0)
  return jnp.trunc(jnp.stack([centre[1] - half, centre[1] + half, centre[0] - half, centre[0] + half])).astype(
    jnp.int32
  )


def triplanes(
  vertices: Float[Array, 'b v 3'],
  faces: Int[Array, 'f 3'],
  face_uvs: Float[Array, 'f 3 2'],
  neural_texture: Float[Array, 'b H W c'],
  uv_mask: Float[Array, 'm m'] | None = None,
  resolution: int = RESOLUTION,
  raster: MeshRaster | None = None,
) -> HexPlanes:
  """The tri-plane ablation: the textured mesh seen from the front, the +x side and the top only.

  Next3D-style rasterised tri-plane (paper Table 3 "Tri-plane"): views ``TRIPLANE_VIEWS``
  (0 front, 1 +x side, 3 top) become planes 0, 1, 2 with ``c`` channels each, in the same
  sampler coordinates as the hex-planes' first halves; the back, -x side and bottom are not
  seen, so a plane's features show what its one view sees on both sides of the head.

  Args:
    vertices, faces, face_uvs, neural_texture, uv_mask, resolution: as ``hexplanes``.
    raster: as ``hexplanes``, made with ``views=TRIPLANE_VIEWS``.

  Returns:
    ``HexPlanes`` with planes (b, 3, r, r, c), alpha (b, 3, r, r, 1) (each view's own
    alpha) and the three views' rasters.

  Raises:
    ValueError: if batch sizes differ or shapes are malformed.
  """
  vertices, neural_texture = jnp.asarray(vertices), jnp.asarray(neural_texture)
  if vertices.ndim != 3 or neural_texture.ndim != 4 or vertices.shape[0] != neural_texture.shape[0]:
    raise ValueError(
      f'need vertices (b, v, 3) and neural_texture (b, H, W, c) with equal b; got '
      f'{vertices.shape}, {neural_texture.shape}'
    )

  if raster is None:
    raster = rasterize_meshes(vertices, faces, face_uvs, uv_mask, resolution, views=TRIPLANE_VIEWS)
  _check_raster(raster, vertices.shape[0], len(TRIPLANE_VIEWS), resolution)

  def one(tex: Array, views: ViewRaster) -> Array:
    features = jax.vmap(lambda g: texture.sample_bilinear(tex, g))(views.grid)
    return jnp.where(views.coverage[..., None], features, 0.0)

  return HexPlanes(jax.vmap(one)(neural_texture, raster.views), raster.alpha[..., None], raster.views)
