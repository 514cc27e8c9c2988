"""StyleGAN2 synthesis layers: modulated conv layer with noise, toRGB, skip-architecture block.

Legend: ``b`` batch, ``h w`` image rows/columns, ``c`` channels (``i``/``o`` input/output
channels), ``wd`` style size (w_dim), ``n`` number of styles.

NHWC throughout; built from the equalised layers and pure functions of ``layers.py``
(reference-spec §3.3; goldens ``synthesis_layer``, ``synthesis_layer_up``, ``torgb``,
``synthesis_block_skip``, ``synthesis_block_clamp256``). Noise inputs: ``'random'`` (needs a
``key``), ``'const'`` (the stored ``noise_const`` buffer) or ``'none'``.

Precision (``layers.py``): each layer computes in its ``dtype`` (a block passes its own to its
layers); the affine styles and demodulation stay float32, and a block's skip image ``img`` is
always float32 (the reference casts each toRGB output to float32 before adding it).
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from head360_jax.models import layers

NOISE_MODES = ('random', 'const', 'none')


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

  ``styles = affine(w)`` (dense, bias init 1); ``layers.modulated_conv2d`` with demodulation (``up`` 1 or
  2); noise ``strength * noise`` (learned scalar, init 0) added before the bias; lrelu * sqrt 2;
  clamp to +-``conv_clamp``. ``resolution`` is the output size (the const noise image's size).
  Computes in ``dtype`` (the input is cast to it; the output is in it).
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
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.affine = layers.EqualizedDense(w_dim, in_channels, bias_init=1.0, rngs=rngs)
    shape = (kernel_size, kernel_size, in_channels, out_channels)
    self.weight = nnx.Param(jax.random.normal(rngs.params(), shape))
    self.noise_const = layers.Buffer(jax.random.normal(rngs.params(), (resolution, resolution)))
    self.noise_strength = nnx.Param(jnp.zeros(()))
    self.bias = nnx.Param(jnp.zeros((out_channels,)))
    self.up, self.activation, self.conv_clamp = up, activation, conv_clamp
    self.resample_filter = tuple(resample_filter)
    self.dtype = jnp.dtype(dtype)

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
    x = layers.modulated_conv2d(
      x.astype(self.dtype),
      weight,
      self.affine(w),
      up=self.up,
      padding=weight.shape[0] // 2,
      resample_filter=layers.setup_filter(self.resample_filter),
      fused=fused_modconv,
    )
    noise = _noise(noise_mode, key, self.noise_strength[...], self.noise_const[...], x.shape)
    if noise is not None:
      x = x + noise.astype(x.dtype)
    return layers.bias_act(x, self.bias[...], self.activation, clamp=self.conv_clamp)


class ToRGBLayer(nnx.Module):
  """Modulated 1x1 convolution without demodulation + bias (StyleGAN2 ``ToRGBLayer``; golden torgb).

  The equalised-lr gain ``1 / sqrt(i * k * k)`` is folded into the styles; linear; clamp to
  +-``conv_clamp``. Computes in ``dtype``.
  """

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    w_dim: int,
    *,
    kernel_size: int = 1,
    conv_clamp: float | None = None,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.affine = layers.EqualizedDense(w_dim, in_channels, bias_init=1.0, rngs=rngs)
    shape = (kernel_size, kernel_size, in_channels, out_channels)
    self.weight = nnx.Param(jax.random.normal(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_channels,)))
    self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
    self.conv_clamp = conv_clamp
    self.dtype = jnp.dtype(dtype)

  def __call__(
    self, x: Float[Array, 'b h w i'], w: Float[Array, 'b wd'], *, fused_modconv: bool = False
  ) -> Float[Array, 'b h w o']:
    weight = self.weight[...]
    styles = self.affine(w) * self.weight_gain
    x = layers.modulated_conv2d(
      x.astype(self.dtype), weight, styles, demodulate=False, padding=weight.shape[0] // 2, fused=fused_modconv
    )
    return layers.bias_act(x, self.bias[...], clamp=self.conv_clamp)


class SynthesisBlock(nnx.Module):
  """One resolution of a skip-architecture StyleGAN2 synthesis network (golden synthesis_block_skip).

  ``x = conv1(conv0(x, ws[:, 0]), ws[:, 1])`` (conv0 up-samples x2); ``img = layers.upsample2d(img) +
  torgb(x, ws[:, 2])``. A first block (``in_channels == 0``) starts from a learned const
  (resolution^2, out_channels), has no conv0 and reads ws[:, 0] (conv1) and ws[:, 1] (torgb).
  Attributes ``num_conv``, ``num_torgb``: the block reads ``num_conv + num_torgb`` styles. The
  layers compute in ``dtype`` (``x`` is returned in it); ``img`` is float32.
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
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    layer_args = dict(conv_clamp=conv_clamp, resample_filter=resample_filter, dtype=dtype, rngs=rngs)
    if in_channels == 0:
      self.const = nnx.Param(jax.random.normal(rngs.params(), (resolution, resolution, out_channels)))
      self.conv0 = None
    else:
      self.const = None
      self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, **layer_args)
    self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_args)
    self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, dtype=dtype, rngs=rngs)
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
    y = self.torgb(x, ws[:, self.num_conv], fused_modconv=fused_modconv).astype(jnp.float32)
    img = y if img is None else layers.upsample2d(img, layers.setup_filter(self.resample_filter)) + y
    return x, img
