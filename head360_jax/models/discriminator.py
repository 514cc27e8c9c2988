"""Dual discriminator conditioned on camera and expression (Head360's ``DualLabelDualDiscriminator``).

Legend: ``b`` batch, ``H W`` rows/columns of the final image (512 in Head360), ``h w`` rows/
columns of the raw neural render (64), ``r`` rows/columns at one block's resolution, ``c``
channels, ``k`` label width (77 = 25 camera + 52 expression), ``m`` mapped-label width
(``cmap``: 512 + 32 = 544 at full size).

Data flow (reference-spec §4; reference ``training_avatar_texture/dual_discriminator.py`` with
``DiscriminatorBlock``, ``DiscriminatorEpilogue``, ``MinibatchStdLayer`` and ``MappingNetwork``
from EG3D's ``training/networks_stylegan2.py``; the label mappings are ``stylegan.MappingNetwork``
with ``z_dim = 0``):

  image (b, H, W, 3) ++ resize(image_raw (b, h, w, 3) -> H W, bilinear)  -> (b, H, W, 6)
  resnet blocks H -> H/2 -> ... -> 4, channels min(channel_base // r, channel_max)
  c = [camera (25), expression (52)] -> camera mapping (-> m1) ++ expression mapping (-> m2) = cmap
  epilogue at 4 x 4: minibatch stddev, 3x3 conv, FC, FC to m, score = <out, cmap> / sqrt(m)

Everything is NHWC. The epilogue flattens its 4 x 4 map in the reference's NCHW order
(``c * 16 + row * 4 + col``), so its FC weight keeps the reference layout. Label noise
(``disc_c_noise``) is the pure function :func:`add_label_noise`, applied by the training step.

Precision (reference-spec §4): the blocks at the ``num_bf16_res`` highest resolutions compute in
bfloat16 (``layers.block_dtype``; Head360's ``--d_num_fp16_res`` 4 with conv_clamp 256: 512, 256,
128 and 64), the others in ``compute_dtype``. The label mappings and the epilogue (minibatch
stddev, the 4 x 4 conv, FCs, projection) are always float32, as the reference's epilogue, so the
logits are float32.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from head360_jax.models import layers
from head360_jax.models.layers import EqualizedConv2d, EqualizedDense, resize_bilinear
from head360_jax.models.stylegan import MappingNetwork

CAMERA_DIM = 25
EXPRESSION_DIM = 52
RESNET_GAIN = math.sqrt(0.5)


def add_label_noise(c: Float[Array, 'b k'], key: jax.Array, scale: float) -> Float[Array, 'b k']:
  """Adds ``disc_c_noise``: Gaussian noise scaled by the batch std of each label dimension.

  ``c + N(0, 1) * std(c, axis=0, ddof=1) * scale``. The reference applies this to the camera and
  expression halves separately; as the std is per dimension, that equals one call on all of ``c``.
  Head360 trains with ``scale = 0`` (its README), in which case ``c`` is returned unchanged.

  Args:
    c: labels (b, k), e.g. the 77-d [camera, expression] label.
    key: PRNG key for the noise.
    scale: ``disc_c_noise``, >= 0.

  Raises:
    ValueError: if ``scale < 0``, or ``scale > 0`` with a batch of fewer than 2 (the unbiased
      std, torch's ``Tensor.std`` default, is undefined there).

  Source: ``dual_discriminator.py`` ``DualLabelDualDiscriminator.forward`` (EG3D
  ``DualDiscriminator.forward``).
  """
  if scale < 0:
    raise ValueError(f'label noise scale must be >= 0, got {scale}')
  if scale == 0:
    return c
  if c.shape[0] < 2:
    raise ValueError(f'label noise needs a batch of at least 2 for the std, got {c.shape[0]}')
  std = jnp.std(c, axis=0, ddof=1, keepdims=True)
  return c + jax.random.normal(key, c.shape, c.dtype) * std * scale


def minibatch_stddev(
  x: Float[Array, 'b r r c'], group_size: int | None, num_channels: int = 1
) -> Float[Array, 'b r r c2']:
  """Appends ``num_channels`` minibatch-stddev features (StyleGAN2 ``MinibatchStdLayer``), NHWC.

  The batch splits into groups of ``g = min(group_size, b)`` samples taken with a stride: sample
  ``i`` is in group ``i % (b // g)`` (for b = 4, g = 2: {0, 2} and {1, 3}). The channels split into
  ``num_channels`` consecutive slices. Per group and slice: population std over the group
  (``sqrt(var + 1e-8)``) averaged over the slice's channels and all pixels; that scalar is appended
  as a constant channel to every member. ``group_size=None`` uses the whole batch as one group.

  Returns:
    (b, r, r, c + num_channels).

  Raises:
    ValueError: if ``b`` is not divisible by ``g`` or ``c`` not by ``num_channels``.
  """
  b, h, w, c = x.shape
  g = b if group_size is None else min(group_size, b)
  if b % g:
    raise ValueError(f'batch {b} is not divisible by the minibatch-stddev group size {g}')
  if c % num_channels:
    raise ValueError(f'{c} channels are not divisible by num_channels={num_channels}')
  y = x.reshape(g, b // g, h, w, num_channels, c // num_channels)
  y = y - jnp.mean(y, axis=0)
  y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # (n, h, w, f, c/f)
  y = jnp.mean(y, axis=(1, 2, 4))  # (n, f)
  y = jnp.tile(y, (g, 1))  # sample i takes group i % n, as torch's repeat(G, ...)
  y = jnp.broadcast_to(y[:, None, None, :], (b, h, w, num_channels)).astype(x.dtype)
  return jnp.concatenate([x, y], axis=-1)


class DiscriminatorBlock(nnx.Module):
  """StyleGAN2 resnet discriminator block: (b, r, r, c_in) -> (b, r/2, r/2, c_out).

  ``fromrgb`` (1x1 conv, lrelu) exists only in the first block (``in_channels == 0``), which
  reads the image instead of features. Then ``skip`` (FIR down 2, 1x1 conv, no bias, linear) and
  ``conv1(conv0(x))`` (3x3 lrelu; 3x3 lrelu with FIR down 2) are summed, each scaled by sqrt(0.5).
  ``conv_clamp`` clamps fromrgb/conv0 to +-clamp and conv1 to +-clamp * sqrt(0.5) (skip: none).
  All four convs compute in ``dtype``; the output is in it.

  Source: EG3D ``training/networks_stylegan2.py`` ``DiscriminatorBlock`` (architecture 'resnet').
  """

  def __init__(
    self,
    in_channels: int,
    tmp_channels: int,
    out_channels: int,
    *,
    img_channels: int = 6,
    conv_clamp: float | None = None,
    resample_filter: tuple[int, ...] = (1, 3, 3, 1),
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    conv = dict(activation='lrelu', conv_clamp=conv_clamp, resample_filter=resample_filter, dtype=dtype, rngs=rngs)
    self.fromrgb = EqualizedConv2d(img_channels, tmp_channels, 1, **conv) if in_channels == 0 else None
    self.conv0 = EqualizedConv2d(tmp_channels, tmp_channels, 3, **conv)
    self.conv1 = EqualizedConv2d(tmp_channels, out_channels, 3, down=2, **conv)
    self.skip = EqualizedConv2d(
      tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter, dtype=dtype, rngs=rngs
    )

  def __call__(
    self, x: Float[Array, 'b r r c_in'] | None, img: Float[Array, 'b r r c_img'] | None = None
  ) -> Float[Array, 'b r2 r2 c_out']:
    """Applies the block.

    Args:
      x: features of the previous block; None in the first block.
      img: the 6-channel input image pair; read by the first block only.

    Raises:
      ValueError: if the first block gets no ``img`` or a later one gets no ``x``.
    """
    if self.fromrgb is not None:
      if img is None:
        raise ValueError('the first discriminator block needs img')
      x = self.fromrgb(img) if x is None else x + self.fromrgb(img)
    elif x is None:
      raise ValueError('a discriminator block without fromrgb needs features x')
    y = self.skip(x, gain=RESNET_GAIN)
    x = self.conv1(self.conv0(x), gain=RESNET_GAIN)
    return y + x


class DiscriminatorEpilogue(nnx.Module):
  """The 4 x 4 head: minibatch stddev, 3x3 conv, FC, FC to ``cmap_dim``, projection on ``cmap``.

  ``score = <out(fc(flatten(conv(mbstd(x))))), cmap> / sqrt(cmap_dim)``; with ``cmap_dim = 0`` the
  last FC has one output and is the score. The flatten uses the reference's NCHW order.

  Source: EG3D ``training/networks_stylegan2.py`` ``DiscriminatorEpilogue`` (architecture 'resnet').
  """

  def __init__(
    self,
    in_channels: int,
    cmap_dim: int,
    *,
    resolution: int = 4,
    mbstd_group_size: int | None = 2,
    mbstd_num_channels: int = 1,
    conv_clamp: float | None = None,
    rngs: nnx.Rngs,
  ):
    self.cmap_dim = cmap_dim
    self.resolution = resolution
    self.mbstd_group_size = mbstd_group_size
    self.mbstd_num_channels = mbstd_num_channels
    self.conv = EqualizedConv2d(
      in_channels + mbstd_num_channels, in_channels, 3, activation='lrelu', conv_clamp=conv_clamp, rngs=rngs
    )
    self.fc = EqualizedDense(in_channels * resolution**2, in_channels, activation='lrelu', rngs=rngs)
    self.out = EqualizedDense(in_channels, cmap_dim if cmap_dim > 0 else 1, rngs=rngs)

  def __call__(self, x: Float[Array, 'b r r c'], cmap: Float[Array, 'b m'] | None) -> Float[Array, 'b 1']:
    """Returns the logits (b, 1).

    Raises:
      ValueError: on a spatial size other than ``resolution``, or no ``cmap`` with ``cmap_dim > 0``.
    """
    if x.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(f'epilogue expects {self.resolution}x{self.resolution} features, got {x.shape}')
    if self.cmap_dim > 0 and (cmap is None or cmap.shape[-1] != self.cmap_dim):
      raise ValueError(f'epilogue expects cmap (b, {self.cmap_dim}), got {None if cmap is None else cmap.shape}')
    x = x.astype(jnp.float32)  # float32 whatever the last block's precision, as the reference
    if self.mbstd_num_channels > 0:
      x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
    x = self.conv(x)
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # the reference's NCHW flatten
    x = self.out(self.fc(x))
    if self.cmap_dim == 0:
      return x
    return jnp.sum(x * cmap, axis=1, keepdims=True) * (1 / math.sqrt(self.cmap_dim))


class DualDiscriminator(nnx.Module):
  """Head360's dual discriminator: scores (final image, raw render) pairs given their 77-d label.

  Constructor semantics follow ``DualLabelDualDiscriminator(c_dim=25, c2_dim=52, img_resolution,
  img_channels=3, architecture='resnet', channel_base, channel_max, conv_clamp, cmap_dim=None,
  epilogue_kwargs={'mbstd_group_size': ...})``. Defaults are Head360's training values
  (reference-spec §4): channel_base 32768, channel_max 512, conv_clamp 256, mbstd group 2,
  camera cmap = channels at 4 x 4 (512), expression cmap 32, 8 mapping layers.

  Submodules carry the reference's names so torch checkpoints map one to one: ``b{r}`` the
  resnet block at resolution r (r = resolution ... 8), ``mapping`` (camera), ``mapping2``
  (expression), ``b4`` the epilogue.

  Args:
    resolution: H = W of ``image``, a power of two >= 8.
    img_channels: channels of each of the two images (the trunk sees twice as many).
    camera_dim, expression_dim: the label splits as ``c[:, :camera_dim]``, ``c[:, camera_dim:]``.
    camera_cmap_dim: camera-mapping width; None = channels at 4 x 4 (the reference's cmap_dim).
    expression_cmap_dim: expression-mapping width (32, hard-coded in the reference).
    channel_base, channel_max: channels at resolution r are ``min(channel_base // r, channel_max)``.
    mbstd_group_size, mbstd_num_channels: minibatch-stddev settings (``--mbstd-group`` 2 in Head360).
    num_mapping_layers: FC layers in each label mapping.
    conv_clamp: clamp of the conv outputs (256 in Head360, set with fp16; None = off).
    num_bf16_res: blocks at this many highest resolutions compute in bfloat16 (Head360: 4).
    compute_dtype: dtype of the other blocks (the epilogue and label mappings stay float32).
    rngs: parameter initialisation.

  Raises:
    ValueError: on a resolution that is not a power of two >= 8, or ``num_bf16_res < 0``.
  """

  def __init__(
    self,
    resolution: int,
    *,
    img_channels: int = 3,
    camera_dim: int = CAMERA_DIM,
    expression_dim: int = EXPRESSION_DIM,
    camera_cmap_dim: int | None = None,
    expression_cmap_dim: int = 32,
    channel_base: int = 32768,
    channel_max: int = 512,
    mbstd_group_size: int | None = 2,
    mbstd_num_channels: int = 1,
    num_mapping_layers: int = 8,
    conv_clamp: float | None = 256,
    num_bf16_res: int = 0,
    compute_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    if resolution < 8 or resolution & (resolution - 1):
      raise ValueError(f'resolution must be a power of two >= 8, got {resolution}')
    self.resolution = resolution
    self.camera_dim = camera_dim
    self.expression_dim = expression_dim

    def channels(res: int) -> int:
      return min(channel_base // res, channel_max)

    self.block_resolutions = tuple(2**i for i in range(int(math.log2(resolution)), 2, -1))
    for res in self.block_resolutions:
      block = DiscriminatorBlock(
        channels(res) if res < resolution else 0,
        channels(res),
        channels(res // 2),
        img_channels=2 * img_channels,
        conv_clamp=conv_clamp,
        dtype=layers.block_dtype(res, resolution, num_bf16_res, compute_dtype),
        rngs=rngs,
      )
      setattr(self, f'b{res}', block)
    self.camera_cmap_dim = channels(4) if camera_cmap_dim is None else camera_cmap_dim
    # EG3D mappings with no latent: normalize_2nd_moment(embed(label)), then FC layers, lr 0.01.
    self.mapping = MappingNetwork(0, camera_dim, self.camera_cmap_dim, num_layers=num_mapping_layers, rngs=rngs)
    self.mapping2 = MappingNetwork(0, expression_dim, expression_cmap_dim, num_layers=num_mapping_layers, rngs=rngs)
    self.b4 = DiscriminatorEpilogue(
      channels(4),
      self.camera_cmap_dim + expression_cmap_dim,
      mbstd_group_size=mbstd_group_size,
      mbstd_num_channels=mbstd_num_channels,
      conv_clamp=conv_clamp,
      rngs=rngs,
    )

  def label_embedding(self, c: Float[Array, 'b k']) -> Float[Array, 'b m']:
    """cmap = [mapping(c[:, :25]), mapping2(c[:, 25:])] (b, m); no label noise.

    Raises:
      ValueError: if ``c`` is not (b, camera_dim + expression_dim).
    """
    if c.ndim != 2 or c.shape[1] != self.camera_dim + self.expression_dim:
      raise ValueError(f'label must be (b, {self.camera_dim + self.expression_dim}), got {c.shape}')
    c = c.astype(jnp.float32)
    camera, expression = c[:, : self.camera_dim], c[:, self.camera_dim :]
    return jnp.concatenate([self.mapping(None, camera), self.mapping2(None, expression)], axis=1)

  def __call__(
    self, image: Float[Array, 'b H W c_img'], image_raw: Float[Array, 'b h w c_img'], c: Float[Array, 'b k']
  ) -> Float[Array, 'b 1']:
    """Logits (b, 1) for NHWC images in [-1, 1] and labels ``c`` (b, 77); no label noise here.

    ``image_raw`` is resized to H x W with antialiased bilinear interpolation (half-pixel
    centres; the reference's ``filtered_resizing``, mode 'antialiased') and appended to ``image``.

    Raises:
      ValueError: on an image that is not (b, resolution, resolution, c) or a bad label shape.
    """
    if image.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(f'image must be (b, {self.resolution}, {self.resolution}, c), got {image.shape}')
    cmap = self.label_embedding(c)
    raw = resize_bilinear(image_raw, self.resolution, antialias=True)
    img = jnp.concatenate([image, raw.astype(image.dtype)], axis=-1)
    x = None
    for res in self.block_resolutions:
      x = getattr(self, f'b{res}')(x, img if res == self.resolution else None)
    return self.b4(x, cmap)
