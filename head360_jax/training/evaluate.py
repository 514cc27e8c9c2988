"""Held-out evaluation: photometric L1 of renders at camera views never trained on.

Legend: ``b`` batch, ``R`` output resolution.

The training identities and expressions are re-rendered at ``config.data.held_out_views``
(excluded from training by ``loop.training_views``) and compared with the dataset images
(composited on white, resized to the output resolution, [-1, 1]): the mean absolute
error is the number the demo reports (issue 3), for the EMA generator of a run and for
the same networks at step 0 (``build_models`` is deterministic in the config).

Usage::

  python -m head360_jax.training.evaluate --workdir runs/demo/tiny
"""

import argparse
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from head360_jax import checkpoint, compilation_cache
from head360_jax.data import pipeline, sources
from head360_jax.training import state as state_lib
from head360_jax.training.build import build_models

EVAL_BATCH = 4


def held_out_l1(
  config: ml_collections.ConfigDict, networks: state_lib.Networks, generator: nnx.Module | None = None, *, seed: int = 0
) -> float:
  """Mean |render - image| over all held-out records (identities x expressions x held-out views).

  Args:
    config: the run config (``data.root``, ``data.held_out_views``, model sizes).
    networks: from ``build_models(config)`` (codes and the render adapter).
    generator: the generator to evaluate (default ``networks.generator``, i.e. step 0).
    seed: key of the SR noise code and the synthesis noise (fixed, so numbers repeat).

  Returns:
    The mean absolute error in [-1, 1] image units (0 = identical, 2 = opposite).

  Raises:
    ValueError: if the config holds no views out.
  """
  views = tuple(config.data.held_out_views)
  if not views:
    raise ValueError('config.data.held_out_views is empty: nothing to evaluate on')
  generator = networks.generator if generator is None else generator
  source = sources.SynHeadSource(config.data.root, config.data.resolution, views=views)
  dataset = pipeline.make_dataset(
    source,
    batch_size=EVAL_BATCH,
    seed=0,
    shuffle=False,
    num_epochs=1,
    resolution=config.model.output_resolution,
    shard_index=0,
    shard_count=1,
  )
  graphdef, params, rest = nnx.split(generator, nnx.Param, ...)

  @jax.jit
  def batch_l1(params, rest, batch):
    codes = networks.codes(batch)
    inputs = {
      't': codes['t'],
      'h': codes['h'],
      'c': batch['camera'],
      'c_cond': batch['camera'],
      'vertices': batch['vertices'],
      'hair': batch['hair'],
    }
    images = networks.render(nnx.merge(graphdef, params, rest), inputs, jax.random.key(seed))['image']
    return jnp.abs(images - batch['image']).mean(axis=(1, 2, 3))

  errors = []
  for batch in dataset:
    fields = {k: jnp.asarray(batch[k]) for k in ('camera', 'vertices', 'identity', 'hair', 'image', 'expression')}
    errors.append(np.asarray(batch_l1(params, rest, fields)))
  return float(np.concatenate(errors).mean())


def compare_to_step0(workdir: str, build_models: Callable) -> dict[str, float]:
  """Held-out L1 of a run's EMA generator and of its networks at step 0."""
  generator, _, config, step = checkpoint.restore_generator_ema(workdir, build_models)
  networks = build_models(config)
  initial = held_out_l1(config, networks)
  trained = held_out_l1(config, networks, generator)
  return {'step': step, 'l1_step0': initial, 'l1_trained': trained, 'reduction': 1 - trained / initial}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description='Held-out L1 of a run vs its step 0.')
  parser.add_argument('--workdir', required=True)
  parser.add_argument(
    '--no-compilation-cache', dest='compilation_cache', action='store_false', help='no persistent XLA cache'
  )
  args = parser.parse_args(argv)
  compilation_cache.enable(args.compilation_cache)
  result = compare_to_step0(args.workdir, build_models)
  print(
    f'held-out L1 (views never trained on): step 0 {result["l1_step0"]:.4f} -> step {result["step"]} (EMA) '
    f'{result["l1_trained"]:.4f}: {100 * result["reduction"]:.1f} % lower'
  )


if __name__ == '__main__':
  main()
