"""fit.py's outputs appear whole or not at all: an interrupted write (Ctrl-C) leaves no folder behind."""

import numpy as np
import pytest

from head360_jax import inference
from head360_jax.fitting import appearance, fitted, pipeline


def _head():
  return fitted.FittedHead(
    s=np.zeros(4, np.float32),
    b=np.zeros(52, np.float32),
    texture=np.zeros((8, 8, 3), np.float32),
    w_hair=np.zeros(4, np.float32),
    h=np.zeros(4, np.float32),
    label=np.zeros(25, np.float32),
    shape_rig='anny',
    shape_identities=4,
    shape_rank=4,
    shape_seed=0,
    step=0,
    tuned={"['decoder']['bias'].value": np.arange(3, dtype=np.float32)},
  )


def _fit():
  losses = np.ones(4, np.float32)
  return appearance.AppearanceFit(
    texture=np.zeros((8, 8, 3), np.float32),
    w_hair=np.zeros(4, np.float32),
    losses=losses,
    smoothed=losses,
    passes=np.array([0, 0, 1, 1], np.int32),
    seconds=losses,
  )


def _write(out):
  images = {'aligned.png': np.zeros((16, 16, 3), np.uint8)}
  orbit = np.zeros((2, 16, 16, 3), np.uint8)
  pipeline._write_outputs(out, _head(), images, orbit, np.ones(3), _fit(), np.ones(2), {'x': 1.0})


@pytest.mark.parametrize('existing', [False, True])
def test_interrupted_write_leaves_nothing_and_keeps_an_older_fit(tmp_path, monkeypatch, existing):
  out = tmp_path / 'man'
  if existing:
    _write(out)
    before = sorted(p.name for p in out.iterdir())

  def interrupt(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(inference, 'write_video', interrupt)
  with pytest.raises(KeyboardInterrupt):
    _write(out)
  assert not list(tmp_path.glob('.man-*'))  # no half-written temporary folder
  if existing:
    assert sorted(p.name for p in out.iterdir()) == before  # the previous fit is untouched
  else:
    assert not out.exists()


def test_written_fit_round_trips_the_tuned_weights(tmp_path):
  _write(tmp_path / 'man')
  head = fitted.load(tmp_path / 'man' / 'fitted.npz')
  np.testing.assert_array_equal(head.tuned["['decoder']['bias'].value"], np.arange(3))
  log = (tmp_path / 'man' / 'fit_log.csv').read_text().splitlines()
  assert [row.split(',')[0] for row in log[1:]] == ['shape'] * 3 + ['face'] * 2 + ['hair'] * 2 + ['tuning'] * 2
