"""The fitted-head file written by ``fit.py`` and read by ``render.py`` (arrays only, no pickles).

Legend: ``r`` shape rank, ``T`` texture side, ``c`` texture channels, ``w`` style size.

A fitted head is the shape code ``s`` of a bilinear model (paper Eq. 1) rebuilt
deterministically from the rig (``bilinear.build_from_rig(rig, identities, rank, seed)``,
1-2 s), the fitted ARKit weights ``b``, the neural texture, the hair style ``w_hair`` (and the
hair code ``h`` it started from), the camera label of the aligned photo, and the generator
weights pivotal tuning changed (``fitting.tuning``; stored as ``tuned/<path>`` arrays, none
when tuning was off). ``render.py --fitted`` orbits it and drives it with other ARKit weights.
"""

import dataclasses
import io
import pathlib

import jax.numpy as jnp
import numpy as np

from head360_jax import assets, inference
from head360_jax.geometry import arkit, bilinear
from head360_jax.geometry import rig as rig_lib

_ARRAYS = ('s', 'b', 'texture', 'w_hair', 'h', 'label')
_SCALARS = ('shape_identities', 'shape_rank', 'shape_seed', 'step')
_TUNED = 'tuned/'


@dataclasses.dataclass(frozen=True)
class FittedHead:
  """Parameters of a head fitted to a photo.

  Attributes:
    s: (r,) float32 shape code of the shape model below.
    b: (52,) float32 ARKit weights of the photo's expression, in [0, 1] (Apple's order).
    texture: (T, T, c) float32 neural texture.
    w_hair: (w,) float32 hair style (the hair branch's ``w``).
    h: (z,) float32 hair code the fit started from (its predicted hairstyle).
    label: (25,) float32 camera label of the aligned photo (docs/conventions.md).
    shape_rig: rig of the shape model ('anny' | 'ict').
    shape_identities, shape_rank, shape_seed: ``bilinear.build_from_rig`` arguments.
    step: training step of the generator checkpoint the fit used.
    tuned: pivotal tuning's generator weights, ``{path in the parameter tree: array}``
      (``tuning.apply_tuned``); empty without tuning.
  """

  s: np.ndarray
  b: np.ndarray
  texture: np.ndarray
  w_hair: np.ndarray
  h: np.ndarray
  label: np.ndarray
  shape_rig: str
  shape_identities: int
  shape_rank: int
  shape_seed: int
  step: int
  tuned: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def shape_model(head: FittedHead) -> bilinear.BilinearModel:
  """Rebuilds the head's bilinear model (deterministic in its arguments)."""
  return bilinear.build_from_rig(
    rig_lib.load_rig(head.shape_rig), head.shape_identities, rank=head.shape_rank, seed=head.shape_seed
  )


def render(
  renderer: inference.HeadRenderer,
  head: FittedHead,
  b: np.ndarray,
  labels: np.ndarray,
  *,
  bald: bool = False,
  w_hair: np.ndarray | None = None,
) -> np.ndarray:
  """Images (n, R, R, 3) in [-1, 1] of the fitted head with ARKit weights ``b`` from ``labels`` (n, 25).

  ``b`` is (52,) for every camera or (n, 52), one expression per camera (an animation).

  ``bald`` renders it without the static/hair planes; ``w_hair`` (w,) replaces its fitted hair
  style (a hair swap: e.g. ``renderer.styles(t, h)['hair'][0]`` of a training identity).

  Raises:
    ValueError: if the head's texture or tuned weights do not fit the run's generator (fitted
      with another run).
  """
  config = renderer.generator.config
  expected = (config.texture_resolution, config.texture_resolution, config.texture_channels)
  if head.texture.shape != expected or head.w_hair.shape != (config.w_dim,):
    raise ValueError(
      f'fitted texture {head.texture.shape} / hair style {head.w_hair.shape} do not match this run '
      f'({expected} / ({config.w_dim},)): fit with the same --workdir'
    )
  vertices = bilinear.vertices(shape_model(head), head.s, b)
  ws = renderer.styles(head.h, head.h)
  ws = {**ws, 'hair': jnp.asarray(head.w_hair if w_hair is None else w_hair).reshape(1, -1)}
  params = renderer.tuned_params(head.tuned) if head.tuned else None
  return renderer.render_styles(ws, vertices, labels, head.texture, params=params, bald=bald)


def save(head: FittedHead, path: str | pathlib.Path) -> None:
  """Writes ``head`` as a plain ``.npz`` (atomically)."""
  arrays = {name: np.asarray(getattr(head, name), np.float32) for name in _ARRAYS}
  arrays.update({name: np.asarray(getattr(head, name), np.int64) for name in _SCALARS})
  arrays['shape_rig'] = np.asarray(head.shape_rig)
  arrays.update({_TUNED + path: np.asarray(value) for path, value in head.tuned.items()})
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  assets.atomic_write_bytes(pathlib.Path(path), buffer.getvalue())


def load(path: str | pathlib.Path) -> FittedHead:
  """Reads a fitted head.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: if it is not a fitted-head file (names the missing entry or bad shape).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'fitted head {path} not found (write one with fit.py --image ... --out ...)')
  try:
    with np.load(path, allow_pickle=False) as data:
      values = {name: data[name] for name in data.files}
  except (OSError, ValueError) as error:
    raise ValueError(f'{path} is not a fitted-head .npz: {error}') from error
  missing = [name for name in (*_ARRAYS, *_SCALARS, 'shape_rig') if name not in values]
  if missing:
    raise ValueError(f'{path} lacks {missing}: not a fitted-head file')
  head = FittedHead(
    **{name: values[name].astype(np.float32) for name in _ARRAYS},
    **{name: int(values[name]) for name in _SCALARS},
    shape_rig=str(values['shape_rig']),
    tuned={name[len(_TUNED) :]: values[name] for name in values if name.startswith(_TUNED)},
  )
  if head.b.shape != (arkit.NUM_BLENDSHAPES,) or head.label.shape != (25,) or head.texture.ndim != 3:
    raise ValueError(f'{path}: bad shapes b {head.b.shape}, label {head.label.shape}, texture {head.texture.shape}')
  return head
