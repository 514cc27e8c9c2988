"""The ICT-FaceKit light head model (MIT licence, USC ICT) as a ``Rig``.

Legend: ``v`` vertices, ``f`` triangles, ``t`` UVs, ``k`` = 52 ARKit shapes, ``e`` = 53
ICT expressions, ``i`` = 100 identity components, ``l`` landmarks.

Source: ``ict-facekit/ict_facekit_shapes.npz`` in ``assets.shared_data_dir()`` (every
toolkit shape as arrays, centimetres, y up, face toward +z) with the topology and UVs of
``FaceXModel/generic_neutral_mesh.obj`` beside it; or the toolkit's original folder via
``import_facexmodel``.

Crop (vertex ranges of the toolkit README): kept are the face (0-9408), head and neck
(9409-11247), mouth socket (11248-13293), gums and tongue (14062-17038), teeth
(17039-21450) and eyeballs (21451-24590); dropped are the eye sockets (hidden behind the
eyeballs), lacrimal fluid, eye blend and eye occlusion meshes and eyelashes (open shells
for special shaders, not closed surfaces). Triangles below ``framing.NECK_CUT_Y`` are cut.
UV islands (the toolkit spreads them over 7 UDIM tiles) are repacked into [0, 1]².

Frame: ``framing.reference_frame`` on the face + head-and-neck vertices, chin by
``framing.chin_vertex`` from ``jawOpen``; ``scale`` is mesh units per centimetre.

ARKit mapping (``ARKIT_FROM_ICT``): ICT names follow ARKit with ``_L``/``_R`` for
``Left``/``Right`` (``jawLeft``, ``jawRight``, ``mouthLeft``, ``mouthRight`` are
directions and keep their names). Checked on the geometry: ``eyeBlink_L`` moves vertices at +x, the
subject's left in our frame, so ``_L`` -> ``Left`` (no swap). ``browInnerUp`` and
``cheekPuff`` are the sums of their ``_L`` and ``_R`` halves; ``cheekRaiser_L/R`` (if
present) have no ARKit twin and are dropped; ``tongueOut`` has no ICT shape (zeros,
listed in ``missing_expressions``).

Identity: ``neutral + sum_i w_i identity_delta[i]`` with ``w_i ~ N(0, 1)`` (the toolkit's
convention), then cropped, framed with the template's fixed scale and re-anchored
(``framing.anchor``) like anny.

Landmarks: the toolkit's 68 Multi-PIE vertices reordered so rows 0-11 are the outer lip
48-59 (corners 48 and 54 at rows 0 and 6), then 0-47 and 60-67; named ``multipie_<k>``.
"""

import json
import pathlib

import numpy as np

from head360_jax import assets
from head360_jax.geometry import arkit, obj, rig
from head360_jax.geometry.rigs import framing, uvpack

# Vertex ranges [first, last] of the kept toolkit geometries (toolkit README).
KEPT_RANGES = {
  'face': (0, 9408),
  'head_and_neck': (9409, 11247),
  'mouth_socket': (11248, 13293),
  'gums_and_tongue': (14062, 17038),
  'teeth': (17039, 21450),
  'eyeballs': (21451, 24590),
}
LANDMARK_ORDER = tuple(range(48, 60)) + tuple(range(48)) + tuple(range(60, 68))
BROW_RADIUS_CM = 0.6  # half-width of the eyebrow band around the Multi-PIE brow polylines


def _ict_name(name: str) -> str:
  if name in ('jawLeft', 'jawRight', 'mouthLeft', 'mouthRight'):  # directions, not sides
    return name
  for side, suffix in (('Left', '_L'), ('Right', '_R')):
    if name.endswith(side):
      return name[: -len(side)] + suffix
  return name


# ARKit name -> the ICT shapes whose sum it is (empty: missing).
ARKIT_FROM_ICT: dict[str, tuple[str, ...]] = {
  name: (
    ('browInnerUp_L', 'browInnerUp_R')
    if name == 'browInnerUp'
    else ('cheekPuff_L', 'cheekPuff_R')
    if name == 'cheekPuff'
    else ()
    if name == 'tongueOut'
    else (_ict_name(name),)
  )
  for name in arkit.ARKIT_NAMES
}


def _arkit_deltas(expression_delta: np.ndarray, expression_names, source: str) -> np.ndarray:
  """(52, v, 3) ARKit deltas from ICT's (e, v, 3), following ``ARKIT_FROM_ICT``."""
  lookup = {str(n): i for i, n in enumerate(expression_names)}
  out = np.zeros((arkit.NUM_BLENDSHAPES,) + expression_delta.shape[1:], np.float32)
  for k, name in enumerate(arkit.ARKIT_NAMES):
    for part in ARKIT_FROM_ICT[name]:
      if part not in lookup:
        raise ValueError(f'{source}: expression {part!r} (for ARKit {name!r}) not found')
      out[k] += expression_delta[lookup[part]]
  return out


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
  """Even-odd test of (n, 2) ``points`` against a closed (m, 2) ``polygon``."""
  inside = np.zeros(len(points), bool)
  for a, b in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
    crosses = (a[1] > points[:, 1]) != (b[1] > points[:, 1])
    x = a[0] + (points[:, 1] - a[1]) * (b[0] - a[0]) / np.where(b[1] == a[1], 1.0, b[1] - a[1])
    inside ^= crosses & (points[:, 0] < x)
  return inside


def build_rig(
  mesh: obj.ObjMesh,
  identity_delta: np.ndarray,
  expression_delta: np.ndarray,
  expression_names,
  landmarks68,
  source: str,
) -> rig.Rig:
  """Builds the ICT ``Rig`` from the full toolkit arrays (see the module docstring).

  Args:
    mesh: the generic neutral mesh (26,719 vertices, seamed UVs), centimetres.
    identity_delta: (i, 26719, 3) identity components as offsets from the neutral.
    expression_delta: (e, 26719, 3) expression offsets, ICT names ``expression_names``.
    landmarks68: the 68 Multi-PIE landmark vertex indices.
    source: file or folder name for error messages.

  Raises:
    ValueError: naming ``source``, for arrays of the wrong shape or a missing expression.
  """
  neutral = mesh.vertices.astype(np.float64)
  n = len(neutral)
  if identity_delta.shape[1:] != (n, 3) or expression_delta.shape[1:] != (n, 3):
    raise ValueError(f'{source}: shapes must be (*, {n}, 3), got {identity_delta.shape} and {expression_delta.shape}')
  landmarks68 = np.asarray(landmarks68, np.int64)
  if landmarks68.shape != (68,):
    raise ValueError(f'{source}: expected 68 landmark indices, got {landmarks68.shape}')
  kept = np.zeros(n, bool)
  for first, last in KEPT_RANGES.values():
    kept[first : last + 1] = True
  skin_source = np.zeros(n, bool)
  skin_source[: KEPT_RANGES['head_and_neck'][1] + 1] = True
  expression = _arkit_deltas(expression_delta, expression_names, source)

  x_mid = 0.5 * (neutral[skin_source, 0].min() + neutral[skin_source, 0].max())
  midline = skin_source & (np.abs(neutral[:, 0] - x_mid) < 1e-3)
  chin = framing.chin_vertex(neutral, expression[arkit.index('jawOpen')], midline)
  frame = framing.reference_frame(neutral[skin_source], neutral[chin, 1])
  placed = frame.apply(neutral)
  keep = kept[mesh.faces].all(axis=1) & (placed[mesh.faces][:, :, 1] > framing.NECK_CUT_Y).all(axis=1)
  vertex_ids, uv_ids, faces, face_uvs = framing.crop(mesh.faces, mesh.face_uvs, keep)
  remap = np.full(n, -1)
  remap[vertex_ids] = np.arange(len(vertex_ids))
  if (remap[landmarks68] < 0).any():
    raise ValueError(f'{source}: a landmark vertex lies outside the kept geometry')
  uvs = uvpack.pack(mesh.uvs[uv_ids], face_uvs)
  vertices = placed[vertex_ids]

  def in_range(name):
    first, last = KEPT_RANGES[name]
    return (vertex_ids >= first) & (vertex_ids <= last)

  skin = in_range('face') | in_range('head_and_neck')
  landmarks = remap[landmarks68]
  lips = skin & _inside_polygon(vertices[:, :2], vertices[landmarks[48:60], :2])
  lips &= vertices[:, 2] > vertices[landmarks[48:60], 2].min() - 0.5 * frame.scale  # the lip front, not the chin fold
  lips[landmarks[48:60]] = True  # the outline itself lies on the polygon's boundary
  brow_points = np.concatenate(
    [
      np.linspace(vertices[a], vertices[b], 8)
      for k0, k1 in ((17, 21), (22, 26))
      for a, b in zip(landmarks[k0:k1], landmarks[k0 + 1 : k1 + 1], strict=True)
    ]
  )
  brow_distance = np.linalg.norm(vertices[:, None] - brow_points[None], axis=-1).min(axis=1)
  brows = skin & (brow_distance < BROW_RADIUS_CM * frame.scale)
  nape_y = vertices[landmarks[[48, 54]], 1].mean()
  groups = {
    'skin': skin,
    'scalp': framing.scalp_mask(vertices, skin, brows, nape_y),
    'eyes': in_range('eyeballs'),
    'lips': lips,
    'mouth_interior': in_range('mouth_socket') | in_range('gums_and_tongue') | in_range('teeth'),
    'brows': brows,
  }
  base = neutral[vertex_ids]
  identity = frame.apply_delta(identity_delta[:, vertex_ids])

  def sample(rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(len(identity))
    return framing.anchor(frame.apply(base) + np.tensordot(w, identity, axes=1), skin)

  return rig.Rig(
    name='ict',
    vertices=vertices,
    faces=faces,
    uvs=uvs.apply(mesh.uvs[uv_ids]),
    face_uvs=face_uvs,
    expression_deltas=frame.apply_delta(expression[:, vertex_ids]),
    landmark_vertices=landmarks[list(LANDMARK_ORDER)].astype(np.int32),
    landmark_names=tuple(f'multipie_{k}' for k in LANDMARK_ORDER),
    vertex_groups=groups,
    uv_regions={},
    missing_expressions=tuple(k for k, parts in ARKIT_FROM_ICT.items() if not parts),
    identity_sampler=sample,
    scale=frame.scale,
    source_unit_mm=10.0,  # centimetres
  )


def _landmarks(folder: pathlib.Path) -> list[int]:
  path = folder / 'vertex_indices.json'
  if not path.is_file():
    raise FileNotFoundError(f'{path} not found')
  return json.loads(path.read_text())['idx_to_landmark_verts']


def load(source: str | pathlib.Path | None = None) -> rig.Rig:
  """Loads the ICT rig from the toolkit's shapes ``.npz`` and the neutral OBJ beside it.

  Args:
    source: the ``ict_facekit_shapes.npz`` file; default
      ``assets.shared_data_dir() / 'ict-facekit/ict_facekit_shapes.npz'``. Its folder
      must hold ``FaceXModel/generic_neutral_mesh.obj`` and ``vertex_indices.json``.

  Raises:
    FileNotFoundError: if a file is missing.
    ValueError: naming the file, for arrays that do not match the neutral mesh.
  """
  path = pathlib.Path(source) if source else assets.shared_data_dir() / 'ict-facekit' / 'ict_facekit_shapes.npz'
  if not path.is_file():
    raise FileNotFoundError(f'ICT shapes file {path} not found')
  folder = path.parent / 'FaceXModel'
  mesh = obj.read_obj(folder / 'generic_neutral_mesh.obj')
  with np.load(path) as z:
    if not np.allclose(z['neutral'], mesh.vertices, atol=1e-4):
      raise ValueError(f'{path}: "neutral" does not match {folder / "generic_neutral_mesh.obj"}')
    return build_rig(
      mesh, z['identity_delta'], z['expression_delta'], z['expression_names'], _landmarks(folder), str(path)
    )


def import_facexmodel(folder: str | pathlib.Path) -> rig.Rig:
  """Builds the ICT rig from the toolkit's original ``FaceXModel`` folder of OBJ files.

  ``generic_neutral_mesh.obj`` gives topology and UVs, ``vertex_indices.json`` the
  landmarks and expression names; every ``identityNNN.obj`` is an identity component and
  every OBJ named after an expression is that blendshape (both stored as offsets from the
  neutral). Expressions without an OBJ stay zero; other OBJs are ignored.

  Raises:
    FileNotFoundError: if the folder, the neutral mesh or ``vertex_indices.json`` is missing.
    ValueError: naming the file, for an OBJ whose vertex count differs from the neutral.
  """
  folder = pathlib.Path(folder)
  mesh = obj.read_obj(folder / 'generic_neutral_mesh.obj')
  n = len(mesh.vertices)
  names = json.loads((folder / 'vertex_indices.json').read_text())['expressions']
  identity_paths = sorted(folder.glob('identity[0-9]*.obj'))
  identity = (
    np.stack([obj.read_obj_vertices(p, n) - mesh.vertices for p in identity_paths])
    if identity_paths
    else np.zeros((0, n, 3), np.float32)
  )
  expression = np.zeros((len(names), n, 3), np.float32)
  for k, name in enumerate(names):
    if (folder / f'{name}.obj').is_file():
      expression[k] = obj.read_obj_vertices(folder / f'{name}.obj', n) - mesh.vertices
  return build_rig(mesh, identity, expression, names, _landmarks(folder), str(folder))
