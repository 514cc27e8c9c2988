"""StyleUNet: a StyleGAN2 synthesis network whose low-resolution blocks take features of a conditional encoder.

Legend: ``b`` batch, ``s`` input (condition) image side (``in_size``), ``i`` input channels,
``R`` output side (``output_resolution``), ``o`` output channels, ``n`` number of styles
(``num_ws``), ``wd`` style size (w_dim), ``h w c`` feature rows/columns/channels.

Head360 uses two of them on the front view's 32 texture channels of plane 0 (reference-spec
§3.1, §3.6; ``networks_stylegan2_styleunet.py``): the mouth net (``in_size`` 64,
``final_size`` 4, ``num_cond_res`` 64) on the 64² mouth crop, and the neural-blending net
(``in_size`` 256, ``final_size`` 64, ``num_cond_res`` 256) on the whole 256² front raster.
Channels follow the synthesis rule ``C(r) = min(channel_base // r, channel_max)``.

* Encoder, one block per resolution ``r = in_size, in_size / 2, ..., 2 final_size``: the
  condition image (FIR-downsampled x1/2 for every block after the first) goes through a 1x1
  linear conv without bias (i -> C(r)), is added to the previous block's output, then a 3x3
  lrelu conv (C(r) -> C(r)) and a 3x3 lrelu conv with FIR stride-2 (C(r) -> C(r/2)). Its output
  is the feature ``e[r/2]`` at resolution r/2, so ``e`` holds ``final_size ... in_size / 2``.
* Decoder: StyleGAN2 skip blocks ``b{r}`` for ``r = 2 final_size ... R``. The input of block
  ``b{r}`` (resolution r/2) is, while ``r/2 < num_cond_res``: ``fuse(e[r/2])`` for the first
  block (3x3 linear conv C -> C), else ``fuse(concat(x, e[r/2]))`` (3x3 linear conv 2C -> C);
  above, the running features pass unchanged. The output is the accumulated toRGB image
  (``o`` channels, no activation).
* Styles: ``ws`` has the full synthesis network's ``2 log2(R) - 2`` slots (the reference's
  14 ``eg3d_ws`` at 256²); block ``b{r}`` reads slots ``2 log2(r) - 5 ... 2 log2(r) - 3`` as
  in ``stylegan.SynthesisNetwork``, so the slots of the skipped low blocks are not read.

Only used weights exist (reference-spec §3.3): the reference also builds the skipped blocks
``b4 ... b{final_size}`` and a fusion conv at ``in_size`` that no forward pass reads.

Precision: encoder blocks (by input resolution), fusion convs (by feature resolution) and
synthesis blocks at the ``num_bf16_res`` highest resolutions compute in bfloat16
(``layers.block_dtype`` with the output resolution as the top; Head360's generator uses 0).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from head360_jax.models import layers, synthesis


class EncoderBlock(nnx.Module):
  """One encoder level (reference ``EncoderResBlock``; reference-spec §3.6): r² -> (r/2)² features.

  Attributes ``fromrgb`` (1x1, linear, no bias), ``conv1`` (3x3 lrelu), ``conv2`` (3x3 lrelu, down 2)
  mirror the reference names; the reference's unused resnet ``skip`` conv is not built.
  """

  def __init__(
    self,
    cond_channels: int,
    in_channels: int,
    out_channels: int,
    *,
    downsample: bool,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    conv = dict(dtype=dtype, rngs=rngs)
    self.fromrgb = layers.EqualizedConv2d(cond_channels, in_channels, 1, bias=False, **conv)
    self.conv1 = layers.EqualizedConv2d(in_channels, in_channels, 3, activation='lrelu', **conv)
    self.conv2 = layers.EqualizedConv2d(in_channels, out_channels, 3, activation='lrelu', down=2, **conv)
    self.downsample = downsample

  def __call__(
    self, image: Float[Array, 'b h w i'], skip: Float[Array, 'b hh ww c'] | None
  ) -> tuple[Float[Array, 'b hh ww i'], Float[Array, 'b hd wd o']]:
    """Returns ``(image at this level, features at half its size)``; ``skip`` is the previous level's output."""
    if self.downsample:
      image = layers.downsample2d(image, layers.setup_filter())
    x = self.fromrgb(image)
    if skip is not None:
      x = x + skip
    return image, self.conv2(self.conv1(x))


def _log2(value: int, name: str) -> int:
  if value < 1 or value & (value - 1):
    raise ValueError(f'{name} must be a power of two, got {value}')
  return value.bit_length() - 1


class StyleUNet(nnx.Module):
  """Conditional StyleGAN2 synthesis network (reference ``CondStyleGAN2Backbone.synthesis``; see module doc).

  Attributes: ``enc{r}`` encoder blocks (input resolution r), ``fuse{r}`` fusion convs (feature
  resolution r), ``b{r}`` synthesis blocks; ``num_ws`` styles read from ``ws``;
  ``decoder_resolutions``, ``encoder_resolutions``, ``fused_resolutions`` (static tuples).
  """

  def __init__(
    self,
    w_dim: int,
    in_size: int,
    final_size: int,
    in_channels: int,
    out_channels: int,
    *,
    output_resolution: int = 256,
    channel_base: int = 32768,
    channel_max: int = 512,
    num_cond_res: int,
    conv_clamp: float | None = None,
    num_bf16_res: int = 0,
    compute_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    """Builds the network.

    Args:
      w_dim: style size.
      in_size: side of the condition image (64 mouth, 256 blending).
      final_size: side of the deepest encoder feature (4 mouth, 64 blending); the decoder
        starts at block ``2 final_size``.
      in_channels: channels of the condition image (32).
      out_channels: output channels (32).
      output_resolution: output side R (256).
      channel_base, channel_max: channel rule ``min(channel_base // r, channel_max)``.
      num_cond_res: encoder features at resolutions below this enter the decoder (64 mouth,
        256 blending).
      conv_clamp: clamp of the synthesis layers (None in Head360).
      num_bf16_res: layers at this many highest resolutions compute in bfloat16 (see above).
      compute_dtype: dtype of the other layers.
      rngs: parameter initialisation.

    Raises:
      ValueError: unless all sizes are powers of two with ``4 <= final_size < num_cond_res <=
        in_size`` and ``2 final_size <= output_resolution``, and ``num_bf16_res >= 0``.
    """
    for value, name in [(in_size, 'in_size'), (final_size, 'final_size'), (output_resolution, 'output_resolution')]:
      _log2(value, name)
    _log2(num_cond_res, 'num_cond_res')
    if not 4 <= final_size < num_cond_res <= in_size or 2 * final_size > output_resolution:
      raise ValueError(
        'need 4 <= final_size < num_cond_res <= in_size and 2 final_size <= output_resolution, got '
        f'final_size={final_size}, num_cond_res={num_cond_res}, in_size={in_size}, '
        f'output_resolution={output_resolution}'
      )
    channels = lambda res: min(channel_base // res, channel_max)
    dtype = lambda res: layers.block_dtype(res, output_resolution, num_bf16_res, compute_dtype)
    self.in_size, self.final_size, self.num_cond_res = in_size, final_size, num_cond_res
    self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
    self.encoder_resolutions = tuple(in_size >> k for k in range(_log2(in_size // final_size, 'ratio')))
    for res in self.encoder_resolutions:
      block = EncoderBlock(
        in_channels, channels(res), channels(res // 2), downsample=res < in_size, dtype=dtype(res), rngs=rngs
      )
      setattr(self, f'enc{res}', block)
    self.fused_resolutions = tuple(final_size << k for k in range(_log2(num_cond_res // final_size, 'ratio')))
    for res in self.fused_resolutions:
      fuse_in = channels(res) * (1 if res == final_size else 2)
      setattr(self, f'fuse{res}', layers.EqualizedConv2d(fuse_in, channels(res), 3, dtype=dtype(res), rngs=rngs))
    self.decoder_resolutions = tuple(2 * final_size << k for k in range(_log2(output_resolution // final_size, 'R')))
    for res in self.decoder_resolutions:
      block = synthesis.SynthesisBlock(
        channels(res // 2), channels(res), w_dim, res, out_channels, conv_clamp=conv_clamp, dtype=dtype(res), rngs=rngs
      )
      setattr(self, f'b{res}', block)
    self.num_ws = 2 * _log2(output_resolution, 'output_resolution') - 2

  def ws_start(self, res: int) -> int:
    """First ``ws`` slot read by block ``b{res}`` (res >= 8): the full synthesis network's layout."""
    return 2 * int(math.log2(res)) - 5

  def __call__(
    self,
    x: Float[Array, 'b s s i'],
    ws: Float[Array, 'b n wd'],
    *,
    noise_mode: str = 'random',
    key: jax.Array | None = None,
    fused_modconv: bool = False,
  ) -> Float[Array, 'b R R o']:
    """Returns the (b, R, R, out_channels) image conditioned on ``x``.

    Args:
      x: (b, in_size, in_size, in_channels) condition image (NHWC).
      ws: (b, num_ws, w_dim) styles.
      noise_mode: 'random' (needs ``key``), 'const' or 'none'.
      key: PRNG key for random noise.
      fused_modconv: execution form of the modulated convolutions (same result).

    Raises:
      ValueError: for a wrong ``x`` or ``ws`` shape, or 'random' noise without ``key``.
    """
    if x.ndim != 4 or x.shape[1:] != (self.in_size, self.in_size, self.in_channels):
      raise ValueError(f'StyleUNet needs x (b, {self.in_size}, {self.in_size}, {self.in_channels}), got {x.shape}')
    if ws.ndim != 3 or ws.shape[1] != self.num_ws:
      raise ValueError(f'StyleUNet needs {self.num_ws} ws, got {ws.shape}')
    if noise_mode == 'random' and key is None:
      raise ValueError("noise_mode 'random' needs a PRNG key")
    features, image = {}, x
    cond = None
    for res in self.encoder_resolutions:
      image, cond = getattr(self, f'enc{res}')(image, cond)
      features[res // 2] = cond
    count = len(self.decoder_resolutions)
    keys = [None] * count if key is None else list(jax.random.split(key, count))
    h = img = None
    for res, block_key in zip(self.decoder_resolutions, keys, strict=True):
      if res // 2 in self.fused_resolutions:
        fuse = getattr(self, f'fuse{res // 2}')
        h = fuse(features[res // 2] if h is None else jnp.concatenate([h, features[res // 2]], axis=-1))
      block = getattr(self, f'b{res}')
      start = self.ws_start(res)
      block_ws = ws[:, start : start + block.num_conv + block.num_torgb]
      h, img = block(h, img, block_ws, noise_mode=noise_mode, key=block_key, fused_modconv=fused_modconv)
    return img
