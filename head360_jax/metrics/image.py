"""Full-reference image metrics: L1, PSNR and SSIM, batched, pure and jit-able.

Legend: ``b`` batch, ``h w`` image height and width in pixels, ``c`` channels. Images are
NHWC; by default in [-1, 1] (``data_range=2``, the max minus the min of the value range).
Each function returns one value per image, ``(b,)``.

PSNR and SSIM match scikit-image 0.26 (``skimage.metrics.peak_signal_noise_ratio`` and
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
channel_axis=-1)``, the settings its docs give for Wang et al. 2004) to float32 rounding
(~1e-6), and add an optional per-pixel mask ``(b, h, w)`` or ``(b, h, w, 1)`` in [0, 1]:
a mask-weighted mean replaces the plain mean over pixels (and channels). A mask whose
weights sum to 0 gives nan.

Arithmetic is float32 (float64 for float64 inputs with ``jax_enable_x64``) and uses no
matrix products, so GPUs' TF32 default does not apply.
"""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

# Wang et al. 2004, Sec. III-C: C1 = (K1 L)^2, C2 = (K2 L)^2, an 11x11 Gaussian window, sigma 1.5.
K1, K2 = 0.01, 0.03
SIGMA = 1.5
TRUNCATE = 3.5  # skimage's choice: radius int(3.5 * 1.5 + 0.5) = 5, i.e. 11 taps
RADIUS = int(TRUNCATE * SIGMA + 0.5)


def gaussian_taps(sigma: float = SIGMA, radius: int = RADIUS) -> np.ndarray:
  """The normalised 1-D Gaussian of ``scipy.ndimage.gaussian_filter``, ``(2 radius + 1,)`` float64."""
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  taps = np.exp(-0.5 * x**2 / sigma**2)
  return taps / taps.sum()


def _check_pair(name: str, x: Array, y: Array) -> None:
  if x.shape != y.shape or x.ndim != 4:
    raise ValueError(f'{name} expects two (b, h, w, c) batches of one shape, got {x.shape} and {y.shape}')


def _mask_weights(mask: Array, shape: tuple[int, ...]) -> Float[Array, 'b h w 1']:
  """``mask`` ``(b, h, w)`` or ``(b, h, w, 1)`` as ``(b, h, w, 1)``; ``shape`` is the images' ``(b, h, w, c)``."""
  b, h, w, _ = shape
  if mask.shape not in ((b, h, w), (b, h, w, 1)):
    raise ValueError(f'mask must be (b, h, w) or (b, h, w, 1) = {(b, h, w)} for images {shape}, got {mask.shape}')
  return mask.reshape(b, h, w, 1)


def _dtype(x: Array, y: Array):
  return jnp.promote_types(jnp.result_type(x, y), jnp.float32)


def _weighted_mean(values: Float[Array, 'b h w c'], mask: Array | None) -> Float[Array, ' b']:
  """Mean over pixels and channels per image; with ``mask`` each pixel weighted (module docstring)."""
  if mask is None:
    return jnp.mean(values, axis=(1, 2, 3))
  weights = _mask_weights(mask, values.shape).astype(values.dtype)
  return jnp.sum(weights * values, axis=(1, 2, 3)) / (values.shape[-1] * jnp.sum(weights, axis=(1, 2, 3)))


def l1(
  x: Float[Array, 'b h w c'],
  y: Float[Array, 'b h w c'],
  *,
  mask: Float[Array, 'b h w'] | Float[Array, 'b h w 1'] | None = None,
) -> Float[Array, ' b']:
  """Mean absolute error per image, in the images' units (e.g. [0, 2] for images in [-1, 1]).

  Args:
    x: images, NHWC.
    y: images like ``x``.
    mask: optional pixel weights in [0, 1]; the mean becomes ``sum(mask |x - y|) / (c sum(mask))``.

  Returns:
    ``(b,)`` mean absolute errors; nan where the mask sums to 0.

  Raises:
    ValueError: as ``psnr``.
  """
  _check_pair('l1', x, y)
  dtype = _dtype(x, y)
  return _weighted_mean(jnp.abs(x.astype(dtype) - y.astype(dtype)), mask)


def psnr(
  x: Float[Array, 'b h w c'],
  y: Float[Array, 'b h w c'],
  *,
  data_range: float = 2.0,
  mask: Float[Array, 'b h w'] | Float[Array, 'b h w 1'] | None = None,
) -> Float[Array, ' b']:
  """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB, per image.

  Args:
    x: images, NHWC (either order: PSNR is symmetric).
    y: images like ``x``.
    data_range: max minus min of the value range (2 for [-1, 1], 1 for [0, 1], 255 for uint8).
    mask: optional pixel weights in [0, 1]; the MSE becomes ``sum(mask (x - y)^2) / (c sum(mask))``.

  Returns:
    ``(b,)`` PSNR in dB; ``inf`` where the (masked) images are equal.

  Raises:
    ValueError: if ``x`` and ``y`` differ in shape or are not 4-D, or ``mask`` is not
      ``(b, h, w)`` or ``(b, h, w, 1)``.
  """
  _check_pair('psnr', x, y)
  dtype = _dtype(x, y)
  mse = _weighted_mean((x.astype(dtype) - y.astype(dtype)) ** 2, mask)
  return 10.0 * jnp.log10(data_range**2 / mse)


def _filter_valid(a: Float[Array, 'b h w n'], taps: np.ndarray) -> Float[Array, 'b h-2r w-2r n']:
  """Separable correlation with ``taps`` along h then w, 'valid' part only (no padding).

  skimage filters with 'reflect' padding and then crops ``radius`` pixels from each side;
  the kept pixels' windows never reach the padding, so the valid part is that crop.
  """
  k = len(taps)
  taps = taps.astype(a.dtype)
  h, w = a.shape[1] - k + 1, a.shape[2] - k + 1
  a = sum(taps[t] * a[:, t : t + h] for t in range(k))
  return sum(taps[t] * a[:, :, t : t + w] for t in range(k))


def ssim_map(
  x: Float[Array, 'b h w c'], y: Float[Array, 'b h w c'], *, data_range: float = 2.0
) -> Float[Array, 'b h-10 w-10 c']:
  """Per-pixel, per-channel SSIM (Wang et al. 2004, Eq. 13 with the Gaussian window of Sec. III-C).

  ``SSIM = (2 ux uy + C1)(2 sxy + C2) / ((ux^2 + uy^2 + C1)(sx^2 + sy^2 + C2))`` with the
  local means, variances and covariance weighted by an 11-tap, sigma 1.5 Gaussian (population
  statistics, not sample ones), ``C1 = (0.01 data_range)^2``, ``C2 = (0.03 data_range)^2``.

  Returns:
    The map for the pixels at least 5 from every border (skimage's crop before its mean).

  Raises:
    ValueError: if ``x`` and ``y`` differ in shape or are not 4-D, or ``h`` or ``w`` is below 11.
  """
  _check_pair('ssim', x, y)
  if min(x.shape[1:3]) < 2 * RADIUS + 1:
    raise ValueError(f'ssim needs h, w >= {2 * RADIUS + 1} (the Gaussian window), got {x.shape[1:3]}')
  dtype = _dtype(x, y)
  x, y = x.astype(dtype), y.astype(dtype)
  c = x.shape[-1]
  # One filter pass over the five statistics stacked along channels.
  moments = _filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1), gaussian_taps())
  ux, uy, uxx, uyy, uxy = (moments[..., i * c : (i + 1) * c] for i in range(5))
  vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
  c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
  return (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))


def ssim(
  x: Float[Array, 'b h w c'],
  y: Float[Array, 'b h w c'],
  *,
  data_range: float = 2.0,
  mask: Float[Array, 'b h w'] | Float[Array, 'b h w 1'] | None = None,
) -> Float[Array, ' b']:
  """Mean structural similarity per image (Wang et al. 2004, Eq. 17), averaged over channels.

  Equals ``skimage.metrics.structural_similarity(x[i], y[i], gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=data_range, channel_axis=-1)``.

  Args:
    x: images, NHWC, h and w >= 11 (either order: SSIM is symmetric).
    y: images like ``x``.
    data_range: max minus min of the value range (2 for [-1, 1]).
    mask: optional pixel weights in [0, 1]; the mean of the SSIM map over its pixels (those
      5 or more from each border) and channels is weighted by the mask, cropped the same way.

  Returns:
    ``(b,)`` SSIM in [-1, 1], 1 for equal images.

  Raises:
    ValueError: if ``x`` and ``y`` differ in shape or are not 4-D, ``h`` or ``w`` is below 11,
      or ``mask`` is not ``(b, h, w)`` or ``(b, h, w, 1)``.
  """
  s = ssim_map(x, y, data_range=data_range)
  if mask is None:
    return jnp.mean(s, axis=(1, 2, 3))
  weights = _mask_weights(mask, x.shape).astype(s.dtype)[:, RADIUS:-RADIUS, RADIUS:-RADIUS]
  return jnp.sum(weights * s, axis=(1, 2, 3)) / (x.shape[-1] * jnp.sum(weights, axis=(1, 2, 3)))
