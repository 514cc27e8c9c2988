"""dlib face descriptors in JAX (head360_jax.metrics.face_id) against dlib's own, and CSIM's properties.

``data/face_id_golden.npz`` comes from ``bench/dlib_crosscheck.py --write-golden`` (dlib
20.0.1 built from source, not a test dependency): for the shared 000134.jpg and man.jpg and
skimage's astronaut it holds the 5 MediaPipe points we align with, dlib's
``compute_face_descriptor`` of the chips we cut at those points, and (PNG) dlib's own
``get_face_chip`` of two photos at the points rounded to integers (its Python API takes no
others). The photo-level properties asserted below (mirrored and
shifted photo: same person; the three people: different) hold for dlib's own pipeline too
(docs/fitting.md, "Identity similarity (CSIM)").
"""

import io
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image

from head360_jax.fitting import landmarks as landmarks_lib
from head360_jax.metrics import face_id

GOLDEN = pathlib.Path(__file__).parent / 'data' / 'face_id_golden.npz'
_embed = jax.jit(face_id.embed)


@pytest.fixture(scope='module')
def params():
  return face_id.load_face_id()


@pytest.fixture(scope='module')
def golden():
  with np.load(GOLDEN) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='module')
def photos(shared_data):
  faces = shared_data / 'faces'
  return {
    '000134.jpg': landmarks_lib.load_image(faces / '000134.jpg'),
    'man.jpg': landmarks_lib.load_image(faces / 'man.jpg'),
    'astronaut': np.ascontiguousarray(skimage.data.astronaut()),
  }


@pytest.fixture(scope='module')
def landmarker():
  return landmarks_lib.FaceLandmarker()


def _embedding(params, chip):
  return np.asarray(_embed(params, jnp.asarray(chip)[None])[0])


def test_weights_parse_to_the_expected_network(params):
  assert params.stem.kernel.shape == (7, 7, 3, 32)
  assert len(params.blocks) == len(face_id.BLOCKS) == 14
  for (channels, _), (first, second) in zip(face_id.BLOCKS, params.blocks, strict=True):
    assert first.kernel.shape[2:] == (first.kernel.shape[2], channels) and second.kernel.shape == (
      3,
      3,
      channels,
      channels,
    )
  assert params.fc.shape == (256, 128)
  np.testing.assert_allclose(params.input_mean, [122.782, 117.001, 104.298], rtol=1e-6)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  arrays = face_id.parse_dlib_network(face_id.model_file().read_bytes())
  assert arrays['distance_threshold'] == pytest.approx(face_id.SAME_PERSON_DISTANCE)


def test_parser_rejects_truncated_or_padded_files():
  data = face_id.model_file().read_bytes()
  with pytest.raises(ValueError, match='byte'):
    face_id.parse_dlib_network(data[: len(data) // 2])
  with pytest.raises(ValueError, match='left over'):
    face_id.parse_dlib_network(data + b'\x00')


@pytest.mark.parametrize('name', ['000134.jpg', 'astronaut'])
def test_chips_match_dlib_get_face_chip(golden, photos, name):
  """Same 5 points -> dlib's chip; 000134.jpg goes through dlib's image pyramid (2.6 px per chip px), astronaut not."""
  points = golden['points5_rounded'][list(golden['names']).index(name)]
  theirs = np.asarray(Image.open(io.BytesIO(golden[f'dlib_chip_png/{name}'].tobytes())))
  diff = np.abs(face_id.chip_from_points(photos[name], points).astype(int) - theirs.astype(int))
  assert diff.max() <= 1 and np.mean(diff > 0) < 0.001, (diff.max(), np.mean(diff > 0))  # bit-exact when written


def test_embedding_matches_dlib_on_the_same_chips(params, golden, photos):
  for name, points, theirs in zip(golden['names'], golden['points5'], golden['dlib_descriptors'], strict=True):
    ours = _embedding(params, face_id.chip_from_points(photos[str(name)], points))
    assert float(face_id.csim(ours, theirs)) >= 0.9999, name
    assert float(face_id.dlib_distance(ours, theirs)) < 1e-3, name


def test_mediapipe_chips_match_dlib(params, golden, photos, landmarker):
  """Photo -> MediaPipe landmarks -> 5 points -> chip -> descriptor, against dlib's descriptor of the golden chip."""
  for name, points, theirs in zip(golden['names'], golden['points5'], golden['dlib_descriptors'], strict=True):
    mesh = landmarker(photos[str(name)]).points
    np.testing.assert_allclose(face_id.five_points(mesh), points, atol=0.5)
    ours = _embedding(params, face_id.chip_from_landmarks(photos[str(name)], mesh))
    assert float(face_id.csim(ours, theirs)) >= 0.999, name


def test_face_embedding_same_person_and_different_people(params, photos, landmarker):
  embed = lambda image: np.asarray(face_id.face_embedding(image, params, landmarker))
  base = photos['000134.jpg']
  reference = embed(base)
  assert reference.shape == (128,) and reference.dtype == np.float32
  mirrored = embed(np.ascontiguousarray(base[:, ::-1]))
  shifted = embed(np.pad(base, ((0, 6), (9, 0), (0, 0)), mode='edge')[6:, :-9])
  for other in (mirrored, shifted):
    assert float(face_id.dlib_distance(reference, other)) < face_id.SAME_PERSON_DISTANCE
  others = [embed(photos['man.jpg']), embed(photos['astronaut'])]
  for i, a in enumerate([reference, *others]):
    for b in others[i:]:
      assert float(face_id.dlib_distance(a, b)) > face_id.SAME_PERSON_DISTANCE
  assert float(face_id.csim(reference, shifted)) > float(face_id.csim(reference, others[0]))


def test_embed_batched_matches_unbatched_and_accepts_floats(params, golden, photos):
  chips = np.stack(
    [face_id.chip_from_points(photos[str(n)], p) for n, p in zip(golden['names'], golden['points5'], strict=True)]
  )
  batched = np.asarray(_embed(params, jnp.asarray(chips)))
  assert batched.shape == (len(chips), 128) and batched.dtype == np.float32
  for i, chip in enumerate(chips):
    np.testing.assert_allclose(batched[i], _embedding(params, chip), atol=1e-5)
  floats = np.asarray(_embed(params, jnp.asarray(chips, jnp.float32) / 255.0))
  np.testing.assert_allclose(floats, batched, atol=1e-4)


def test_embed_rejects_wrong_shapes(params):
  with pytest.raises(ValueError, match='150'):
    face_id.embed(params, jnp.zeros((1, 112, 112, 3), jnp.uint8))
  with pytest.raises(ValueError, match='150'):
    face_id.embed(params, jnp.zeros((150, 150, 3), jnp.uint8))


def test_csim_and_distance():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 4, 128)).astype(np.float32)
  np.testing.assert_allclose(face_id.csim(a, a), 1.0, rtol=1e-6)
  np.testing.assert_allclose(face_id.csim(a, 3.0 * a), 1.0, rtol=1e-6)
  np.testing.assert_allclose(face_id.csim(a, -a), -1.0, rtol=1e-6)
  np.testing.assert_allclose(face_id.csim(a, b), face_id.csim(b, a), rtol=1e-6)
  expected = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  np.testing.assert_allclose(face_id.csim(a, b), expected, rtol=1e-5)
  np.testing.assert_allclose(face_id.dlib_distance(a, b), np.linalg.norm(a - b, axis=-1), rtol=1e-6)
  assert face_id.csim(a, b).shape == (4,)


def test_similarity_transform_recovers_a_known_one():
  rng = np.random.default_rng(1)
  src = rng.uniform(0, 150, size=(5, 2))
  angle, scale, shift = 0.3, 2.5, np.array([40.0, -7.0])
  rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  tform = face_id.similarity_transform(src, src @ rotation.T + shift)
  np.testing.assert_allclose(tform, np.concatenate([rotation, shift[:, None]], axis=1), atol=1e-9)


def test_chip_of_an_upright_face_box():
  """Points on dlib's template itself, scaled by 2 and moved: the chip rect is 2 x 150 px, unrotated, centred."""
  template = (face_id.CHIP_PADDING + np.asarray(face_id.FIVE_POINT_TEMPLATE)) / (2 * face_id.CHIP_PADDING + 1) * 150
  details = face_id.face_chip_details(2.0 * template + np.array([10.5, 20.5]))
  left, top, right, bottom = details.rect
  assert details.angle == pytest.approx(0.0, abs=1e-12)
  assert right - left + 1 == pytest.approx(300.0) and bottom - top + 1 == pytest.approx(300.0)
  assert (left + right) / 2 == pytest.approx(150.0 + 10.0) and (top + bottom) / 2 == pytest.approx(150.0 + 20.0)


def test_five_points_and_chip_errors():
  with pytest.raises(ValueError, match='468'):
    face_id.five_points(np.zeros((68, 2)))
  with pytest.raises(ValueError, match='uint8'):
    face_id.chip_from_points(
      np.zeros((64, 64, 3), np.float32), np.zeros((5, 2)) + [[40, 20], [30, 20], [0, 20], [10, 20], [20, 40]]
    )
  with pytest.raises(ValueError, match='outside'):
    points = np.array([[40, 20], [30, 20], [0, 20], [10, 20], [20, 40]], np.float64) + 5000
    face_id.chip_from_points(np.zeros((64, 64, 3), np.uint8), points)
