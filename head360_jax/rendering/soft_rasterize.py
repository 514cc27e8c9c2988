"""Soft (differentiable) rasterisation: SoftRas-style silhouettes and attribute images.

Legend: ``v`` vertices, ``f`` faces, ``h w`` image rows/columns, ``c`` attribute
channels, ``p`` pixels (``h * w``), ``j`` jobs of one loop step, ``k`` pixels of a tile.

Screen conventions, winding and the tile/job enumeration are those of ``rasterize.py``.
Following SoftRas (Liu et al., "Soft Rasterizer", ICCV 2019, Eq. 1-6), every face ``i``
near a pixel centre ``q`` contributes a probability

    D_i(q) = sigmoid(s_i(q) d_i(q)^2 / sigma),  s_i = +1 inside the triangle, -1 outside,

with ``d_i`` the screen distance (pixels) from ``q`` to the triangle's boundary and
``sigma`` in px^2. Aggregation:

* silhouette ``1 - prod_i (1 - D_i)``, accumulated as a sum of ``log(1 - D_i) =
  -softplus(s_i d_i^2 / sigma)`` so it stays finite deep inside triangles;
* attributes: ``sum_i w_i a_i / (sum_i w_i + w_bg)`` with ``w_i = D_i exp(z_i / gamma)``,
  ``z_i = (far - depth_i) / (far - near)`` clipped to [0, 1] (nearer = larger),
  ``w_bg = exp(eps / gamma)``, background attributes 0; ``a_i`` and ``depth_i`` are
  interpolated with the barycentrics of the nearest point of the triangle (clipped
  and renormalised, as SoftRas does). Exponents are shifted by their per-pixel maximum
  (an online max of ``log w_i`` over loop steps, background included, so the
  denominator never underflows), which leaves the ratio unchanged.

Only faces whose bounding box grown by ``sqrt(sigma * log(1 / tol - 1))`` pixels
contains the pixel centre are visited, i.e. contributions with ``D_i < tol`` are
truncated (``tol`` = 1e-6: the silhouette changes by at most about ``tol`` per face
when a pixel enters or leaves a box). A truncated face's attribute weight is below
``tol * exp(dz / gamma)`` relative to a kept face ``dz`` further away in normalised
depth: negligible unless a much nearer face lies just outside its box and ``gamma`` is
small (SoftRas truncates the same way); ``gamma = 0.1`` bounds it by 0.02 for any
``dz``.

The sums run in a ``lax.while_loop`` over the job list (no size limit) and get their
reverse-mode derivative from a ``jax.custom_vjp`` that walks the same jobs again, so
memory stays at one step's worth of candidates. Gradients reach the screen positions,
depths and attributes; the face enumeration, culling and the per-pixel exponent shift
are piecewise constant and treated as such.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from head360_jax.rendering.rasterize import _edge_weights, _jobs, _pixel_centres, _tiling, image_size, screen_inputs

_TRUNCATION = 1e-6


class SoftImage(NamedTuple):
  """Output of ``soft_rasterize``.

  Attributes:
    silhouette: (h, w) soft coverage in [0, 1].
    attributes: (h, w, c) depth-aggregated attributes (background 0).
  """

  silhouette: Float[Array, 'h w']
  attributes: Float[Array, 'h w c']


class _Config(NamedTuple):
  height: int
  width: int
  sigma: float
  gamma: float
  background_eps: float
  cull_backfaces: bool
  mirrored: bool
  near_cull: float
  tile: int
  jobs_per_step: int


def _terms(
  corners: Array, corner_depth: Array, corner_attr: Array, centres: Array, depth_range: Array, config: _Config
) -> tuple[Array, Array, Array]:
  """Per-candidate ``log(1 - D)``, ``log w = log D + z / gamma`` and attribute for (j, k) candidates."""
  corners = corners[:, None]  # (j, 1, 3, 2)
  weights = _edge_weights(corners, centres)  # (j, k, 3)
  area = jnp.sum(weights, axis=-1, keepdims=True)
  barycentric = weights / jnp.where(area == 0, 1.0, area)
  inside = jnp.all(barycentric >= 0, axis=-1)
  edge = jnp.roll(corners, -1, axis=-2) - corners  # edge i runs from corner i to corner i + 1
  offset = centres[..., None, :] - corners
  length2 = jnp.maximum(jnp.sum(edge * edge, axis=-1), 1e-12)
  t = jnp.clip(jnp.sum(offset * edge, axis=-1) / length2, 0.0, 1.0)
  distance2 = jnp.min(jnp.sum((offset - t[..., None] * edge) ** 2, axis=-1), axis=-1)
  logit = jnp.where(inside, 1.0, -1.0) * distance2 / config.sigma
  log_transmit = -jax.nn.softplus(logit)
  log_probability = -jax.nn.softplus(-logit)
  clipped = jnp.maximum(barycentric, 0.0)
  clipped = clipped / jnp.sum(clipped, axis=-1, keepdims=True)
  depth = jnp.sum(clipped * corner_depth[:, None, :], axis=-1)
  near, far = depth_range[0], depth_range[1]
  log_weight = log_probability + jnp.clip((far - depth) / (far - near), 0.0, 1.0) / config.gamma
  attr = jnp.einsum('jkt,jtc->jkc', clipped, corner_attr)
  return log_transmit, log_weight, attr


def _step(config: _Config, tiling, start, corners, corner_depth, corner_attr, depth_range):
  jobs = _jobs(tiling, start, config.jobs_per_step, config.tile)
  centres = _pixel_centres(jobs.cols, jobs.rows, corners.dtype)
  num_pixels = config.height * config.width
  index = jnp.where(jobs.ok, jobs.rows * config.width + jobs.cols, num_pixels)
  face = jobs.face
  terms = _terms(corners[face], corner_depth[face], corner_attr[face], centres, depth_range, config)
  return jobs, index, terms


def _forward(config: _Config, corners, corner_depth, corner_attr, depth_range):
  tiling = _tiling(
    corners,
    corner_depth,
    config.height,
    config.width,
    config.tile,
    cull_backfaces=config.cull_backfaces,
    mirrored=config.mirrored,
    near=config.near_cull,
    margin=math.sqrt(config.sigma * math.log(1.0 / _TRUNCATION - 1.0)),
  )
  num_pixels = config.height * config.width
  channels = corner_attr.shape[-1]
  dtype = corners.dtype

  def body(carry):
    start, shift, log_transmit, weight, weighted = carry
    jobs, index, (log_t, log_weight, attr) = _step(
      config, tiling, start, corners, corner_depth, corner_attr, depth_range
    )
    flat = index.reshape(-1)
    log_weight = jnp.where(jobs.ok, log_weight, -jnp.inf).reshape(-1)
    new_shift = shift.at[flat].max(log_weight, mode='drop')
    rescale = jnp.exp(shift - new_shift)
    w = jnp.exp(log_weight - new_shift[jnp.minimum(flat, num_pixels - 1)])
    log_transmit = log_transmit.at[flat].add(log_t.reshape(-1), mode='drop')
    weight = (weight * rescale).at[flat].add(w, mode='drop')
    weighted = (
      (weighted * rescale[:, None]).at[flat].add(w[:, None] * attr.reshape(flat.shape[0], channels), mode='drop')
    )
    return start + config.jobs_per_step, new_shift, log_transmit, weight, weighted

  init = (
    jnp.int32(0),
    jnp.full((num_pixels,), config.background_eps / config.gamma, dtype),
    jnp.zeros((num_pixels,), dtype),
    jnp.zeros((num_pixels,), dtype),
    jnp.zeros((num_pixels, channels), dtype),
  )
  _, shift, log_transmit, weight, weighted = jax.lax.while_loop(lambda c: c[0] < tiling.total, body, init)
  return (log_transmit, weight, weighted, shift), tiling


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _soft_sums(config, corners, corner_depth, corner_attr, depth_range):
  return _forward(config, corners, corner_depth, corner_attr, depth_range)[0]


def _soft_sums_fwd(config, corners, corner_depth, corner_attr, depth_range):
  sums, tiling = _forward(config, corners, corner_depth, corner_attr, depth_range)
  return sums, (corners, corner_depth, corner_attr, depth_range, sums[3], tiling)


def _soft_sums_bwd(config, residuals, cotangents):
  corners, corner_depth, corner_attr, depth_range, shift, tiling = residuals
  ct_log_transmit, ct_weight, ct_weighted, _ = cotangents  # the shift is piecewise constant
  num_pixels = config.height * config.width
  num_faces = corners.shape[0]

  def body(carry):
    start, g_corners, g_depth, g_attr = carry
    jobs = _jobs(tiling, start, config.jobs_per_step, config.tile)
    centres = _pixel_centres(jobs.cols, jobs.rows, corners.dtype)
    index = jnp.where(jobs.ok, jobs.rows * config.width + jobs.cols, num_pixels)
    safe = jnp.minimum(index, num_pixels - 1)
    mask = jobs.ok.astype(corners.dtype)

    def contributions(c, d, a):
      log_t, log_weight, attr = _terms(c, d, a, centres, depth_range, config)
      w = jnp.exp(log_weight - shift[safe])
      return log_t * mask, w * mask, w[..., None] * attr * mask[..., None]

    face = jobs.face
    _, vjp = jax.vjp(contributions, corners[face], corner_depth[face], corner_attr[face])
    g_c, g_d, g_a = vjp((ct_log_transmit[safe], ct_weight[safe], ct_weighted[safe]))
    target = jnp.where(jobs.live, face, num_faces)
    return (
      start + config.jobs_per_step,
      g_corners.at[target].add(g_c, mode='drop'),
      g_depth.at[target].add(g_d, mode='drop'),
      g_attr.at[target].add(g_a, mode='drop'),
    )

  init = (jnp.int32(0), jnp.zeros_like(corners), jnp.zeros_like(corner_depth), jnp.zeros_like(corner_attr))
  _, g_corners, g_depth, g_attr = jax.lax.while_loop(lambda c: c[0] < tiling.total, body, init)
  return g_corners, g_depth, g_attr, jnp.zeros_like(depth_range)


_soft_sums.defvjp(_soft_sums_fwd, _soft_sums_bwd)


def soft_rasterize(
  pixels_xy: Float[Array, 'v 2'],
  depth: Float[Array, ' v'],
  faces: Int[Array, 'f 3'],
  resolution: int | tuple[int, int],
  attributes: Float[Array, 'v c'] | Float[Array, 'f 3 c'] | None = None,
  *,
  sigma: float = 0.5,
  gamma: float = 1e-3,
  background_eps: float = 1e-3,
  depth_range: tuple[float, float] | None = None,
  cull_backfaces: bool = False,
  mirrored: bool = False,
  near: float = 0.0,
  tile: int = 4,
  jobs_per_step: int = 4096,
) -> SoftImage:
  """SoftRas-style differentiable rasterisation (see the module docstring for the model).

  Args:
    pixels_xy: (v, 2) continuous screen positions (col, row), pixel centres at ``i + 0.5``.
    depth: (v,) depth per vertex, smaller = nearer.
    faces: (f, 3) int vertex indices.
    resolution: image size, int or ``(height, width)``.
    attributes: optional (v, c) per-vertex or (f, 3, c) per-corner values to aggregate.
    sigma: edge sharpness in px^2 (> 0); smaller is closer to the hard rasteriser.
    gamma: depth-aggregation temperature (> 0); smaller favours the nearest face more.
    background_eps: normalised depth of the background in the aggregation.
    depth_range: ``(near, far)`` for normalising depth; defaults to the vertices' range.
    cull_backfaces, mirrored, near: as in ``rasterize.rasterize``.
    tile, jobs_per_step: speed/memory only, as in ``rasterize.rasterize``.

  Returns:
    ``SoftImage(silhouette (h, w), attributes (h, w, c))`` (c = 0 without attributes).
    Gradients with respect to ``pixels_xy``, ``depth`` and ``attributes`` are finite.

  Raises:
    ValueError: for malformed shapes or non-positive ``sigma``/``gamma``/``tile``.
  """
  height, width = image_size(resolution)
  pixels_xy, depth, faces = screen_inputs(pixels_xy, depth, faces)
  if sigma <= 0 or gamma <= 0 or tile <= 0 or jobs_per_step <= 0:
    raise ValueError(
      f'sigma, gamma, tile, jobs_per_step must be positive, got {sigma}, {gamma}, {tile}, {jobs_per_step}'
    )
  dtype = pixels_xy.dtype
  if attributes is None:
    corner_attr = jnp.zeros((faces.shape[0], 3, 0), dtype)
  else:
    attributes = jnp.asarray(attributes, dtype)
    if attributes.ndim == 2 and attributes.shape[0] == pixels_xy.shape[0]:
      corner_attr = attributes[faces]
    elif attributes.ndim == 3 and attributes.shape[:2] == faces.shape:
      corner_attr = attributes
    else:
      raise ValueError(f'attributes must be (v, c) or (f, 3, c), got {attributes.shape}')
  depth = depth.astype(dtype)
  if depth_range is None:
    fixed = jax.lax.stop_gradient(depth)
    low, high = jnp.min(fixed), jnp.max(fixed)
    depth_range = jnp.stack([low, jnp.where(high > low, high, low + 1.0)])
  else:
    depth_range = jnp.asarray(depth_range, dtype)
  config = _Config(
    height,
    width,
    float(sigma),
    float(gamma),
    float(background_eps),
    cull_backfaces,
    mirrored,
    float(near),
    tile,
    jobs_per_step,
  )
  log_transmit, weight, weighted, shift = _soft_sums(config, pixels_xy[faces], depth[faces], corner_attr, depth_range)
  background = jnp.exp(background_eps / gamma - jax.lax.stop_gradient(shift))
  attributes_image = weighted / (weight + background)[:, None]
  silhouette = -jnp.expm1(log_transmit)
  return SoftImage(silhouette.reshape(height, width), attributes_image.reshape(height, width, corner_attr.shape[-1]))
