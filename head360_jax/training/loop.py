"""``train_and_evaluate``: wiring of mesh, models, data, steps, checkpoints and logs (no math).

Legend: ``s`` the iteration about to run (``state.step``); "step n" in logs, metrics and
checkpoints means "after n completed iterations". ``B`` global batch.

Per iteration (``steps.py``): ``g_reg`` every ``density_reg_interval``, ``g_main``,
``d_reg`` every ``r1_interval``, ``d_main`` (both skipped when ``train.gan_weight`` is 0).
Every ``log_every`` steps the metrics since the last log are fetched, checked to be finite,
averaged, written to TensorBoard and printed with images/s; every ``sample_every`` steps
G_ema renders a fixed batch into image grids; every ``eval_every`` steps (when the config holds views or expressions
out) the held-out L1/PSNR/SSIM/LPIPS-Alex of G_ema on a fixed subset of ``eval_records``
records go to TensorBoard under ``eval/`` (``head360_jax.evaluate``), so every run has a
quality curve; every ``checkpoint_every`` steps and at the end the state and the data
iterator position are saved. A rerun with the same workdir resumes from the latest
checkpoint and repeats exactly what an uninterrupted run would have done (CPU).

Several processes (``parallel.initialize_distributed``, ``train.py --num_processes``): every
process runs this same loop on its devices of one global mesh. Process ``p`` of ``P`` reads
rows ``[p·B/P, (p+1)·B/P)`` of each global batch (``pipeline.make_dataset``'s block shards)
and ``make_global_batch`` joins them, so the run repeats a single-process run with the same
``B``. All processes save and restore the checkpoints (each its own data position); only
process 0 writes ``config.json``, TensorBoard events and sample grids and logs progress.

Stopping: after ``train.steps`` iterations, or at the first iteration that ends past
``train.max_minutes`` of this call's wall-clock time (0: no limit; one process only), which
then logs, evaluates and saves as the last step does. Ctrl-C (SIGINT) finishes the current
iteration, saves a checkpoint and returns; a second Ctrl-C interrupts at once. A non-finite
metric raises ``NonFiniteLossError`` naming the step and the last good checkpoint; the bad
state is never saved (metrics are checked before every save).
"""

import contextlib
import json
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging

from head360_jax import checkpoint, parallel, xla_options
from head360_jax import evaluate as evaluate_lib
from head360_jax.data import layout, pipeline, sources
from head360_jax.metrics import writer as writer_lib
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib


class NonFiniteLossError(FloatingPointError):
  """A training metric became NaN or infinite."""


class InitFromError(ValueError):
  """``train.init_from`` names a run that is missing, unfinished or built for another model."""


# Model fields a run started from another (``train.init_from``) may change: they alter how the
# planes are composed or computed, not which parameters exist.
_INIT_FROM_MAY_DIFFER = ('stage', 'compute_dtype', 'g_num_bf16_res', 'sr_num_bf16_res', 'd_num_bf16_res')


def _saved_steps(workdir: pathlib.Path) -> list[int]:
  """Steps with a checkpoint folder under ``workdir/checkpoints`` (a listing: no orbax manager opened)."""
  folder = workdir / 'checkpoints'
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def check_init_from(init_from: str | pathlib.Path, config: ml_collections.ConfigDict) -> int:
  """Checks that ``train.init_from`` names a finished run of the same model; returns its latest step.

  Raises:
    InitFromError: one line naming ``init_from`` when it has no ``config.json``, no
      checkpoint, or describes another model (the differing fields are listed).
  """
  root = pathlib.Path(init_from)
  if not (root / checkpoint.CONFIG_FILE).is_file():
    raise InitFromError(f'train.init_from={str(init_from)!r}: no {checkpoint.CONFIG_FILE} there (not a training run)')
  theirs = json.loads(checkpoint.read_config(root).model.to_json())  # added fields filled in by read_config
  ours = checkpoint.with_model_defaults(json.loads(config.model.to_json()))
  differ = sorted(k for k in set(theirs) | set(ours) if k not in _INIT_FROM_MAY_DIFFER and theirs.get(k) != ours.get(k))
  if differ:
    fields = ', '.join(f'{k}: {theirs.get(k)!r} there vs {ours.get(k)!r} here' for k in differ)
    raise InitFromError(f'train.init_from={str(init_from)!r} was trained with another model ({fields})')
  steps = _saved_steps(root)
  if not steps:
    raise InitFromError(f'train.init_from={str(init_from)!r}: no checkpoint in {root / "checkpoints"}')
  return steps[-1]


def initialize_from(
  state: state_lib.TrainState, abstract: state_lib.TrainState, init_from: str | pathlib.Path, config
) -> state_lib.TrainState:
  """Starts a run from another run's latest weights (stage 2 from stage 1, ``train.init_from``).

  G, G_ema, D and G's running statistics come from ``init_from``'s latest checkpoint; the
  optimiser states stay fresh (``state``'s) and the step counter starts at 0, so every
  schedule (EMA ramp-up, blur and pose-conditioning fades, lazy-regulariser phases) starts
  over as in the reference's separate stage-2 run (reference-spec §5.3).

  Args:
    state: the fresh step-0 state (its optimiser states are kept).
    abstract: ``state_lib.abstract_state(state, mesh)``: shapes and shardings to read into.
    init_from: a training work directory with ``config.json`` and at least one checkpoint.
    config: this run's config; its ``model`` must equal the other run's up to ``stage`` and
      precision fields.

  Returns:
    The state with the other run's weights, step 0.

  Raises:
    InitFromError: as ``check_init_from``.
  """
  step = check_init_from(init_from, config)
  fields = ('g_params', 'g_ema', 'd_params') + (('g_stats',) if state.g_stats else ())
  with checkpoint.Checkpointer(init_from, max_to_keep=None, read_only=True) as other:
    restored = other.restore_partial({name: getattr(abstract, name) for name in fields}, step)
  logging.info('initialised from %s (step %d); step counter, optimisers and schedules start at 0', init_from, step)
  return state.replace(**restored)


def _phases_run(train: ml_collections.ConfigDict) -> list[str]:
  """The phases the loop calls with ``train``'s settings (``steps.PHASES`` order)."""
  train_d = train.get('gan_weight', 1.0) > 0
  runs = {'g_main': True, 'g_reg': train.density_reg > 0, 'd_main': train_d, 'd_reg': train_d and train.r1_gamma > 0}
  return [name for name in steps_lib.PHASES if runs[name]]


def _compile_ahead(step_fns: dict[str, Callable], phases: list[str], state, batch: dict, rng: jax.Array) -> None:
  """Compiles ``phases`` for these arguments before the first step, then gives the compiler's freed heap back.

  ``jit``'s cache keeps the executables, so the steps' first calls run them without compiling
  again. Compiling first and running after lets ``xla_options.release_free_heap`` drop what
  XLA:CPU's compiler left in the C heap before the steps allocate their buffers (the peak RSS
  of the 512² G main, ``bench/reference_compare.py``: the number is in the README).
  """
  for name in phases:
    jitted, *rest = step_fns[name].args
    start = time.perf_counter()
    jitted.lower(state, batch, rng, *rest).compile()
    logging.info('compiled %s in %.1f s', name, time.perf_counter() - start)
  xla_options.release_free_heap()


def make_prepare(models: state_lib.Models, phases: list[str]) -> Callable | None:
  """``fn(g_params, batch) -> batch`` adding ``batch['prepared']`` (``Models.prepare``), jitted; None if unused.

  What ``prepare`` computes (the hex-plane rasterisation of the batch's meshes) enters no
  parameter, so one call serves every phase of an iteration. It pays when more than one
  phase renders G (``g_main`` with ``g_reg`` or ``d_main``); alone, ``g_main`` rasterises
  inside its own program at the same cost, and None is returned.
  """
  if models.prepare is None or not {'g_reg', 'd_main'} & set(phases):
    return None

  @jax.jit
  def prepare(g_params: dict, batch: dict) -> dict:
    return dict(batch, prepared=models.prepare(models.generator(g_params), batch))

  return prepare


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


def _make_evaluator(config: ml_collections.ConfigDict, models: state_lib.Models) -> evaluate_lib.Evaluator | None:
  """The in-training evaluator (process 0, ``train.eval_every > 0``, something held out), else None."""
  train, data = config.train, config.data
  held_out = data.get('held_out_views', ()) or data.get('held_out_expressions', ())
  if jax.process_index() != 0 or train.get('eval_every', 0) <= 0 or not held_out:
    return None
  return evaluate_lib.Evaluator(config, models.codes, models.render, nets=('alex',), limit=train.eval_records)


def _write_eval(
  writer, evaluator: evaluate_lib.Evaluator, models: state_lib.Models, g_ema, step: int, wall_seconds: float
) -> dict:
  """Scores G_ema on the evaluator's subset, writes ``eval/...`` scalars, logs a line; returns the scalars.

  ``wall_seconds`` (time of this training call so far) is written with them, so quality can be
  plotted against time.
  """
  summary, _ = evaluator(models.generator(jax.device_get(g_ema)))
  scalars = {f'eval/{key}': value for key, value in summary.items() if not key.endswith('/count')}
  scalars['perf/wall_seconds'] = wall_seconds
  writer.scalars(step, scalars)
  name = next(iter(evaluator.sets))
  logging.info(
    'step %d  held-out %s (%d records): PSNR %.2f dB  SSIM %.4f  LPIPS-Alex %.4f  L1 %.4f',
    step,
    name,
    int(summary[f'{name}/count']),
    *(summary.get(f'{name}/image/{metric}', float('nan')) for metric in ('psnr', 'ssim', 'lpips_alex', 'l1')),
  )
  return scalars


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
    ``{step: averaged metrics}`` of every log written by this call, with the ``eval/...``
    figures merged in at the steps evaluated (step 0 of a fresh run included).

  Raises:
    NonFiniteLossError: on a NaN/inf metric (nothing is saved after the last good log).
    ValueError: if the batch does not divide over devices/processes, a ``*_every`` or
      ``steps`` is not positive, ``max_minutes`` is set with several processes, or ``config.json`` in
      ``workdir`` describes another model.
    InitFromError: a fresh run whose ``train.init_from`` is missing, has no checkpoint or
      describes another model (a run with a checkpoint of its own resumes it and ignores
      ``init_from``).
  """
  train = config.train
  workdir = pathlib.Path(workdir)
  mesh = parallel.make_mesh(train.num_devices)
  for name in ('steps', 'log_every', 'sample_every', 'checkpoint_every'):
    if train[name] <= 0:
      raise ValueError(f'train.{name} must be positive, got {train[name]}')
  if train.get('max_minutes', 0.0) > 0 and jax.process_count() > 1:
    raise ValueError('train.max_minutes needs a single process: clocks differ between processes')
  if train.batch_size % mesh.size:
    raise ValueError(
      f'batch_size {train.batch_size} does not split over {mesh.size} devices ({jax.process_count()} processes)'
    )
  if train.get('init_from') and not _saved_steps(workdir):  # fail before anything is built or written
    check_init_from(train.init_from, config)
  checkpoint.write_config(workdir, config, write=jax.process_index() == 0)
  if source is None:
    source = sources.SynHeadSource(
      config.data.root,
      config.data.resolution,
      include_bald=config.data.include_bald,
      views=training_views(config),
      exclude_expressions=config.data.get('held_out_expressions', ()),
    )

  started = time.monotonic()  # 'perf/wall_seconds': this call's time so far, compilation included
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
    alpha=train.get('alpha_weight', 0.0) > 0,
  )
  iterator: Iterator = iter(dataset)
  rng = jax.random.key(train.seed)
  sample_key = jax.random.key(train.seed + 1)
  sample_batch = _sample_batch(source, config)
  evaluator = _make_evaluator(config, models)
  writer = writer_lib.Writer(workdir)
  history: dict[int, dict[str, float]] = {}

  with checkpoint.Checkpointer(workdir, max_to_keep=train.keep_checkpoints) as checkpointer, _sigint_flag() as stop:
    if checkpointer.latest_step() is not None:
      state, data_state = checkpointer.restore(abstract)
      iterator.set_state(data_state)
      logging.info('resumed from %s', checkpointer.step_path(checkpointer.latest_step()))
    else:
      if train.get('init_from'):
        state = initialize_from(state, abstract, train.init_from, config)
      writer.images(0, {'samples/real': writer_lib.image_grid(sample_batch['image'])})
      if evaluator is not None:
        history[0] = _write_eval(writer, evaluator, models, state.g_ema, 0, time.monotonic() - started)
    step = int(jax.device_get(state.step))
    progress = writer_lib.Progress(train.steps, train.batch_size, start_step=step)
    pending: list[tuple[int, dict]] = []
    last_saved = checkpointer.latest_step()

    def save(at: int) -> None:
      nonlocal last_saved
      if last_saved != at:
        checkpointer.save(at, state, iterator.get_state())
        last_saved = at

    runs = _phases_run(train)  # gan_weight 0: photometric losses only, D is never updated
    prepare = make_prepare(models, runs)
    budget = train.get('max_minutes', 0.0) * 60.0  # 0: no wall-clock limit
    last = False
    first = None
    try:
      if step < train.steps and not stop.is_set():
        first = pipeline.make_global_batch(next(iterator), mesh)
        if prepare is not None:
          first = prepare(state.g_params, first)
        _compile_ahead(step_fns, runs, state, first, rng)
      while not last and step < train.steps and not stop.is_set():
        if first is not None:
          batch, first = first, None
        else:
          batch = pipeline.make_global_batch(next(iterator), mesh)
          if prepare is not None:
            batch = prepare(state.g_params, batch)
        metrics = {}
        if 'g_reg' in runs and step % train.density_reg_interval == 0:
          state, m = step_fns['g_reg'](state, batch, rng)
          metrics |= m
        state, m = step_fns['g_main'](state, batch, rng)
        metrics |= m
        if 'd_reg' in runs and step % train.r1_interval == 0:
          state, m = step_fns['d_reg'](state, batch, rng)
          metrics |= m
        if 'd_main' in runs:
          state, m = step_fns['d_main'](state, batch, rng)
          metrics |= m
        step += 1
        pending.append((step, metrics))
        last = step == train.steps or (budget > 0 and time.monotonic() - started >= budget)
        if step % train.log_every == 0 or last:
          averaged = _average(_check_finite(pending, checkpointer))
          pending = []
          history[step] = averaged
          writer.scalars(step, averaged)
          rate = progress(step, {k: averaged[k] for k in ('g/loss', 'g/loss_l1', 'd/loss') if k in averaged})
          writer.scalars(step, {'perf/images_per_second': rate, 'perf/wall_seconds': time.monotonic() - started})
        if step % train.sample_every == 0:
          _write_samples(writer, sample, state.g_ema, sample_batch, sample_key, step)
        if evaluator is not None and (step % train.eval_every == 0 or last):
          history[step] = history.get(step, {}) | _write_eval(
            writer, evaluator, models, state.g_ema, step, time.monotonic() - started
          )
        if step % train.checkpoint_every == 0:
          _check_finite(pending, checkpointer)
          save(step)
      _check_finite(pending, checkpointer)
      save(step)
      if stop.is_set():
        logging.info('stopped by interrupt at step %d; checkpoint %s', step, checkpointer.step_path(step))
      elif last and step < train.steps:
        logging.info(
          'time budget of %.1f min spent at step %d; checkpoint %s', budget / 60, step, checkpointer.step_path(step)
        )
    finally:
      writer.close()
      if hasattr(iterator, 'close'):
        iterator.close()
  return history
