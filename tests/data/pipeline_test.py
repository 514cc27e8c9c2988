"""Tests of the grain pipeline: batches, shuffling, checkpointing, sharding, global arrays."""

import itertools

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from head360_jax.data import layout, pipeline, sources, synthetic

RES = 16
NUM_RECORDS = 2 * 2 * layout.NUM_VIEWS  # 288


@pytest.fixture(scope='module')
def fake(tmp_path_factory):
  return synthetic.write_fake_dataset(tmp_path_factory.mktemp('synhead'), resolution=RES)


@pytest.fixture(scope='module')
def source(fake):
  return sources.SynHeadSource(fake.root, RES)


def _record_ids(fake, batches):
  """Source index of every element of ``batches``, found from its (unique, random) camera label."""
  order = sorted(fake.cameras)  # the source's order: identity, expression, view, all sorted
  index = {fake.cameras[relpath].tobytes(): i for i, relpath in enumerate(order)}
  return [index[camera.tobytes()] for batch in batches for camera in batch['camera']]


def _make(source, **kwargs):
  options = {'batch_size': 16, 'seed': 3, 'shard_index': 0, 'shard_count': 1}
  return pipeline.make_dataset(source, **{**options, **kwargs})


def test_batch_fields(fake, source):
  batch = next(iter(_make(source, shuffle=False, batch_size=8)))
  shapes = {key: (value.shape, value.dtype) for key, value in batch.items()}
  assert shapes == {
    'image': ((8, RES, RES, 3), np.float32),
    'label': ((8, 77), np.float32),
    'camera': ((8, 25), np.float32),
    'expression': ((8, 52), np.float32),
    'vertices': ((8, 10, 3), np.float32),
    'landmarks': ((8, 4, 3), np.float32),
    'identity': ((8,), np.int32),
    'view': ((8,), np.int32),
    'hair': ((8,), np.int32),
  }
  for value in batch.values():
    assert np.all(np.isfinite(value))
  assert batch['image'].min() >= -1 and batch['image'].max() <= 1
  np.testing.assert_array_equal(batch['label'], np.concatenate([batch['camera'], batch['expression']], -1))
  # Unshuffled, the first batch is views 0..7 of the first identity and expression.
  first = sorted(fake.cameras)[:8]
  rgba = np.stack([fake.images[relpath] for relpath in first]).astype(np.float64)
  alpha = rgba[..., 3:] / 255
  np.testing.assert_allclose(batch['image'], (rgba[..., :3] * alpha + 255 * (1 - alpha)) / 127.5 - 1, atol=1e-6)
  np.testing.assert_array_equal(batch['view'], np.arange(8))
  np.testing.assert_array_equal(batch['identity'], 0)
  np.testing.assert_array_equal(batch['hair'], 1)
  np.testing.assert_array_equal(batch['vertices'][3], fake.vertices[('fs_002', 'browDwonLeft')])


def test_alpha_option_gives_the_pngs_alpha(fake, source):
  plain = next(iter(_make(source, shuffle=False, batch_size=4)))
  batch = next(iter(_make(source, shuffle=False, batch_size=4, alpha=True)))
  assert set(batch) == set(plain) | {'alpha'} and batch['alpha'].shape == (4, RES, RES, 1)
  rgba = np.stack([fake.images[relpath] for relpath in sorted(fake.cameras)[:4]]).astype(np.float64)
  np.testing.assert_allclose(batch['alpha'], rgba[..., 3:] / 255, atol=1e-7)
  np.testing.assert_array_equal(batch['image'], plain['image'])


def test_resolution_option(source):
  batch = next(iter(_make(source, batch_size=4, resolution=8)))
  assert batch['image'].shape == (4, 8, 8, 3)


def test_each_epoch_is_a_new_permutation(fake, source):
  epochs = 3
  ids = _record_ids(fake, _make(source, num_epochs=epochs))
  assert len(ids) == epochs * NUM_RECORDS  # 288 = 18 batches of 16: nothing dropped
  per_epoch = [ids[e * NUM_RECORDS : (e + 1) * NUM_RECORDS] for e in range(epochs)]
  for order in per_epoch:
    assert sorted(order) == list(range(NUM_RECORDS))
  assert per_epoch[0] != list(range(NUM_RECORDS))
  assert per_epoch[0] != per_epoch[1] and per_epoch[1] != per_epoch[2]
  # Deterministic given the seed, whatever the number of threads; another seed differs.
  assert _record_ids(fake, _make(source, num_epochs=1, num_threads=0)) == per_epoch[0]
  assert _record_ids(fake, _make(source, num_epochs=1, seed=4)) != per_epoch[0]


def test_drop_remainder(fake, source):
  ids = _record_ids(fake, _make(source, num_epochs=1, batch_size=100, shuffle=False))
  assert ids == list(range(200))


def test_restoring_iterator_state_mid_epoch(source):
  iterator = iter(_make(source))
  for _ in range(5):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(3)]
  restored = iter(_make(source))
  restored.set_state(state)
  for want in expected:
    got = next(restored)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_two_shards_are_disjoint_and_cover_the_epoch(fake, source):
  shards = [
    _record_ids(fake, _make(source, num_epochs=1, batch_size=8, shard_index=k, shard_count=2)) for k in range(2)
  ]
  assert len(shards[0]) == len(shards[1]) == NUM_RECORDS // 2
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == list(range(NUM_RECORDS))
  # 288 records do not divide into 5 shards: the stream is cut to 285 so that every process
  # gets 57 records (and so as many batches), and the shards stay disjoint.
  fifths = [
    _record_ids(fake, _make(source, num_epochs=1, batch_size=1, shard_index=k, shard_count=5)) for k in range(5)
  ]
  assert [len(ids) for ids in fifths] == [57] * 5
  assert len(set(itertools.chain(*fifths))) == 285


def test_shards_are_row_blocks_of_the_single_process_batches(fake, source):
  """Shard p's k-th batch is rows [p·b, (p+1)·b) of the k-th batch of batch b·P: multi-process runs repeat one."""
  steps = 50  # 300 records: into the second epoch (288), whose shuffle differs
  whole = _record_ids(fake, itertools.islice(_make(source, batch_size=6, num_threads=0), steps))
  shards = [
    _record_ids(fake, itertools.islice(_make(source, batch_size=2, shard_index=p, shard_count=3, num_threads=0), steps))
    for p in range(3)
  ]
  for k in range(steps):
    assert whole[6 * k : 6 * k + 6] == [i for shard in shards for i in shard[2 * k : 2 * k + 2]], f'batch {k}'


def test_default_shard_is_this_process(fake, source):
  ds = pipeline.make_dataset(source, batch_size=16, seed=3, num_epochs=1)
  assert len(_record_ids(fake, ds)) == NUM_RECORDS  # one process: the whole epoch


def test_bad_arguments(source):
  with pytest.raises(ValueError, match='batch_size'):
    pipeline.make_dataset(source, batch_size=0, seed=0)
  with pytest.raises(ValueError, match='both'):
    pipeline.make_dataset(source, batch_size=4, seed=0, shard_index=0)
  with pytest.raises(ValueError, match='shard_index'):
    pipeline.make_dataset(source, batch_size=4, seed=0, shard_index=2, shard_count=2)


def test_corrupt_png_in_the_pipeline_names_the_file(tmp_path):
  synthetic.write_fake_dataset(tmp_path, resolution=RES, identities=('fs_002',), views=2)
  bad = tmp_path / 'images' / layout.image_relpath(RES, 'fs_002', 'jawOpen', 1)
  bad.write_bytes(bad.read_bytes()[:40])
  ds = _make(sources.SynHeadSource(tmp_path, RES), shuffle=False, batch_size=4, num_epochs=1, num_threads=0)
  with pytest.raises(ValueError, match=str(bad)):
    next(iter(ds))


def test_make_global_batch_splits_over_data(source):
  assert jax.device_count() == 2  # conftest's --xla_force_host_platform_device_count=2
  batch = next(iter(_make(source, batch_size=4)))
  mesh = jax.make_mesh((2,), ('data',))
  arrays = pipeline.make_global_batch(batch, mesh)
  assert set(arrays) == set(batch)
  for key, array in arrays.items():
    assert isinstance(array, jax.Array)
    assert array.shape == batch[key].shape and array.dtype == batch[key].dtype
    assert array.sharding.spec == PartitionSpec('data')
    shards = sorted(array.addressable_shards, key=lambda shard: shard.index[0].start)
    assert len({shard.device for shard in shards}) == 2
    for k, shard in enumerate(shards):
      np.testing.assert_array_equal(np.asarray(shard.data), batch[key][2 * k : 2 * k + 2])
  with pytest.raises(ValueError, match='does not split'):
    pipeline.make_global_batch({key: value[:3] for key, value in batch.items()}, mesh)
