"""Per-identity procedural appearance: skin, lips, brows, eyes, baked into a UV texture.

Legend: ``v`` vertices, ``f`` triangles, ``t`` texture coordinates, ``s`` texture size.

Every identity of the dataset builder gets an ``Appearance`` drawn from its own seed:

* skin tone ``skin_tone`` in [0, 1] along a light-to-dark line through ``SKIN_TONES``
  (sRGB anchors from very light to deep brown), drawn uniformly;
* low-frequency albedo variation: a few random 3D sinusoids over the surface (periods
  0.3-1 head widths), +-6 % of the albedo, plus a reddish tint on cheeks and nose;
* lips: the skin colour darkened and reddened (``LIP_TINT``, random strength);
* brows: the hair colour (one of ``HAIR_COLORS``), drawn as an arched band over each
  eyeball (``_brow_weight``: a coarse mesh smears vertex-group brows over the forehead);
* eyes: sclera, an iris of one of ``IRIS_COLORS`` and a black pupil, placed by the angle
  of each eyeball point from the eyeball's forward (+z) axis;
* mouth interior: dark pink.

Regions come from the rig's ``uv_regions`` when it has one of that name (sharper), else
from its ``vertex_groups`` interpolated over the triangles. The colours are baked into a
UV texture by rasterising the template in UV space (``gl.Renderer.uv_attributes``), so
the same texture maps onto every expression of the identity (geometry/rig.py contract).
"""

import dataclasses

import numpy as np
from scipy import ndimage

from head360_jax.geometry.rig import Rig
from head360_jax.rendering import gl

# sRGB skin anchors, light to dark (Fitzpatrick I-VI-like progression).
SKIN_TONES = (
  np.array([[247, 222, 206], [236, 192, 164], [214, 160, 124], [176, 120, 86], [128, 82, 56], [84, 54, 38]], np.float32)
  / 255
)
HAIR_COLORS = {
  'black': (28, 24, 22),
  'dark_brown': (58, 40, 28),
  'brown': (100, 66, 42),
  'light_brown': (150, 106, 66),
  'blonde': (208, 172, 116),
  'auburn': (128, 56, 30),
  'grey': (168, 164, 158),
  'red': (170, 74, 36),
}
IRIS_COLORS = {
  'brown': (92, 56, 30),
  'dark_brown': (52, 32, 20),
  'hazel': (130, 102, 50),
  'green': (80, 120, 70),
  'blue': (70, 110, 160),
  'grey': (120, 130, 136),
}
LIP_TINT = np.array([0.80, 0.52, 0.55], np.float32)
SCLERA = np.array([0.93, 0.91, 0.88], np.float32)
MOUTH_INTERIOR = np.array([0.45, 0.18, 0.20], np.float32)
IRIS_HALF_ANGLE = 0.50  # radians from the eyeball axis: iris diameter ~12 mm on a ~24 mm eyeball
PUPIL_HALF_ANGLE = 0.20
_REGIONS = ('lips', 'skin', 'eyes', 'mouth_interior')


@dataclasses.dataclass(frozen=True)
class Appearance:
  """The colours of one identity (all RGB in [0, 1], float32 arrays of shape (3,))."""

  skin_tone: float
  skin: np.ndarray
  hair_name: str
  hair: np.ndarray
  iris_name: str
  iris: np.ndarray
  lips: np.ndarray
  noise_frequencies: np.ndarray  # (k, 3) in cycles per head width
  noise_phases: np.ndarray  # (k,)


def skin_color(tone: float) -> np.ndarray:
  """sRGB skin colour (3,) of a tone in [0, 1] (0 = lightest anchor), piecewise-linear in ``SKIN_TONES``.

  Raises:
    ValueError: if ``tone`` is outside [0, 1].
  """
  if not 0.0 <= tone <= 1.0:
    raise ValueError(f'skin tone must be in [0, 1], got {tone}')
  x = tone * (len(SKIN_TONES) - 1)
  i = min(int(x), len(SKIN_TONES) - 2)
  return (SKIN_TONES[i] + (x - i) * (SKIN_TONES[i + 1] - SKIN_TONES[i])).astype(np.float32)


def sample_appearance(rng: np.random.Generator) -> Appearance:
  """Draws one identity's appearance from ``rng`` (deterministic for a seeded generator)."""
  tone = float(rng.uniform(0.0, 1.0))
  skin = skin_color(tone)
  hair_name = str(rng.choice(list(HAIR_COLORS)))
  iris_name = str(rng.choice(list(IRIS_COLORS)))
  lips = skin * (LIP_TINT + rng.uniform(-0.05, 0.05, 3).astype(np.float32))
  directions = rng.normal(size=(6, 3))
  directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
  frequencies = directions * rng.uniform(1.0, 3.3, (6, 1))
  return Appearance(
    tone,
    skin,
    hair_name,
    np.asarray(HAIR_COLORS[hair_name], np.float32) / 255,
    iris_name,
    np.asarray(IRIS_COLORS[iris_name], np.float32) / 255,
    np.clip(lips, 0, 1).astype(np.float32),
    frequencies.astype(np.float32),
    rng.uniform(0, 2 * np.pi, 6).astype(np.float32),
  )


def _eye_angles(positions: np.ndarray, eye_mask: np.ndarray, eye_vertices: np.ndarray) -> np.ndarray:
  """Angle (radians) of each texel's point from the forward axis of its eyeball (left/right by the sign of x)."""
  angles = np.full(positions.shape[:-1], np.pi, np.float32)
  for side in (-1.0, 1.0):
    ball = eye_vertices[np.sign(eye_vertices[:, 0]) == side]
    if len(ball) == 0:
      continue
    # The eyeball is a sphere: its centre is midway between the extreme vertices.
    centre = (ball.min(0) + ball.max(0)) / 2
    texels = eye_mask & (np.sign(positions[..., 0]) == side)
    offset = positions[texels] - centre
    cosine = offset[:, 2] / np.maximum(np.linalg.norm(offset, axis=-1), 1e-12)
    angles[texels] = np.arccos(np.clip(cosine, -1.0, 1.0))
  return angles


def _brow_weight(positions: np.ndarray, eye_vertices: np.ndarray, skin: np.ndarray) -> np.ndarray:
  """Soft mask in [0, 1] of two arched brows placed from the eyeballs (per texel).

  Vertex groups interpolated over a coarse mesh smear brows across the forehead, so the
  brows are drawn from geometry instead: over each eyeball (centre ``c``, radius ``r``) a
  band centred ``1.5 r`` above ``c`` with a ``0.25 r`` arch, ``1.6 r`` to each side and
  ``0.3 r`` thick at the middle, tapering at the ends, on the front of the head only.
  """
  weight = np.zeros(positions.shape[:-1], np.float32)
  for side in (-1.0, 1.0):
    ball = eye_vertices[np.sign(eye_vertices[:, 0]) == side]
    if len(ball) == 0:
      continue
    centre, radius = (ball.min(0) + ball.max(0)) / 2, float(np.ptp(ball[:, 1])) / 2
    across = (positions[..., 0] - centre[0]) / (1.6 * radius)
    height = centre[1] + radius * (1.5 + 0.25 * (1 - across**2))
    half_thickness = 0.3 * radius * (1 - 0.5 * across**2)
    inside = 1 - np.abs(positions[..., 1] - height) / np.maximum(half_thickness, 1e-9)
    band = np.clip(3 * inside, 0, 1) * (np.abs(across) < 1) * (positions[..., 2] > centre[2])
    weight = np.maximum(weight, band)
  return weight * skin


def head_texture(
  rig: Rig, vertices: np.ndarray, appearance: Appearance, size: int = 512, renderer: gl.Renderer | None = None
) -> np.ndarray:
  """Bakes an identity's albedo into a UV texture of the rig.

  Args:
    rig: the rig (topology, UVs, vertex groups, UV regions).
    vertices: (v, 3) neutral vertices of the identity, mesh units (positions drive the
      3D albedo noise and the eye placement).
    appearance: the identity's colours (``sample_appearance``).
    size: texture width = height in texels.
    renderer: GL renderer to bake with (default: the process's).

  Returns:
    (size, size, 3) uint8 sRGB texture, row 0 = v = 1; texels outside every UV island are
    filled with the nearest island's colour so mipmaps do not bleed black into seams.

  Raises:
    ValueError: if ``vertices`` does not match the rig.
  """
  vertices = np.asarray(vertices, np.float32)
  if vertices.shape != rig.vertices.shape:
    raise ValueError(f'vertices must be {rig.vertices.shape}, got {vertices.shape}')
  renderer = renderer or gl.default_renderer()
  groups = np.stack([rig.vertex_groups[name].astype(np.float32) for name in _REGIONS], axis=-1)
  attributes = np.concatenate([vertices, groups], axis=-1)
  baked, covered = renderer.uv_attributes(rig.uvs, rig.face_uvs, rig.faces, attributes, size)
  positions = baked[..., :3]
  masks = {name: baked[..., 3 + i] for i, name in enumerate(_REGIONS)}
  for name in _REGIONS:
    if name in rig.uv_regions:  # a painted UV mask is sharper than interpolated vertex groups
      region = np.asarray(rig.uv_regions[name], np.float32)
      zoom = (size / region.shape[0], size / region.shape[1])
      masks[name] = np.clip(ndimage.zoom(region, zoom, order=1), 0, 1) if region.shape != (size, size) else region
  width = float(np.ptp(vertices[:, 0]))
  unit = positions / max(width, 1e-12)
  noise = np.sin(2 * np.pi * unit @ appearance.noise_frequencies.T + appearance.noise_phases).mean(-1)
  albedo = appearance.skin * (1.0 + 0.15 * noise[..., None])
  # Redder cheeks and nose: a soft band around the front of the face at mid height.
  face_front = np.clip((unit[..., 2] - np.percentile(unit[covered, 2], 80)) * 6, 0, 1)
  albedo = albedo * (1 - 0.12 * face_front[..., None] * np.array([0.0, 0.6, 0.5], np.float32))
  blend = lambda base, color, weight: base + np.clip(weight, 0, 1)[..., None] * (color - base)
  albedo = blend(albedo, appearance.lips, masks['lips'])
  brows = _brow_weight(positions, vertices[rig.vertex_groups['eyes']], masks['skin'] > 0.5)
  albedo = blend(albedo, appearance.hair, 0.85 * brows)
  albedo = blend(albedo, MOUTH_INTERIOR, masks['mouth_interior'])
  eye_mask = masks['eyes'] > 0.5
  angles = _eye_angles(positions, eye_mask, vertices[rig.vertex_groups['eyes']])
  eye = np.where((angles < IRIS_HALF_ANGLE)[..., None], appearance.iris, SCLERA)
  eye = np.where((angles < PUPIL_HALF_ANGLE)[..., None], np.float32(0.03), eye)
  # A darker limbal ring at the iris edge, as in real eyes.
  ring = np.clip(1 - np.abs(angles - IRIS_HALF_ANGLE) / 0.06, 0, 1)
  eye = eye * (1 - 0.5 * ring[..., None])
  albedo = np.where(eye_mask[..., None], eye, albedo)
  # Fill texels outside the UV islands with the nearest covered texel.
  _, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
  albedo = albedo[rows, cols]
  return np.round(np.clip(albedo, 0, 1) * 255).astype(np.uint8)
