"""Wavefront OBJ reading and writing that keeps UV seams.

Legend: ``v`` vertices, ``t`` texture coordinates, ``f`` triangles, ``g`` groups.

A head template indexes positions (``v``) and texture coordinates (``vt``) separately: a
vertex on a UV seam has one position and several UVs. trimesh splits such vertices
(stack-notes §f), which changes the vertex count the bilinear model and the per-sample
meshes rely on, so this module keeps ``f_v`` and ``f_vt`` as two index arrays.

Supported: ``v`` (extra components such as ``w`` or colours are ignored), ``vt`` (the
first two components), ``f`` with ``a``, ``a/b``, ``a/b/c`` or ``a//c`` corners and
negative (relative) indices, polygons triangulated as a fan around their first corner,
``g`` (the first name on the line; faces before any ``g`` belong to group ``default``).
``vn``, ``o``, ``s``, ``usemtl``, ``mtllib``, ``l`` and comments are skipped.
"""

import dataclasses
import pathlib

import numpy as np

from head360_jax import assets


@dataclasses.dataclass(frozen=True, eq=False)
class ObjMesh:
  """A triangulated OBJ mesh with separate position and UV indexing.

  Attributes:
    vertices: (v, 3) float32 positions, file units.
    uvs: (t, 2) float32 texture coordinates (OBJ convention: v up); (0, 2) if none.
    faces: (f, 3) int32 0-based indices into ``vertices``.
    face_uvs: (f, 3) int32 0-based indices into ``uvs``, -1 for corners without a UV.
    face_groups: (f,) int32 index into ``group_names`` of each triangle.
    group_names: names of the ``g`` groups in order of first appearance.
    face_polygons: (f,) int32 index of the source polygon (``f`` line) of each triangle.
  """

  vertices: np.ndarray
  uvs: np.ndarray
  faces: np.ndarray
  face_uvs: np.ndarray
  face_groups: np.ndarray
  group_names: tuple[str, ...]
  face_polygons: np.ndarray

  def group_faces(self, name: str) -> np.ndarray:
    """Returns the (n,) indices of the triangles in group ``name``.

    Raises:
      ValueError: if the mesh has no group of that name.
    """
    if name not in self.group_names:
      raise ValueError(f'OBJ has no group {name!r}; groups are {self.group_names}')
    return np.flatnonzero(self.face_groups == self.group_names.index(name))


def _resolve(token: str, count: int, path: pathlib.Path, lineno: int) -> int:
  """0-based index of a 1-based (or negative, relative) OBJ index ``token``."""
  try:
    i = int(token)
  except ValueError:
    raise ValueError(f'{path}:{lineno}: bad index {token!r}') from None
  index = i - 1 if i > 0 else count + i
  if i == 0 or not 0 <= index < count:
    raise ValueError(f'{path}:{lineno}: index {i} out of range (only {count} defined so far)')
  return index


def _floats(parts: list[str], n: int, path: pathlib.Path, lineno: int) -> list[float]:
  if len(parts) < n + 1:
    raise ValueError(f'{path}:{lineno}: {parts[0]!r} needs {n} numbers, got {len(parts) - 1}')
  try:
    return [float(x) for x in parts[1 : n + 1]]
  except ValueError:
    raise ValueError(f'{path}:{lineno}: non-numeric {parts[0]!r} line') from None


def read_obj(path: str | pathlib.Path) -> ObjMesh:
  """Reads an OBJ file, keeping positions and UVs separately indexed (seams kept).

  Args:
    path: the ``.obj`` file.

  Returns:
    The triangulated mesh (see ``ObjMesh``); polygons are fanned around their first corner.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: naming the file and line, for a non-numeric or short ``v``/``vt`` line, a
      face with fewer than three corners, an index that is zero or out of range, or a
      face that gives UVs for some corners but not others.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'OBJ file {path} not found')
  vertices, uvs, faces, face_uvs, groups, polygons = [], [], [], [], [], []
  group_names: list[str] = []
  group = -1
  polygon = 0
  with path.open() as lines:
    for lineno, line in enumerate(lines, 1):
      parts = line.split()
      if not parts:
        continue
      key = parts[0]
      if key == 'v':
        vertices.append(_floats(parts, 3, path, lineno))
      elif key == 'vt':
        uvs.append(_floats(parts, 2, path, lineno))
      elif key == 'g':
        name = parts[1] if len(parts) > 1 else 'default'
        if name not in group_names:
          group_names.append(name)
        group = group_names.index(name)
      elif key == 'f':
        if len(parts) < 4:
          raise ValueError(f'{path}:{lineno}: face needs at least 3 corners, got {len(parts) - 1}')
        corners = [corner.split('/') for corner in parts[1:]]
        fv = [_resolve(c[0], len(vertices), path, lineno) for c in corners]
        has_uv = [len(c) > 1 and c[1] != '' for c in corners]
        if any(has_uv) and not all(has_uv):
          raise ValueError(f'{path}:{lineno}: face gives UVs for some corners only')
        ft = [_resolve(c[1], len(uvs), path, lineno) for c in corners] if has_uv[0] else [-1] * len(fv)
        if group < 0:
          group_names.append('default')
          group = len(group_names) - 1
        for k in range(1, len(fv) - 1):
          faces.append((fv[0], fv[k], fv[k + 1]))
          face_uvs.append((ft[0], ft[k], ft[k + 1]))
          groups.append(group)
          polygons.append(polygon)
        polygon += 1
  return ObjMesh(
    vertices=np.asarray(vertices, np.float32).reshape(-1, 3),
    uvs=np.asarray(uvs, np.float32).reshape(-1, 2),
    faces=np.asarray(faces, np.int32).reshape(-1, 3),
    face_uvs=np.asarray(face_uvs, np.int32).reshape(-1, 3),
    face_groups=np.asarray(groups, np.int32),
    group_names=tuple(group_names),
    face_polygons=np.asarray(polygons, np.int32),
  )


def read_obj_vertices(path: str | pathlib.Path, expected_count: int | None = None) -> np.ndarray:
  """Reads only the ``v`` lines of an OBJ file (the data loader's per-sample fast path).

  Topology and UVs come from the template; per-sample meshes only change positions
  (reference-spec §1.5).

  Args:
    path: the ``.obj`` file.
    expected_count: if given, the number of vertices the file must have.

  Returns:
    (v, 3) float32 positions, file units.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: naming the file, if a ``v`` line is malformed or the vertex count differs
      from ``expected_count``.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'OBJ file {path} not found')
  lines = [line for line in path.read_bytes().split(b'\n') if line.startswith(b'v ')]
  tokens = b' '.join(lines).split()
  if len(tokens) == 4 * len(lines):  # the common 'v x y z' layout: one vectorised parse
    try:
      vertices = np.array(tokens).reshape(-1, 4)[:, 1:].astype(np.float32)
    except ValueError:
      raise ValueError(f'{path}: non-numeric "v" line') from None
  else:  # 'v x y z w' or 'v x y z r g b' lines: keep the first three numbers
    vertices = np.zeros((len(lines), 3), np.float32)
    for i, line in enumerate(lines):
      parts = line.split()
      if len(parts) < 4:
        raise ValueError(f'{path}: "v" line {i + 1} has {len(parts) - 1} numbers, expected 3')
      try:
        vertices[i] = [float(x) for x in parts[1:4]]
      except ValueError:
        raise ValueError(f'{path}: non-numeric "v" line {i + 1}') from None
  if expected_count is not None and len(vertices) != expected_count:
    raise ValueError(f'{path}: {len(vertices)} vertices, expected {expected_count}')
  return vertices


def write_obj(
  path: str | pathlib.Path,
  vertices: np.ndarray,
  faces: np.ndarray,
  uvs: np.ndarray | None = None,
  face_uvs: np.ndarray | None = None,
  *,
  material: tuple[str, str] | None = None,
) -> None:
  """Writes a triangle mesh as OBJ, atomically (temporary file and rename).

  Values are written as float32 with 9 significant digits, so ``read_obj`` returns the
  float32 values exactly.

  Args:
    path: destination ``.obj`` file (parent folders are created).
    vertices: (v, 3) positions.
    faces: (f, 3) 0-based vertex indices.
    uvs: optional (t, 2) texture coordinates.
    face_uvs: (f, 3) 0-based indices into ``uvs``; required exactly when ``uvs`` is given.
    material: ``(mtl file name, material name)``: ``mtllib``/``usemtl`` lines for every face.

  Raises:
    ValueError: naming ``path``, for wrong shapes, indices out of range, or only one of
      ``uvs``/``face_uvs`` given.
  """
  vertices = np.asarray(vertices, np.float32)
  faces = np.asarray(faces, np.int64)
  if vertices.ndim != 2 or vertices.shape[1] != 3:
    raise ValueError(f'{path}: vertices must be (v, 3), got {vertices.shape}')
  if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= len(vertices))):
    raise ValueError(f'{path}: faces must be (f, 3) indices into {len(vertices)} vertices')
  if (uvs is None) != (face_uvs is None):
    raise ValueError(f'{path}: give both uvs and face_uvs, or neither')
  chunks = [f'mtllib {material[0]}\n'] if material else []
  chunks.append(('v %.9g %.9g %.9g\n' * len(vertices)) % tuple(vertices.ravel().tolist()))
  chunks += [f'usemtl {material[1]}\n'] if material else []
  if uvs is None:
    chunks.append(('f %d %d %d\n' * len(faces)) % tuple((faces + 1).ravel().tolist()))
  else:
    uvs = np.asarray(uvs, np.float32)
    face_uvs = np.asarray(face_uvs, np.int64)
    if uvs.ndim != 2 or uvs.shape[1] != 2:
      raise ValueError(f'{path}: uvs must be (t, 2), got {uvs.shape}')
    if face_uvs.shape != faces.shape or (face_uvs.size and (face_uvs.min() < 0 or face_uvs.max() >= len(uvs))):
      raise ValueError(f'{path}: face_uvs must be {faces.shape} indices into {len(uvs)} uvs')
    chunks.append(('vt %.9g %.9g\n' * len(uvs)) % tuple(uvs.ravel().tolist()))
    corners = np.stack([faces + 1, face_uvs + 1], axis=-1)  # (f, 3, 2): v/vt per corner
    chunks.append(('f %d/%d %d/%d %d/%d\n' * len(faces)) % tuple(corners.ravel().tolist()))
  assets.atomic_write_bytes(pathlib.Path(path), ''.join(chunks).encode())
