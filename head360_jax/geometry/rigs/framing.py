"""Cropping a source head mesh and bringing it into the reference frame.

Legend: ``v`` vertices, ``f`` triangles, ``t`` texture coordinates, ``n`` kept items.

Frame rule (shared by every rig, docs/rigs.md): a source mesh with y up and the face
toward +z is mapped by one uniform scale and a translation,

  ``scale = HEAD_HEIGHT / (y_crown - y_chin)``,
  ``x' = scale * (x - x_mid)``, ``y' = scale * (y - y_crown) + CROWN_Y``,
  ``z' = scale * (z - z_nose) + NOSE_TIP_Z``,

with ``y_crown`` the highest skin point, ``y_chin`` the chin point (gnathion, see
``chin_vertex``), ``z_nose`` the nose tip (most forward skin point) and ``x_mid`` the
centre of the skin's x range. The constants come from the reference template
(reference-spec §1.5, a MakeHuman head crop): crown at y = 0.064, nose tip at z = 0.066,
and ``HEAD_HEIGHT`` = 0.111, the crown-to-chin height at which the default MakeHuman
head's nose-to-occiput depth equals the template's z extent (0.110). The head then spans
y in about [-0.047, 0.064] inside the hex-plane box ``|x|, |y|, |z| < 1/9``, and the neck
is cut at ``NECK_CUT_Y`` = -0.089, the bottom edge of the dataset camera's 0.178-unit
square, so a frontal view shows the neck leaving the image like an FFHQ crop.

Identities keep the template's scale but are re-anchored (``anchor``) to the same crown,
nose and midline, because whole-body targets (MakeHuman's height, gender) move the head.
"""

import dataclasses

import numpy as np

HEAD_HEIGHT = 0.111
CROWN_Y = 0.064
NOSE_TIP_Z = 0.066
NECK_CUT_Y = -0.089


@dataclasses.dataclass(frozen=True)
class Frame:
  """A uniform scale and translation ``x' = scale * x + offset`` (source -> mesh units)."""

  scale: float
  offset: np.ndarray  # (3,) float64

  def apply(self, points: np.ndarray) -> np.ndarray:
    """Maps (..., 3) source positions to (..., 3) float32 mesh units."""
    return (self.scale * np.asarray(points, np.float64) + self.offset).astype(np.float32)

  def apply_delta(self, deltas: np.ndarray) -> np.ndarray:
    """Maps (..., 3) source offsets (blendshape deltas) to float32 mesh units."""
    return (self.scale * np.asarray(deltas, np.float64)).astype(np.float32)


def reference_frame(skin: np.ndarray, chin_y: float) -> Frame:
  """The frame rule of the module docstring for a head whose skin vertices are ``skin``.

  Args:
    skin: (n, 3) source positions of the skin surface (y up, face toward +z).
    chin_y: source y of the chin point.

  Raises:
    ValueError: if the chin is not below the crown.
  """
  skin = np.asarray(skin, np.float64)
  crown_y = skin[:, 1].max()
  if not chin_y < crown_y:
    raise ValueError(f'chin y {chin_y} must be below the crown y {crown_y}')
  scale = HEAD_HEIGHT / (crown_y - chin_y)
  x_mid = 0.5 * (skin[:, 0].min() + skin[:, 0].max())
  nose_z = skin[:, 2].max()
  offset = np.array([-scale * x_mid, CROWN_Y - scale * crown_y, NOSE_TIP_Z - scale * nose_z])
  return Frame(float(scale), offset)


def anchor(vertices: np.ndarray, skin: np.ndarray) -> np.ndarray:
  """Translates mesh-unit ``vertices`` (v, 3) so their ``skin`` (v,) mask meets the frame's anchors.

  After it the skin's highest point is at ``CROWN_Y``, its most forward point at
  ``NOSE_TIP_Z`` and its x range is centred on 0; no scaling.
  """
  p = vertices[skin]
  shift = np.array([-0.5 * (p[:, 0].min() + p[:, 0].max()), CROWN_Y - p[:, 1].max(), NOSE_TIP_Z - p[:, 2].max()])
  return (vertices + shift).astype(np.float32)


def chin_vertex(vertices: np.ndarray, jaw_delta: np.ndarray, midline: np.ndarray) -> int:
  """The gnathion: the jaw's most anterior-inferior midline point.

  Among the ``midline`` vertices that the jaw-opening blendshape moves by at least half
  its largest motion there (lower lip, chin, under-chin), the one furthest along the
  downward-forward diagonal (0, -1, 1), i.e. with the smallest ``y - z``.

  Args:
    vertices: (v, 3) positions, y up, face toward +z.
    jaw_delta: (v, 3) jawOpen offsets.
    midline: (v,) bool mask of candidate skin vertices on the symmetry plane.

  Raises:
    ValueError: if no midline vertex moves with the jaw.
  """
  motion = np.linalg.norm(jaw_delta, axis=1) * midline
  if not motion.max() > 0:
    raise ValueError('jawOpen moves no midline vertex; cannot locate the chin')
  ids = np.flatnonzero(motion >= 0.5 * motion.max())
  return int(ids[np.argmin(vertices[ids, 1] - vertices[ids, 2])])


def scalp_mask(vertices: np.ndarray, skin: np.ndarray, brows: np.ndarray, nape_y: float) -> np.ndarray:
  """Where hair grows: the skin above a slanted hairline plane.

  The hairline runs from the front hairline (above the brows by 40 % of the brow-to-crown
  height, at the brows' depth) to the nape (height ``nape_y``, about mouth level, at the
  back of the skull); the plane contains the x axis, so it is symmetric.

  Args:
    vertices: (v, 3) template positions in the reference frame.
    skin: (v,) bool mask of candidate vertices (skin without ears).
    brows: (v,) bool mask of the eyebrows.
    nape_y: height of the hairline at the back of the head.

  Returns:
    (v,) bool mask.
  """
  brow_top = vertices[brows, 1].max()
  front_y = brow_top + 0.4 * (vertices[skin, 1].max() - brow_top)
  front_z, back_z = vertices[brows, 2].mean(), vertices[skin, 2].min()
  line = nape_y + (front_y - nape_y) * (vertices[:, 2] - back_z) / (front_z - back_z)
  return skin & (vertices[:, 1] > line)


def crop(faces: np.ndarray, face_uvs: np.ndarray, keep: np.ndarray):
  """Keeps the triangles ``keep`` and drops the vertices and UVs they no longer use.

  Args:
    faces: (f, 3) vertex indices.
    face_uvs: (f, 3) UV indices.
    keep: (f,) bool mask of triangles to keep.

  Returns:
    ``(vertex_ids, uv_ids, new_faces, new_face_uvs)``: (n,) sorted source vertex ids of
    the kept vertices, (m,) source UV ids, and the kept triangles re-indexed into them.
  """
  kept_faces, kept_uvs = faces[keep], face_uvs[keep]
  vertex_ids, new_faces = np.unique(kept_faces, return_inverse=True)
  uv_ids, new_face_uvs = np.unique(kept_uvs, return_inverse=True)
  return (vertex_ids, uv_ids, new_faces.reshape(-1, 3).astype(np.int32), new_face_uvs.reshape(-1, 3).astype(np.int32))


def lip_contour(vertices: np.ndarray, lips: np.ndarray) -> np.ndarray:
  """The 12 outer-lip landmark vertices in the reference order (reference-spec §1.5).

  Procedure: among the lip vertices (``lips`` mask), the mouth corners are the ones with
  the smallest x (row 0, the subject's right, like Multi-PIE point 48) and largest x
  (row 6); rows 1-5 are, for x at 1/6 ... 5/6 of the way from corner 0 to corner 6, the
  highest lip vertex (upper-lip outline) among those nearest that x, and rows 7-11 the
  lowest ones going back from corner 6 to corner 0 (Multi-PIE 48-59 order).

  Args:
    vertices: (v, 3) positions, y up, face toward +z.
    lips: (v,) bool mask of the lip surface.

  Raises:
    ValueError: if fewer than 12 lip vertices are given.
  """
  ids = np.flatnonzero(lips)
  if len(ids) < 12:
    raise ValueError(f'lip contour needs at least 12 lip vertices, got {len(ids)}')
  p = vertices[ids]
  right, left = ids[np.argmin(p[:, 0])], ids[np.argmax(p[:, 0])]
  x0, x6 = vertices[right, 0], vertices[left, 0]
  # A band of lip vertices around each target x; half the column spacing keeps bands apart.
  band = (x6 - x0) / 12.0
  rows = [right]
  for k, upper in [(k, True) for k in range(1, 6)] + [(k, False) for k in range(5, 0, -1)]:
    if k == 5 and not upper:
      rows.append(left)
    x = x0 + (x6 - x0) * k / 6.0
    near = np.abs(p[:, 0] - x) <= band
    candidates = ids[near]
    pick = np.argmax(vertices[candidates, 1]) if upper else np.argmin(vertices[candidates, 1])
    rows.append(candidates[pick])
  return np.asarray(rows, np.int32)
