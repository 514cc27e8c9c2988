"""The training loop end to end with stand-in networks on a fake dataset: resume, sharding, checkpoints, stops."""

import json
import os
import pickle
import signal

import jax
import numpy as np
import pytest
import standins

from head360_jax import checkpoint
from head360_jax.data import sources, synthetic
from head360_jax.training import loop
from head360_jax.training.steps import PHASES

pytestmark = pytest.mark.slow  # minutes on 2 cores: started first (tests/conftest.py)

STEPS = 6


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp('data')
  synthetic.write_fake_dataset(root, resolution=16, views=6)
  return root


def _config(dataset, **train):
  config = standins.tiny_config(**train)
  config.data.root = str(dataset)
  return config


@pytest.fixture(scope='module')
def uninterrupted(dataset, tmp_path_factory):
  """A 6-step run on all (2) devices, checkpoints at steps 3 and 6."""
  workdir = tmp_path_factory.mktemp('uninterrupted')
  history = loop.train_and_evaluate(_config(dataset, steps=STEPS), workdir, build_models=standins.build_models)
  return workdir, history


def _assert_losses_close(a, b, steps, atol, rtol=0.0):
  for step in steps:
    for name in ('g/loss', 'g/loss_l1', 'g/loss_gan', 'd/loss_real', 'd/loss_fake', 'd/r1', 'g/density_reg'):
      if name in a[step] or name in b[step]:
        np.testing.assert_allclose(a[step][name], b[step][name], atol=atol, rtol=rtol, err_msg=f'{name} at step {step}')


def test_resumed_run_repeats_the_uninterrupted_one(dataset, uninterrupted, tmp_path):
  _, full = uninterrupted
  assert sorted(full) == list(range(1, STEPS + 1))
  assert {'d/r1', 'g/density_reg'} <= set(full[1])  # regularisers ran at step 0
  first = loop.train_and_evaluate(_config(dataset, steps=3), tmp_path, build_models=standins.build_models)
  second = loop.train_and_evaluate(_config(dataset, steps=STEPS), tmp_path, build_models=standins.build_models)
  assert sorted(first) == [1, 2, 3] and sorted(second) == [4, 5, 6]  # the second call resumed at step 3
  _assert_losses_close(full, first | second, range(1, STEPS + 1), atol=1e-6)


def test_two_devices_match_one_device(dataset, uninterrupted, tmp_path):
  assert jax.device_count() == 2  # tests/conftest.py
  _, two = uninterrupted
  one = loop.train_and_evaluate(_config(dataset, steps=3, num_devices=1), tmp_path, build_models=standins.build_models)
  # g/loss ≈ 90 (100 × L1): float32 sums split over devices agree to a few ulp.
  _assert_losses_close(two, one, range(1, 4), atol=1e-5, rtol=1e-5)


def _is_pickle(path):
  with open(path, 'rb') as f:
    head = f.read(2)
  return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def test_checkpoints_hold_arrays_and_json_only(uninterrupted, monkeypatch):
  workdir, _ = uninterrupted
  config = json.loads((workdir / 'config.json').read_text())
  assert config['model']['output_resolution'] == 16
  files = [os.path.join(d, f) for d, _, names in os.walk(workdir / 'checkpoints') for f in names]
  assert files and not [f for f in files if f.endswith(('.pkl', '.pickle')) or _is_pickle(f)]
  with checkpoint.Checkpointer(workdir, read_only=True) as checkpointer:
    assert checkpointer.all_steps() == [3, 6]
    data_state = json.loads((checkpointer.step_path(6) / 'data' / 'metadata').read_text())
  assert data_state  # the iterator position, as JSON

  def refuse(*args, **kwargs):
    raise AssertionError('restore unpickled something')

  for name in ('load', 'loads', 'Unpickler'):
    monkeypatch.setattr(pickle, name, refuse)
  generator, g_stats, restored_config, step = checkpoint.restore_generator_ema(workdir, standins.build_models)
  assert step == 6 and restored_config.model.output_resolution == 16 and g_stats['w_avg'].shape == (16,)
  assert float(np.abs(np.asarray(g_stats['w_avg'])).sum()) > 0  # the statistic was trained, not the initial zeros


def test_half_written_checkpoint_is_ignored(dataset, uninterrupted, tmp_path):
  """A save killed mid-way leaves only orbax's temporary folder; the latest complete step is used."""
  workdir, _ = uninterrupted
  loop.train_and_evaluate(_config(dataset, steps=3), tmp_path, build_models=standins.build_models)
  partial = tmp_path / 'checkpoints' / '5.orbax-checkpoint-tmp'
  (partial / 'state').mkdir(parents=True)
  (partial / 'state' / 'garbage').write_bytes(b'\0' * 10)
  with checkpoint.Checkpointer(tmp_path, read_only=True) as checkpointer:
    assert checkpointer.latest_step() == 3
  history = loop.train_and_evaluate(_config(dataset, steps=4), tmp_path, build_models=standins.build_models)
  assert sorted(history) == [4] and not partial.exists()  # resumed from 3; the leftover was cleaned up


def test_non_finite_loss_stops_naming_step_and_last_checkpoint(dataset, tmp_path):
  loop.train_and_evaluate(_config(dataset, steps=3), tmp_path, build_models=standins.build_models)
  with pytest.raises(loop.NonFiniteLossError, match=r'at step 4; last good checkpoint: .*checkpoints/3 \(step 3\)'):
    loop.train_and_evaluate(
      _config(dataset, steps=STEPS, l1_weight=float('nan')), tmp_path, build_models=standins.build_models
    )
  with checkpoint.Checkpointer(tmp_path, read_only=True) as checkpointer:
    assert checkpointer.all_steps() == [3]  # the NaN state was not saved


class _InterruptingSource:
  """Sends SIGINT to this process when record ``at`` is read (the loop reads records in this thread)."""

  def __init__(self, source, at):
    self._source, self._at, self._reads = source, at, 0

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    self._reads += 1
    if self._reads == self._at:
      os.kill(os.getpid(), signal.SIGINT)
    return self._source[index]


def test_ctrl_c_saves_a_checkpoint_and_returns(dataset, tmp_path):
  config = _config(dataset, steps=STEPS, checkpoint_every=100)
  # Reads: 4 records for the fixed sample batch, then 4 per step: the 13th is in the 3rd step's batch.
  source = _InterruptingSource(sources.SynHeadSource(dataset, 16), at=4 + 4 * 2 + 1)
  history = loop.train_and_evaluate(config, tmp_path, build_models=standins.build_models, source=source)
  assert sorted(history) == [1, 2, 3]
  with checkpoint.Checkpointer(tmp_path, read_only=True) as checkpointer:
    assert checkpointer.all_steps() == [3]


def test_time_budget_ends_the_run_like_its_last_step(dataset, tmp_path):
  config = _config(dataset, steps=STEPS, checkpoint_every=100, max_minutes=1e-9, gan_weight=0.0)
  history = loop.train_and_evaluate(config, tmp_path, build_models=standins.build_models)
  assert sorted(history) == [1]  # the budget was spent after the first iteration
  assert not any(name.startswith('d/') for name in history[1])  # gan_weight 0: D never ran
  assert 'g/loss_gan' not in history[1]
  with checkpoint.Checkpointer(tmp_path, read_only=True) as checkpointer:
    assert checkpointer.all_steps() == [1]


def test_photometric_only_run_counts_its_steps_and_resumes(dataset, tmp_path):
  """gan_weight 0 runs no D phase; the step counter (schedules, randomness, resume point) must still advance."""
  config = _config(dataset, steps=2, gan_weight=0.0)
  first = loop.train_and_evaluate(config, tmp_path, build_models=standins.build_models)
  config.train.steps = 3
  second = loop.train_and_evaluate(config, tmp_path, build_models=standins.build_models)
  assert sorted(first) == [1, 2] and sorted(second) == [3]  # resumed after step 2, not from 0
  assert first[1]['g/ema_beta'] != first[2]['g/ema_beta']  # the EMA ramp-up moves with the counter


def test_phases_compile_once_ahead_of_the_first_step(dataset, tmp_path, monkeypatch, caplog):
  """``_compile_ahead`` compiles each phase the run uses once; the steps reuse those executables."""
  trimmed = []
  monkeypatch.setattr(loop.xla_options, 'release_free_heap', lambda: trimmed.append(True) or True)
  config = _config(dataset, steps=2)
  with jax.log_compiles(), caplog.at_level('WARNING'):
    history = loop.train_and_evaluate(config, tmp_path, build_models=standins.build_models)
  assert sorted(history) == [1, 2] and trimmed == [True]
  messages = [record.getMessage() for record in caplog.records]
  compiles = {name: sum(f'Compiling jit({name})' in message for message in messages) for name in PHASES}
  assert compiles == dict.fromkeys(PHASES, 1)  # all four run (GAN, R1 and density regularisation at step 0)
