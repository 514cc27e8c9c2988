"""Camera rays and the depths sampled along them: stratified (coarse) and importance (fine).

Legend: ``b`` batch, ``r`` rays per image (``h * w``, row-major), ``s`` coarse samples
per ray, ``n`` importance samples per ray, ``h w`` image rows/columns.

Rays follow docs/conventions.md: origins at the camera centre, unit directions through
pixel centres, so depths along a ray are Euclidean distances in world units. The sample
range is either the reference's fixed ``[ray_start, ray_end]`` (20 to 25 around a camera
at 22.5) or, our default, the ray's intersection with the feature cube (reference-spec
§8.2, §9): with 48 fixed samples over 5 units only about 10 land in the unit cube.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from head360_jax.geometry import camera

# Below this |direction component| the slab test treats the ray as parallel to the slab.
_PARALLEL_EPS = 1e-12
# sample_pdf constants of the reference (renderer.py): weight floor and denominator guard.
_PDF_EPS = 1e-5
_SMOOTHING_FLOOR = 0.01


def rays_from_camera(
  c: Float[Array, 'b 25'], resolution: int | tuple[int, int]
) -> tuple[Float[Array, 'b r 3'], Float[Array, 'b r 3']]:
  """Rays through the pixel centres of a camera label (EG3D/Head360 ``RaySampler``).

  Pixel (row i, column j) has normalised image coordinates ``((j + 0.5)/w, (i + 0.5)/h)``
  and is lifted to the camera-space point ``((x - cx + cy·sk/fy - sk·y/fy)/fx,
  (y - cy)/fy, 1)`` (``sk`` = intrinsics[0, 1], the skew), rotated into the world.

  Args:
    c: (b, 25) camera labels (docs/conventions.md).
    resolution: image side ``h = w``, or ``(h, w)``.

  Returns:
    ``(origins, directions)``, each (b, h·w, 3) in world units; ray ``i·w + j`` passes
    through pixel (i, j); directions have unit length.

  Raises:
    ValueError: if ``c`` is not a 25-d label.
  """
  cam2world, intrinsics = camera.unpack_label(jnp.asarray(c))
  height, width = resolution if isinstance(resolution, tuple | list) else (resolution, resolution)
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  x = ((cols + 0.5) / width).reshape(-1).astype(cam2world.dtype)
  y = ((rows + 0.5) / height).reshape(-1).astype(cam2world.dtype)
  fx, fy, cx, cy, sk = (intrinsics[:, i, j, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2), (0, 1)))
  x_cam = (x - cx + cy * sk / fy - sk * y / fy) / fx
  y_cam = (y - cy) / fy
  points = jnp.stack([x_cam, y_cam, jnp.ones_like(x_cam)], axis=-1)
  # The reference maps the homogeneous point through cam2world and subtracts the centre;
  # rotating the camera-space offset directly is the same ray without the cancellation.
  directions = jnp.einsum('bij,brj->bri', cam2world[:, :3, :3], points)
  directions = directions / jnp.maximum(jnp.linalg.norm(directions, axis=-1, keepdims=True), 1e-12)
  origins = jnp.broadcast_to(cam2world[:, None, :3, 3], directions.shape)
  return origins, directions


def ray_box_intersection(
  origins: Float[Array, 'b r 3'], directions: Float[Array, 'b r 3'], box_half: float = 0.5
) -> tuple[Float[Array, 'b r 1'], Float[Array, 'b r 1']]:
  """Where rays enter and leave the cube ``[-box_half, box_half]³`` (slab test).

  Args:
    origins: (b, r, 3) world units.
    directions: (b, r, 3) unit directions.
    box_half: half the cube side in world units (``box_warp / 2``; the planes' extent).

  Returns:
    ``(near, far)``, each (b, r, 1): distances along the ray (world units) with
    ``0 <= near <= far``; a ray starting inside the cube gets ``near = 0``. A ray that
    misses (or only grazes) the cube gets the degenerate range ``near = far`` at its
    closest approach to the cube's centre (so ``far > near`` tells hits): all its
    intervals have zero length, so compositing gives it zero weight.
  """
  safe = jnp.where(jnp.abs(directions) < _PARALLEL_EPS, _PARALLEL_EPS, directions)
  t0, t1 = (-box_half - origins) / safe, (box_half - origins) / safe
  near = jnp.maximum(jnp.max(jnp.minimum(t0, t1), axis=-1, keepdims=True), 0.0)
  far = jnp.min(jnp.maximum(t0, t1), axis=-1, keepdims=True)
  hit = far > near
  closest = jnp.maximum(-jnp.sum(origins * directions, axis=-1, keepdims=True), 0.0)
  return jnp.where(hit, near, closest), jnp.where(hit, far, closest)


def stratified_samples(
  near: Float[Array, 'b r 1'], far: Float[Array, 'b r 1'], num_samples: int, key: Array | None = None
) -> Float[Array, 'b r s 1']:
  """Coarse depths: one sample in each of ``num_samples`` equal bins of ``[near, far]``.

  With a key, sample k is uniform in bin k (``near + (k + u)·(far − near)/s``); we jitter
  where the reference does not (reference-spec §8.2: its jitter lines are commented out,
  EG3D jitters). Without a key the samples are ``linspace(near, far, s)``, the
  reference's deterministic coarse depths: sample k sits at fraction ``k/(s − 1)`` of bin
  k, so both ends of the range are sampled.

  Args:
    near: (b, r, 1) or scalar, world units.
    far: (b, r, 1) or scalar, ``>= near``.
    num_samples: ``s``.
    key: PRNG key for the jitter, or None.

  Returns:
    (b, r, s, 1) increasing depths (non-decreasing for degenerate ranges).
  """
  near, far = jnp.asarray(near, jnp.float32)[..., None], jnp.asarray(far, jnp.float32)[..., None]
  shape = jnp.broadcast_shapes(near.shape, far.shape)[:-2] + (num_samples, 1)
  if key is None:
    fraction = jnp.broadcast_to(jnp.linspace(0.0, 1.0, num_samples)[:, None], shape)
  else:
    fraction = (jnp.arange(num_samples)[:, None] + jax.random.uniform(key, shape)) / num_samples
  return near + fraction * (far - near)


def smooth_weights(weights: Float[Array, 'b r k']) -> Float[Array, 'b r k']:
  """The reference's weight smoothing: max-pool (2, stride 1, pad 1), avg-pool (2, stride 1), + 0.01."""
  padded = jnp.concatenate([weights[..., :1], weights, weights[..., -1:]], axis=-1)
  maxed = jnp.maximum(padded[..., :-1], padded[..., 1:])
  return (maxed[..., :-1] + maxed[..., 1:]) / 2.0 + _SMOOTHING_FLOOR


def importance_samples(
  depths: Float[Array, 'b r s'], weights: Float[Array, 'b r s-1'], num_samples: int, key: Array | None = None
) -> Float[Array, 'b r n']:
  """Fine depths drawn from the coarse weights by inverse CDF (reference ``sample_importance``).

  The s − 1 interval weights are smoothed (``smooth_weights``); the bins are the s − 1
  interval midpoints. As in the reference's ``sample_pdf``, weights 1..s−3 (+1e-5) form
  the pdf over the bins ``[mid_{j}, mid_{j+1}]``, j < s − 2, so the last bin is never
  sampled (a reference quirk the golden keeps). No gradient flows through the samples.

  Args:
    depths: (b, r, s) coarse depths, increasing along each ray (world units).
    weights: (b, r, s − 1) compositing weights of the coarse intervals (``volume.composite``).
    num_samples: ``n``.
    key: PRNG key, or None for the reference's deterministic ``u = linspace(0, 1, n)``.
      With a key, ``u`` is stratified: ``(k + U[0, 1))/n``.

  Returns:
    (b, r, n) depths in ``[mid_0, mid_{s−3}]``, not sorted against ``depths``.

  Raises:
    ValueError: if ``weights`` does not have one entry fewer than ``depths`` or s < 4.
  """
  depths, weights = jax.lax.stop_gradient(depths), jax.lax.stop_gradient(weights)
  num_coarse = depths.shape[-1]
  if weights.shape[-1] != num_coarse - 1 or num_coarse < 4:
    raise ValueError(f'need s >= 4 depths and s - 1 interval weights; got {depths.shape} and {weights.shape}')
  bins = (depths[..., 1:] + depths[..., :-1]) / 2.0
  pdf = smooth_weights(weights.astype(jnp.float32))[..., 1:-1] + _PDF_EPS
  pdf = pdf / jnp.sum(pdf, axis=-1, keepdims=True)
  cdf = jnp.concatenate([jnp.zeros_like(pdf[..., :1]), jnp.cumsum(pdf, axis=-1)], axis=-1)  # (b, r, s - 2)
  if key is None:
    u = jnp.broadcast_to(jnp.linspace(0.0, 1.0, num_samples), (*cdf.shape[:-1], num_samples))
  else:
    u = (jnp.arange(num_samples) + jax.random.uniform(key, (*cdf.shape[:-1], num_samples))) / num_samples
  # searchsorted(cdf, u, side='right') as a count, which batches without a vmap.
  index = jnp.sum(cdf[..., None, :] <= u[..., None], axis=-1)
  below = jnp.maximum(index - 1, 0)
  above = jnp.minimum(index, cdf.shape[-1] - 1)
  cdf_below, cdf_above = jnp.take_along_axis(cdf, below, -1), jnp.take_along_axis(cdf, above, -1)
  bin_below, bin_above = jnp.take_along_axis(bins, below, -1), jnp.take_along_axis(bins, above, -1)
  denominator = cdf_above - cdf_below
  denominator = jnp.where(denominator < _PDF_EPS, 1.0, denominator)
  return bin_below + (u - cdf_below) / denominator * (bin_above - bin_below)
