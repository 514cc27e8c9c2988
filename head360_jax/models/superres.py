"""Super-resolution of the neural rendering (EG3D ``SuperresolutionHybrid8XDC`` family).

Legend: ``b`` batch, ``r`` neural rendering resolution, ``R`` output resolution, ``C`` feature
channels (the raw RGB is the first 3 of them), ``n`` number of styles, ``wd`` style size.

Reference-spec §3.10: the rgb and feature images are resized (bilinear, antialiased, half-pixel
centres) to the first block's input size, then each skip-architecture ``SynthesisBlock`` doubles
the resolution, and the output is the accumulated toRGB image (no tanh or clamp of the sum).
Every layer of every block uses the same style, the last of ``ws``; noise is off by default
(Head360 ``sr_noise_mode 'none'``). The reference 8XDC configuration is ``SuperResolution(64,
512, 64, 512, channels=(256, 128), conv_clamp=256)``: 64² -> resize 128² -> 256² -> 512².
Generalised here: ``len(channels)`` blocks, so the first block's input size is
``output_resolution / 2**len(channels)`` (the input is resized only when that differs from
``input_resolution``); e.g. a tiny config ``SuperResolution(C, w, 32, 64, channels=(32,))``.

Precision: the reference runs both blocks in fp16 with the clamp at 256 (``--sr_num_fp16_res`` 4,
any value > 0 meaning all blocks). Here the blocks at the ``num_bf16_res`` highest resolutions
run in bfloat16 (``layers.block_dtype``), which is every block of the 8XDC for any value >= 2;
the resize and the skip image stay float32, and the output is float32.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from head360_jax.models import layers, synthesis


class SuperResolution(nnx.Module):
  """Blocks ``block0, block1, ...`` (attribute names as the reference's); ``num_ws = 1``."""

  def __init__(
    self,
    in_channels: int,
    w_dim: int,
    input_resolution: int,
    output_resolution: int,
    *,
    channels: tuple[int, ...] = (256, 128),
    conv_clamp: float | None = 256,
    antialias: bool = True,
    num_bf16_res: int = 0,
    compute_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    """Builds the network.

    Args:
      in_channels: feature channels C of the rendered feature image (rgb included; 64 in Head360).
      w_dim: style size.
      input_resolution: side r of the rendered images.
      output_resolution: side R of the output; ``R / 2**len(channels)`` must be a whole number.
      channels: output channels of each block (each block doubles the resolution).
      conv_clamp: clamp of every layer's output (256 in Head360: its SR blocks are fp16 there).
      antialias: antialiased resize (Head360 ``sr_antialias`` True).
      num_bf16_res: blocks at this many highest resolutions compute in bfloat16 (Head360: 4, i.e.
        all; 0 = float32, as this module's golden test).
      compute_dtype: dtype of the other blocks.
      rngs: parameter initialisation.

    Raises:
      ValueError: if ``channels`` is empty, ``output_resolution`` is not divisible by
        ``2**len(channels)``, or ``num_bf16_res < 0``.
    """
    if not channels or output_resolution % 2 ** len(channels):
      raise ValueError(f'output_resolution {output_resolution} must be divisible by 2**len(channels={channels})')
    self.input_resolution, self.output_resolution, self.antialias = input_resolution, output_resolution, antialias
    self.block_input_resolution = output_resolution >> len(channels)
    self.num_blocks = len(channels)
    self.num_ws = 1
    previous, resolution = in_channels, self.block_input_resolution
    for idx, out_channels in enumerate(channels):
      resolution *= 2
      dtype = layers.block_dtype(resolution, output_resolution, num_bf16_res, compute_dtype)
      block = synthesis.SynthesisBlock(
        previous, out_channels, w_dim, resolution, 3, conv_clamp=conv_clamp, dtype=dtype, rngs=rngs
      )
      setattr(self, f'block{idx}', block)
      previous = out_channels

  def __call__(
    self,
    rgb: Float[Array, 'b r r 3'],
    features: Float[Array, 'b r r C'],
    ws: Float[Array, 'b n wd'],
    *,
    noise_mode: str = 'none',
    key: jax.Array | None = None,
    fused_modconv: bool = False,
  ) -> Float[Array, 'b R R 3']:
    """Returns the (b, R, R, 3) image.

    Args:
      rgb: (b, r, r, 3) raw rendered RGB (the skip image's start).
      features: (b, r, r, C) rendered features, rgb included.
      ws: (b, n, w) styles; only ``ws[:, -1]`` is used, by every layer.
      noise_mode: 'none' (Head360), 'const' or 'random' (needs ``key``).
      key: PRNG key for random noise.
      fused_modconv: execution form of the modulated convolutions (same result).

    Raises:
      ValueError: if ``rgb`` or ``features`` is not ``input_resolution`` square, or as
        ``SynthesisBlock`` (unknown noise mode, 'random' without ``key``).
    """
    expected = (self.input_resolution, self.input_resolution)
    if rgb.shape[1:3] != expected or features.shape[1:3] != expected:
      raise ValueError(f'SuperResolution expects {expected} inputs, got {rgb.shape} and {features.shape}')
    if self.input_resolution != self.block_input_resolution:
      size = self.block_input_resolution
      rgb = layers.resize_bilinear(rgb, size, antialias=self.antialias)
      features = layers.resize_bilinear(features, size, antialias=self.antialias)
    keys = [None] * self.num_blocks if key is None else jax.random.split(key, self.num_blocks)
    x, img = features, rgb
    for idx, block_key in enumerate(keys):
      block = getattr(self, f'block{idx}')
      block_ws = jnp.repeat(ws[:, -1:], block.num_conv + block.num_torgb, axis=1)
      x, img = block(x, img, block_ws, noise_mode=noise_mode, key=block_key, fused_modconv=fused_modconv)
    return img
