"""Trains Head360 (or resumes the run in ``--workdir``).

Usage::

  .venv/bin/python train.py --config configs/tiny.py --workdir runs/tiny \
      --config.data.root=runs/demo/anny_small [--config.train.batch_size=8 ...]

Stages: a config from ``configs/*_stage2.py`` with ``--config.train.init_from=<stage-1 run>``
fine-tunes hair detachment (paper §3.3); one from ``configs/*_refine.py`` with
``--config.train.init_from=<run>`` trains the RefineNet on that run's renders (stage 3).
A missing or incompatible ``init_from`` stops with one line naming it.

Rerunning the same command resumes from the latest checkpoint in ``--workdir``. Ctrl-C
saves a checkpoint and exits; a non-finite loss stops with the step and the last good
checkpoint (exit status 1). TensorBoard: ``tensorboard --logdir runs/tiny``.

Several processes (one per host, or several on one machine) train one run on JAX's
distributed runtime: start the same command in each with ``--coordinator_address=host:port``
(process 0's host, a free port), ``--num_processes=P`` and ``--process_id=p``, or the
environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``.
``--workdir`` must be one folder all processes share; ``train.batch_size`` stays global.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for config.json, checkpoints and TensorBoard events.')
flags.mark_flags_as_required(['config', 'workdir'])
_COMPILATION_CACHE = flags.DEFINE_boolean(
  'compilation_cache', True, 'Persistent XLA compilation cache in ~/.cache/head360_jax/xla (HEAD360_COMPILATION_CACHE).'
)
_COORDINATOR_ADDRESS = flags.DEFINE_string(
  'coordinator_address', None, 'Multi-process: host:port of process 0 (default $JAX_COORDINATOR_ADDRESS).'
)
_NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes', None, 'Multi-process: number of processes (default $JAX_NUM_PROCESSES; unset: one).'
)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-process: this process, 0..P-1 (default $JAX_PROCESS_ID).')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from head360_jax import checkpoint, compilation_cache, parallel, xla_options

  xla_options.apply()
  try:  # before anything touches a JAX backend
    parallel.initialize_distributed(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as error:
    raise app.UsageError(str(error)) from error

  compilation_cache.enable(_COMPILATION_CACHE.value)
  logging.set_verbosity(logging.INFO)
  checkpoint.quiet_orbax_logs()
  try:
    from head360_jax.training.build import build_models
  except ImportError as error:
    sys.exit(f'train.py: the model builder head360_jax.training.build.build_models is not available ({error})')

  from head360_jax.training import loop, refine_loop

  try:
    if refine_loop.is_refine_run(_CONFIG.value):  # stage 3: the RefineNet on a finished run's renders
      refine_loop.train_refine(_CONFIG.value, _WORKDIR.value, build_models=build_models)
    else:
      loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value, build_models=build_models)
  except loop.NonFiniteLossError as error:
    logging.error('%s', error)
    sys.exit(1)
  except loop.InitFromError as error:
    sys.exit(f'train.py: {error}')


if __name__ == '__main__':
  app.run(main)
