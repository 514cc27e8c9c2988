"""RefineNet (Head360 stage 3): pix2pixHD's global generator and multi-scale PatchGAN discriminator.

Legend: ``b`` batch, ``h w`` image rows/columns, ``c`` channels (``i``/``o`` input/output channels
of a kernel), ``k`` kernel side, ``s`` discriminator scales (``num_d``), ``l`` feature maps per
scale (``n_layers_d + 2``).

Head360 §3.3 ("RefineNet"): a conditional GAN with pix2pixHD (Wang et al., "High-Resolution Image
Synthesis and Semantic Manipulation with Conditional GANs", CVPR 2018) as backbone refines the
images rendered by the frozen Head360 generator; "the loss function and hyper-parameters for
training RefineNet are the same as pix2pixHD". The reference repository has no RefineNet
(reference-spec §6), so this follows pix2pixHD's ``models/networks.py`` and ``train.py``:

* ``GlobalGenerator`` (pix2pixHD §3.2, G1): reflect-pad 3 + 7x7 conv + norm + ReLU; ``n_downsampling``
  3x3 stride-2 convs doubling the channels; ``n_blocks`` residual blocks; as many 3x3 stride-2
  transposed convs (torch ``ConvTranspose2d(padding=1, output_padding=1)``) halving them;
  reflect-pad 3 + 7x7 conv + tanh. Norm = instance norm without affine parameters.
* ``MultiscaleDiscriminator`` (§3.2 "multi-scale discriminators"): ``num_d`` PatchGANs, the i-th
  seeing the input average-pooled i times; every intermediate feature map is returned for the
  feature-matching loss (§3.2, Eq. 4). The input is ``concat(condition, image)`` (the un-refined
  render and a real or refined image), as pix2pixHD's ``concat(label, image)``.
* Losses: LSGAN (Mao et al. 2017, as pix2pixHD §4 trains with), feature matching (§3.2, Eq. 4)
  and a VGG perceptual loss, both weighted 10 (``--lambda_feat``); one training step updates G and
  D from the same forward pass, with Adam(2e-4, 0.5, 0.999) for both.

Layout: NHWC images, HWIO kernels. A transposed conv's kernel is stored as ``(k, k, i, o)`` with
``kernel[a, c, i, o]`` = torch's ``weight[i, o, a, c]``. Initialisation follows pix2pixHD's
``weights_init`` (conv kernels N(0, 0.02)) with torch's default bias init, U(±1/sqrt(fan_in)).
Strided and transposed convolutions go through ``layers.strided_conv2d``/``conv_transpose2d``
(sub-pixel forms), whose gradients XLA:CPU runs as GEMMs rather than dilated-convolution loop nests.
"""

import dataclasses
import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float

from head360_jax.metrics import lpips as lpips_lib
from head360_jax.models import layers

INSTANCE_NORM_EPS = 1e-5  # torch InstanceNorm2d default
LEAKY_SLOPE = 0.2
D_CHANNEL_MAX = 512  # NLayerDiscriminator caps its channels at 512
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # pix2pixHD VGGLoss
Features = list[list[Float[Array, 'b _ _ c']]]


@dataclasses.dataclass(frozen=True)
class RefineConfig:
  """Sizes and training hyper-parameters of RefineNet; the defaults are pix2pixHD's (``--netG global``).

  Attributes:
    ngf: channels after the generator's first conv (``--ngf``).
    n_downsampling: stride-2 convs of the generator (``--n_downsample_global``); the residual
      blocks have ``ngf * 2**n_downsampling`` channels, and the image sides must be multiples of
      ``2**n_downsampling``.
    n_blocks: residual blocks (``--n_blocks_global``).
    input_channels: channels of the generator's input (the un-refined render).
    output_channels: channels of the generator's output.
    ndf: channels of each discriminator's first conv (``--ndf``).
    n_layers_d: stride-2 convs of each PatchGAN (``--n_layers_D``).
    num_d: discriminator scales (``--num_D``; 2 here and in pix2pixHD's options).
    lambda_feat: weight of the feature-matching and the VGG losses (``--lambda_feat``).
    learning_rate, beta1, beta2: Adam for G and D (``--lr``, ``--beta1``; beta2 is fixed in pix2pixHD).
  """

  ngf: int = 64
  n_downsampling: int = 4
  n_blocks: int = 9
  input_channels: int = 3
  output_channels: int = 3
  ndf: int = 64
  n_layers_d: int = 3
  num_d: int = 2
  lambda_feat: float = 10.0
  learning_rate: float = 2e-4
  beta1: float = 0.5
  beta2: float = 0.999

  def __post_init__(self):
    sizes = (self.ngf, self.input_channels, self.output_channels, self.ndf, self.n_layers_d, self.num_d)
    if min(sizes) < 1 or self.n_downsampling < 0 or self.n_blocks < 0:
      raise ValueError(f'RefineConfig sizes must be positive (n_downsampling, n_blocks >= 0), got {self}')


# Pure math.


def reflect_pad(x: Float[Array, 'b h w c'], pad: int) -> Float[Array, 'b hp wp c']:
  """torch ``ReflectionPad2d(pad)``: mirror without repeating the edge pixel; needs ``pad < h, w``."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


def instance_norm(x: Float[Array, 'b h w c'], eps: float = INSTANCE_NORM_EPS) -> Float[Array, 'b h w c']:
  """torch ``InstanceNorm2d(affine=False)``: per sample and channel, zero mean and unit (biased) variance over h, w."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def conv(
  x: Float[Array, 'b h w i'], kernel: Float[Array, 'k k i o'], bias: Float[Array, ' o'], stride: int = 1, pad: int = 0
) -> Float[Array, 'b hh ww o']:
  """torch ``Conv2d(stride, padding=pad)`` (zero padding, cross-correlation): side ``(n + 2 pad - k) // stride + 1``."""
  if stride == 1:
    return layers.conv2d(x, kernel, ((pad, pad), (pad, pad))) + bias
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return layers.strided_conv2d(x, kernel, stride) + bias


def conv_transpose_up2(
  x: Float[Array, 'b h w i'], kernel: Float[Array, '3 3 i o'], bias: Float[Array, ' o']
) -> Float[Array, 'b hh ww o']:
  """torch ``ConvTranspose2d(kernel_size=3, stride=2, padding=1, output_padding=1)``: exactly doubles h and w.

  ``y[2j + r] = sum_a kernel[a] x[(2j + r + 1 - a) / 2]`` over the taps ``a`` giving whole indices
  in ``[0, h)`` (per axis). That is a cross-correlation of the zero-inserted input, padded by 1
  before and 2 after, with the flipped kernel; ``layers.conv_transpose2d`` pads 1 on both sides,
  so it gets one more (zero) input row and column and the extra output row and column are cut.
  """
  h, w = x.shape[1:3]
  x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
  return layers.conv_transpose2d(x, jnp.flip(kernel, (0, 1)), 2, 1)[:, : 2 * h, : 2 * w] + bias


def avg_pool_down2(x: Float[Array, 'b h w c']) -> Float[Array, 'b hh ww c']:
  """torch ``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``: side ``(n - 1) // 2 + 1``.

  Each output is the mean of the in-image pixels of its 3x3 window (padding is not counted).
  """
  window, strides, padding = (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
  count = jax.lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, jax.lax.add, window, strides, padding)
  return total / count


# Modules: parameters and the order of operations.


# Parameter draws come in fixed-size chunks so that ONE compiled random program serves every
# parameter shape: a per-shape normal/uniform draw is a new XLA program costing 0.5-3 CPU seconds
# to compile here (33 s for the tiny test model's 12 shapes), the per-shape slicing 0.06 s.
_INIT_CHUNK = 1 << 18


@jax.jit
def _init_chunk(key: jax.Array) -> tuple[Array, Array]:
  key_normal, key_uniform = jax.random.split(key)
  return jax.random.normal(key_normal, (_INIT_CHUNK,)), jax.random.uniform(key_uniform, (_INIT_CHUNK,))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _conv_params(normal: tuple[Array, ...], uniform: Array, shape: tuple[int, ...], fan_in: int) -> tuple[Array, Array]:
  kernel = 0.02 * jnp.concatenate(normal)[: math.prod(shape)].reshape(shape)
  return kernel, (2.0 * uniform[: shape[-1]] - 1.0) / math.sqrt(fan_in)


def _conv_init(key: jax.Array, shape: tuple[int, int, int, int], fan_in: int) -> tuple[Array, Array]:
  """Kernel ~ N(0, 0.02) (pix2pixHD ``weights_init``) and bias ~ U(±1/sqrt(fan_in)) (torch's default)."""
  chunks = [_init_chunk(jax.random.fold_in(key, i)) for i in range(-(-math.prod(shape) // _INIT_CHUNK))]
  return _conv_params(tuple(normal for normal, _ in chunks), chunks[0][1], shape, fan_in)


class Conv(nnx.Module):
  """A convolution's parameters: ``kernel (k, k, i, o)`` ~ N(0, 0.02), ``bias (o,)`` ~ U(±1/sqrt(fan_in))."""

  def __init__(
    self, kernel_size: int, in_channels: int, out_channels: int, *, fan_in: int | None = None, rngs: nnx.Rngs
  ):
    """``fan_in`` defaults to ``in_channels * kernel_size**2``; torch's transposed conv uses ``out_channels * k**2``."""
    shape = (kernel_size, kernel_size, in_channels, out_channels)
    kernel, bias = _conv_init(rngs.params(), shape, fan_in or in_channels * kernel_size**2)
    self.kernel, self.bias = nnx.Param(kernel), nnx.Param(bias)

  def __call__(self, x: Float[Array, 'b h w i'], stride: int = 1, pad: int = 0) -> Float[Array, 'b hh ww o']:
    return conv(x, self.kernel[...], self.bias[...], stride, pad)


class ResnetBlock(nnx.Module):
  """pix2pixHD ``ResnetBlock`` (reflect padding, no dropout): ``x + IN(conv(pad(relu(IN(conv(pad(x)))))))``."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.conv1 = Conv(3, channels, channels, rngs=rngs)
    self.conv2 = Conv(3, channels, channels, rngs=rngs)

  def __call__(self, x: Float[Array, 'b h w c']) -> Float[Array, 'b h w c']:
    y = jax.nn.relu(instance_norm(self.conv1(reflect_pad(x, 1))))
    return x + instance_norm(self.conv2(reflect_pad(y, 1)))


class GlobalGenerator(nnx.Module):
  """pix2pixHD ``GlobalGenerator`` (G1 of pix2pixHD §3.2): the RefineNet generator."""

  def __init__(self, config: RefineConfig, *, rngs: nnx.Rngs):
    ngf, n = config.ngf, config.n_downsampling
    self.n_downsampling = n
    self.stem = Conv(7, config.input_channels, ngf, rngs=rngs)
    self.down = nnx.List([Conv(3, ngf * 2**i, ngf * 2 ** (i + 1), rngs=rngs) for i in range(n)])
    self.blocks = nnx.List([ResnetBlock(ngf * 2**n, rngs=rngs) for _ in range(config.n_blocks)])
    up_channels = [(ngf * 2 ** (n - i), ngf * 2 ** (n - i) // 2) for i in range(n)]
    self.up = nnx.List([Conv(3, i, o, fan_in=o * 9, rngs=rngs) for i, o in up_channels])
    self.head = Conv(7, ngf, config.output_channels, rngs=rngs)

  def __call__(self, x: Float[Array, 'b h w i']) -> Float[Array, 'b h w o']:
    """Refines an image.

    Args:
      x: the un-refined render, NHWC in [-1, 1]; ``h`` and ``w`` multiples of ``2**n_downsampling``
        and at least ``max(4, 2 * 2**n_downsampling)`` (reflection padding needs more pixels than it adds).

    Returns:
      The refined image, same ``b h w``, ``output_channels`` channels, in (-1, 1) (tanh).

    Raises:
      ValueError: if ``h`` or ``w`` is not a multiple of ``2**n_downsampling``, or is too small.
    """
    h, w = x.shape[1:3]
    factor = 2**self.n_downsampling
    if h % factor or w % factor or min(h, w) < max(4, 2 * factor):
      raise ValueError(
        f'image sides must be multiples of 2**n_downsampling = {factor} and >= {max(4, 2 * factor)}, got {x.shape}'
      )
    x = jax.nn.relu(instance_norm(self.stem(reflect_pad(x, 3))))
    for layer in self.down:
      x = jax.nn.relu(instance_norm(layer(x, stride=2, pad=1)))
    for block in self.blocks:
      x = block(x)
    for layer in self.up:
      x = jax.nn.relu(instance_norm(conv_transpose_up2(x, layer.kernel[...], layer.bias[...])))
    return jnp.tanh(self.head(reflect_pad(x, 3)))


class NLayerDiscriminator(nnx.Module):
  """pix2pixHD ``NLayerDiscriminator`` (70x70 PatchGAN for 3 layers), kernel 4, zero padding 2.

  Layers (``n = n_layers``): conv stride 2 + LeakyReLU(0.2); ``n - 1`` convs stride 2 + IN +
  LeakyReLU, doubling the channels up to 512; one conv stride 1 + IN + LeakyReLU (doubling,
  capped); a conv stride 1 to 1 channel (the patch scores, no sigmoid: LSGAN).
  """

  def __init__(self, in_channels: int, ndf: int, n_layers: int, *, rngs: nnx.Rngs):
    channels = [in_channels] + [min(ndf * 2**i, D_CHANNEL_MAX) for i in range(n_layers + 1)] + [1]
    self.convs = nnx.List([Conv(4, i, o, rngs=rngs) for i, o in zip(channels[:-1], channels[1:], strict=True)])

  def __call__(self, x: Float[Array, 'b h w i']) -> list[Float[Array, 'b _ _ c']]:
    """All ``n_layers + 2`` layer outputs: side ``n // 2 + 1`` after a stride-2 conv, ``n + 1`` after a stride-1 one."""
    out, last = [], len(self.convs) - 1
    for index, layer in enumerate(self.convs):
      x = layer(x, stride=2 if index < last - 1 else 1, pad=2)
      if index < last:
        x = jax.nn.leaky_relu(x if index == 0 else instance_norm(x), LEAKY_SLOPE)
      out.append(x)
    return out


class MultiscaleDiscriminator(nnx.Module):
  """pix2pixHD ``MultiscaleDiscriminator`` with ``getIntermFeat`` (pix2pixHD §3.2).

  ``scales[i]`` sees the input average-pooled ``i`` times (pix2pixHD names it ``scale{num_D-1-i}``).
  """

  def __init__(self, config: RefineConfig, *, rngs: nnx.Rngs):
    in_channels = config.input_channels + config.output_channels
    self.scales = nnx.List(
      [NLayerDiscriminator(in_channels, config.ndf, config.n_layers_d, rngs=rngs) for _ in range(config.num_d)]
    )

  def __call__(self, condition: Float[Array, 'b h w i'], image: Float[Array, 'b h w o']) -> Features:
    """Scores ``image`` given ``condition``.

    Args:
      condition: the un-refined render, NHWC in [-1, 1].
      image: a real or refined image of the same ``b h w``.

    Returns:
      ``num_d`` lists (full resolution first) of the ``n_layers + 2`` feature maps of that scale;
      the last map of each, ``(b, _, _, 1)``, holds the patch scores.

    Raises:
      ValueError: if the two inputs differ in ``b h w``.
    """
    if condition.shape[:3] != image.shape[:3]:
      raise ValueError(f'condition and image must share (b, h, w), got {condition.shape} and {image.shape}')
    x = jnp.concatenate([condition, image], axis=-1)
    out = []
    for index, scale in enumerate(self.scales):
      if index:
        x = avg_pool_down2(x)
      out.append(scale(x))
    return out


# Losses (pix2pixHD models/pix2pixHD_model.py and networks.py).


def lsgan_loss(features: Features, target_is_real: bool) -> Float[Array, '']:
  """pix2pixHD ``GANLoss`` with LSGAN: ``sum_scales mean((score - t)**2)``, ``t`` 1 for real, 0 for fake.

  As in pix2pixHD the per-scale means are summed over the scales (not averaged).

  Args:
    features: a ``MultiscaleDiscriminator`` output; only each scale's last map (the scores) is used.
    target_is_real: the target label.
  """
  target = 1.0 if target_is_real else 0.0
  return sum(jnp.mean(jnp.square(scale[-1] - target)) for scale in features)


def feature_matching_loss(fake: Features, real: Features, weight: float = 10.0) -> Float[Array, '']:
  """pix2pixHD's GAN feature-matching loss (pix2pixHD §3.2, Eq. 4).

  ``weight * sum_i sum_j 1/num_d * 4/(n_layers + 1) * mean|fake[i][j] - sg(real[i][j])|`` over
  every scale ``i`` and every feature map ``j`` but the last (the scores); ``sg`` stops gradients.

  Args:
    fake: discriminator features of the refined images.
    real: discriminator features of the real images (no gradient flows into them).
    weight: ``lambda_feat`` (10 in pix2pixHD).

  Raises:
    ValueError: if the two feature lists differ in structure.
  """
  if [len(f) for f in fake] != [len(r) for r in real]:
    raise ValueError('fake and real discriminator features must have the same scales and layers')
  num_d, n_layers = len(fake), len(fake[0]) - 2
  scale = weight / num_d * 4.0 / (n_layers + 1)
  terms = [
    jnp.mean(jnp.abs(f - jax.lax.stop_gradient(r)))
    for fs, rs in zip(fake, real, strict=True)
    for f, r in zip(fs[:-1], rs[:-1], strict=True)
  ]
  return scale * sum(terms)


def vgg_loss(
  vgg: lpips_lib.LpipsVggParams, x: Float[Array, 'b h w 3'], y: Float[Array, 'b h w 3'], weight: float = 10.0
) -> Float[Array, '']:
  """pix2pixHD ``VGGLoss`` on LPIPS' VGG16: ``weight * sum_l w_l mean|f_l(x) - sg(f_l(y))|``.

  ``w = (1/32, 1/16, 1/8, 1/4, 1)`` and L1 (mean over every element) as pix2pixHD. Differences:
  pix2pixHD taps torchvision VGG19 at relu1_1 ... relu5_1 and feeds it [-1, 1] images as they
  are; here the backbone is the VGG16 already loaded for LPIPS (``lpips.load_lpips('vgg')``), tapped
  at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, and fed ImageNet-normalised images
  (``lpips.scale_input``, the input those ImageNet weights expect).

  Args:
    vgg: ``load_lpips('vgg')`` (the linear heads are not used).
    x: refined images, NHWC in [-1, 1].
    y: target images, same shape; no gradient flows into their features.
    weight: ``lambda_feat`` (10 in pix2pixHD).

  Raises:
    TypeError: if ``vgg`` is not ``LpipsVggParams``.
    ValueError: if ``x`` and ``y`` differ in shape, are not ``(b, h, w, 3)`` or a side is below 16.
  """
  if not isinstance(vgg, lpips_lib.LpipsVggParams):
    raise TypeError(f"vgg_loss needs LpipsVggParams (load_lpips('vgg')), got {type(vgg).__name__}")
  if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) < lpips_lib.VGG16.min_size:
    raise ValueError(f'vgg_loss needs two (b, h, w, 3) batches of one shape with h, w >= 16, got {x.shape}, {y.shape}')
  # Two passes rather than one on the concatenated batch: the target's needs no backward pass.
  fx = lpips_lib.features(vgg, lpips_lib.scale_input(x))
  fy = lpips_lib.features(vgg, lpips_lib.scale_input(jax.lax.stop_gradient(y)))
  return weight * sum(w * jnp.mean(jnp.abs(a - b)) for w, a, b in zip(VGG_LAYER_WEIGHTS, fx, fy, strict=True))


# Training state and step.


@flax.struct.dataclass
class RefineState:
  """RefineNet training state: a pytree of arrays with the graph definitions and config as static fields.

  Attributes:
    step: () int32, completed steps.
    g_params, d_params: generator / discriminator ``nnx.Param`` values as pure nested dicts.
    g_opt_state, d_opt_state: their Adam states.
    g_graphdef, d_graphdef: NNX graph definitions (static).
    config: the ``RefineConfig`` (static).
  """

  step: jax.Array
  g_params: dict
  d_params: dict
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  g_graphdef: nnx.GraphDef = flax.struct.field(pytree_node=False)
  d_graphdef: nnx.GraphDef = flax.struct.field(pytree_node=False)
  config: RefineConfig = flax.struct.field(pytree_node=False)

  def generator(self) -> GlobalGenerator:
    """The generator module with the current parameters (e.g. to refine renders at inference)."""
    return nnx.merge(self.g_graphdef, self.g_params)

  def discriminator(self) -> MultiscaleDiscriminator:
    """The discriminator module with the current parameters."""
    return nnx.merge(self.d_graphdef, self.d_params)


def refine_optimizer(config: RefineConfig) -> optax.GradientTransformation:
  """pix2pixHD's Adam for both networks (its linear decay over ``--niter_decay`` epochs is left to the caller)."""
  return optax.adam(config.learning_rate, b1=config.beta1, b2=config.beta2)


def create_refine_state(config: RefineConfig, rngs: nnx.Rngs) -> RefineState:
  """Initialises the generator and discriminator (pix2pixHD init) and their optimisers; step 0."""
  g_graphdef, g_params = nnx.split(GlobalGenerator(config, rngs=rngs), nnx.Param)
  d_graphdef, d_params = nnx.split(MultiscaleDiscriminator(config, rngs=rngs), nnx.Param)
  g_params, d_params = nnx.to_pure_dict(g_params), nnx.to_pure_dict(d_params)
  tx = refine_optimizer(config)
  return RefineState(
    step=jnp.zeros((), jnp.int32),
    g_params=g_params,
    d_params=d_params,
    g_opt_state=tx.init(g_params),
    d_opt_state=tx.init(d_params),
    g_graphdef=g_graphdef,
    d_graphdef=d_graphdef,
    config=config,
  )


def refine_step(
  state: RefineState, batch: dict, vgg: lpips_lib.LpipsVggParams | None
) -> tuple[RefineState, dict[str, Float[Array, '']]]:
  """One pix2pixHD iteration (``train.py``): G and D are both updated from one forward pass.

  G minimises ``LSGAN(D(c, G(c)), real) + feature matching + VGG``; D minimises
  ``0.5 * (LSGAN(D(c, sg(G(c))), fake) + LSGAN(D(c, real), real))``; both gradients are taken at
  the parameters the step starts from, as pix2pixHD's (G's loss is backpropagated and applied
  before D's, but D's graph was built before G's update). G is run once: its output's gradient
  comes from ``jax.value_and_grad`` of G's loss with respect to the image, and is pulled back to
  G's parameters through ``jax.vjp``. Pure and jit-ready (``jax.jit(refine_step)``; the state's
  static fields are hashable).

  Args:
    state: from ``create_refine_state`` or a previous step.
    batch: ``condition``: renders of the frozen Head360 generator, and ``real``: their ground
      truth; both ``(b, h, w, 3)`` NHWC in [-1, 1] (``h, w`` as ``GlobalGenerator`` requires).
    vgg: ``lpips.load_lpips('vgg')`` for the VGG loss; None drops that term (pix2pixHD
      ``--no_vgg_loss``).

  Returns:
    The new state and float32 scalar metrics ``g/loss``, ``g/loss_gan``, ``g/loss_feat``,
    ``g/loss_vgg`` (0 without ``vgg``), ``g/l1`` (mean |G(c) - real|, monitored only),
    ``g/grad_norm``, ``d/loss``, ``d/loss_real``, ``d/loss_fake``, ``d/grad_norm``.

  Raises:
    ValueError: if ``condition`` and ``real`` differ in shape (or as the modules raise).
  """
  condition, real = batch['condition'], batch['real']
  if condition.shape != real.shape:
    raise ValueError(f'condition and real must have one shape, got {condition.shape} and {real.shape}')
  config, tx = state.config, refine_optimizer(state.config)
  fake, pull_back = jax.vjp(lambda p: nnx.merge(state.g_graphdef, p)(condition), state.g_params)

  def d_loss_fn(d_params):
    # Reals and fakes in one batch (instance norm is per sample, so this equals two calls).
    both = nnx.merge(state.d_graphdef, d_params)(
      jnp.concatenate([condition, condition]), jnp.concatenate([real, jax.lax.stop_gradient(fake)])
    )
    b = real.shape[0]
    real_features = [[f[:b] for f in scale] for scale in both]
    loss_real = lsgan_loss(real_features, True)
    loss_fake = lsgan_loss([[f[b:] for f in scale] for scale in both], False)
    loss = 0.5 * (loss_real + loss_fake)
    return loss, (real_features, {'d/loss': loss, 'd/loss_real': loss_real, 'd/loss_fake': loss_fake})

  (_, (real_features, d_metrics)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
  discriminator = nnx.merge(state.d_graphdef, state.d_params)

  def g_loss_fn(image):
    fake_features = discriminator(condition, image)
    loss_gan = lsgan_loss(fake_features, True)
    loss_feat = feature_matching_loss(fake_features, real_features, config.lambda_feat)
    loss_vgg = jnp.zeros(()) if vgg is None else vgg_loss(vgg, image, real, config.lambda_feat)
    loss = loss_gan + loss_feat + loss_vgg
    return loss, {'g/loss': loss, 'g/loss_gan': loss_gan, 'g/loss_feat': loss_feat, 'g/loss_vgg': loss_vgg}

  (_, g_metrics), image_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = pull_back(image_grad)
  g_updates, g_opt_state = tx.update(g_grads, state.g_opt_state, state.g_params)
  d_updates, d_opt_state = tx.update(d_grads, state.d_opt_state, state.d_params)
  metrics = g_metrics | d_metrics
  metrics |= {'g/l1': jnp.mean(jnp.abs(fake - real)), 'g/grad_norm': optax.tree.norm(g_grads)}
  metrics |= {'d/grad_norm': optax.tree.norm(d_grads)}
  new_state = state.replace(
    step=state.step + 1,
    g_params=optax.apply_updates(state.g_params, g_updates),
    d_params=optax.apply_updates(state.d_params, d_updates),
    g_opt_state=g_opt_state,
    d_opt_state=d_opt_state,
  )
  return new_state, metrics
