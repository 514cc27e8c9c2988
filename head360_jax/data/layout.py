"""The SynHead100 on-disk layout (reference-spec §1), plus our bald-image and hair-swap extensions.

Legend: ``n`` images, ``v`` vertices, ``l`` landmarks.

```
<root>/images/split_<res>/<identity>/<expression>/<view:04d>.png   RGBA renders
<root>/images/split_<res>_bald/<identity>/<expression>/<view>.png  same cameras, no hair (ours)
<root>/images/split_<res>_swap/<A>_hair_<B>/<expression>/<view>.png  A wearing B's hair (ours)
<root>/images/split_<res>_swap/pairs.json  {"pairs": [{"identity": A, "hair_from": B, ...}, ...]}
<root>/images/dataset_pose.json        {"labels": [[relpath, [25 floats]], ...]}
<root>/images/total_dataset_exp.json   {"labels": [[relpath, [52 floats]], ...]}
<root>/mesh_lms/meshes/<identity>_<expression>.obj
<root>/mesh_lms/lms/<identity>_<expression>.txt                    l rows of "x y z"
```

``relpath`` is relative to ``images/`` (e.g. ``split_128/id_000/jawOpen/0030.png``). The
bald set shares the labels of the haired image with the same identity/expression/view
(its relpath is not listed). Sorted as strings, images run identity-major, then
expression, then view, which the reference's index arithmetic relies on (§1.1).

The swap set (hair-swap ground truth, written only when the builder is asked for swap
pairs) holds identity A's head (mesh per expression, skin texture) wearing identity B's
hairstyle, hair colour and strand randomness, grown on A's neutral scalp, at A's cameras
and expressions. Its images share the labels of A's haired image with the same
expression and view (their relpaths are not listed); ``pairs.json`` lists each pair as
``{"identity": A, "hair_from": B, "hairstyle": B's style, "hair_color": B's colour name,
"folder": "<A>_hair_<B>"}`` (read them with ``sources.swap_pairs``).
"""

import json
import pathlib

import numpy as np

from head360_jax import assets

NUM_VIEWS = 72
IMAGES = 'images'
POSE_JSON = 'dataset_pose.json'
EXPRESSION_JSON = 'total_dataset_exp.json'
MESHES = pathlib.Path('mesh_lms') / 'meshes'
LANDMARKS = pathlib.Path('mesh_lms') / 'lms'
NEUTRAL = 'neutral'  # expression folder of b = 0 (our addition; SynHead100 has the 52 ARKit names)
SWAP_PAIRS_JSON = 'pairs.json'  # in the swap split: the (identity, hair_from) pairs it holds


def identity_name(index: int) -> str:
  """Folder name of identity ``index`` (``id_000`` ...), zero-padded so it sorts numerically."""
  return f'id_{index:03d}'


def identity_index(name: str) -> int:
  """Inverse of ``identity_name``.

  Raises:
    ValueError: if ``name`` is not of the form ``id_<digits>``.
  """
  prefix, _, digits = name.partition('_')
  if prefix != 'id' or not digits.isdigit():
    raise ValueError(f'not an identity folder name: {name!r} (expected id_000, id_001, ...)')
  return int(digits)


def split_name(resolution: int, bald: bool = False) -> str:
  return f'split_{resolution}' + ('_bald' if bald else '')


def image_relpath(resolution: int, identity: str, expression: str, view: int, bald: bool = False) -> str:
  """Path of one image relative to ``<root>/images`` (the key of the label files)."""
  return f'{split_name(resolution, bald)}/{identity}/{expression}/{view:04d}.png'


def swap_split_name(resolution: int) -> str:
  """Folder (under ``images/``) of the hair-swap renders: ``split_<res>_swap``."""
  return f'split_{resolution}_swap'


def swap_folder(identity: str, hair_from: str) -> str:
  """Folder of identity ``identity`` wearing the hair of identity ``hair_from``: ``<A>_hair_<B>``."""
  return f'{identity}_hair_{hair_from}'


def swap_relpath(resolution: int, identity: str, hair_from: str, expression: str, view: int) -> str:
  """Path, relative to ``<root>/images``, of ``identity`` wearing ``hair_from``'s hair at one expression and view."""
  return f'{swap_split_name(resolution)}/{swap_folder(identity, hair_from)}/{expression}/{view:04d}.png'


def swap_pairs_path(root: pathlib.Path, resolution: int) -> pathlib.Path:
  """``<root>/images/split_<res>_swap/pairs.json``."""
  return pathlib.Path(root) / IMAGES / swap_split_name(resolution) / SWAP_PAIRS_JSON


def mesh_path(root: pathlib.Path, identity: str, expression: str) -> pathlib.Path:
  return pathlib.Path(root) / MESHES / f'{identity}_{expression}.obj'


def landmarks_path(root: pathlib.Path, identity: str, expression: str) -> pathlib.Path:
  return pathlib.Path(root) / LANDMARKS / f'{identity}_{expression}.txt'


def write_labels(path: pathlib.Path, labels: dict[str, np.ndarray]) -> None:
  """Writes ``{relpath: vector}`` as ``{"labels": [[relpath, [floats]], ...]}``, sorted, atomically."""
  rows = [[key, [float(x) for x in np.asarray(value).ravel()]] for key, value in sorted(labels.items())]
  assets.atomic_write_bytes(path, json.dumps({'labels': rows}).encode())


def read_labels(path: pathlib.Path, size: int) -> dict[str, np.ndarray]:
  """Reads a label file into ``{relpath: (size,) float32}``.

  Raises:
    FileNotFoundError: if the file is missing.
    ValueError: naming the file, if it is not valid JSON in the expected form, or a
      vector has the wrong length or a non-finite value.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'label file {path} not found')
  try:
    rows = json.loads(path.read_text())['labels']
    labels = {str(key): np.asarray(value, np.float32) for key, value in rows}
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise ValueError(f'{path}: not a label file of the form {{"labels": [[relpath, [floats]], ...]}} ({e})') from None
  for key, value in labels.items():
    if value.shape != (size,) or not np.all(np.isfinite(value)):
      raise ValueError(f'{path}: label of {key!r} must be {size} finite floats, got shape {value.shape}')
  return labels
