"""Tests of the procedural hairstyles: variety, attachment to the scalp, bald-vs-haired renders."""

import numpy as np
import pytest
import trimesh
from scipy import spatial

from head360_jax.data import hair
from head360_jax.geometry import camera, rig
from head360_jax.rendering import gl

COLOR = np.array([0.3, 0.2, 0.1], np.float32)


@pytest.fixture(scope='module')
def head():
  anny = rig.load_rig('anny')
  return anny, anny.sample_identity(np.random.default_rng(7)).astype(np.float64)


@pytest.fixture(scope='module')
def grown(head):
  anny, vertices = head
  return {
    style: hair.grow(style, vertices, anny.faces, anny.vertex_groups['scalp'], COLOR, np.random.default_rng(1))
    for style in hair.STYLES
  }


def test_at_least_eight_distinct_styles(grown):
  assert len(hair.STYLES) >= 8
  signatures = set()
  for style, result in grown.items():
    points = np.concatenate([m.vertices for m in result.meshes])
    signatures.add((len(points), *np.round(np.ptp(points, axis=0), 4)))
    assert result.style == style
  assert len(signatures) == len(hair.STYLES)


def test_hair_is_outside_the_head_and_attached(head, grown):
  anny, vertices = head
  mesh = trimesh.Trimesh(vertices, anny.faces, process=False)
  surface = spatial.cKDTree(mesh.sample(40000, seed=0))
  width = np.ptp(vertices[anny.vertex_groups['scalp'], 0])
  rng = np.random.default_rng(0)
  for style, result in grown.items():
    # The bun (last part of 'bun') is a closed volume sunk into the shell on purpose: check its centre instead.
    surfaces = result.meshes[:-1] if style == 'bun' else result.meshes
    if style == 'bun':
      centre = result.meshes[-1].vertices.mean(0, keepdims=True).astype(np.float64)
      closest, _, triangle = trimesh.proximity.closest_point(mesh, centre)
      assert np.einsum('nc,nc->n', centre - closest, mesh.face_normals[triangle])[0] > 0.1 * width
    points = np.concatenate([m.vertices for m in surfaces]).astype(np.float64)
    sample = points[rng.choice(len(points), min(400, len(points)), replace=False)]
    closest, _, triangle = trimesh.proximity.closest_point(mesh, sample)
    signed = np.einsum('nc,nc->n', sample - closest, mesh.face_normals[triangle])
    # Collision uses nearest-vertex tangent planes: allow 2 % of the head width (~3 mm) of penetration.
    assert signed.min() > -0.02 * width, (style, signed.min() / width)
    for part in result.meshes:  # every connected piece touches the head: nothing floats
      labels = trimesh.graph.connected_component_labels(
        trimesh.Trimesh(part.vertices, part.faces, process=False).face_adjacency, node_count=len(part.faces)
      )
      distance, _ = surface.query(part.vertices[part.faces[:, 0]])
      nearest = np.full(labels.max() + 1, np.inf)
      np.minimum.at(nearest, labels, distance)
      assert nearest.max() < 0.08 * width, (style, nearest.max() / width)


def test_growth_is_deterministic_and_seed_dependent(head):
  anny, vertices = head
  grow = lambda seed: hair.grow(
    'bob', vertices, anny.faces, anny.vertex_groups['scalp'], COLOR, np.random.default_rng(seed)
  )
  a, b, c = grow(5), grow(5), grow(6)
  for x, y in zip(a.meshes, b.meshes, strict=True):
    np.testing.assert_array_equal(x.vertices, y.vertices)
    np.testing.assert_array_equal(x.texture, y.texture)
  assert not np.array_equal(a.meshes[1].vertices, c.meshes[1].vertices)


def test_bald_render_differs_only_where_hair_is(head, grown):
  anny, vertices = head
  cameras = camera.dataset_cameras()
  renderer = gl.Renderer()
  world = lambda m: gl.Mesh(
    m.vertices * camera.WORLD_PER_MESH,
    m.faces,
    uvs=m.uvs,
    face_uvs=m.face_uvs,
    texture=m.texture,
    tile_texture=m.tile_texture,
  )
  head_mesh = gl.Mesh(vertices * camera.WORLD_PER_MESH, anny.faces, vertex_colors=np.full((len(vertices), 3), 0.7))
  for style in ('long', 'bun'):
    hair_meshes = [world(m) for m in grown[style].meshes]
    for view in (30, 42):
      c2w, k = cameras[view, :16].reshape(4, 4), cameras[view, 16:].reshape(3, 3)
      bald = next(renderer.render_views([head_mesh], c2w, k, 64))
      haired = next(renderer.render_views([head_mesh, *hair_meshes], c2w, k, 64))
      hair_only = next(renderer.render_views(hair_meshes, c2w, k, 64))
      in_front = hair_only['coverage'] & (hair_only['depth'] <= bald['depth'])
      changed = np.any(haired['rgba'] != bald['rgba'], axis=-1)
      np.testing.assert_array_equal(changed, in_front)
      assert in_front.sum() > 50  # the hair is actually seen


def test_unknown_style_raises(head):
  anny, vertices = head
  with pytest.raises(ValueError, match='unknown hairstyle.*buzz'):
    hair.grow('dreadlocks', vertices, anny.faces, anny.vertex_groups['scalp'], COLOR, np.random.default_rng(0))
