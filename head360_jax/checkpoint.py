"""Checkpoints: orbax directories of arrays plus JSON, never pickles (ARCHITECTURE D10).

Layout of a work directory::

  <workdir>/config.json                  the run config (written once, ``write_config``)
  <workdir>/checkpoints/<step>/state/    the whole ``TrainState`` (orbax PyTree: OCDBT/zarr arrays + JSON metadata)
  <workdir>/checkpoints/<step>/data/     the data iterator position (JSON): ``metadata`` in a
                                         single-process run, ``process_<p>-of-<P>.json`` per process
                                         in a run of ``P > 1`` processes

orbax writes a step into a temporary folder and renames it when complete, so a process
killed mid-save (SIGKILL) leaves no half step behind: ``latest_step`` only ever sees
finished steps, and leftover temporary folders are removed when a manager opens the
directory. Restoring reads arrays into a given abstract tree (shapes, dtypes,
shardings), so it runs no code from the checkpoint.

Multi-process runs (``parallel.initialize_distributed``): every process calls ``save`` and
``restore`` on the same (shared) directory; orbax writes each array shard once and has
process 0 finish the step. Each process's data iterator position is its own file, since
every process reads its own shard; only process 0 writes ``config.json``.
"""

import json
import logging as std_logging
import pathlib
from collections.abc import Callable, Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from head360_jax.training import state as state_lib


class _DropOrbaxInfo(std_logging.Filter):
  """orbax logs every file it reads or writes at INFO, and warns that a read-only manager is read-only.

  Keeps its other warnings and its errors.
  """

  def filter(self, record: std_logging.LogRecord) -> bool:
    if '/orbax/' not in record.pathname:
      return True
    return record.levelno >= std_logging.WARNING and 'read only' not in record.getMessage().replace('_', ' ')


_QUIET = _DropOrbaxInfo()


def quiet_orbax_logs() -> None:
  """Drops orbax's INFO records from absl's log handler (entry points call this once; idempotent)."""
  # absl's handler (entry points under absl.app) and absl's logger itself (plain Python logging, e.g. evaluate)
  for target in (logging.get_absl_handler(), std_logging.getLogger('absl')):
    if _QUIET not in target.filters:
      target.addFilter(_QUIET)


CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
_STATE, _DATA = 'state', 'data'

# Model fields added after runs already existed, with the value every older run implicitly
# had (not always ``configs/base.py``'s: older runs were float32 throughout). A model section
# without them describes that model: builds (``training/build.py``), resumes
# (``write_config``) and ``train.init_from`` checks all read them through ``with_model_defaults``.
MODEL_FIELDS_ADDED = {
  'mouth_unet': False,
  'blending_unet': False,
  'compute_dtype': 'float32',
  'g_num_bf16_res': 0,
  'sr_num_bf16_res': 0,
  'd_num_bf16_res': 0,
  'latent': 'codes',
  'representation': 'hexplane',
  'nerf_frequencies': 10,
  'nerf_hidden': 64,
  'nerf_layers': 8,
}


def with_model_defaults(model: Mapping) -> dict:
  """A config's ``model`` section (dict or ConfigDict) as a dict, ``MODEL_FIELDS_ADDED`` filled in where absent."""
  return {**MODEL_FIELDS_ADDED, **model}


class Checkpointer:
  """Saves and restores ``(TrainState, data iterator state)`` per step under ``<workdir>/checkpoints``.

  Use as a context manager, or call ``close()``: saves are asynchronous and ``close``
  waits for the last one.
  """

  def __init__(self, workdir: str | pathlib.Path, *, max_to_keep: int | None = 3, read_only: bool = False):
    """Opens (creating unless ``read_only``) the checkpoint folder of ``workdir``; keeps the newest ``max_to_keep``."""
    self.directory = pathlib.Path(workdir).resolve() / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only
    )
    self._data_file = data_state_file()
    # The data item: JSON written by every process into its own file (orbax's default
    # writes from process 0 only); the state item gets orbax's handler for its args.
    data_handler = ocp.JsonCheckpointHandler(
      filename=self._data_file, multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=None)
    )
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add(_DATA, ocp.args.JsonSave, data_handler)
    registry.add(_DATA, ocp.args.JsonRestore, data_handler)
    self._manager = ocp.CheckpointManager(self.directory, options=options, handler_registry=registry)

  def latest_step(self) -> int | None:
    """The newest complete step, or None when there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """All complete steps, oldest first."""
    return sorted(self._manager.all_steps())

  def step_path(self, step: int) -> pathlib.Path:
    """The folder of ``step`` (for messages)."""
    return self.directory / str(step)

  def save(self, step: int, state: state_lib.TrainState, data_state: dict | None = None, *, wait: bool = False) -> None:
    """Saves ``state`` and the JSON-serialisable ``data_state`` as ``step`` (asynchronously unless ``wait``)."""
    args = ocp.args.Composite(**{_STATE: ocp.args.PyTreeSave(state), _DATA: ocp.args.JsonSave(data_state or {})})
    self._manager.save(step, args=args, force=True)
    if wait:
      self._manager.wait_until_finished()

  def restore(self, abstract_state: state_lib.TrainState, step: int | None = None) -> tuple[state_lib.TrainState, dict]:
    """Reads ``step`` (default: the latest) into ``abstract_state``'s shapes, dtypes and shardings.

    Args:
      abstract_state: a ``TrainState`` of ``jax.ShapeDtypeStruct`` leaves with
        shardings (``state.abstract_state``).
      step: the step to read; None for the latest.

    Returns:
      ``(state, data_state)``.

    Raises:
      FileNotFoundError: if there is no checkpoint.
      ValueError: if the step holds no data position for this process (it was written by
        a run with another number of processes).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    data_path = self.step_path(step) / _DATA / self._data_file
    if not data_path.is_file():
      raise ValueError(
        f'{data_path} is missing: step {step} was written by a run with another number of processes '
        f'(this run has {jax.process_count()}); resume with the same number of processes'
      )
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    args = ocp.args.Composite(
      **{_STATE: ocp.args.PyTreeRestore(abstract_state, restore_args=restore_args), _DATA: ocp.args.JsonRestore()}
    )
    restored = self._manager.restore(step, args=args)
    return restored[_STATE], dict(restored[_DATA] or {})

  def restore_partial(self, abstract_subtree: dict, step: int | None = None) -> dict:
    """Reads only some top-level fields of the saved state, e.g. ``{'g_ema': ..., 'g_stats': ...}``."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_subtree)
    item = ocp.args.PyTreeRestore(abstract_subtree, restore_args=restore_args, partial_restore=True)
    return self._manager.restore(step, args=ocp.args.Composite(**{_STATE: item}))[_STATE]

  def wait(self) -> None:
    """Blocks until the last save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def data_state_file(process_index: int | None = None, process_count: int | None = None) -> str:
  """The file name of a process's data iterator position in ``<step>/data/`` (default: this process).

  ``metadata`` (orbax's JSON default) for a single process, ``process_<p>-of-<P>.json``
  for process ``p`` of ``P > 1``.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  return 'metadata' if process_count == 1 else f'process_{process_index}-of-{process_count}.json'


def write_config(workdir: str | pathlib.Path, config: ml_collections.ConfigDict, *, write: bool = True) -> pathlib.Path:
  """Writes ``<workdir>/config.json`` if absent; a resumed run must keep the model it started with.

  Args:
    workdir: the run's folder.
    config: the run config.
    write: False only checks an existing file (processes other than 0 of a multi-process run).

  Raises:
    ValueError: if ``config.json`` exists and its ``model`` section differs from ``config.model``.
  """
  path = pathlib.Path(workdir) / CONFIG_FILE
  new = json.loads(config.to_json())
  if path.is_file():
    old = json.loads(path.read_text())
    if with_model_defaults(old.get('model', {})) != with_model_defaults(new.get('model', {})):
      raise ValueError(f'{path} describes a different model than this config; use a new workdir')
    return path
  if not write:
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{CONFIG_FILE}.tmp')
  tmp.write_text(json.dumps(new, indent=2, sort_keys=True) + '\n')
  tmp.replace(path)
  return path


def read_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  """The config a work directory was trained with (``config.json``; model fields added since filled in)."""
  config = json.loads((pathlib.Path(workdir) / CONFIG_FILE).read_text())
  if 'model' in config:
    config['model'] = with_model_defaults(config['model'])
  return ml_collections.ConfigDict(config)


def restore_generator_ema(
  workdir: str | pathlib.Path,
  build_models: Callable[[ml_collections.ConfigDict], state_lib.Networks],
  step: int | None = None,
) -> tuple[object, dict, ml_collections.ConfigDict, int]:
  """Loads the EMA generator of a work directory (for ``render.py`` and fitting).

  The networks are rebuilt from ``config.json`` by ``build_models`` (which fixes the
  parameter shapes); only ``g_ema`` and ``g_stats`` are read from the checkpoint.

  Args:
    workdir: a training work directory.
    build_models: the model builder the run was trained with.
    step: the step to load; None for the latest.

  Returns:
    ``(generator, g_stats, config, step)``: the NNX generator carrying the EMA weights,
    its running statistics, the run config and the step loaded.

  Raises:
    FileNotFoundError: if the work directory has no config or no checkpoint.
  """
  config = read_config(workdir)
  networks = build_models(config)
  models, fresh = state_lib.create(config, networks)
  fields = {'g_ema': fresh.g_ema} | ({'g_stats': fresh.g_stats} if fresh.g_stats else {})
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), fields)
  with Checkpointer(workdir, max_to_keep=None, read_only=True) as checkpointer:
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {checkpointer.directory}')
    restored = checkpointer.restore_partial(abstract, step)
  return models.generator(restored['g_ema']), restored.get('g_stats', {}), config, step
