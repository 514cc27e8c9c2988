"""``train_and_evaluate``: wiring of mesh, models, data, steps, checkpoints and logs (no math).

Legend: ``s`` the iteration about to run (``state.step``); "step n" in logs, metrics and
checkpoints means "after n completed iterations". ``B`` global batch.

Per iteration (``steps.py``): ``g_reg`` every ``density_reg_interval``, ``g_main``,
``d_reg`` every ``r1_interval``, ``d_main``. Every ``log_every`` steps the metrics since
the last log are fetched, checked to be finite, averaged, written to TensorBoard and
printed with images/s; every ``sample_every`` steps G_ema renders a fixed batch into
image grids; every ``checkpoint_every`` steps and at the end the state and the data
iterator position are saved. A rerun with the same workdir resumes from the latest
checkpoint and repeats exactly what an uninterrupted run would have done (CPU).

Several processes (``parallel.initialize_distributed``, ``train.py --num_processes``): every
process runs this same loop on its devices of one global mesh. Process ``p`` of ``P`` reads
rows ``[p·B/P, (p+1)·B/P)`` of each global batch (``pipeline.make_dataset``'s block shards)
and ``make_global_batch`` joins them, so the run repeats a single-process run with the same
``B``. All processes save and restore the checkpoints (each its own data position); only
process 0 writes ``config.json``, TensorBoard events and sample grids and logs progress.

Stopping: Ctrl-C (SIGINT) finishes the current iteration, saves a checkpoint and returns;
a second Ctrl-C interrupts at once. A non-finite metric raises ``NonFiniteLossError``
naming the step and the last good checkpoint; the bad state is never saved (metrics
are checked before every save).
"""

import contextlib
import pathlib
import signal
import threading
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging

from head360_jax import checkpoint, parallel
from head360_jax.data import layout, pipeline, sources
from head360_jax.metrics import writer as writer_lib
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib


class NonFiniteLossError(FloatingPointError):
  """A training metric became NaN or infinite."""


def _check_finite(pending: list[tuple[int, dict]], checkpointer: checkpoint.Checkpointer) -> list[tuple[int, dict]]:
  """Fetches pending ``(step, metrics)`` to the host; raises ``NonFiniteLossError`` at the first bad one."""
  fetched = jax.device_get(pending)
  for step, metrics in fetched:
    bad = {name: float(value) for name, value in metrics.items() if not np.isfinite(value)}
    if bad:
      last = checkpointer.latest_step()
      where = f'{checkpointer.step_path(last)} (step {last})' if last is not None else 'none'
      raise NonFiniteLossError(f'non-finite metrics {bad} at step {step}; last good checkpoint: {where}')
  return fetched


def _average(fetched: list[tuple[int, dict]]) -> dict[str, float]:
  """Mean of each metric over the iterations that reported it (regularisers report every R steps)."""
  values: dict[str, list[float]] = {}
  for _, metrics in fetched:
    for name, value in metrics.items():
      values.setdefault(name, []).append(float(value))
  return {name: float(np.mean(v)) for name, v in sorted(values.items())}


@contextlib.contextmanager
def _sigint_flag():
  """Turns the first SIGINT into a flag (checked between iterations); the second one interrupts."""
  flag = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return

  def handler(signum, frame):
    if flag.is_set():
      raise KeyboardInterrupt
    logging.warning('interrupt: finishing this step, then saving a checkpoint (Ctrl-C again to abort)')
    flag.set()

  previous = signal.signal(signal.SIGINT, handler)
  try:
    yield flag
  finally:
    signal.signal(signal.SIGINT, previous)


def _sample_batch(source, config: ml_collections.ConfigDict) -> dict:
  """The first ``num_samples`` records in source order: a fixed batch to render at each sample step."""
  count = min(config.train.num_samples, len(source))
  dataset = pipeline.make_dataset(
    source,
    batch_size=count,
    seed=0,
    shuffle=False,
    num_epochs=1,
    num_threads=0,
    shard_index=0,
    shard_count=1,
    resolution=config.model.output_resolution,
  )
  return next(iter(dataset))


def _write_samples(writer, sample, g_ema, batch: dict, key: jax.Array, step: int) -> None:
  out = jax.device_get(sample(g_ema, batch, key))
  size = out['image'].shape[1]
  writer.images(
    step,
    {
      'samples/image': writer_lib.image_grid(out['image']),
      'samples/image_raw': writer_lib.image_grid(out['image_raw'], size=size),
    },
  )


def training_views(config: ml_collections.ConfigDict) -> list[int]:
  """The camera views trained on: all 72 but ``config.data.held_out_views``."""
  held_out = set(config.data.get('held_out_views', ()))
  return [view for view in range(layout.NUM_VIEWS) if view not in held_out]


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str | pathlib.Path,
  *,
  build_models: Callable[[ml_collections.ConfigDict], state_lib.Networks],
  source=None,
) -> dict[int, dict[str, float]]:
  """Trains (or resumes) a run in ``workdir``.

  Args:
    config: the run config (``configs/``); ``train.batch_size`` is global and must divide
      over ``train.num_devices`` (default all) devices and the processes.
    workdir: output folder: ``config.json``, ``checkpoints/``, TensorBoard events.
    build_models: ``config -> state.Networks`` (the real one is
      ``head360_jax.training.build.build_models``); must be deterministic in the config.
    source: a grain data source with ``SynHeadSource``'s record fields; default
      ``SynHeadSource(config.data.root, config.data.resolution, include_bald=...)``.

  Returns:
    ``{step: averaged metrics}`` of every log written by this call.

  Raises:
    NonFiniteLossError: on a NaN/inf metric (nothing is saved after the last good log).
    ValueError: if the batch does not divide over devices/processes, a ``*_every`` or
      ``steps`` is not positive, or ``config.json`` in ``workdir`` describes another model.
  """
  train = config.train
  workdir = pathlib.Path(workdir)
  mesh = parallel.make_mesh(train.num_devices)
  for name in ('steps', 'log_every', 'sample_every', 'checkpoint_every'):
    if train[name] <= 0:
      raise ValueError(f'train.{name} must be positive, got {train[name]}')
  if train.batch_size % mesh.size:
    raise ValueError(
      f'batch_size {train.batch_size} does not split over {mesh.size} devices ({jax.process_count()} processes)'
    )
  checkpoint.write_config(workdir, config, write=jax.process_index() == 0)
  if source is None:
    source = sources.SynHeadSource(
      config.data.root, config.data.resolution, include_bald=config.data.include_bald, views=training_views(config)
    )

  models, state = state_lib.create(config, build_models(config))
  abstract = state_lib.abstract_state(state, mesh)
  state = jax.device_put(state, state_lib.state_sharding(state, mesh))
  step_fns = steps_lib.make_steps(models, config=config, mesh=mesh)
  sample = steps_lib.make_sampler(models, mesh=mesh)
  dataset = pipeline.make_dataset(
    source,
    batch_size=train.batch_size // jax.process_count(),
    seed=train.seed,
    num_threads=config.data.num_threads,
    resolution=config.model.output_resolution,
  )
  iterator: Iterator = iter(dataset)
  rng = jax.random.key(train.seed)
  sample_key = jax.random.key(train.seed + 1)
  sample_batch = _sample_batch(source, config)
  writer = writer_lib.Writer(workdir)
  history: dict[int, dict[str, float]] = {}

  with checkpoint.Checkpointer(workdir, max_to_keep=train.keep_checkpoints) as checkpointer, _sigint_flag() as stop:
    if checkpointer.latest_step() is not None:
      state, data_state = checkpointer.restore(abstract)
      iterator.set_state(data_state)
      logging.info('resumed from %s', checkpointer.step_path(checkpointer.latest_step()))
    else:
      writer.images(0, {'samples/real': writer_lib.image_grid(sample_batch['image'])})
    step = int(jax.device_get(state.step))
    progress = writer_lib.Progress(train.steps, train.batch_size, start_step=step)
    pending: list[tuple[int, dict]] = []
    last_saved = checkpointer.latest_step()

    def save(at: int) -> None:
      nonlocal last_saved
      if last_saved != at:
        checkpointer.save(at, state, iterator.get_state())
        last_saved = at

    try:
      while step < train.steps and not stop.is_set():
        batch = pipeline.make_global_batch(next(iterator), mesh)
        metrics = {}
        if train.density_reg > 0 and step % train.density_reg_interval == 0:
          state, m = step_fns['g_reg'](state, batch, rng)
          metrics |= m
        state, m = step_fns['g_main'](state, batch, rng)
        metrics |= m
        if train.r1_gamma > 0 and step % train.r1_interval == 0:
          state, m = step_fns['d_reg'](state, batch, rng)
          metrics |= m
        state, m = step_fns['d_main'](state, batch, rng)
        step += 1
        pending.append((step, metrics | m))
        if step % train.log_every == 0 or step == train.steps:
          averaged = _average(_check_finite(pending, checkpointer))
          pending = []
          history[step] = averaged
          writer.scalars(step, averaged)
          rate = progress(step, {k: averaged[k] for k in ('g/loss', 'g/loss_l1', 'd/loss') if k in averaged})
          writer.scalars(step, {'perf/images_per_second': rate})
        if step % train.sample_every == 0:
          _write_samples(writer, sample, state.g_ema, sample_batch, sample_key, step)
        if step % train.checkpoint_every == 0:
          _check_finite(pending, checkpointer)
          save(step)
      _check_finite(pending, checkpointer)
      save(step)
      if stop.is_set():
        logging.info('stopped by interrupt at step %d; checkpoint %s', step, checkpointer.step_path(step))
    finally:
      writer.close()
      if hasattr(iterator, 'close'):
        iterator.close()
  return history
