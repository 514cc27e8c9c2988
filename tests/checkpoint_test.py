"""checkpoint.quiet_orbax_logs: orbax's INFO chatter is dropped from absl's handler, everything else kept."""

import logging as std_logging

from absl import logging

from head360_jax import checkpoint


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
