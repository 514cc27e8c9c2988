"""Procedural hairstyles grown from a head's scalp region, with strand textures.

Legend: ``v`` head vertices, ``f`` triangles, ``n`` strands, ``k`` points per strand,
``u`` head width (x extent of the scalp), the unit of every length below.

A hairstyle is up to three parts, all attached to the scalp (``rig.vertex_groups['scalp']``)
of the identity's own neutral head:

* a **shell**: the scalp surface pushed out along its normals by a thickness that ramps
  from ~0 at the hairline to the style's thickness, textured with stripes that run from
  the style's pole (crown, parting or tie point) outwards, i.e. along the growth direction;
* **strand cards**: ribbons grown from random roots inside the shell, following the
  style's comb direction, lift and gravity, kept outside the head and shell by a
  nearest-vertex collision, with an alpha-tested texture of thin strands;
* a **bun**: a noisy ellipsoid sunk into the shell at the back of the head.

Styles (``STYLES``): ``buzz`` (1.5 % u shell), ``crop`` (short tousled top), ``side_part``
(combed sideways from a parting), ``bob`` (jaw-length with a short fringe), ``long``
(shoulder length, tucked back), ``ponytail`` (tight shell and a tail from the back of the
head), ``bun``, ``afro`` (large rounded curly volume), ``mohawk`` (shaved sides, standing
central crest). Everything is deterministic for a seeded generator.
"""

import dataclasses

import numpy as np
from scipy import spatial

from head360_jax.rendering import gl

STYLES = ('buzz', 'crop', 'side_part', 'bob', 'long', 'ponytail', 'bun', 'afro', 'mohawk')


@dataclasses.dataclass(frozen=True)
class _Style:
  thickness: float  # shell thickness, head widths
  pole: str  # 'crown', 'part', 'back': where the shell stripes start
  strands: int = 0
  length: float = 0.0  # strand length, head widths
  lift: float = 0.3  # initial weight of the scalp normal against the comb direction
  gravity: float = 0.0  # downward pull per unit length
  comb: str = 'back'  # 'back', 'side', 'up'
  width: float = 0.06  # card width, head widths
  noise: float = 0.0  # relative shell thickness noise
  band: float = 0.0  # if > 0, strands only where |x| < band (mohawk crest)
  tail: bool = False
  bun: bool = False


_STYLES = {
  'buzz': _Style(0.015, 'crown'),
  'crop': _Style(0.05, 'crown', 900, 0.14, 0.5, 0.4, 'back', 0.07, 0.3),
  'side_part': _Style(0.06, 'part', 1200, 0.40, 0.35, 2.5, 'side', 0.09),
  'bob': _Style(0.07, 'crown', 1400, 0.85, 0.3, 3.0, 'back', 0.1),
  'long': _Style(0.06, 'crown', 1600, 1.7, 0.3, 3.0, 'back', 0.1),
  'ponytail': _Style(0.035, 'back', 0, tail=True),
  'bun': _Style(0.035, 'back', 0, bun=True),
  'afro': _Style(0.33, 'crown', 0, noise=0.12),
  'mohawk': _Style(0.012, 'crown', 900, 0.42, 1.0, 0.0, 'up', 0.06, band=0.12),
}


@dataclasses.dataclass(frozen=True)
class Hair:
  """A grown hairstyle: ``meshes`` in mesh units, ready to scale into world units."""

  style: str
  meshes: tuple[gl.Mesh, ...]


def strand_texture(color: np.ndarray, rng: np.random.Generator, *, cards: bool, size: int = 128) -> np.ndarray:
  """A tileable (size, size, 4) uint8 strand texture: stripes along v (the growth direction).

  ``cards=True`` leaves gaps between strands and ends strands at random points near
  ``v = 1`` (alpha 0, cut out by the renderer's alpha test); otherwise it is opaque.
  """
  columns = np.arange(size)
  strand_of = np.cumsum(rng.random(size) < 0.45)  # random strand widths of 1-4 texels
  brightness = rng.uniform(0.65, 1.3, strand_of.max() + 1)[strand_of]
  along = 1 + 0.08 * np.sin(np.linspace(0, 2 * np.pi, size, endpoint=False)[:, None] * rng.integers(1, 4, size))
  rgb = np.clip(color[None, None, :] * (brightness[None, :, None] * along[..., None]), 0, 1)
  alpha = np.ones((size, size), np.float32)
  if cards:
    gap = rng.random(strand_of.max() + 1)[strand_of] < 0.3
    # Row 0 holds v = 1 (the tip): each strand ends at a random distance from it.
    tip = rng.uniform(0.0, 0.3, strand_of.max() + 1)[strand_of] * size
    alpha = ((columns[None, :] * 0 + np.arange(size)[:, None]) >= tip[None, :]) & ~gap[None, :]
    alpha[:, [0, -1]] = False  # card edges: no hard straight border
  image = np.concatenate([rgb, np.asarray(alpha, np.float32)[..., None]], -1)
  return np.round(image * 255).astype(np.uint8)


def _frame(vertices: np.ndarray, scalp: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
  """Head width ``u``, head centre and crown point from the scalp vertices."""
  points = vertices[scalp]
  width = float(np.ptp(points[:, 0]))
  top = points[np.argmax(points[:, 1])]
  centre = np.array([0.0, top[1] - 0.55 * width, (points[:, 2].min() + points[:, 2].max()) / 2], np.float32)
  return width, centre, top


def _poles(
  style: _Style, centre: np.ndarray, width: float, vertices: np.ndarray, scalp: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
  """The scalp point the shell stripes radiate from."""
  points = vertices[scalp]
  if style.pole == 'part':
    side = rng.choice([-1.0, 1.0])
    target = centre + np.array([side * 0.3 * width, 0.6 * width, 0.25 * width])
  elif style.pole == 'back':
    target = centre + np.array([0.0, 0.2 * width, -0.8 * width])
  else:
    target = centre + np.array([0.0, 0.8 * width, -0.25 * width])
  return points[np.argmin(np.linalg.norm(points - target, axis=-1))]


def _shell(vertices, faces, normals, scalp, thickness, pole, centre, texture):
  """Offset surface of the scalp faces, with stripe UVs radiating from ``pole``."""
  keep = scalp[faces].all(axis=1)
  sub_faces = faces[keep]
  used = np.unique(sub_faces)
  remap = np.full(len(vertices), -1)
  remap[used] = np.arange(len(used))
  sub_faces = remap[sub_faces]
  points = vertices[used] + normals[used] * thickness[used, None]
  # Stripe coordinates: azimuth around the pole axis (u) and angle from it (v).
  axis = (pole - centre) / np.linalg.norm(pole - centre)
  radial = points - centre
  radial /= np.linalg.norm(radial, axis=-1, keepdims=True)
  polar = np.arccos(np.clip(radial @ axis, -1, 1))
  helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 else np.array([0, 0, 1.0])
  e1 = np.cross(axis, helper)
  e1 /= np.linalg.norm(e1)
  e2 = np.cross(axis, e1)
  repeats = 3
  azimuth = (np.arctan2(radial @ e2, radial @ e1) / (2 * np.pi) + 0.5) * repeats
  corner_u = azimuth[sub_faces]
  # Corners across the azimuth seam: shift onto the same side (the texture tiles).
  corner_u = np.where(corner_u.max(1, keepdims=True) - corner_u > repeats / 2, corner_u + repeats, corner_u)
  corner_v = polar[sub_faces] / np.pi * 2
  uvs = np.stack([corner_u, corner_v], -1).reshape(-1, 2).astype(np.float32)
  face_uvs = np.arange(len(uvs), dtype=np.int32).reshape(-1, 3)
  return gl.Mesh(
    points.astype(np.float32),
    sub_faces.astype(np.int32),
    uvs=uvs,
    face_uvs=face_uvs,
    texture=texture,
    tile_texture=True,
  )


def _grow(roots, root_normals, directions, length, gravity, tree, head_points, head_normals, clearance, steps=8):
  """Strand polylines (n, steps + 1, 3): step along the direction, bend down, stay outside the head."""
  down = np.array([0.0, -1.0, 0.0])
  step = np.broadcast_to(np.asarray(length, np.float64) / steps, (len(roots),))[:, None]
  points = [roots]
  p, d = roots.copy(), directions.copy()
  for _ in range(steps):
    d = d + gravity * step * down
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    p = p + d * step
    _, nearest = tree.query(p)
    depth = clearance[nearest] - np.einsum('nc,nc->n', p - head_points[nearest], head_normals[nearest])
    p = p + np.maximum(depth, 0)[:, None] * head_normals[nearest]  # push back outside head + shell
    points.append(p)
  return np.stack(points, 1)


def _cards(strands, side, width, texture):
  """Ribbons along each strand, ``side`` (n, 3) unit vectors across it, tapering to the tip."""
  n, k, _ = strands.shape
  taper = np.linspace(1.0, 0.4, k)[None, :, None]
  half = side[:, None, :] * (width / 2) * taper
  vertices = np.stack([strands - half, strands + half], 2).reshape(-1, 3)
  along = np.linspace(0.0, 1.0, k)
  uvs = np.stack(np.broadcast_arrays(np.array([0.0, 1.0])[None, :], along[:, None]), -1).reshape(-1, 2)
  base = (np.arange(n)[:, None] * k + np.arange(k - 1)[None, :]).reshape(-1) * 2
  quads = np.stack([base, base + 1, base + 3, base, base + 3, base + 2], -1).reshape(-1, 3)
  face_uvs = quads % (2 * k)
  return gl.Mesh(
    vertices.astype(np.float32),
    quads.astype(np.int32),
    uvs=uvs.astype(np.float32),
    face_uvs=face_uvs.astype(np.int32),
    texture=texture,
  )


def _sample_roots(vertices, faces, normals, mask, count, rng):
  """``count`` area-uniform points (and interpolated normals) on the faces inside ``mask``."""
  faces = faces[mask[faces].all(axis=1)]
  tri = vertices[faces]
  area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
  chosen = rng.choice(len(faces), count, p=area / area.sum())
  bary = rng.dirichlet(np.ones(3), count)
  points = np.einsum('nk,nkc->nc', bary, tri[chosen])
  n = np.einsum('nk,nkc->nc', bary, normals[faces[chosen]])
  return points, n / np.linalg.norm(n, axis=-1, keepdims=True)


def grow(
  style_name: str,
  vertices: np.ndarray,
  faces: np.ndarray,
  scalp: np.ndarray,
  color: np.ndarray,
  rng: np.random.Generator,
) -> Hair:
  """Grows hairstyle ``style_name`` on a head.

  Args:
    style_name: one of ``STYLES``.
    vertices: (v, 3) the identity's neutral head vertices, mesh units (rig frame: y up, +z face).
    faces: (f, 3) triangles, counter-clockwise seen from outside.
    scalp: (v,) bool mask of the vertices hair grows from.
    color: (3,) hair colour in [0, 1].
    rng: source of all randomness (strand roots, noise, textures).

  Returns:
    The hairstyle's meshes, in mesh units, attached to the scalp.

  Raises:
    ValueError: for an unknown style or an empty scalp.
  """
  if style_name not in _STYLES:
    raise ValueError(f'unknown hairstyle {style_name!r}; expected one of {", ".join(STYLES)}')
  vertices = np.asarray(vertices, np.float64)
  faces = np.asarray(faces, np.int64)
  scalp = np.asarray(scalp, bool)
  if not scalp[faces].all(axis=1).any():
    raise ValueError('the scalp mask covers no complete triangle')
  style = _STYLES[style_name]
  color = np.asarray(color, np.float32)
  normals = gl.vertex_normals(vertices, faces).astype(np.float64)
  width, centre, _ = _frame(vertices, scalp)
  # Distance of each scalp vertex to the hairline: the shell thins to ~0 there (no step).
  hairline = np.unique(_boundary_vertices(faces[scalp[faces].all(axis=1)]))
  to_hairline, _ = spatial.cKDTree(vertices[hairline]).query(vertices)
  ramp_width = (0.25 if style_name == 'afro' else 0.08) * width
  ramp = np.clip(to_hairline / ramp_width, 0, 1)
  ramp = ramp * ramp * (3 - 2 * ramp)
  noise = 1 + style.noise * np.sin(vertices @ rng.normal(size=(3, 4)) * (12 / width) + rng.uniform(0, 6, 4)).mean(-1)
  thickness = np.where(scalp, width * (0.004 + (style.thickness - 0.004) * ramp * noise), 0.0)
  shell_color = color if style.thickness > 0.02 else 0.75 * color + 0.25 * np.array([0.6, 0.45, 0.38], np.float32)
  pole = _poles(style, centre, width, vertices, scalp, rng)
  meshes = [
    _shell(vertices, faces, normals, scalp, thickness, pole, centre, strand_texture(shell_color, rng, cards=False))
  ]
  card_texture = strand_texture(color, rng, cards=True)
  tree = spatial.cKDTree(vertices)
  clearance = thickness + (0.01 + style.width / 4) * width  # card edges, not only centrelines, stay outside
  if style.strands:
    mask = scalp & (np.abs(vertices[:, 0]) < style.band * width) if style.band else scalp
    roots, root_normals = _sample_roots(vertices, faces, normals, mask, style.strands, rng)
    _, nearest = tree.query(roots)
    # Rooted inside the shell (attached); the 1 % lift keeps card corners above the skin at the hairline.
    roots = roots + root_normals * (0.5 * thickness[nearest] + 0.01 * width)[:, None]
    if style.comb == 'side':
      comb = np.stack([np.sign(roots[:, 0] - pole[0]), np.zeros(len(roots)), -0.3 * np.ones(len(roots))], -1)
    elif style.comb == 'up':
      comb = np.tile([0.0, 1.0, -0.3], (len(roots), 1))
    else:
      comb = np.tile([0.0, -0.2, -1.0], (len(roots), 1))
    # Project the comb direction onto the scalp tangent plane so strands lie along the head.
    comb = comb - np.einsum('nc,nc->n', comb, root_normals)[:, None] * root_normals
    directions = style.lift * root_normals + comb / np.maximum(np.linalg.norm(comb, axis=-1, keepdims=True), 1e-9)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    lengths = style.length * width * rng.uniform(0.8, 1.1, len(roots))
    if style_name == 'bob':  # short fringe over the forehead
      front = roots[:, 2] > centre[2] + 0.3 * width
      lengths = np.where(front, 0.25 * width, lengths)
    strands = _grow(roots, root_normals, directions, lengths, style.gravity / width, tree, vertices, normals, clearance)
    side = np.cross(directions, root_normals)
    side /= np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-9)
    meshes.append(_cards(strands, side, style.width * width, card_texture))
  if style.tail:
    meshes.append(
      _tail(
        pole,
        normals[np.argmin(np.linalg.norm(vertices - pole, axis=-1))],
        width,
        tree,
        vertices,
        normals,
        clearance,
        card_texture,
        rng,
      )
    )
  if style.bun:
    meshes.append(_bun(pole, normals[np.argmin(np.linalg.norm(vertices - pole, axis=-1))], width, color, rng))
  return Hair(style_name, tuple(meshes))


def _boundary_vertices(faces: np.ndarray) -> np.ndarray:
  """Vertices on edges used by exactly one triangle."""
  edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
  unique, counts = np.unique(edges, axis=0, return_counts=True)
  return unique[counts == 1].reshape(-1)


def _tail(tie, tie_normal, width, tree, vertices, normals, clearance, texture, rng, count=400):
  """A ponytail: strands from a small disc at the tie point, out backwards then down."""
  helper = np.cross(tie_normal, [0.0, 1.0, 0.0])
  helper /= np.linalg.norm(helper)
  other = np.cross(tie_normal, helper)
  radius = 0.07 * width * np.sqrt(rng.random(count))
  angle = rng.uniform(0, 2 * np.pi, count)
  roots = tie + (radius * np.cos(angle))[:, None] * helper + (radius * np.sin(angle))[:, None] * other
  directions = tie_normal[None, :] + rng.normal(0, 0.15, (count, 3))
  directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
  lengths = width * rng.uniform(0.9, 1.2, count)
  strands = _grow(roots, directions, directions, lengths, 4.0 / width, tree, vertices, normals, clearance)
  side = np.cross(directions, [0.0, 1.0, 0.0])
  side /= np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-9)
  return _cards(strands, side, 0.05 * width, texture)


def _bun(anchor, anchor_normal, width, color, rng):
  """A noisy ellipsoid sunk halfway into the shell at ``anchor``, with stripes wound around it."""
  import trimesh  # heavy import, only needed for this style

  sphere = trimesh.creation.icosphere(3)
  unit = np.asarray(sphere.vertices)
  bumps = 1 + 0.05 * np.sin(unit @ rng.normal(size=(3, 3)) * 6).mean(-1)
  radius = 0.27 * width
  points = anchor + anchor_normal * (0.45 * radius) + unit * bumps[:, None] * radius * np.array([1.1, 0.9, 0.9])
  faces = np.asarray(sphere.faces)
  u = (np.arctan2(unit[:, 0], unit[:, 1]) / (2 * np.pi) + 0.5) * 2
  corner_u = u[faces]
  corner_u = np.where(corner_u.max(1, keepdims=True) - corner_u > 1, corner_u + 2, corner_u)
  corner_v = (unit[:, 2][faces] + 1) * 1.5
  uvs = np.stack([corner_v, corner_u], -1).reshape(-1, 2).astype(np.float32)  # stripes wind around the bun
  return gl.Mesh(
    points.astype(np.float32),
    faces.astype(np.int32),
    uvs=uvs,
    face_uvs=np.arange(len(uvs), dtype=np.int32).reshape(-1, 3),
    texture=strand_texture(color, rng, cards=False),
    tile_texture=True,
  )
