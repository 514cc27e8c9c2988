"""Tests of the hair-swap ground truth of the builder (``build(..., swap_pairs=N)``) and ``sources.swap_pairs``."""

import copy
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from head360_jax.data import appearance, build_dataset, hair, layout, sources
from head360_jax.geometry import camera, rig

RES = 48
EXPRESSIONS = ['jawOpen', 'neutral']
VIEWS = [30, 42]  # frontal and back
SEED = 4  # id_000: buzz, red hair; id_001: crop, black hair (checked below)
A, B = 'id_000', 'id_001'


def _build(root, anny, **kwargs):
  return build_dataset.build(
    root,
    rig=anny,
    num_identities=2,
    expressions=EXPRESSIONS,
    resolution=RES,
    seed=SEED,
    views=VIEWS,
    progress=False,
    workers=1,
    **kwargs,
  )


@pytest.fixture(scope='module')
def anny():
  return rig.load_rig('anny')


@pytest.fixture(scope='module')
def plain(anny, tmp_path_factory):
  root = tmp_path_factory.mktemp('plain')
  _build(root, anny)
  return root


@pytest.fixture(scope='module')
def swapped(anny, tmp_path_factory):
  """A build with swap_pairs=1 (pair id_000 <- id_001), recording every ``hair.grow`` call."""
  root = tmp_path_factory.mktemp('swapped')
  calls, grow = [], hair.grow

  def recording(style, vertices, faces, scalp, color, rng):
    calls.append((style, np.array(vertices), np.array(color), copy.deepcopy(rng.bit_generator.state)))
    return grow(style, vertices, faces, scalp, color, rng)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(hair, 'grow', recording)
    summary = _build(root, anny, swap_pairs=1)
  return root, summary, calls


def _image(root, relpath):
  return np.asarray(Image.open(root / layout.IMAGES / relpath)).astype(np.float32) / 255


def test_swap_pair_indices_rule():
  assert build_dataset.swap_pair_indices(2, 2) == [(0, 1), (1, 0)]
  pairs = build_dataset.swap_pair_indices(4, 12)
  assert pairs[:4] == [(0, 1), (1, 2), (2, 3), (3, 0)]  # a cycle: each worn and donating once
  assert len(set(pairs)) == 12 and all(a != b for a, b in pairs)
  assert build_dataset.swap_pair_indices(4, 5) == pairs[:5] and build_dataset.swap_pair_indices(4, 0) == []


def test_bad_swap_pairs(tmp_path, capsys):
  for identities, count in ((1, 1), (2, 3), (3, 7), (2, -1)):
    with pytest.raises(ValueError, match='swap_pairs'):
      build_dataset.build(tmp_path / 'x', rig='anny', num_identities=identities, resolution=RES, swap_pairs=count)
  assert not (tmp_path / 'x').exists()  # refused before anything is written
  with pytest.raises(SystemExit):  # the CLI flag reaches build() and reports the error
    build_dataset.main(['--identities', '2', '--swap-pairs', '3', '--out', str(tmp_path / 'y')])
  assert 'swap_pairs' in capsys.readouterr().err


def test_other_outputs_are_byte_identical(plain, swapped):
  root, summary, _ = swapped
  swap_files = {f'{layout.IMAGES}/{layout.swap_relpath(RES, A, B, e, v)}' for e in EXPRESSIONS for v in VIEWS} | {
    f'{layout.IMAGES}/{layout.swap_split_name(RES)}/{layout.SWAP_PAIRS_JSON}'
  }
  files = {str(p.relative_to(root)) for p in root.rglob('*') if p.is_file()}
  plain_files = {str(p.relative_to(plain)) for p in plain.rglob('*') if p.is_file()}
  assert files == plain_files | swap_files
  for name in plain_files - {'build.json', 'bilinear.npz'}:  # bilinear.npz's zip entries carry the write time
    assert (root / name).read_bytes() == (plain / name).read_bytes(), name
  build, plain_build = json.loads((root / 'build.json').read_text()), json.loads((plain / 'build.json').read_text())
  assert build.pop('swap_pairs') == 1 and build == plain_build and 'swap_pairs' not in plain_build
  assert summary['images_written'] == (2 * 2 + 1) * len(EXPRESSIONS) * len(VIEWS)


def test_donor_hair_is_regrown_from_its_own_generator_on_the_wearer(swapped):
  _, _, calls = swapped
  # Identity 0: its own hair, then id_001's hair on its scalp; identity 1: its own hair.
  (own_a, vertices_a, color_a, state_a), (swap, vertices_swap, color_swap, state_swap), (own_b, _, color_b, state_b) = (
    calls
  )
  assert (own_a, own_b, swap) == ('buzz', 'crop', 'crop')
  np.testing.assert_array_equal(vertices_swap, vertices_a)  # grown on A's neutral head
  np.testing.assert_array_equal(color_swap, color_b)
  assert state_swap == state_b and state_swap != state_a  # B's exact generator state


def test_swap_render_shows_donor_hair_on_wearer_head(swapped):
  root, _, _ = swapped
  per_identity = json.loads((root / 'build.json').read_text())['per_identity']
  assert [(p['hairstyle'], p['hair_color']) for p in per_identity] == [('buzz', 'red'), ('crop', 'black')]
  for expression in EXPRESSIONS:
    for view in VIEWS:
      swap = _image(root, layout.swap_relpath(RES, A, B, expression, view))
      haired = _image(root, layout.image_relpath(RES, A, expression, view))
      bald = _image(root, layout.image_relpath(RES, A, expression, view, bald=True))
      assert (swap != haired).any(-1).sum() > 50  # different hair
      if view == 30:  # the lower face and neck: neither hairstyle covers them
        low = slice(int(0.6 * RES), None)
        np.testing.assert_array_equal(haired[low], bald[low])
        np.testing.assert_array_equal(swap[low], bald[low])
        assert (bald[low, ..., 3] > 0).sum() > 100
      # Hair beyond A's bald silhouette (the crop's volume) has B's black, not A's red.
      outside = (swap[..., 3] == 1) & (bald[..., 3] == 0)
      assert outside.sum() > 20
      mean = swap[outside][:, :3].mean(0)
      to_b = np.linalg.norm(mean - np.array(appearance.HAIR_COLORS['black']) / 255)
      to_a = np.linalg.norm(mean - np.array(appearance.HAIR_COLORS['red']) / 255)
      assert to_b < 0.5 * to_a, (mean, to_b, to_a)


def test_reader_returns_paths_and_labels(swapped):
  root, _, _ = swapped
  pairs = sources.swap_pairs(root, RES)
  assert len(pairs) == 1
  pair = pairs[0]
  expected = {'identity': A, 'hair_from': B, 'hairstyle': 'crop', 'hair_color': 'black', 'folder': f'{A}_hair_{B}'}
  assert {key: pair[key] for key in expected} == expected
  assert [(image['expression_name'], image['view']) for image in pair['images']] == [
    (e, v) for e in sorted(EXPRESSIONS) for v in VIEWS
  ]
  images = (root / layout.IMAGES).resolve()
  for image in pair['images']:
    expression, view = image['expression_name'], image['view']
    assert image['relpath'] == layout.swap_relpath(RES, A, B, expression, view)
    assert image['path'] == str(images / image['relpath'])
    assert image['haired_path'] == str(images / layout.image_relpath(RES, A, expression, view))
    assert image['bald_path'] == str(images / layout.image_relpath(RES, A, expression, view, bald=True))
    np.testing.assert_array_equal(image['camera'], camera.dataset_cameras()[view])
    np.testing.assert_array_equal(image['expression'], build_dataset.expression_weights(expression))
    np.testing.assert_array_equal(image['label'], np.concatenate([image['camera'], image['expression']]))


def test_reader_errors_name_the_file(plain, swapped, tmp_path):
  with pytest.raises(ValueError, match=f'{layout.swap_split_name(RES)}.*not found'):
    sources.swap_pairs(plain, RES)
  root = tmp_path / 'copy'
  shutil.copytree(swapped[0] / layout.IMAGES, root / layout.IMAGES)
  missing = root / layout.IMAGES / layout.swap_relpath(RES, A, B, 'neutral', 42)
  missing.unlink()
  with pytest.raises(ValueError, match=f'{missing}.*not found'):
    sources.swap_pairs(root, RES)
  pairs_file = layout.swap_pairs_path(root, RES)
  pairs_file.write_text('{"pairs": [{"identity": "id_000"}]}')
  with pytest.raises(ValueError, match=f'{pairs_file}: not of the form'):
    sources.swap_pairs(root, RES)
  pairs_file.unlink()
  with pytest.raises(ValueError, match=f'{pairs_file} not found'):
    sources.swap_pairs(root, RES)


def test_rerun_skips_everything_and_resumes_a_missing_swap_image(swapped, anny):
  root, first, _ = swapped
  total = first['images_written']
  summary = _build(root, anny, swap_pairs=1)
  assert summary['images_written'] == 0 and summary['images_skipped'] == total
  deleted = root / layout.IMAGES / layout.swap_relpath(RES, A, B, 'jawOpen', 30)
  original = deleted.read_bytes()
  deleted.unlink()
  summary = _build(root, anny, swap_pairs=1)
  assert summary['images_written'] == 1 and summary['images_skipped'] == total - 1
  assert deleted.read_bytes() == original
