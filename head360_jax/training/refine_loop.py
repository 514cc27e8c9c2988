"""Stage 3: trains the RefineNet (pix2pixHD, ``models/refine.py``) on a finished run's renders.

Legend: ``B`` batch, ``R`` output resolution.

Paper §3.3 (Table 3 "Ours - full"): after the rest of the model is trained, a pix2pixHD
network refines its images, "trained with everything else detached". Here: the EMA
generator of the run named by ``train.init_from`` renders each training batch (its cameras,
meshes and identity codes; fixed noise, no gradient), and ``refine.refine_step`` trains the
global generator and the multi-scale discriminator on (render, ground truth) pairs with
pix2pixHD's losses (LSGAN + 10 × feature matching + 10 × VGG) and Adam (2e-4, β1 0.5).

A refine run's work directory holds ``config.json`` (with a ``refine`` section, and the
base run's model) and orbax checkpoints of the ``RefineState`` (``step``, both networks,
both optimisers); rerunning resumes it. ``inference.HeadRenderer``, ``render.py``,
``fit.py`` and ``evaluate`` take a refine run's work directory wherever a run's is asked for:
they load the base run's generator from ``train.init_from`` and apply the RefineNet to its
images (``--no_refine`` skips it).
"""

import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from head360_jax import checkpoint
from head360_jax.data import pipeline, sources
from head360_jax.metrics import lpips as lpips_lib
from head360_jax.metrics import writer as writer_lib
from head360_jax.models import refine
from head360_jax.training import loop
from head360_jax.training import steps as steps_lib

_BATCH_KEYS = ('image', 'label', 'camera', 'expression', 'vertices', 'identity', 'hair')
_REFINE_FIELDS = ('ngf', 'n_downsampling', 'n_blocks', 'ndf', 'n_layers_d', 'num_d', 'lambda_feat', 'learning_rate')


def is_refine_run(config: ml_collections.ConfigDict) -> bool:
  """Whether a config (or a work directory's ``config.json``) describes a RefineNet run."""
  return 'refine' in config and bool(config.refine.get('enabled', True))


def refine_config(config: ml_collections.ConfigDict) -> refine.RefineConfig:
  """The ``RefineConfig`` of a run config's ``refine`` section."""
  return refine.RefineConfig(**{name: config.refine[name] for name in _REFINE_FIELDS if name in config.refine})


def base_workdir(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> pathlib.Path:
  """The run a refine run refines (``train.init_from``; relative paths as given on the command line).

  Raises:
    loop.InitFromError: if it is not set or has no ``config.json``.
  """
  base = config.train.get('init_from')
  if not base:
    raise loop.InitFromError(f'{workdir}: a refine run needs train.init_from (the run whose renders it refines)')
  base = pathlib.Path(base)
  if not (base / checkpoint.CONFIG_FILE).is_file():
    raise loop.InitFromError(f'train.init_from={str(base)!r}: no {checkpoint.CONFIG_FILE} there (not a training run)')
  return base


def restore_refiner(workdir: str | pathlib.Path, step: int | None = None) -> tuple[refine.GlobalGenerator, int]:
  """The trained RefineNet generator of a refine run and its step.

  Raises:
    FileNotFoundError: if the run has no checkpoint.
  """
  config = checkpoint.read_config(workdir)
  state = refine.create_refine_state(refine_config(config), nnx.Rngs(config.train.seed))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state.g_params)
  with checkpoint.Checkpointer(workdir, max_to_keep=None, read_only=True) as checkpointer:
    step = checkpointer.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no RefineNet checkpoint in {workdir}')
    g_params = checkpointer.restore_partial({'g_params': abstract}, step)['g_params']
  return nnx.merge(state.g_graphdef, g_params), step


def train_refine(
  config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, build_models: Callable
) -> dict[int, dict[str, float]]:
  """Trains (or resumes) a RefineNet run in ``workdir`` on the renders of ``config.train.init_from``.

  Args:
    config: a refine config (``configs/*_refine.py``): ``refine.*`` sizes, ``train.steps``,
      ``batch_size``, ``log_every``, ``sample_every``, ``checkpoint_every``, ``seed``,
      ``init_from``; ``data.*`` as for training. ``model`` is replaced by the base run's.
    workdir: output folder (``config.json``, checkpoints, TensorBoard events and samples).
    build_models: the model builder the base run was trained with.

  Returns:
    ``{step: averaged metrics}`` of every log written by this call.

  Raises:
    loop.InitFromError: if ``init_from`` is missing, not a run, or has no checkpoint.
    loop.NonFiniteLossError: on a NaN/inf metric (nothing is saved after the last good log).
  """
  workdir, train = pathlib.Path(workdir), config.train
  base = base_workdir(workdir, config)
  if not loop._saved_steps(base):
    raise loop.InitFromError(f'train.init_from={str(base)!r}: no checkpoint in {base / "checkpoints"}')
  networks = build_models(checkpoint.read_config(base))
  generator, _, base_config, base_step = checkpoint.restore_generator_ema(base, lambda _: networks)
  config = ml_collections.ConfigDict(config.to_dict())  # unlocked copy: the model is the base run's
  config.model = base_config.model
  checkpoint.write_config(workdir, config)
  g_graphdef, g_state = nnx.split(generator)

  @jax.jit
  def render(g_state, batch):
    inputs = steps_lib.generator_inputs(_Codes(networks.codes), batch, jax.random.key(0), 0.0)
    return networks.render(nnx.merge(g_graphdef, g_state), inputs, jax.random.key(0))['image']

  state = refine.create_refine_state(refine_config(config), nnx.Rngs(train.seed))
  vgg = lpips_lib.load_lpips('vgg') if config.refine.get('vgg_loss', True) else None
  step_fn = jax.jit(refine.refine_step)
  source = sources.SynHeadSource(
    config.data.root, config.data.resolution, views=loop.training_views(config), exclude_expressions=()
  )
  dataset = pipeline.make_dataset(
    source,
    batch_size=train.batch_size,
    seed=train.seed,
    num_threads=config.data.num_threads,
    resolution=config.model.output_resolution,
    shard_index=0,
    shard_count=1,
  )
  iterator = iter(dataset)
  writer = writer_lib.Writer(workdir)
  history: dict[int, dict[str, float]] = {}
  started = time.monotonic()
  with checkpoint.Checkpointer(workdir, max_to_keep=train.keep_checkpoints) as checkpointer:
    if checkpointer.latest_step() is not None:
      device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
      abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state)
      state, data_state = checkpointer.restore(abstract)
      iterator.set_state(data_state)
      logging.info('resumed from %s', checkpointer.step_path(checkpointer.latest_step()))
    else:
      logging.info('RefineNet on the renders of %s (step %d)', base, base_step)
    step = int(state.step)
    progress = writer_lib.Progress(train.steps, train.batch_size, start_step=step)
    pending: list[dict] = []
    try:
      while step < train.steps:
        batch = next(iterator)
        fields = {key: jnp.asarray(batch[key]) for key in _BATCH_KEYS}
        condition = render(g_state, fields)
        state, metrics = step_fn(state, {'condition': condition, 'real': fields['image']}, vgg)
        step += 1
        pending.append(metrics)
        if step % train.log_every == 0 or step == train.steps:
          fetched = jax.device_get(pending)
          pending = []
          averaged = {name: float(np.mean([m[name] for m in fetched])) for name in fetched[0]}
          if not all(np.isfinite(list(averaged.values()))):
            last = checkpointer.latest_step()
            raise loop.NonFiniteLossError(f'non-finite RefineNet metrics {averaged} at step {step}; last good: {last}')
          history[step] = averaged
          writer.scalars(step, averaged | {'perf/wall_seconds': time.monotonic() - started})
          progress(step, {k: averaged[k] for k in ('g/loss', 'g/l1', 'd/loss')})
        if step % train.sample_every == 0 or step == train.steps:
          refined = state.generator()(condition)
          rows = np.concatenate(jax.device_get([fields['image'], condition, refined]))
          grid = writer_lib.image_grid(rows, columns=len(condition))  # rows: truth, render, refined
          writer.images(step, {'samples/truth_render_refined': grid})
        if step % train.checkpoint_every == 0 or step == train.steps:
          checkpointer.save(step, state, iterator.get_state())
    finally:
      writer.close()
  return history


class _Codes:
  """What ``steps.generator_inputs`` reads of a models object: the codes function, no style mixing."""

  def __init__(self, codes: Callable[[dict], dict]):
    self.codes, self.mixing_layers = codes, {}
