"""StyleGAN2 building blocks: FIR resampling, equalised-lr layers, modulated convolution.

Legend: ``b`` batch, ``h w`` image rows/columns, ``c`` channels (``i``/``o`` input/output
channels of a kernel), ``kh kw`` kernel rows/columns, ``ft`` FIR filter taps (1-D, separable), ``f`` features,
``wd`` style size (w_dim), ``n`` number of styles.

Everything is NHWC (images ``(b, h, w, c)``) with HWIO conv kernels ``(kh, kw, i, o)`` and dense
weights ``(in, out)``. The numbers follow the StyleGAN2 code that EG3D and Head360 build on
(reference-spec §3.3, §3.10, §4; ``../shared/golden/README.md``):

* Equalised learning rate: stored weights are N(0, 1) (dense: N(0, 1) / lr_multiplier) and the
  gain (``lr_multiplier / sqrt(fan_in)``) is applied at every call, never stored.
* ``resample_filter`` [1, 3, 3, 1] is ``outer(a, a) / 64``; up-sampling inserts zeros and filters
  with gain ``up**2``; up-sampling convolutions apply the kernel as a true (flipped) convolution
  (a transposed convolution), the others as a cross-correlation (torch ``conv2d``).
* Modules own parameters only; the math lives in the pure functions. ``Buffer`` variables (the
  const noise images of ``synthesis.py``) are saved with a model but never trained.
* Mixed precision (reference-spec §3.10, §4, §5.2: fp16 with ``conv_clamp`` 256 on the SR network
  and the discriminator's 4 highest resolutions): the pure functions compute in the dtype of their
  input ``x`` (weights, filters, styles and biases are cast to it); a conv module casts its input
  to its static ``dtype``. Parameters stay float32 (cast at use), so gradients and optimiser
  state are float32. We use bfloat16 rather than float16: it has float32's exponent range, so it
  needs neither loss scaling nor the reference's fp16 overflow guards (the clamp is kept where
  the reference clamps, since it changes results). ``block_dtype`` is the one rule that picks
  the dtype of a block from its resolution.
"""

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jaxtyping import Array, Float

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
_ACTIVATION_GAINS = {'linear': 1.0, 'lrelu': math.sqrt(2.0)}
COMPUTE_DTYPES = ('float32', 'bfloat16')


class Buffer(nnx.Variable):
  """A saved, untrained array (e.g. ``noise_const``); excluded by ``nnx.split(model, nnx.Param, ...)``."""


def parameter_count(module: nnx.Module) -> int:
  """Number of trainable scalars (``nnx.Param`` leaves) in ``module``; buffers are not counted."""
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def compute_dtype(name: str) -> jnp.dtype:
  """The dtype named ``name``, one of ``COMPUTE_DTYPES`` ('float32', 'bfloat16').

  Raises:
    ValueError: for any other name.
  """
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'compute dtype must be one of {COMPUTE_DTYPES}, got {name!r}')
  return jnp.dtype(name)


def block_dtype(resolution: int, top_resolution: int, num_bf16_res: int, base: jnp.dtype = jnp.float32) -> jnp.dtype:
  """Compute dtype of a block at ``resolution`` in a network whose highest resolution is ``top_resolution``.

  StyleGAN2-ADA's ``num_fp16_res`` rule (reference-spec §3.10, §4), in bfloat16: a block runs in
  bfloat16 if ``num_bf16_res > 0`` and ``resolution >= max(2 ** (log2(top_resolution) + 1 -
  num_bf16_res), 8)`` (the ``num_bf16_res`` highest resolutions, never 4x4); otherwise in
  ``base`` (float32, or bfloat16 for a whole-model bfloat16 run). E.g. top 512, 4 -> 512, 256,
  128 and 64 (Head360's discriminator).

  Raises:
    ValueError: if ``num_bf16_res < 0``.
  """
  if num_bf16_res < 0:
    raise ValueError(f'num_bf16_res must be >= 0, got {num_bf16_res}')
  threshold = max(2 ** (int(math.log2(top_resolution)) + 1 - num_bf16_res), 8)
  return jnp.dtype(jnp.bfloat16) if num_bf16_res > 0 and resolution >= threshold else jnp.dtype(base)


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> Float[Array, ' ft']:
  """Normalised 1-D FIR taps ``a / sum(a)`` of the separable 2-D filter ``outer(f, f)`` (e.g. (4,) for [1, 3, 3, 1]).

  StyleGAN2's ``resample_filter`` is the 2-D ``outer(a, a) / sum(a)**2``; every FIR op here takes
  the 1-D factor and filters rows, then columns, which is the same filter.
  """
  a = jnp.asarray(taps, jnp.float32)
  return a / jnp.sum(a)


def _fir_axis(x: Array, f: Array, axis: int, up: int, down: int, pad0: int, pad1: int) -> Array:
  """One axis of ``upfirdn2d``: zero insertion and edge padding in one ``lax.pad``, then a strided tap sum.

  ``y[j] = sum_t f[T - 1 - t] * p[down * j + t]`` for the padded signal ``p`` (a true convolution).
  Every step is a pad, a strided slice or an elementwise op, so it fuses into one loop on CPU and
  GPU and its gradients (slices and pads) do too.
  """
  taps = f.shape[0]
  config = [(0, 0, 0)] * x.ndim
  config[axis] = (pad0, pad1 + up - 1, up - 1)
  padded = lax.pad(x, jnp.zeros((), x.dtype), config)
  n = (padded.shape[axis] - taps) // down + 1
  if n <= 0:
    raise ValueError(f'upfirdn2d: output would be empty along axis {axis} (input {x.shape})')
  out = None
  for t in range(taps):
    term = lax.slice_in_dim(padded, t, t + down * (n - 1) + 1, stride=down, axis=axis) * f[taps - 1 - t]
    out = term if out is None else out + term
  return out


def upfirdn2d(
  x: Float[Array, 'b h w c'],
  f: Float[Array, ' ft'],
  up: int = 1,
  down: int = 1,
  padding: Sequence[int] = (0, 0, 0, 0),
  gain: float = 1.0,
) -> Float[Array, 'b hh ww c']:
  """Upsample (zero insertion), pad, FIR-filter (true convolution), downsample (keep every ``down``-th).

  Same op as StyleGAN2's ``upfirdn2d`` with the separable filter ``outer(f, f)`` and
  ``flip_filter=False``: output size is ``(h * up + py0 + py1 - ft) // down + 1``. Negative
  padding crops. Computed per axis with pads and strided slices (never a depthwise convolution,
  which XLA:CPU runs as a slow loop nest); the depthwise form is kept in ``tests/models/layers_test.py``
  as the reference.

  Args:
    x: (b, h, w, c) image.
    f: (ft,) 1-D taps of the separable filter (``setup_filter``); multiplied by ``gain``.
    up: integer up-sampling factor (zeros inserted after every sample).
    down: integer down-sampling factor.
    padding: (px0, px1, py0, py1) zeros added before/after along width, then height.
    gain: overall signal gain (``up**2`` keeps the mean for up-sampling).

  Raises:
    ValueError: if ``f`` is not 1-D or the output would be empty.
  """
  if f.ndim != 1:
    raise ValueError(f'upfirdn2d takes the 1-D taps of a separable filter, got shape {f.shape}')
  px0, px1, py0, py1 = padding
  f = f.astype(x.dtype)
  x = _fir_axis(x, f * jnp.asarray(gain, x.dtype), 1, up, down, py0, py1)
  return _fir_axis(x, f, 2, up, down, px0, px1)


def upsample2d(x: Float[Array, 'b h w c'], f: Float[Array, ' ft'], up: int = 2) -> Float[Array, 'b hu wu c']:
  """FIR up-sampling by ``up`` keeping the image centred (golden upfirdn2d_up2: pad (2, 1), gain 4)."""
  taps = f.shape[0]
  p0, p1 = (taps + up - 1) // 2, (taps - up) // 2
  return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up**2)


def downsample2d(x: Float[Array, 'b h w c'], f: Float[Array, ' ft'], down: int = 2) -> Float[Array, 'b hd wd c']:
  """FIR down-sampling by ``down`` (golden upfirdn2d_down2: pad 1, filter, keep even samples)."""
  taps = f.shape[0]
  p0, p1 = (taps - down + 1) // 2, (taps - down) // 2
  return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def bias_act(
  x: Float[Array, '... c'],
  b: Float[Array, ' c'] | None = None,
  activation: str = 'linear',
  gain: float | None = None,
  clamp: float | None = None,
) -> Float[Array, '... c']:
  """``clamp(act(x + b) * gain)``: StyleGAN2's ``bias_act`` over the last (channel) axis.

  Args:
    x: activations, channels last.
    b: per-channel bias or None.
    activation: 'linear' or 'lrelu' (leaky ReLU, slope 0.2).
    gain: total output gain; None means the activation's default (1 for 'linear', sqrt 2 for
      'lrelu'). A layer with an extra gain g passes ``default * g`` (as the reference does).
    clamp: if set, the output is clipped to [-clamp, clamp].

  The result has ``x``'s dtype (``b`` is cast to it).

  Raises:
    ValueError: for an unknown activation.
  """
  if activation not in _ACTIVATION_GAINS:
    raise ValueError(f'activation must be one of {tuple(_ACTIVATION_GAINS)}, got {activation!r}')
  if b is not None:
    x = x + b.astype(x.dtype)
  if activation == 'lrelu':
    x = jax.nn.leaky_relu(x, 0.2)
  gain = _ACTIVATION_GAINS[activation] if gain is None else gain
  if gain != 1:
    x = x * gain
  if clamp is not None:
    x = jnp.clip(x, -clamp, clamp)
  return x


def resize_bilinear(
  x: Float[Array, 'b h w c'], size: int | tuple[int, int], antialias: bool = True
) -> Float[Array, 'b hh ww c']:
  """Bilinear resize with half-pixel centres, as torch ``interpolate(mode='bilinear', align_corners=False)``.

  With ``antialias`` the triangle kernel is widened by the scale factor when shrinking and the
  weights are renormalised per output pixel (torch ``antialias=True``; golden resize_bilinear_aa);
  up-sampling is the same either way.
  """
  height, width = (size, size) if isinstance(size, int) else size
  return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), method='linear', antialias=antialias)


def _pad_spatial(x: Array, rows: tuple[int, int], cols: tuple[int, int]) -> Array:
  """Zero-pads (or, for negative amounts, crops) axes 1 and 2 of an NHWC array."""
  return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*rows, 0), (*cols, 0), (0, 0, 0)])


Padding2d = tuple[tuple[int, int], tuple[int, int]]
# conv2d's weight gradient: one GEMM per kernel tap, its pixel reduction cut into row blocks
# from this many rows on (see ``_weight_gradient_tap``). Measured on the 2-core CPU (jax 0.10.2),
# 3x3 128 -> 128 at 512²: 1.2 s vs 5.0 s as XLA's batch/channel-swapped convolution; 2x2
# sub-pixel 256 -> 512 at 256²: 0.50 vs 3.4 s; 3x3 512 -> 512 at 64² (unblocked): 0.22 vs 0.40 s.
_DW_ROW_BLOCKS = 8
_DW_MIN_BLOCKED_ROWS = 128


def conv2d(
  x: Float[Array, 'b h w i'], weight: Float[Array, 'kh kw i o'], padding: Padding2d
) -> Float[Array, 'b hh ww o']:
  """Stride-1 cross-correlation (torch ``conv2d``) whose derivatives of every order are convolutions and GEMMs.

  ``padding`` is ``((top, bottom), (left, right))`` zeros (static). A 1x1 kernel without padding
  is one GEMM over the pixels (``einsum``): XLA:CPU's convolution ran those 1.1-15x slower than the
  same GEMM on the 2-core CPU (512² 128 -> 3, a ToRGB layer: 64 ms vs 4.3 ms; 512² 64 -> 128:
  112 vs 45 ms), and autodiff's derivatives of a GEMM are GEMMs. Other kernels go through
  ``_conv2d_spatial``, whose gradients are written as this same function,
  ``dx = conv2d(dy, flip(W)ᵀ, k - 1 - padding)``, and ``dW`` as one GEMM per kernel tap over the
  shifted inputs (``_weight_gradient_tap``), so their derivatives are convolutions and GEMMs
  again. XLA's own transpose rules produce kernel reversal (``rhs_reversal``) and dilated
  convolutions in second derivatives (R1's double backward), which XLA:CPU does not hand to its
  fast kernels and runs as loop nests ~50x slower, and its weight-gradient convolutions ran at
  15-45 GFLOP/s here against 65-137 for the blocked GEMMs. On GPU every piece is a cuDNN
  convolution or a cuBLAS GEMM.
  """
  if weight.shape[:2] == (1, 1) and padding == ((0, 0), (0, 0)):
    return jnp.einsum('bhwi,io->bhwo', x, weight[0, 0])
  return _conv2d_spatial(x, weight, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv2d_spatial(x: Array, weight: Array, padding: Padding2d) -> Array:
  return lax.conv_general_dilated(x, weight, (1, 1), padding, dimension_numbers=_DIMENSIONS)


def _conv2d_fwd(x, weight, padding):
  return _conv2d_spatial(x, weight, padding), (x, weight)


def _conv2d_bwd(padding, residuals, dy):
  x, weight = residuals
  kh, kw = weight.shape[:2]
  (top, bottom), (left, right) = padding
  dx_padding = ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right))
  dx = conv2d(dy, jnp.flip(weight, (0, 1)).swapaxes(2, 3), dx_padding)
  rows, cols = dy.shape[1:3]
  h, w = x.shape[1:3]
  # Tap (a, c) reads the zero-padded input at offset (a, c): one pad-and-crop of x each (lax.pad takes negative
  # amounts), which XLA fuses into the tap's copy instead of writing the whole padded input first.
  shifted = lambda a, c: _pad_spatial(x, (top - a, a + rows - top - h), (left - c, c + cols - left - w))
  dw = [_weight_gradient_tap(shifted(a, c), dy) for a in range(kh) for c in range(kw)]
  return dx, jnp.stack(dw).reshape(kh, kw, x.shape[3], dy.shape[3])


def _weight_gradient_tap(x: Float[Array, 'b hh ww i'], dy: Float[Array, 'b hh ww o']) -> Float[Array, 'i o']:
  """``sum_{b, y, x} x[b, y, x, i] dy[b, y, x, o]``: one kernel tap of conv2d's weight gradient.

  A GEMM whose reduction runs over every pixel, accumulated in float32. From
  ``_DW_MIN_BLOCKED_ROWS`` rows on, the rows are cut into ``_DW_ROW_BLOCKS`` blocks reduced by one
  batched GEMM and a sum, which XLA:CPU spreads over its threads (one GEMM with a 512²-pixel
  reduction ran at 15-30 GFLOP/s on 2 cores, the blocked form at 65-137).
  """
  b, rows, cols, _ = x.shape
  blocks = _DW_ROW_BLOCKS if rows >= _DW_MIN_BLOCKED_ROWS else 1
  whole = rows // blocks * blocks
  gemm = functools.partial(jnp.einsum, preferred_element_type=jnp.float32)
  block = lambda t: t[:, :whole].reshape(b * blocks, (whole // blocks) * cols, t.shape[3])
  out = gemm('gpi,gpo->gio', block(x), block(dy)).sum(0)
  if whole < rows:
    out = out + gemm('byxi,byxo->io', x[:, whole:], dy[:, whole:])
  return out.astype(x.dtype)


_conv2d_spatial.defvjp(_conv2d_fwd, _conv2d_bwd)


def _subpixel_table(k: int, up: int, edge: int) -> tuple[list[list[int]], int, int]:
  """Kernel taps of each output phase of a stride-``up`` transposed convolution.

  For ``y = conv(dilate(x, up), K, pad edge)``, output ``y[up * j + r]`` sums ``K[a] x[j + c_r + t]``
  over the taps ``a = a0 + up * t`` with ``a0 = (edge - r) mod up``. Returns ``(table, window,
  start)``: ``table[r][u]`` is the tap of phase ``r`` at window position ``u`` (``k`` for none),
  all phases sharing one window of ``window`` input samples starting at offset ``start``.
  """
  phases = []
  for r in range(up):
    a0 = (edge - r) % up
    phases.append(((r + a0 - edge) // up, list(range(a0, k, up))))
  start = min(c for c, _ in phases)
  window = max(c + len(taps) for c, taps in phases) - start
  table = [[k] * window for _ in range(up)]
  for r, (c, taps) in enumerate(phases):
    for t, a in enumerate(taps):
      table[r][c - start + t] = a
  return table, window, start


def conv_transpose2d(
  x: Float[Array, 'b h w i'], weight: Float[Array, 'k k i o'], up: int, edge: int
) -> Float[Array, 'b hh ww o']:
  """``conv(dilate(x, up), weight, padding edge)`` as a sub-pixel convolution.

  Same values as ``lax.conv_general_dilated(x, weight, (1, 1), ((edge, edge),) * 2,
  lhs_dilation=(up, up))`` (``weight`` cross-correlated with the zero-inserted input), output
  ``(h - 1) * up + 2 * edge - k + 2`` per side. Each of the ``up * up`` output phases is one
  stride-1 convolution of the (padded) input with that phase's own taps (for k 3, up 2: 2x2, 2x1,
  1x2 and 1x1 kernels, 9 multiply-adds per input pixel as the dilated form), then a pixel
  shuffle and a crop: no dilated convolution, whose weight gradient XLA:CPU runs as a loop nest
  (6.3 s vs 0.2 s at 128² x 256 -> 128). One convolution of all phases stacked on the output
  channels would pad the short phases with zero taps (16 multiply-adds instead of 9); the
  separate phases took 0.71-0.78x its forward+backward time on the 2-core CPU. On GPU (not
  measured: no GPU was lent) each phase is a cuDNN convolution and the 1x1 phase a cuBLAS GEMM:
  the same 9/16 of the FLOPs for three more kernel launches per layer.
  """
  b, h, w, cin = x.shape
  k, cout = weight.shape[0], weight.shape[3]
  table, window, start = _subpixel_table(k, up, edge)
  out_h, out_w = ((n - 1) * up + 2 * edge - k + 2 for n in (h, w))
  rows, cols = -(-out_h // up), -(-out_w // up)
  x = _pad_spatial(x, (-start, rows + start + window - 1 - h), (-start, cols + start + window - 1 - w))
  taps = [[u for u in range(window) if table[r][u] < k] for r in range(up)]  # window positions with a tap
  phases = []
  for ry in range(up):
    row = []
    for rx in range(up):
      uy, ux = taps[ry], taps[rx]
      if not uy or not ux:  # a phase no tap reaches (k < up) is zero
        row.append(jnp.zeros((b, rows, cols, cout), x.dtype))
        continue
      # A phase's taps step by ``up`` along the window (``_subpixel_table``): a static strided slice of the kernel.
      ay, ax = table[ry][uy[0]], table[rx][ux[0]]
      kernel = weight[ay : ay + up * len(uy) : up, ax : ax + up * len(ux) : up]
      window_x = x[:, uy[0] : uy[-1] + rows, ux[0] : ux[-1] + cols]
      row.append(conv2d(window_x, kernel, ((0, 0), (0, 0))))
    phases.append(jnp.stack(row, 3))  # (b, rows, cols, up: column phase, o)
  y = jnp.stack(phases, 2).reshape(b, rows * up, cols * up, cout)  # (b, rows, up: row phase, cols, up, o)
  return y[:, :out_h, :out_w]


def strided_conv2d(x: Float[Array, 'b h w i'], weight: Float[Array, 'k k i o'], down: int) -> Float[Array, 'b hh ww o']:
  """VALID cross-correlation with stride ``down`` as a sum of stride-1 convolutions of the input's phases.

  Output ``(h - k) // down + 1`` per side, the values of ``lax.conv_general_dilated(x, weight,
  (down, down), 'VALID')``. The input phase ``x[ry::down, rx::down]`` meets the kernel taps
  ``weight[ry::down, rx::down]`` (for k 3, down 2: 2x2, 2x1, 1x2, 1x1), so the input gradient needs
  no dilated convolution and the second derivative (R1) no reversed one, with the 9
  multiply-adds per output pixel of the strided form. (Stacking the phases on the channels for one
  convolution pads the kernel with zero taps, 16 instead of 9, and XLA:CPU ran those wide-channel
  convolutions slowly: 130² 256 -> 512 took 170 ms forward against 28 ms as phases.)
  """
  k = weight.shape[0]
  rows, cols = (x.shape[1] - k) // down + 1, (x.shape[2] - k) // down + 1
  out = None
  for ry in range(min(down, k)):
    for rx in range(min(down, k)):
      kernel = weight[ry::down, rx::down]
      phase = x[:, ry::down, rx::down][:, : rows + kernel.shape[0] - 1, : cols + kernel.shape[1] - 1]
      term = conv2d(phase, kernel, ((0, 0), (0, 0)))
      out = term if out is None else out + term
  return out


def conv2d_resample(
  x: Float[Array, 'b h w i'],
  weight: Float[Array, 'k k i o'],
  f: Float[Array, ' ft'],
  up: int = 1,
  down: int = 1,
  padding: int = 0,
) -> Float[Array, 'b hh ww o']:
  """Square-kernel convolution with optional FIR up- or down-sampling (StyleGAN2 ``conv2d_resample``).

  * ``up > 1``: transposed convolution (kernel applied as a true convolution, stride ``up``;
    ``conv_transpose2d``), then the FIR filter with gain ``up**2``: (h, w) -> (up*h, up*w) for
    ``padding = k // 2``.
  * ``down > 1``: FIR filter, then a strided cross-correlation (``strided_conv2d``): (h, w) ->
    (h/down, w/down). A 1x1 kernel keeps only the FIR output samples it reads (the FIR
    down-samples, then a 1x1 convolution).
  * otherwise: a cross-correlation with ``padding`` zeros on every side.

  Every convolution is a stride-1 ``conv2d``. Computes in ``x``'s dtype (``weight`` and ``f`` are
  cast to it).

  Raises:
    ValueError: if both ``up`` and ``down`` exceed 1 (not used by these networks).
  """
  weight = weight.astype(x.dtype)
  k, taps = weight.shape[0], f.shape[0]
  if up > 1 and down > 1:
    raise ValueError('conv2d_resample: up and down together are not supported')
  if up > 1:
    p0 = padding + (taps + up - 1) // 2 - (k - 1)
    p1 = padding + (taps - up) // 2 - (k - up)
    pt = max(min(-p0, -p1), 0)  # padding the transposed conv itself can absorb
    x = conv_transpose2d(x, weight[::-1, ::-1], up, k - 1 - pt)
    p0, p1 = p0 + pt, p1 + pt
    return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=up**2)
  if down > 1:
    p0, p1 = padding + (taps - down + 1) // 2, padding + (taps - down) // 2
    if k == 1:
      x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
      return conv2d(x, weight, ((0, 0), (0, 0)))
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return strided_conv2d(x, weight, down)
  pad = (padding, padding)
  return conv2d(x, weight, (pad, pad))


def modulated_conv2d(
  x: Float[Array, 'b h w i'],
  weight: Float[Array, 'k k i o'],
  styles: Float[Array, 'b i'],
  *,
  demodulate: bool = True,
  up: int = 1,
  padding: int = 0,
  resample_filter: Float[Array, ' ft'] | None = None,
  fused: bool = False,
) -> Float[Array, 'b hh ww o']:
  """StyleGAN2 modulated convolution (Karras et al. 2020, Eq. 1-3), both execution forms.

  Per sample ``n``: ``W'[n] = W * s[n, i]``; with ``demodulate`` each output channel is scaled by
  ``d[n, o] = 1 / sqrt(sum_{kh, kw, i} W'[n]**2 + 1e-8)``. ``fused`` convolves every sample with
  its own kernel (the reference's grouped convolution, used at inference); otherwise the
  activations are scaled before (``s``) and after (``d``) one shared convolution (the reference's
  training path). Both give the same result up to float rounding. The convolution runs in ``x``'s
  dtype; the styles and demodulation coefficients are computed from the float32 weight and cast
  to it (as the reference's fp16 path).

  Args:
    x: (b, h, w, i) activations.
    weight: (k, k, i, o) stored kernel (no equalised-lr gain: demodulation normalises it; ToRGB
      folds its gain into ``styles``).
    styles: (b, i) per-sample input-channel scales.
    demodulate: normalise each output channel as above.
    up: 1 or 2 (see ``conv2d_resample``).
    padding: zeros on every side (``k // 2`` keeps the size).
    resample_filter: 1-D FIR taps for ``up > 1``; default ``setup_filter()``.
    fused: execution form (see above).
  """
  f = setup_filter() if resample_filter is None else resample_filter
  dcoefs = None
  if demodulate:  # sum over (kh, kw, i) of (W * s)^2 == s^2 @ sum_{kh, kw} W^2
    dcoefs = lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(weight), axis=(0, 1)) + 1e-8)
  if fused:
    kernels = weight[None] * styles[:, None, None, :, None]
    if dcoefs is not None:
      kernels = kernels * dcoefs[:, None, None, None, :]
    convolve = lambda xi, wi: conv2d_resample(xi[None], wi, f, up=up, padding=padding)[0]
    return jax.vmap(convolve)(x, kernels)
  x = conv2d_resample(x * styles[:, None, None, :].astype(x.dtype), weight, f, up=up, padding=padding)
  return x if dcoefs is None else x * dcoefs[:, None, None, :].astype(x.dtype)


class EqualizedDense(nnx.Module):
  """Fully connected layer with equalised learning rate (StyleGAN2 ``FullyConnectedLayer``; golden fc_lrmul).

  ``y = bias_act(x @ (W * lr_multiplier / sqrt(in)) + b * lr_multiplier)``; stored ``W`` is
  N(0, 1) / lr_multiplier, ``(in_features, out_features)``; stored ``b`` starts at ``bias_init``.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    *,
    bias: bool = True,
    bias_init: float = 0.0,
    lr_multiplier: float = 1.0,
    activation: str = 'linear',
    rngs: nnx.Rngs,
  ):
    self.weight = nnx.Param(jax.random.normal(rngs.params(), (in_features, out_features)) / lr_multiplier)
    self.bias = nnx.Param(jnp.full((out_features,), bias_init, jnp.float32)) if bias else None
    self.weight_gain = lr_multiplier / math.sqrt(in_features)
    self.bias_gain = lr_multiplier
    self.activation = activation

  def __call__(self, x: Float[Array, 'b in']) -> Float[Array, 'b out']:
    bias = None if self.bias is None else self.bias[...] * self.bias_gain
    return bias_act(x @ (self.weight[...] * self.weight_gain), bias, self.activation)


class EqualizedConv2d(nnx.Module):
  """Convolution with equalised learning rate (StyleGAN2 ``Conv2dLayer``; golden disc_block_resnet).

  ``y = clamp(act(conv(x, W / sqrt(i * k * k)) + b) * act_gain * gain)`` with FIR up/down-sampling
  as in ``conv2d_resample`` and padding ``k // 2``; clamp = ``conv_clamp * gain``. Computes in
  ``dtype`` (input and weight cast to it; output in it).
  """

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    bias: bool = True,
    activation: str = 'linear',
    up: int = 1,
    down: int = 1,
    conv_clamp: float | None = None,
    resample_filter: Sequence[float] = (1, 3, 3, 1),
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    shape = (kernel_size, kernel_size, in_channels, out_channels)
    self.weight = nnx.Param(jax.random.normal(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_channels,))) if bias else None
    self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
    self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
    self.resample_filter = tuple(resample_filter)
    self.dtype = jnp.dtype(dtype)

  def __call__(self, x: Float[Array, 'b h w i'], gain: float = 1.0) -> Float[Array, 'b hh ww o']:
    """Applies the layer; ``gain`` scales the output and the clamp (resnet branches use sqrt 0.5)."""
    x = x.astype(self.dtype)
    weight = self.weight[...] * self.weight_gain
    padding = weight.shape[0] // 2
    x = conv2d_resample(x, weight, setup_filter(self.resample_filter), self.up, self.down, padding)
    clamp = None if self.conv_clamp is None else self.conv_clamp * gain
    bias = None if self.bias is None else self.bias[...]
    return bias_act(x, bias, self.activation, gain=_ACTIVATION_GAINS[self.activation] * gain, clamp=clamp)
