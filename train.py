"""Trains Head360 (or resumes the run in ``--workdir``).

Usage::

  .venv/bin/python train.py --config configs/tiny.py --workdir runs/tiny \
      --config.data.root=runs/demo/anny_small [--config.train.batch_size=8 ...]

Rerunning the same command resumes from the latest checkpoint in ``--workdir``. Ctrl-C
saves a checkpoint and exits; a non-finite loss stops with the step and the last good
checkpoint (exit status 1). TensorBoard: ``tensorboard --logdir runs/tiny``.
"""

import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for config.json, checkpoints and TensorBoard events.')
flags.mark_flags_as_required(['config', 'workdir'])
_COMPILATION_CACHE = flags.DEFINE_boolean(
  'compilation_cache', True, 'Persistent XLA compilation cache in ~/.cache/head360_jax/xla (HEAD360_COMPILATION_CACHE).'
)


class _DropOrbaxInfo(std_logging.Filter):
  """orbax logs every file it writes at INFO; keep its warnings and errors only."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from head360_jax import compilation_cache

  compilation_cache.enable(_COMPILATION_CACHE.value)
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_DropOrbaxInfo())
  try:
    from head360_jax.training.build import build_models
  except ImportError as error:
    sys.exit(f'train.py: the model builder head360_jax.training.build.build_models is not available ({error})')

  from head360_jax.training import loop

  try:
    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value, build_models=build_models)
  except loop.NonFiniteLossError as error:
    logging.error('%s', error)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
