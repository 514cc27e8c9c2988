"""Shape-static mouth crop and paste on the front raster (reference-spec §3.6, §9).

Legend: ``b`` batch, ``r`` canvas (front plane) side, ``k`` crop side (64), ``p`` patch side
(the mouth StyleUNet's output, 256), ``c`` channels.

The mouth box ``[row0, row1, col0, col1]`` (``hexplane_views.mouth_box``, integer pixels,
end-exclusive) is not clamped to the canvas (reference-spec §8.2). Both operations are
separable linear resamplings written as two small dense matrices per sample, built from
the box, so every shape is static, the ops are plain ``einsum``s (jit, vmap and grad work,
gradients reach the images; the box itself is an integer and carries none) and boxes that
leave the canvas need no special case.

Resampling kernel (torch ``interpolate(mode='bilinear', align_corners=False, antialias=True)``,
the reference's choice): output pixel ``t`` of an ``n``-pixel axis covering source interval
``[a, a + S)`` has its centre at ``u = a + (t + 0.5) S / n``; a source pixel ``j`` (centre
``j + 0.5``) weighs ``max(0, 1 - |j + 0.5 - u| / s)`` with ``s = max(S / n, 1)``, and the
weights are normalised to sum to 1. For ``S <= n`` (up-sampling) this is plain bilinear
interpolation; for ``S > n`` the triangle is widened by the scale factor (antialiasing).

* ``mouth_crop``: the box (~30-50 px in the 256² plane) onto a 64² grid, i.e. up-sampling,
  so bilinear. The canvas is treated as zero outside ``[0, r)`` and taps may lie just outside
  the box: the crop samples the plane itself at the grid points. The reference slices the box
  first and resizes the slice, which clamps to the box edge within half a canvas pixel of it;
  that is the only difference (and it has no zero padding: negative box bounds wrap around
  in its Python slicing).
* ``mouth_paste``: the 256² patch down to the box size (about x1/6, antialiased as above, taps
  normalised over the patch, exactly torch's resize), written over the box with a hard mask
  (no feathering, as the reference); box pixels outside the canvas are dropped. Outside the
  box the canvas is returned unchanged, bit for bit.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

CROP_SIZE = 64


def _triangle_weights(
  centres: Float[Array, ' n'], support: Float[Array, ''], taps: Float[Array, ' m']
) -> Float[Array, 'n m']:
  """Unnormalised triangle weights ``max(0, 1 - |tap + 0.5 - centre| / support)``, (n, m)."""
  return jnp.maximum(0.0, 1.0 - jnp.abs(taps[None, :] + 0.5 - centres[:, None]) / support)


def _crop_matrix(start: Int[Array, ''], stop: Int[Array, ''], size: int, canvas: int) -> Float[Array, 'k r']:
  """(size, canvas) weights resampling canvas interval [start, stop) onto ``size`` pixels, zero outside the canvas."""
  length = jnp.maximum(stop - start, 1).astype(jnp.float32)
  scale = length / size
  centres = start + (jnp.arange(size, dtype=jnp.float32) + 0.5) * scale
  support = jnp.maximum(scale, 1.0)
  # Normalise over the whole integer line (canvas plus ``canvas`` pixels of zero padding on
  # each side, wider than any kernel that touches the canvas), then keep the canvas taps.
  taps = jnp.arange(-canvas, 2 * canvas, dtype=jnp.float32)
  weights = _triangle_weights(centres, support, taps)
  weights = weights / jnp.maximum(jnp.sum(weights, axis=1, keepdims=True), 1e-12)
  return weights[:, canvas : 2 * canvas]


def _paste_matrix(start: Int[Array, ''], stop: Int[Array, ''], patch: int, canvas: int) -> Float[Array, 'r p']:
  """(canvas, patch) weights: canvas pixel ``start + t`` gets the patch resized to ``stop - start`` pixels; else 0."""
  length = jnp.maximum(stop - start, 1)
  scale = patch / length.astype(jnp.float32)
  local = jnp.arange(canvas) - start  # box-local output index of each canvas pixel
  centres = (local.astype(jnp.float32) + 0.5) * scale
  weights = _triangle_weights(centres, jnp.maximum(scale, 1.0), jnp.arange(patch, dtype=jnp.float32))
  weights = weights / jnp.maximum(jnp.sum(weights, axis=1, keepdims=True), 1e-12)
  inside = (local >= 0) & (local < stop - start)
  return jnp.where(inside[:, None], weights, 0.0)


def _check(images: Array, box: Array, name: str) -> None:
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise ValueError(f'{name} must be square (b, r, r, c), got {images.shape}')
  if box.shape != (images.shape[0], 4):
    raise ValueError(f'box must be (b, 4) = [row0, row1, col0, col1] per sample, got {box.shape}')


def mouth_crop(
  front: Float[Array, 'b r r c'], box: Int[Array, 'b 4'], size: int = CROP_SIZE
) -> Float[Array, 'b k k c']:
  """Resamples each sample's mouth box of ``front`` onto a ``size``² grid (see module doc).

  Args:
    front: (b, r, r, c) front-view features (plane 0, channels of the front view).
    box: (b, 4) int ``[row0, row1, col0, col1]`` pixels, end-exclusive, may leave the canvas.
    size: crop side (64 in the reference).

  Returns:
    (b, size, size, c) crops; differentiable with respect to ``front``.

  Raises:
    ValueError: for non-square images or a box that is not (b, 4).
  """
  front, box = jnp.asarray(front), jnp.asarray(box)
  _check(front, box, 'front')
  canvas = front.shape[1]

  def one(image: Array, bounds: Array) -> Array:
    rows = _crop_matrix(bounds[0], bounds[1], size, canvas).astype(image.dtype)
    cols = _crop_matrix(bounds[2], bounds[3], size, canvas).astype(image.dtype)
    return jnp.einsum('kh,lw,hwc->klc', rows, cols, image)

  return jax.vmap(one)(front, box)


def mouth_paste(
  front: Float[Array, 'b r r c'], patch: Float[Array, 'b p p c'], box: Int[Array, 'b 4']
) -> Float[Array, 'b r r c']:
  """Writes each ``patch``, resized to its box, over the box of ``front`` (hard mask; see module doc).

  Args:
    front: (b, r, r, c) front-view features.
    patch: (b, p, p, c) mouth features (the mouth StyleUNet output, p = 256).
    box: (b, 4) int ``[row0, row1, col0, col1]``, as ``mouth_crop``.

  Returns:
    (b, r, r, c): ``front`` outside the box (exactly), the resized patch inside. Differentiable
    with respect to ``front`` (outside the box) and ``patch``.

  Raises:
    ValueError: for non-square images, mismatched batch/channels, or a box that is not (b, 4).
  """
  front, patch, box = jnp.asarray(front), jnp.asarray(patch), jnp.asarray(box)
  _check(front, box, 'front')
  _check(patch, box, 'patch')
  if patch.shape[-1] != front.shape[-1]:
    raise ValueError(f'patch has {patch.shape[-1]} channels, front {front.shape[-1]}')
  canvas, size = front.shape[1], patch.shape[1]

  def one(image: Array, mouth: Array, bounds: Array) -> Array:
    rows = _paste_matrix(bounds[0], bounds[1], size, canvas).astype(mouth.dtype)
    cols = _paste_matrix(bounds[2], bounds[3], size, canvas).astype(mouth.dtype)
    # Rows first: (r, p) @ (p, p, c) then columns; both matrices are zero outside the box.
    pasted = jnp.einsum('lw,kwc->klc', cols, jnp.einsum('kh,hwc->kwc', rows, mouth))
    pixel = jnp.arange(canvas)
    row_in = (pixel >= bounds[0]) & (pixel < bounds[1])
    col_in = (pixel >= bounds[2]) & (pixel < bounds[3])
    return jnp.where((row_in[:, None] & col_in[None, :])[..., None], pasted, image)

  return jax.vmap(one)(front, patch, box)
