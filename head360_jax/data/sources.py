"""A grain random-access data source over the SynHead100 layout (reference-spec §1).

Legend: ``n`` records, ``v`` mesh vertices, ``l`` landmarks, ``m`` distinct meshes
(one per identity and expression).

The reference finds an image's identity, mesh and view by index arithmetic on a sorted
file list (``idx // 3744`` ...), which silently breaks when anything else sits under
``images/`` (reference-spec §1.1). Here the index is explicit: it is built once from a
directory listing and the two label files, and every record carries its own identity,
mesh and view, validated up front.
"""

import collections
import json
import os
import pathlib
import threading
import zipfile
from collections.abc import Iterable

import numpy as np

from head360_jax.data import layout
from head360_jax.geometry import obj

CAMERA_DIM = 25
EXPRESSION_DIM = 52
LABEL_DIM = CAMERA_DIM + EXPRESSION_DIM
# <root>/bilinear.npz (the builder's model, geometry/bilinear.py) holds the Tucker core
# 'core' of shape (r, 53, v, 3): its axis 2 is the vertex count every mesh must have.
BILINEAR_CORE_KEY = 'core'


def _subdirs(path: pathlib.Path) -> list[str]:
  """Sorted names of the non-hidden folders in ``path``."""
  with os.scandir(path) as entries:
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith('.'))


def _list_split(split_dir: pathlib.Path) -> list[tuple[str, str, int, str]]:
  """Lists ``(identity, expression, view, file name)`` of a split, sorted per level.

  Sorting per level (identity, then expression, then file name) defines the record
  order; hidden files (e.g. an interrupted atomic write) and non-PNG files are skipped.

  Raises:
    FileNotFoundError: if ``split_dir`` is missing or holds no PNG.
    ValueError: naming the file, if a PNG name is not a view number (``0030.png``).
  """
  if not split_dir.is_dir():
    raise FileNotFoundError(f'image folder {split_dir} not found')
  images = []
  for identity in _subdirs(split_dir):
    for expression in _subdirs(split_dir / identity):
      folder = split_dir / identity / expression
      with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.name.endswith('.png') and not e.name.startswith('.'))
      for name in names:
        stem = name[: -len('.png')]
        if not stem.isdigit():
          raise ValueError(f'{folder / name}: image name must be a view number such as 0030.png')
        images.append((identity, expression, int(stem), name))
  if not images:
    raise FileNotFoundError(f'no PNG images under {split_dir}')
  return images


def _count_obj_vertices(path: pathlib.Path) -> int:
  """Number of ``v`` lines of an OBJ file, without parsing the numbers (fast up-front check)."""
  data = path.read_bytes()
  return data.count(b'\nv ') + data.startswith(b'v ')


def _npz_shape(path: pathlib.Path, key: str) -> tuple[int, ...] | None:
  """Shape of array ``key`` of an ``.npz`` file, from its header only (the core can be GBs), or None."""
  with zipfile.ZipFile(path) as archive:
    if f'{key}.npy' not in archive.namelist():
      return None
    with archive.open(f'{key}.npy') as f:
      version = np.lib.format.read_magic(f)
      read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
      return tuple(read_header(f)[0])


def _read_landmarks(path: pathlib.Path) -> np.ndarray:
  """Reads ``l`` rows of ``x y z`` into (l, 3) float32.

  Raises:
    ValueError: naming the file, if a row does not hold three numbers.
  """
  rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
  if not rows or any(len(row) != 3 for row in rows):
    raise ValueError(f'{path}: landmark file must hold rows of "x y z"')
  try:
    return np.asarray(rows, dtype=np.float64).astype(np.float32)
  except ValueError:
    raise ValueError(f'{path}: non-numeric landmark coordinate') from None


class SynHeadSource:
  """Random-access records of a SynHead100-layout dataset (a grain ``RandomAccessDataSource``).

  Records ``0 .. n_hair-1`` are the images of ``images/split_<res>/`` in order identity →
  expression → view (each level sorted by name). With ``include_bald`` the images of
  ``images/split_<res>_bald/`` follow in the same order, flagged ``hair = 0``. A bald image
  has no entry of its own in the label files: it shares the labels of the haired image
  with the same identity, expression and view (our extension of the layout, see
  ``layout.py``), and the mesh of its identity and expression.

  Expression weights come only from ``total_dataset_exp.json``, never from folder names
  (the real dataset has misspelt folders such as ``browDwonLeft``).

  Each record is a dict:

  * ``png``: the encoded image (bytes; decode with ``transforms.DecodeImage``);
    ``path``: its absolute path (str), ``relpath``: its path relative to ``images/``.
  * ``camera`` (25,), ``expression`` (52,), ``label`` (77,) = cat(camera, expression):
    float32 (reference-spec §1.3).
  * ``vertices`` (v, 3) float32 mesh positions (OBJ ``v`` lines, file units);
    ``landmarks`` (l, 3) float32 (reference-spec §1.5).
  * ``identity`` int: position of the identity folder among the sorted identity folders
    of the haired split; ``identity_name``, ``expression_name`` str; ``view`` int (from the
    file name); ``hair`` int, 1 or 0.

  Parsed meshes are cached per instance (least recently used, ``mesh_cache_bytes`` in
  all), since only one mesh exists per identity and expression (5,200 for SynHead100).
  The cache is dropped when the source is pickled (grain worker processes start empty).

  Args:
    root: dataset root (holds ``images/`` and ``mesh_lms/``).
    resolution: the ``<res>`` of ``images/split_<res>``.
    include_bald: also index ``images/split_<res>_bald/``.
    expected_vertices: the vertex count every mesh must have. If None, that of the
      bilinear model ``<root>/bilinear.npz`` (axis 2 of its ``core``) when the file
      exists, else the count of the first mesh.
    mesh_cache_bytes: budget of the mesh cache.
    views: keep only these view indices (e.g. hold some cameras out for evaluation);
      None keeps all. Identity indices stay those of the whole split.
    expressions: keep only these expression folders (names); None keeps all.
    exclude_expressions: drop these expression folders (held out for evaluation).

  Raises:
    FileNotFoundError: naming the path, for a missing image folder, label file, mesh or
      landmark file.
    ValueError: naming the files involved, for an image without a pose or expression
      label (names the image and the label file), a bald image whose haired twin has no
      label, a bald identity missing from the haired split, a mesh whose vertex count
      differs (names the mesh and both counts), landmark files of different lengths, or a
      malformed label or landmark file.
  """

  def __init__(
    self,
    root: str | os.PathLike,
    resolution: int,
    *,
    include_bald: bool = False,
    expected_vertices: int | None = None,
    mesh_cache_bytes: int = 1 << 30,
    views: Iterable[int] | None = None,
    expressions: Iterable[str] | None = None,
    exclude_expressions: Iterable[str] = (),
  ):
    self.root = pathlib.Path(root).resolve()
    self.resolution = int(resolution)
    self.include_bald = include_bald
    images_dir = self.root / layout.IMAGES
    pose_file, expression_file = images_dir / layout.POSE_JSON, images_dir / layout.EXPRESSION_JSON
    poses = layout.read_labels(pose_file, CAMERA_DIM)
    expression_labels = layout.read_labels(expression_file, EXPRESSION_DIM)

    splits = {False: _list_split(images_dir / layout.split_name(self.resolution))}
    if include_bald:
      splits[True] = _list_split(images_dir / layout.split_name(self.resolution, bald=True))
    identity_names = _subdirs(images_dir / layout.split_name(self.resolution))
    keep_views = None if views is None else frozenset(int(v) for v in views)
    keep_expressions = None if expressions is None else frozenset(expressions)
    drop_expressions = frozenset(exclude_expressions)
    identity_index = {name: i for i, name in enumerate(identity_names)}
    relpaths, label_keys, mesh_keys, views, hair = [], [], [], [], []
    for bald, images in splits.items():
      for identity, expression, view, name in images:
        if keep_views is not None and view not in keep_views:
          continue
        if expression in drop_expressions or (keep_expressions is not None and expression not in keep_expressions):
          continue
        if identity not in identity_index:
          raise ValueError(f'bald identity folder {identity!r} of {images_dir} is not in the haired split')
        relpath = f'{layout.split_name(self.resolution, bald)}/{identity}/{expression}/{name}'
        key = f'{layout.split_name(self.resolution)}/{identity}/{expression}/{name}'  # bald shares haired labels
        for labels, label_file in ((poses, pose_file), (expression_labels, expression_file)):
          if key not in labels:
            raise ValueError(f'image {images_dir / relpath} has no label {key!r} in {label_file}')
        relpaths.append(relpath)
        label_keys.append(key)
        mesh_keys.append((identity, expression))
        views.append(view)
        hair.append(0 if bald else 1)

    if not relpaths:
      chosen = f'views {sorted(keep_views) if keep_views is not None else "all"}, expressions ' + (
        f'{sorted(keep_expressions)}' if keep_expressions is not None else 'all'
      )
      raise ValueError(f'no images of {chosen} (excluding {sorted(drop_expressions)}) under {images_dir}')
    self._relpaths = relpaths
    self._camera = np.stack([poses[key] for key in label_keys])
    self._expression = np.stack([expression_labels[key] for key in label_keys])
    self._camera.flags.writeable = self._expression.flags.writeable = False  # records hand out views
    self._identity = np.asarray([identity_index[identity] for identity, _ in mesh_keys], np.int32)
    self._view = np.asarray(views, np.int32)
    self._hair = np.asarray(hair, np.int32)
    self._mesh_keys = sorted(set(mesh_keys))
    mesh_position = {key: i for i, key in enumerate(self._mesh_keys)}
    self._mesh_index = np.asarray([mesh_position[key] for key in mesh_keys], np.int32)
    self.identity_names = tuple(identity_names)
    self.num_vertices = self._check_meshes(expected_vertices)
    self._landmarks = self._read_all_landmarks()
    self._cache_size = max(1, mesh_cache_bytes // (12 * max(self.num_vertices, 1)))
    self._init_cache()

  def _check_meshes(self, expected: int | None) -> int:
    """Checks that every mesh exists and has the same vertex count; returns that count."""
    origin = 'expected_vertices'  # named in the error, so a user knows which side to fix
    bilinear = self.root / 'bilinear.npz'
    if expected is None and bilinear.is_file():
      shape = _npz_shape(bilinear, BILINEAR_CORE_KEY)
      expected, origin = (shape[2], str(bilinear)) if shape is not None and len(shape) == 4 else (None, '')
    for identity, expression in self._mesh_keys:
      path = layout.mesh_path(self.root, identity, expression)
      if not path.is_file():
        raise FileNotFoundError(f'mesh {path} of images {identity}/{expression} not found')
      count = _count_obj_vertices(path)
      if expected is None:
        expected, origin = count, str(path)
      elif count != expected:
        raise ValueError(f'{path}: {count} vertices, expected {expected} (from {origin})')
    return expected

  def _read_all_landmarks(self) -> np.ndarray:
    """Reads every landmark file up front (they are tiny): (m, l, 3) float32."""
    landmarks = []
    for identity, expression in self._mesh_keys:
      path = layout.landmarks_path(self.root, identity, expression)
      if not path.is_file():
        raise FileNotFoundError(f'landmark file {path} of images {identity}/{expression} not found')
      landmarks.append(_read_landmarks(path))
      if landmarks[-1].shape != landmarks[0].shape:
        first = layout.landmarks_path(self.root, *self._mesh_keys[0])
        raise ValueError(f'{path}: {len(landmarks[-1])} landmarks, but {first} has {len(landmarks[0])}')
    return np.stack(landmarks)

  def _init_cache(self) -> None:
    self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
    self._lock = threading.Lock()

  def __getstate__(self) -> dict:
    state = self.__dict__.copy()
    del state['_cache'], state['_lock']  # a lock cannot be pickled; workers refill their own cache
    return state

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state)
    self._init_cache()

  def vertices(self, mesh: int) -> np.ndarray:
    """(v, 3) float32 positions of distinct mesh ``mesh`` (cached; do not modify in place)."""
    with self._lock:
      if mesh in self._cache:
        self._cache.move_to_end(mesh)
        return self._cache[mesh]
    # Parsed outside the lock so that threads read different meshes in parallel.
    vertices = obj.read_obj_vertices(layout.mesh_path(self.root, *self._mesh_keys[mesh]), self.num_vertices)
    vertices.flags.writeable = False
    with self._lock:
      self._cache[mesh] = vertices
      while len(self._cache) > self._cache_size:
        self._cache.popitem(last=False)
    return vertices

  def __len__(self) -> int:
    return len(self._relpaths)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f'record {index} out of range for {len(self)} records')
    index %= len(self)
    relpath = self._relpaths[index]
    path = self.root / layout.IMAGES / relpath
    mesh = int(self._mesh_index[index])
    identity_name, expression_name = self._mesh_keys[mesh]
    camera, expression = self._camera[index], self._expression[index]
    return {
      'png': path.read_bytes(),
      'path': str(path),
      'relpath': relpath,
      'camera': camera,
      'expression': expression,
      'label': np.concatenate([camera, expression]),
      'vertices': self.vertices(mesh),
      'landmarks': self._landmarks[mesh],
      'identity': int(self._identity[index]),
      'identity_name': identity_name,
      'expression_name': expression_name,
      'view': int(self._view[index]),
      'hair': int(self._hair[index]),
    }

  def __repr__(self) -> str:
    # grain's checkpointing keys sources by repr, so it must identify the data.
    return (
      f'SynHeadSource(root={str(self.root)!r}, resolution={self.resolution}, '
      f'include_bald={self.include_bald}, records={len(self)})'
    )


def swap_pairs(root: str | os.PathLike, resolution: int) -> list[dict]:
  """Reads the hair-swap ground truth of a built dataset (``images/split_<res>_swap``, see ``layout.py``).

  The images of a pair are those of identity A's labelled haired images (``dataset_pose.json``
  keys ``split_<res>/<A>/<expression>/<view>.png``): for each, the swap image of A wearing B's
  hair at the same expression and view must exist, and its labels are A's.

  Args:
    root: dataset root (holds ``images/``).
    resolution: the ``<res>`` of ``images/split_<res>_swap``.

  Returns:
    The pairs in ``pairs.json`` order, each a dict with the entry's keys (``identity`` A,
    ``hair_from`` B, ``hairstyle`` and ``hair_color`` of B, ``folder``) and ``images``: a
    list sorted by (expression, view) of dicts with ``expression_name`` str, ``view`` int,
    ``path`` (absolute path of the swap image, str) and ``relpath`` (relative to
    ``images/``), ``haired_path`` and ``bald_path`` (A's own renders at that expression and
    view; not checked), ``camera`` (25,), ``expression`` (52,) and ``label`` (77,) float32.

  Raises:
    ValueError: naming the file, if the swap split, ``pairs.json`` or a label file is
      missing or malformed, if A has no labelled image, or if a swap image or A's
      expression label is absent.
  """
  root = pathlib.Path(root).resolve()
  resolution = int(resolution)
  images_dir = root / layout.IMAGES
  split_dir = images_dir / layout.swap_split_name(resolution)
  pairs_file = layout.swap_pairs_path(root, resolution)
  if not split_dir.is_dir():
    raise ValueError(f'hair-swap split {split_dir} not found (build the dataset with swap_pairs > 0)')
  if not pairs_file.is_file():
    raise ValueError(f'{pairs_file} not found (the build that wrote {split_dir} did not finish)')
  try:
    entries = json.loads(pairs_file.read_text())['pairs']
    entries = [dict(entry) for entry in entries]
    for entry in entries:
      if entry['folder'] != layout.swap_folder(entry['identity'], entry['hair_from']):
        raise ValueError(f'folder {entry["folder"]!r} of pair {entry["identity"]!r}, {entry["hair_from"]!r}')
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
    raise ValueError(
      f'{pairs_file}: not of the form {{"pairs": [{{"identity": A, "hair_from": B, "hairstyle": ..., '
      f'"folder": "<A>_hair_<B>"}}, ...]}} ({e})'
    ) from None
  pose_file, expression_file = images_dir / layout.POSE_JSON, images_dir / layout.EXPRESSION_JSON
  try:
    poses = layout.read_labels(pose_file, CAMERA_DIM)
    expression_labels = layout.read_labels(expression_file, EXPRESSION_DIM)
  except FileNotFoundError as e:
    raise ValueError(str(e)) from None
  haired_split, bald_split = layout.split_name(resolution), layout.split_name(resolution, bald=True)
  pairs = []
  for entry in entries:
    identity, hair_from = entry['identity'], entry['hair_from']
    prefix = f'{haired_split}/{identity}/'
    keys = sorted(key for key in poses if key.startswith(prefix))  # by expression, then view
    if not keys:
      raise ValueError(f'identity {identity!r} of {pairs_file} has no image labelled {prefix}... in {pose_file}')
    images = []
    for key in keys:
      _, _, expression, name = key.split('/')
      if not name.endswith('.png') or not name[: -len('.png')].isdigit():
        raise ValueError(f'{pose_file}: label key {key!r} does not name a view image such as 0030.png')
      relpath = f'{layout.swap_split_name(resolution)}/{entry["folder"]}/{expression}/{name}'
      path = images_dir / relpath
      if not path.is_file():
        raise ValueError(f'hair-swap image {path} of pair {identity} <- {hair_from} ({pairs_file}) not found')
      if key not in expression_labels:
        raise ValueError(f'image {images_dir / key} has no label {key!r} in {expression_file}')
      camera, expression_label = poses[key], expression_labels[key]
      images.append(
        {
          'expression_name': expression,
          'view': int(name[: -len('.png')]),
          'path': str(path),
          'relpath': relpath,
          'haired_path': str(images_dir / key),
          'bald_path': str(images_dir / f'{bald_split}/{identity}/{expression}/{name}'),
          'camera': camera,
          'expression': expression_label,
          'label': np.concatenate([camera, expression_label]),
        }
      )
    pairs.append({**entry, 'images': images})
  return pairs
