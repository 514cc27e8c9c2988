"""Triangle rasterisation in pure JAX: hard z-buffer, barycentric interpolation, screen setup.

Legend: ``v`` vertices, ``f`` faces (triangles), ``h w`` image rows/columns, ``c`` attribute
channels, ``n`` points, ``j`` rasterisation jobs of one loop step (one tile of one face),
``k`` pixels of a tile (``tile**2``).

Screen space (reference-spec §1.4, ``geometry/camera.py``): a vertex is a continuous pixel
position ``(col, row)`` plus a depth (smaller = nearer). Pixel ``(row j, col i)`` spans
``[i, i+1) x [j, j+1)`` and is sampled at its centre ``(i + 0.5, j + 0.5)``. Perspective
screens come from ``camera.project`` (depth = camera z); ``orthographic_project`` gives the
orthographic equivalent, and the hex-plane views build their own (``hexplane_views.py``).

Winding: for a mesh wound counter-clockwise seen from outside (the ``Rig`` contract) and
an unmirrored camera frame (x right, y down, z forward, as ``camera.project``), a front
face has signed area ``(p1 - p0) x (p2 - p0) < 0`` in (col, row) coordinates, because
rows grow downwards. A mirrored screen mapping (determinant < 0) reverses that; say so
with ``mirrored=True``.

Algorithm (hard mode), designed for XLA on CPU and GPU with static shapes:

1. Per face: the range of pixel centres inside its screen bounding box, clipped to the
   image, split into ``tile x tile`` pixel tiles. Culled, degenerate, off-screen and
   behind-the-near-plane faces get zero tiles, so they cost nothing.
2. The tiles of all faces form one job list (an exclusive prefix sum over the faces);
   a ``lax.while_loop`` walks it ``jobs_per_step`` jobs at a time (a job finds its face
   with ``searchsorted``). Each job evaluates the three edge functions at its ``k``
   pixel centres, relative to the pixel centre for precision, and a depth-min scatter
   (``.at[].min``) updates the z-buffer; the nearest face id follows from the candidates
   whose depth equals the new minimum (ties: the largest face id within a step, the
   earlier step across steps).
3. Barycentrics and depth of the winning face are recomputed per pixel outside the loop,
   so they are differentiable with respect to the screen positions (interior gradients,
   no silhouette gradients; use ``soft_rasterize.py`` for those).

Limits: there is no maximum triangle size (a big triangle simply has more tiles; the loop
runs ``ceil(total tiles / jobs_per_step)`` steps, work is proportional to the summed
bounding-box area of the drawn faces). There is no near-plane clipping: a face with a
corner at depth ``<= near`` is not drawn. A pixel is covered when its centre lies inside
or on the edge of a triangle (edges are inclusive; a centre exactly on an edge shared by
two faces goes to the nearer one, or by the tie rule above).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


class Fragments(NamedTuple):
  """Per-pixel result of ``rasterize`` (a pytree, so it passes through ``jit``/``vmap``).

  Attributes:
    face_id: (h, w) int32 index of the nearest face covering the pixel centre, -1 if none.
    barycentrics: (h, w, 3) weights of the face's corners at the pixel centre (sum 1;
      screen-space, or perspective-correct when rasterised with ``perspective=True``);
      0 where empty.
    depth: (h, w) depth of the surface at the pixel centre, ``inf`` where empty.
    coverage: (h, w) bool, ``face_id >= 0``.
  """

  face_id: Int[Array, 'h w']
  barycentrics: Float[Array, 'h w 3']
  depth: Float[Array, 'h w']
  coverage: Bool[Array, 'h w']


def image_size(resolution: int | tuple[int, int]) -> tuple[int, int]:
  """``(height, width)`` of ``resolution`` (an int for square images).

  Raises:
    ValueError: if a size is not a positive integer.
  """
  height, width = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
  if int(height) != height or int(width) != width or height <= 0 or width <= 0:
    raise ValueError(f'resolution must be positive integers (height, width), got {resolution}')
  return int(height), int(width)


def orthographic_project(
  points: Float[Array, 'n 3'], cam2world: Float[Array, '4 4'], half_extent: float, resolution: int | tuple[int, int]
) -> tuple[Float[Array, 'n 2'], Float[Array, ' n']]:
  """Orthographic counterpart of ``camera.project``.

  The camera frame is OpenCV's (x right, y down, z forward); camera x and y in
  ``[-half_extent, half_extent]`` map onto the image width and height.

  Args:
    points: (n, 3) world points.
    cam2world: (4, 4) OpenCV-convention camera pose (``camera.orbit_cam2world``).
    half_extent: half the image side in world units (> 0).
    resolution: image size, int or ``(height, width)``.

  Returns:
    ``(pixels (n, 2) continuous (col, row), depth (n,) camera z)``.
  """
  if half_extent <= 0:
    raise ValueError(f'half_extent must be > 0, got {half_extent}')
  height, width = image_size(resolution)
  points, cam2world = jnp.asarray(points), jnp.asarray(cam2world)
  cam = (points - cam2world[:3, 3]) @ cam2world[:3, :3]
  size = jnp.asarray([width, height], points.dtype)
  return (cam[:, :2] / half_extent + 1.0) * size / 2.0, cam[:, 2]


def _cross(a: Array, b: Array) -> Array:
  return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _edge_weights(corners: Float[Array, '... 3 2'], centres: Float[Array, '... 2']) -> Float[Array, '... 3']:
  """Unnormalised barycentric weights (twice the sub-triangle areas) at ``centres``.

  Computed relative to the centre so the products stay small: exact inside/outside
  decisions down to ~1e-7 px for any image size. Each edge's cross product is evaluated
  with its two ends in a canonical (lexicographic) order and negated as needed, so the
  two faces sharing an edge get exactly opposite values even when the compiler fuses
  multiply-adds: a centre exactly on a shared edge (common for symmetric meshes) is then
  never missed by both faces.
  """
  d = corners - centres[..., None, :]

  def edge(p: Array, q: Array) -> Array:
    swap = (q[..., 0] < p[..., 0]) | ((q[..., 0] == p[..., 0]) & (q[..., 1] < p[..., 1]))
    low, high = jnp.where(swap[..., None], q, p), jnp.where(swap[..., None], p, q)
    value = _cross(low, high)
    return jnp.where(swap, -value, value)

  return jnp.stack(
    [edge(d[..., 1, :], d[..., 2, :]), edge(d[..., 2, :], d[..., 0, :]), edge(d[..., 0, :], d[..., 1, :])], axis=-1
  )


class _Tiling(NamedTuple):
  first: Int[Array, 'f 2']  # (col, row) of the first candidate pixel
  last: Int[Array, 'f 2']  # (col, row) of the last candidate pixel, inclusive
  tiles_x: Int[Array, ' f']
  offset: Int[Array, ' f']  # exclusive prefix sum of the tile counts
  end: Int[Array, ' f']  # inclusive prefix sum
  total: Int[Array, '']


def _tiling(
  corners: Array,
  corner_depth: Array,
  height: int,
  width: int,
  tile: int,
  *,
  cull_backfaces: bool,
  mirrored: bool,
  near: float,
  margin: float,
) -> _Tiling:
  """Per-face candidate pixel ranges (bounding box grown by ``margin`` px) as tile jobs."""
  corners, corner_depth = jax.lax.stop_gradient(corners), jax.lax.stop_gradient(corner_depth)
  area = _cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
  drawn = (area != 0) & jnp.all(jnp.isfinite(corners), axis=(1, 2)) & jnp.all(corner_depth > near, axis=1)
  if cull_backfaces:
    drawn &= (area > 0) if mirrored else (area < 0)
  size = jnp.asarray([width, height], corners.dtype)
  # Pixel i is a candidate when its centre i + 0.5 lies in [min - margin, max + margin].
  low = jnp.clip(jnp.ceil(corners.min(axis=1) - 0.5 - margin), 0, size)
  high = jnp.clip(jnp.floor(corners.max(axis=1) - 0.5 + margin), -1, size - 1)
  first, last = low.astype(jnp.int32), high.astype(jnp.int32)
  span = jnp.maximum(last - first + 1, 0)
  tiles = (span + tile - 1) // tile
  count = jnp.where(drawn, tiles[:, 0] * tiles[:, 1], 0)
  end = jnp.cumsum(count)
  return _Tiling(first, last, tiles[:, 0], end - count, end, end[-1])


class _Jobs(NamedTuple):
  face: Int[Array, ' j']  # face of each job (clamped to a valid index for dead jobs)
  live: Bool[Array, ' j']
  cols: Int[Array, 'j k']
  rows: Int[Array, 'j k']
  ok: Bool[Array, 'j k']  # candidate pixel inside the face's clipped box and the job live


def _jobs(tiling: _Tiling, start: Array, jobs_per_step: int, tile: int) -> _Jobs:
  job = start + jnp.arange(jobs_per_step, dtype=jnp.int32)
  num_faces = tiling.end.shape[0]
  face = jnp.minimum(jnp.searchsorted(tiling.end, job, side='right'), num_faces - 1).astype(jnp.int32)
  live = job < tiling.total
  local = job - tiling.offset[face]
  tiles_x = jnp.maximum(tiling.tiles_x[face], 1)
  tile_row, tile_col = local // tiles_x, local % tiles_x
  step = jnp.arange(tile, dtype=jnp.int32)
  dx = jnp.tile(step, tile)
  dy = jnp.repeat(step, tile)
  cols = (tiling.first[face, 0] + tile_col * tile)[:, None] + dx[None, :]
  rows = (tiling.first[face, 1] + tile_row * tile)[:, None] + dy[None, :]
  ok = live[:, None] & (cols <= tiling.last[face, 0][:, None]) & (rows <= tiling.last[face, 1][:, None])
  return _Jobs(face, live, cols, rows, ok)


def _pixel_centres(cols: Array, rows: Array, dtype) -> Array:
  return jnp.stack([cols.astype(dtype) + 0.5, rows.astype(dtype) + 0.5], axis=-1)


def _barycentrics_and_depth(weights: Array, corner_depth: Array, perspective: bool) -> tuple[Array, Array]:
  """Normalises edge weights; perspective-correct weights use the fact that 1/z is screen-affine."""
  screen = weights / jnp.sum(weights, axis=-1, keepdims=True)
  if not perspective:
    return screen, jnp.sum(screen * corner_depth, axis=-1)
  inverse = screen / corner_depth
  inverse_sum = jnp.sum(inverse, axis=-1, keepdims=True)
  return inverse / inverse_sum, 1.0 / inverse_sum[..., 0]


def screen_inputs(pixels_xy, depth, faces) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Converts a screen-space mesh to arrays and checks its shapes (shared by both rasterisers).

  Raises:
    ValueError: unless ``pixels_xy`` is (v, 2), ``depth`` (v,) and ``faces`` a non-empty (f, 3).
  """
  pixels_xy, depth, faces = jnp.asarray(pixels_xy), jnp.asarray(depth), jnp.asarray(faces)
  if pixels_xy.ndim != 2 or pixels_xy.shape[1] != 2 or depth.shape != pixels_xy.shape[:1]:
    raise ValueError(f'pixels_xy must be (v, 2) and depth (v,), got {pixels_xy.shape} and {depth.shape}')
  if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
    raise ValueError(f'faces must be a non-empty (f, 3) array, got {faces.shape}')
  return pixels_xy, depth, faces


def rasterize(
  pixels_xy: Float[Array, 'v 2'],
  depth: Float[Array, ' v'],
  faces: Int[Array, 'f 3'],
  resolution: int | tuple[int, int],
  *,
  cull_backfaces: bool = False,
  mirrored: bool = False,
  perspective: bool = False,
  near: float = 0.0,
  tile: int | None = None,
  jobs_per_step: int = 8192,
) -> Fragments:
  """Hard z-buffer rasterisation: the nearest triangle at every pixel centre.

  Args:
    pixels_xy: (v, 2) continuous screen positions (col, row), pixel centres at ``i + 0.5``.
    depth: (v,) depth per vertex, smaller = nearer (camera z for ``camera.project``).
    faces: (f, 3) int vertex indices.
    resolution: image size, int or ``(height, width)``.
    cull_backfaces: drop faces whose screen winding marks them as back faces (see the
      module docstring; front = negative signed area, positive when ``mirrored``).
    mirrored: the screen mapping has negative determinant (flips the culling sign).
    perspective: ``depth`` is the camera z of a perspective projection: use
      perspective-correct barycentrics and depth (1/z is screen-affine). Leave False for
      orthographic screens, where screen-space barycentrics are exact.
    near: faces with a corner at depth ``<= near`` are not drawn (no clipping).
    tile: side of the pixel tiles faces are split into (speed only). Default: 2 up to
      256 px, 4 above (fastest for heads of 10k-50k triangles in bench/rasterize_bench.py,
      where triangles span a few pixels at 256^2 and more at 512^2).
    jobs_per_step: tiles processed per loop step (speed/memory only).

  Returns:
    ``Fragments`` with (h, w) face ids, barycentrics, depth and coverage. Jit-able,
    vmap-able; differentiable with respect to ``pixels_xy`` and ``depth`` through the
    per-pixel barycentrics and depth (face selection itself is piecewise constant).

  Raises:
    ValueError: for malformed shapes or non-positive ``tile``/``jobs_per_step``.
  """
  height, width = image_size(resolution)
  pixels_xy, depth, faces = screen_inputs(pixels_xy, depth, faces)
  if tile is None:
    tile = 2 if max(height, width) <= 256 else 4
  if tile <= 0 or jobs_per_step <= 0:
    raise ValueError(f'tile and jobs_per_step must be positive, got {tile} and {jobs_per_step}')
  dtype = pixels_xy.dtype
  corners, corner_depth = pixels_xy[faces], depth.astype(dtype)[faces]
  tiling = _tiling(
    corners, corner_depth, height, width, tile, cull_backfaces=cull_backfaces, mirrored=mirrored, near=near, margin=0.0
  )
  fixed_corners, fixed_depth = jax.lax.stop_gradient(corners), jax.lax.stop_gradient(corner_depth)
  num_pixels = height * width

  def body(carry):
    start, zbuf, face_of_pixel = carry
    jobs = _jobs(tiling, start, jobs_per_step, tile)
    centres = _pixel_centres(jobs.cols, jobs.rows, dtype)
    weights = _edge_weights(fixed_corners[jobs.face][:, None], centres)
    area_sign = jnp.sign(jnp.sum(weights, axis=-1, keepdims=True))
    inside = jobs.ok & jnp.all(weights * area_sign >= 0, axis=-1)
    _, z = _barycentrics_and_depth(weights, fixed_depth[jobs.face][:, None], perspective)
    index = jnp.where(inside, jobs.rows * width + jobs.cols, num_pixels).reshape(-1)
    z = jnp.where(inside, z, jnp.inf).reshape(-1)
    new_zbuf = zbuf.at[index].min(z, mode='drop')
    safe = jnp.minimum(index, num_pixels - 1)
    wins = (index < num_pixels) & (z == new_zbuf[safe]) & (z < zbuf[safe])
    face_ids = jnp.broadcast_to(jobs.face[:, None], jobs.cols.shape).reshape(-1)
    best = jnp.full((num_pixels,), -1, jnp.int32).at[jnp.where(wins, index, num_pixels)].max(face_ids, mode='drop')
    return start + jobs_per_step, new_zbuf, jnp.where(best >= 0, best, face_of_pixel)

  init = (jnp.int32(0), jnp.full((num_pixels,), jnp.inf, dtype), jnp.full((num_pixels,), -1, jnp.int32))
  _, _, face_id = jax.lax.while_loop(lambda carry: carry[0] < tiling.total, body, init)
  face_id = face_id.reshape(height, width)
  coverage = face_id >= 0
  safe_face = jnp.maximum(face_id, 0)
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  weights = _edge_weights(corners[safe_face], _pixel_centres(cols, rows, dtype))
  # Empty pixels would divide by a face's area that may not contain them; give them a
  # harmless constant so no NaN reaches gradients.
  weights = jnp.where(coverage[..., None], weights, 1.0)
  barycentrics, pixel_depth = _barycentrics_and_depth(weights, corner_depth[safe_face], perspective)
  barycentrics = jnp.where(coverage[..., None], barycentrics, 0.0)
  return Fragments(face_id, barycentrics, jnp.where(coverage, pixel_depth, jnp.inf), coverage)


def interpolate(
  fragments: Fragments, attributes: Float[Array, 'v c'] | Float[Array, 'f 3 c'], faces: Int[Array, 'f 3'] | None = None
) -> Float[Array, 'h w c']:
  """Barycentric interpolation of per-vertex or per-corner attributes.

  Args:
    fragments: output of ``rasterize``.
    attributes: either (v, c) per-vertex values (``faces`` required), or (f, 3, c)
      per-corner values (e.g. UVs with seams: corner ``k`` of face ``i`` is
      ``attributes[i, k]``; ``faces`` unused).
    faces: (f, 3) vertex indices, for per-vertex attributes.

  Returns:
    (h, w, c) interpolated values, 0 where the pixel is empty. Differentiable with respect
    to ``attributes`` and the barycentrics.

  Raises:
    ValueError: if the attribute layout is neither of the two above.
  """
  attributes = jnp.asarray(attributes)
  if attributes.ndim == 2:
    if faces is None:
      raise ValueError('per-vertex attributes (v, c) need faces')
    corner_values = attributes[faces]
  elif attributes.ndim == 3 and attributes.shape[1] == 3:
    corner_values = attributes
  else:
    raise ValueError(f'attributes must be (v, c) or (f, 3, c), got {attributes.shape}')
  values = corner_values[jnp.maximum(fragments.face_id, 0)]
  out = jnp.einsum('hwk,hwkc->hwc', fragments.barycentrics.astype(values.dtype), values)
  return jnp.where(fragments.coverage[..., None], out, 0.0)
