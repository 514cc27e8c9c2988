"""checkpoint: orbax log filtering, and run configs written before model fields were added."""

import json
import logging as std_logging

import pytest
from absl import logging

from configs import tiny
from head360_jax import checkpoint
from head360_jax.training import loop


def _record(level: int, pathname: str, message: str = 'message') -> std_logging.LogRecord:
  return std_logging.LogRecord('absl', level, pathname, 1, message, None, None)


def test_quiet_orbax_logs_drops_only_orbax_info_and_is_idempotent():
  handler = logging.get_absl_handler()
  before = list(handler.filters)
  try:
    checkpoint.quiet_orbax_logs()
    checkpoint.quiet_orbax_logs()
    added = [f for f in handler.filters if f not in before]
    assert len(added) <= 1 and len(handler.filters) == len(set(map(id, handler.filters)))
    orbax = '/venv/site-packages/orbax/checkpoint/checkpoint_manager.py'
    ours = '/work/head360_jax/training/loop.py'
    assert not handler.filter(_record(std_logging.INFO, orbax))
    assert handler.filter(_record(std_logging.WARNING, orbax))
    assert handler.filter(_record(std_logging.ERROR, orbax))
    assert handler.filter(_record(std_logging.INFO, ours))
    # the read-only notices every render/evaluate/fit would print (issue 13: quiet by default)
    notice = 'CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.'
    assert not handler.filter(_record(std_logging.WARNING, orbax, notice))
    read_only = _record(std_logging.WARNING, orbax, 'Given directory is read only=/x')
    assert not std_logging.getLogger('absl').filter(read_only)
  finally:
    for target in (handler, std_logging.getLogger('absl')):
      for f in [f for f in target.filters if f not in before]:
        target.removeFilter(f)


def _old_run(tmp_path):
  """A run directory whose ``config.json`` predates ``MODEL_FIELDS_ADDED`` (those fields removed)."""
  config = tiny.get_config()
  checkpoint.write_config(tmp_path, config)
  saved = json.loads((tmp_path / checkpoint.CONFIG_FILE).read_text())
  for name in checkpoint.MODEL_FIELDS_ADDED:
    del saved['model'][name]
  (tmp_path / checkpoint.CONFIG_FILE).write_text(json.dumps(saved))
  (tmp_path / 'checkpoints' / '7').mkdir(parents=True)
  return config


def test_runs_older_than_added_model_fields_read_resume_and_initialise(tmp_path):
  config = _old_run(tmp_path)
  restored = checkpoint.read_config(tmp_path)
  for name, default in checkpoint.MODEL_FIELDS_ADDED.items():
    assert restored.model[name] == default == config.model[name]
  checkpoint.write_config(tmp_path, config)  # resuming: same model, no error
  assert loop.check_init_from(tmp_path, config) == 7
  config.model.representation = 'triplane'
  with pytest.raises(loop.InitFromError, match="representation: 'hexplane' there vs 'triplane' here"):
    loop.check_init_from(tmp_path, config)
  with pytest.raises(ValueError, match='different model'):
    checkpoint.write_config(tmp_path, config)
