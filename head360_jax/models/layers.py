"""StyleGAN2 building blocks: FIR resampling, equalised-lr layers, modulated convolution, synthesis blocks.

Legend: ``b`` batch, ``h w`` image rows/columns, ``c`` channels (``i``/``o`` input/output
channels of a kernel), ``kh kw`` kernel rows/columns, ``fh fw`` FIR filter taps, ``f`` features,
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
  const noise images) are saved with a model but never trained.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jaxtyping import Array, Float

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
_ACTIVATION_GAINS = {'linear': 1.0, 'lrelu': math.sqrt(2.0)}
NOISE_MODES = ('random', 'const', 'none')


class Buffer(nnx.Variable):
  """A saved, untrained array (e.g. ``noise_const``); excluded by ``nnx.split(model, nnx.Param, ...)``."""


def parameter_count(module: nnx.Module) -> int:
  """Number of trainable scalars (``nnx.Param`` leaves) in ``module``; buffers are not counted."""
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> Float[Array, 'fh fw']:
  """Separable 2-D FIR filter ``outer(a, a) / sum(a)**2`` (sums to 1), e.g. (4, 4) for [1, 3, 3, 1]."""
  a = jnp.asarray(taps, jnp.float32)
  return jnp.outer(a, a) / jnp.sum(a) ** 2


def upfirdn2d(
  x: Float[Array, 'b h w c'],
  f: Float[Array, 'fh fw'],
  up: int = 1,
  down: int = 1,
  padding: Sequence[int] = (0, 0, 0, 0),
  gain: float = 1.0,
) -> Float[Array, 'b hh ww c']:
  """Upsample (zero insertion), pad, FIR-filter (true convolution), downsample (keep every ``down``-th).

  Same op as StyleGAN2's ``upfirdn2d`` with ``flip_filter=False``: output size is
  ``(h * up + py0 + py1 - fh) // down + 1``. Negative padding crops.

  Args:
    x: (b, h, w, c) image.
    f: (fh, fw) filter; multiplied by ``gain``.
    up: integer up-sampling factor (zeros inserted after every sample).
    down: integer down-sampling factor.
    padding: (px0, px1, py0, py1) zeros added before/after along width, then height.
    gain: overall signal gain (``up**2`` keeps the mean for up-sampling).
  """
  px0, px1, py0, py1 = padding
  channels = x.shape[-1]
  kernel = (f * gain)[::-1, ::-1].astype(x.dtype)
  kernel = jnp.broadcast_to(kernel[:, :, None, None], (*f.shape, 1, channels))
  return lax.conv_general_dilated(
    x,
    kernel,
    window_strides=(down, down),
    padding=((py0, py1 + up - 1), (px0, px1 + up - 1)),
    lhs_dilation=(up, up),
    dimension_numbers=_DIMENSIONS,
    feature_group_count=channels,
  )


def upsample2d(x: Float[Array, 'b h w c'], f: Float[Array, 'fh fw'], up: int = 2) -> Float[Array, 'b hu wu c']:
  """FIR up-sampling by ``up`` keeping the image centred (golden upfirdn2d_up2: pad (2, 1), gain 4)."""
  fw = f.shape[1]
  p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
  return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up**2)


def downsample2d(x: Float[Array, 'b h w c'], f: Float[Array, 'fh fw'], down: int = 2) -> Float[Array, 'b hd wd c']:
  """FIR down-sampling by ``down`` (golden upfirdn2d_down2: pad 1, filter, keep even samples)."""
  fw = f.shape[1]
  p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
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

  Raises:
    ValueError: for an unknown activation.
  """
  if activation not in _ACTIVATION_GAINS:
    raise ValueError(f'activation must be one of {tuple(_ACTIVATION_GAINS)}, got {activation!r}')
  if b is not None:
    x = x + b
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


def conv2d_resample(
  x: Float[Array, 'b h w i'],
  weight: Float[Array, 'k k i o'],
  f: Float[Array, 'fh fw'],
  up: int = 1,
  down: int = 1,
  padding: int = 0,
) -> Float[Array, 'b hh ww o']:
  """Square-kernel convolution with optional FIR up- or down-sampling (StyleGAN2 ``conv2d_resample``).

  * ``up > 1``: transposed convolution (kernel applied as a true convolution, stride ``up``), then
    the FIR filter with gain ``up**2``: (h, w) -> (up*h, up*w) for ``padding = k // 2``.
  * ``down > 1``: FIR filter, then a strided cross-correlation: (h, w) -> (h/down, w/down).
  * otherwise: a cross-correlation with ``padding`` zeros on every side.

  Raises:
    ValueError: if both ``up`` and ``down`` exceed 1 (not used by these networks).
  """
  k, fw = weight.shape[0], f.shape[1]
  if up > 1 and down > 1:
    raise ValueError('conv2d_resample: up and down together are not supported')
  if up > 1:
    p0 = padding + (fw + up - 1) // 2 - (k - 1)
    p1 = padding + (fw - up) // 2 - (k - up)
    pt = max(min(-p0, -p1), 0)  # padding the transposed conv itself can absorb
    edge = (k - 1 - pt, k - 1 - pt)
    x = lax.conv_general_dilated(
      x, weight[::-1, ::-1], (1, 1), (edge, edge), lhs_dilation=(up, up), dimension_numbers=_DIMENSIONS
    )
    p0, p1 = p0 + pt, p1 + pt
    return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=up**2)
  if down > 1:
    p0, p1 = padding + (fw - down + 1) // 2, padding + (fw - down) // 2
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return lax.conv_general_dilated(x, weight, (down, down), 'VALID', dimension_numbers=_DIMENSIONS)
  pad = (padding, padding)
  return lax.conv_general_dilated(x, weight, (1, 1), (pad, pad), dimension_numbers=_DIMENSIONS)


def modulated_conv2d(
  x: Float[Array, 'b h w i'],
  weight: Float[Array, 'k k i o'],
  styles: Float[Array, 'b i'],
  *,
  demodulate: bool = True,
  up: int = 1,
  padding: int = 0,
  resample_filter: Float[Array, 'fh fw'] | None = None,
  fused: bool = False,
) -> Float[Array, 'b hh ww o']:
  """StyleGAN2 modulated convolution (Karras et al. 2020, Eq. 1-3), both execution forms.

  Per sample ``n``: ``W'[n] = W * s[n, i]``; with ``demodulate`` each output channel is scaled by
  ``d[n, o] = 1 / sqrt(sum_{kh, kw, i} W'[n]**2 + 1e-8)``. ``fused`` convolves every sample with
  its own kernel (the reference's grouped convolution, used at inference); otherwise the
  activations are scaled before (``s``) and after (``d``) one shared convolution (the reference's
  training path). Both give the same result up to float rounding.

  Args:
    x: (b, h, w, i) activations.
    weight: (k, k, i, o) stored kernel (no equalised-lr gain: demodulation normalises it; ToRGB
      folds its gain into ``styles``).
    styles: (b, i) per-sample input-channel scales.
    demodulate: normalise each output channel as above.
    up: 1 or 2 (see ``conv2d_resample``).
    padding: zeros on every side (``k // 2`` keeps the size).
    resample_filter: FIR filter for ``up > 1``; default ``setup_filter()``.
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
  x = conv2d_resample(x * styles[:, None, None, :], weight, f, up=up, padding=padding)
  return x if dcoefs is None else x * dcoefs[:, None, None, :]


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
  as in ``conv2d_resample`` and padding ``k // 2``; clamp = ``conv_clamp * gain``.
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
    rngs: nnx.Rngs,
  ):
    shape = (kernel_size, kernel_size, in_channels, out_channels)
    self.weight = nnx.Param(jax.random.normal(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_channels,))) if bias else None
    self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
    self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
    self.resample_filter = tuple(resample_filter)

  def __call__(self, x: Float[Array, 'b h w i'], gain: float = 1.0) -> Float[Array, 'b hh ww o']:
    """Applies the layer; ``gain`` scales the output and the clamp (resnet branches use sqrt 0.5)."""
    weight = self.weight[...] * self.weight_gain
    padding = weight.shape[0] // 2
    x = conv2d_resample(x, weight, setup_filter(self.resample_filter), self.up, self.down, padding)
    clamp = None if self.conv_clamp is None else self.conv_clamp * gain
    bias = None if self.bias is None else self.bias[...]
    return bias_act(x, bias, self.activation, gain=_ACTIVATION_GAINS[self.activation] * gain, clamp=clamp)


def _noise(
  noise_mode: str, key: jax.Array | None, strength: Array, const: Array, shape: tuple[int, ...]
) -> Array | None:
  """Per-pixel noise (b, h, w, 1) * strength for 'random', the const image for 'const', None for 'none'."""
  if noise_mode not in NOISE_MODES:
    raise ValueError(f'noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}')
  if noise_mode == 'none':
    return None
  if noise_mode == 'const':
    return const[:, :, None] * strength
  if key is None:
    raise ValueError("noise_mode 'random' needs a PRNG key")
  return jax.random.normal(key, (shape[0], *const.shape, 1)) * strength


class SynthesisLayer(nnx.Module):
  """Modulated 3x3 convolution + noise + bias + lrelu (StyleGAN2 ``SynthesisLayer``; goldens synthesis_layer*).

  ``styles = affine(w)`` (dense, bias init 1); ``modulated_conv2d`` with demodulation (``up`` 1 or
  2); noise ``strength * noise`` (learned scalar, init 0) added before the bias; lrelu * sqrt 2;
  clamp to +-``conv_clamp``. ``resolution`` is the output size (the const noise image's size).
  """

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    w_dim: int,
    resolution: int,
    *,
    kernel_size: int = 3,
    up: int = 1,
    activation: str = 'lrelu',
    conv_clamp: float | None = None,
    resample_filter: Sequence[float] = (1, 3, 3, 1),
    rngs: nnx.Rngs,
  ):
    self.affine = EqualizedDense(w_dim, in_channels, bias_init=1.0, rngs=rngs)
    shape = (kernel_size, kernel_size, in_channels, out_channels)
    self.weight = nnx.Param(jax.random.normal(rngs.params(), shape))
    self.noise_const = Buffer(jax.random.normal(rngs.params(), (resolution, resolution)))
    self.noise_strength = nnx.Param(jnp.zeros(()))
    self.bias = nnx.Param(jnp.zeros((out_channels,)))
    self.up, self.activation, self.conv_clamp = up, activation, conv_clamp
    self.resample_filter = tuple(resample_filter)

  def __call__(
    self,
    x: Float[Array, 'b h w i'],
    w: Float[Array, 'b wd'],
    *,
    noise_mode: str = 'random',
    key: jax.Array | None = None,
    fused_modconv: bool = False,
  ) -> Float[Array, 'b hh ww o']:
    """Applies the layer; ``noise_mode`` 'random' (needs ``key``), 'const' or 'none'.

    Raises:
      ValueError: for an unknown ``noise_mode`` or 'random' without ``key``.
    """
    weight = self.weight[...]
    x = modulated_conv2d(
      x,
      weight,
      self.affine(w),
      up=self.up,
      padding=weight.shape[0] // 2,
      resample_filter=setup_filter(self.resample_filter),
      fused=fused_modconv,
    )
    noise = _noise(noise_mode, key, self.noise_strength[...], self.noise_const[...], x.shape)
    if noise is not None:
      x = x + noise
    return bias_act(x, self.bias[...], self.activation, clamp=self.conv_clamp)


class ToRGBLayer(nnx.Module):
  """Modulated 1x1 convolution without demodulation + bias (StyleGAN2 ``ToRGBLayer``; golden torgb).

  The equalised-lr gain ``1 / sqrt(i * k * k)`` is folded into the styles; linear; clamp to
  +-``conv_clamp``.
  """

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    w_dim: int,
    *,
    kernel_size: int = 1,
    conv_clamp: float | None = None,
    rngs: nnx.Rngs,
  ):
    self.affine = EqualizedDense(w_dim, in_channels, bias_init=1.0, rngs=rngs)
    shape = (kernel_size, kernel_size, in_channels, out_channels)
    self.weight = nnx.Param(jax.random.normal(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_channels,)))
    self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
    self.conv_clamp = conv_clamp

  def __call__(
    self, x: Float[Array, 'b h w i'], w: Float[Array, 'b wd'], *, fused_modconv: bool = False
  ) -> Float[Array, 'b h w o']:
    weight = self.weight[...]
    styles = self.affine(w) * self.weight_gain
    x = modulated_conv2d(x, weight, styles, demodulate=False, padding=weight.shape[0] // 2, fused=fused_modconv)
    return bias_act(x, self.bias[...], clamp=self.conv_clamp)


class SynthesisBlock(nnx.Module):
  """One resolution of a skip-architecture StyleGAN2 synthesis network (golden synthesis_block_skip).

  ``x = conv1(conv0(x, ws[:, 0]), ws[:, 1])`` (conv0 up-samples x2); ``img = upsample2d(img) +
  torgb(x, ws[:, 2])``. A first block (``in_channels == 0``) starts from a learned const
  (resolution^2, out_channels), has no conv0 and reads ws[:, 0] (conv1) and ws[:, 1] (torgb).
  Attributes ``num_conv``, ``num_torgb``: the block reads ``num_conv + num_torgb`` styles.
  """

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    w_dim: int,
    resolution: int,
    img_channels: int,
    *,
    conv_clamp: float | None = None,
    resample_filter: Sequence[float] = (1, 3, 3, 1),
    rngs: nnx.Rngs,
  ):
    layer_args = dict(conv_clamp=conv_clamp, resample_filter=resample_filter, rngs=rngs)
    if in_channels == 0:
      self.const = nnx.Param(jax.random.normal(rngs.params(), (resolution, resolution, out_channels)))
      self.conv0 = None
    else:
      self.const = None
      self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, **layer_args)
    self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_args)
    self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, rngs=rngs)
    self.num_conv = 1 if in_channels == 0 else 2
    self.num_torgb = 1
    self.resample_filter = tuple(resample_filter)

  def __call__(
    self,
    x: Float[Array, 'b h w i'] | None,
    img: Float[Array, 'b h w c'] | None,
    ws: Float[Array, 'b n wd'],
    *,
    noise_mode: str = 'random',
    key: jax.Array | None = None,
    fused_modconv: bool = False,
  ) -> tuple[Float[Array, 'b hh ww o'], Float[Array, 'b hh ww c']]:
    """Returns ``(x, img)`` at twice the input size (the const's size for a first block).

    Args:
      x: (b, h, w, i) features of the previous block; ignored (may be None) for a first block.
      img: (b, h, w, c) running skip image, or None (then the image is this block's torgb).
      ws: (b, num_conv + num_torgb, w) styles.
      noise_mode: 'random' (needs ``key``), 'const' or 'none'.
      key: PRNG key for random noise.
      fused_modconv: execution form of the modulated convolutions (same result).

    Raises:
      ValueError: if ``ws`` has the wrong number of styles, or as ``SynthesisLayer``.
    """
    if ws.shape[1] != self.num_conv + self.num_torgb:
      raise ValueError(f'SynthesisBlock needs {self.num_conv + self.num_torgb} ws, got {ws.shape[1]}')
    keys = [None] * self.num_conv if key is None else list(jax.random.split(key, self.num_conv))
    layer_args = dict(noise_mode=noise_mode, fused_modconv=fused_modconv)
    if self.conv0 is None:
      x = jnp.broadcast_to(self.const[...], (ws.shape[0], *self.const.shape))
    else:
      x = self.conv0(x, ws[:, 0], key=keys.pop(0), **layer_args)
    x = self.conv1(x, ws[:, self.num_conv - 1], key=keys.pop(0), **layer_args)
    y = self.torgb(x, ws[:, self.num_conv], fused_modconv=fused_modconv)
    img = y if img is None else upsample2d(img, setup_filter(self.resample_filter)) + y
    return x, img
