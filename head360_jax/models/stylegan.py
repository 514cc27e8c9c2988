"""StyleGAN2 mapping and synthesis networks (texture and static-plane generators, discriminator label maps).

Legend: ``b`` batch, ``z`` latent size, ``c`` label size (camera 25), ``n``
number of styles (``num_ws``), ``r`` output resolution, ``o`` output channels; ``wd`` style size (w_dim).

Source: reference-spec §3.2 (Head360's mapping: 2 layers, camera embedding width = z_dim),
§3.3 (skip-architecture synthesis, channels ``min(channel_base // res, channel_max)``), §4
(the discriminator's label mappings are the EG3D mapping with z_dim 0). The tracked average
``w_avg`` is not module state: ``update_w_avg`` returns a new one (the training state holds
it), and ``truncate`` takes it as an argument. Styles are per sample (b, w) or per layer
(b, n, w): ``layer_styles`` turns either into (b, n, w); style mixing (StyleGAN2's
``style_mixing_prob``, 0 in Head360, reference-spec §5.1) is ``mixing_cutoffs`` + ``mix_styles``.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from head360_jax.models import layers, synthesis


def normalize_2nd_moment(x: Float[Array, 'b f'], eps: float = 1e-8) -> Float[Array, 'b f']:
  """``x / sqrt(mean(x**2) + eps)`` over the feature axis (unit RMS per sample)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


class MappingNetwork(nnx.Module):
  """Maps a latent ``z`` and a label ``c`` to one style vector ``w`` (not broadcast, not truncated).

  ``x = concat(normalize(z), normalize(embed(c)))`` (either part absent when its size is 0), then
  ``num_layers`` equalised-lr dense layers with lrelu and ``lr_multiplier``; golden
  mapping_head360 (z 50, c 25, 2 layers) and the label mappings of golden dual_label_cmap (z 0).
  Attribute names (``embed``, ``fc0``, ...) mirror the reference's.
  """

  def __init__(
    self,
    z_dim: int,
    c_dim: int,
    w_dim: int,
    *,
    num_layers: int = 2,
    embed_features: int | None = None,
    layer_features: int | None = None,
    lr_multiplier: float = 0.01,
    rngs: nnx.Rngs,
  ):
    """Builds the network.

    Args:
      z_dim: latent size (0: label only, as the discriminator's camera mapping).
      c_dim: label size (0: no embedding).
      w_dim: output style size.
      num_layers: dense layers after the input (Head360 2, EG3D discriminator 8).
      embed_features: width of the label embedding (dense, linear, lr 1); default ``z_dim`` as
        Head360 (reference-spec §3.2), or ``w_dim`` when ``z_dim == 0`` (EG3D's default).
      layer_features: width of the hidden layers; default ``w_dim``.
      lr_multiplier: learning-rate multiplier of the mapping layers (not of the embedding).
      rngs: parameter initialisation.

    Raises:
      ValueError: if both ``z_dim`` and ``c_dim`` are 0, or ``num_layers < 1``.
    """
    if z_dim == 0 and c_dim == 0:
      raise ValueError('MappingNetwork needs z_dim > 0 or c_dim > 0')
    if num_layers < 1:
      raise ValueError(f'num_layers must be >= 1, got {num_layers}')
    if embed_features is None:
      embed_features = z_dim if z_dim > 0 else w_dim
    embed_features = embed_features if c_dim > 0 else 0
    layer_features = w_dim if layer_features is None else layer_features
    self.z_dim, self.c_dim, self.w_dim, self.num_layers = z_dim, c_dim, w_dim, num_layers
    self.embed = layers.EqualizedDense(c_dim, embed_features, rngs=rngs) if c_dim > 0 else None
    features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
    for idx in range(num_layers):
      layer = layers.EqualizedDense(
        features[idx], features[idx + 1], activation='lrelu', lr_multiplier=lr_multiplier, rngs=rngs
      )
      setattr(self, f'fc{idx}', layer)

  def __call__(self, z: Float[Array, 'b z'] | None, c: Float[Array, 'b c'] | None) -> Float[Array, 'b wd']:
    """Returns ``w`` (b, w_dim). ``z`` (or ``c``) is ignored and may be None when its size is 0."""
    parts = []
    if self.z_dim > 0:
      parts.append(normalize_2nd_moment(z))
    if self.c_dim > 0:
      parts.append(normalize_2nd_moment(self.embed(c)))
    x = jnp.concatenate(parts, axis=-1)
    for idx in range(self.num_layers):
      x = getattr(self, f'fc{idx}')(x)
    return x


def update_w_avg(w_avg: Float[Array, ' wd'], w: Float[Array, 'b wd'], beta: float = 0.998) -> Float[Array, ' wd']:
  """Moving average of ``w``: ``mean_b(w) + beta * (w_avg - mean_b(w))``, with a stop-gradient."""
  mean = jnp.mean(jax.lax.stop_gradient(w), axis=0)
  return w_avg + (1.0 - beta) * (mean - w_avg)


def broadcast(w: Float[Array, 'b wd'], num_ws: int) -> Float[Array, 'b n wd']:
  """Repeats one style per sample ``num_ws`` times (style mixing off): (b, w) -> (b, num_ws, w)."""
  return jnp.broadcast_to(w[:, None, :], (w.shape[0], num_ws, w.shape[1]))


def layer_styles(ws: Float[Array, 'b wd'] | Float[Array, 'b n wd'], num_ws: int) -> Float[Array, 'b n wd']:
  """Per-layer styles (b, num_ws, w): a (b, w) style is broadcast, a (b, num_ws, w) one returned as is.

  Raises:
    ValueError: for any other shape.
  """
  if ws.ndim == 2:
    return broadcast(ws, num_ws)
  if ws.ndim != 3 or ws.shape[1] != num_ws:
    raise ValueError(f'styles must be (b, w) or (b, {num_ws}, w), got {ws.shape}')
  return ws


def mixing_cutoffs(key: jax.Array, batch: int, num_ws: int, prob: float | Array) -> Int[Array, ' b']:
  """Style-mixing cutoffs (b,) int32: per sample, with probability ``prob`` uniform in [1, num_ws), else num_ws.

  StyleGAN2's ``style_mixing_prob`` (Head360 and EG3D train with 0, reference-spec §5.1); a
  cutoff of ``num_ws`` means no mixing. The reference draws one coin and one cutoff per batch;
  here each sample draws its own.

  Raises:
    ValueError: if ``num_ws < 2`` (nothing to mix).
  """
  if num_ws < 2:
    raise ValueError(f'style mixing needs num_ws >= 2, got {num_ws}')
  key_coin, key_cut = jax.random.split(key)
  cutoffs = jax.random.randint(key_cut, (batch,), 1, num_ws)
  return jnp.where(jax.random.uniform(key_coin, (batch,)) < prob, cutoffs, num_ws).astype(jnp.int32)


def mix_styles(
  ws: Float[Array, 'b n wd'], ws_mix: Float[Array, 'b n wd'], cutoffs: Int[Array, ' b']
) -> Float[Array, 'b n wd']:
  """Per sample, layers ``[0, cutoff)`` from ``ws`` and ``[cutoff, n)`` from ``ws_mix`` (StyleGAN2 style mixing)."""
  first = jnp.arange(ws.shape[1])[None, :] < cutoffs[:, None]
  return jnp.where(first[..., None], ws, ws_mix)


def truncate(
  ws: Float[Array, 'b n wd'], w_avg: Float[Array, ' wd'], psi: float = 1.0, cutoff: int | None = None
) -> Float[Array, 'b n wd']:
  """Truncation trick ``w_avg + psi * (ws - w_avg)`` on the first ``cutoff`` styles (all if None).

  Evaluated as torch ``lerp`` (from the nearer end), so ``psi = 1`` returns ``ws`` and ``psi = 0``
  returns ``w_avg`` exactly. ``psi`` may be a traced scalar; ``cutoff`` must be static.
  """
  truncated = jnp.where(psi >= 0.5, ws - (1.0 - psi) * (ws - w_avg), w_avg + psi * (ws - w_avg))
  if cutoff is None:
    return truncated
  return jnp.concatenate([truncated[:, :cutoff], ws[:, cutoff:]], axis=1)


class SynthesisNetwork(nnx.Module):
  """StyleGAN2 synthesis network, skip architecture (reference-spec §3.3; golden synthesis_network_small).

  Blocks ``b4, b8, ..., b{resolution}`` (attribute names as the reference's); block ``b{res}``
  has ``min(channel_base // res, channel_max)`` channels; ``b4`` starts from a learned const.
  Block k reads ``ws[:, i : i + num_conv + num_torgb]`` and ``i`` advances by ``num_conv``, so a
  block's toRGB shares its style with the next block's first conv. ``num_ws = 2 log2(r) - 2``.
  No output activation; the output is float32 whatever the blocks' precision.
  """

  def __init__(
    self,
    w_dim: int,
    resolution: int,
    out_channels: int,
    *,
    channel_base: int = 32768,
    channel_max: int = 512,
    conv_clamp: float | None = None,
    num_bf16_res: int = 0,
    compute_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    """Builds the network.

    Args:
      w_dim: style size.
      resolution: output side, a power of two >= 4.
      out_channels: output channels (32 for the neural texture, 192 for the static planes).
      channel_base, channel_max: channel rule above (Head360: 32768, 512).
      conv_clamp: clamp of every layer's output (None in Head360's generators).
      num_bf16_res: the blocks at this many highest resolutions compute in bfloat16
        (``layers.block_dtype``; Head360's ``--g_num_fp16_res`` is 0, reference-spec §3.3).
      compute_dtype: dtype of the other blocks (float32, or bfloat16 for a whole-model bf16 run).
      rngs: parameter initialisation.

    Raises:
      ValueError: if ``resolution`` is not a power of two >= 4 or ``num_bf16_res < 0``.
    """
    if resolution < 4 or resolution & (resolution - 1):
      raise ValueError(f'resolution must be a power of two >= 4, got {resolution}')
    self.resolutions = tuple(2**i for i in range(2, resolution.bit_length()))
    channels = {res: min(channel_base // res, channel_max) for res in self.resolutions}
    self.num_ws = 0
    for res in self.resolutions:
      in_channels = channels[res // 2] if res > 4 else 0
      dtype = layers.block_dtype(res, resolution, num_bf16_res, compute_dtype)
      block = synthesis.SynthesisBlock(
        in_channels, channels[res], w_dim, res, out_channels, conv_clamp=conv_clamp, dtype=dtype, rngs=rngs
      )
      setattr(self, f'b{res}', block)
      self.num_ws += block.num_conv
    self.num_ws += 1  # the last block's toRGB

  def __call__(
    self,
    ws: Float[Array, 'b n wd'],
    *,
    noise_mode: str = 'random',
    key: jax.Array | None = None,
    fused_modconv: bool = False,
  ) -> Float[Array, 'b r r o']:
    """Returns the (b, resolution, resolution, out_channels) image.

    Args:
      ws: (b, num_ws, w_dim) styles.
      noise_mode: 'random' (needs ``key``; training), 'const' (snapshots) or 'none'.
      key: PRNG key for random noise.
      fused_modconv: execution form of the modulated convolutions (same result).

    Raises:
      ValueError: if ``ws`` does not hold ``num_ws`` styles, or 'random' noise has no ``key``.
    """
    if ws.shape[1] != self.num_ws:
      raise ValueError(f'SynthesisNetwork needs {self.num_ws} ws, got {ws.shape[1]}')
    if noise_mode == 'random' and key is None:
      raise ValueError("noise_mode 'random' needs a PRNG key")
    keys = [None] * len(self.resolutions) if key is None else jax.random.split(key, len(self.resolutions))
    x = img = None
    start = 0
    for res, block_key in zip(self.resolutions, keys, strict=True):
      block = getattr(self, f'b{res}')
      block_ws = ws[:, start : start + block.num_conv + block.num_torgb]
      x, img = block(x, img, block_ws, noise_mode=noise_mode, key=block_key, fused_modconv=fused_modconv)
      start += block.num_conv
    return img
