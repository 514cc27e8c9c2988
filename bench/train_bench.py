"""Benchmark: tiny-config training step time, render time per image, parameter counts (CPU or GPU).

Usage::

  .venv/bin/python bench/train_bench.py [--root runs/demo/anny_small] [--config configs/tiny.py] [--repeats 5]

Without ``--root`` a 2-identity x 1-expression dataset is built in a temporary folder.
Prints the parameter count of each generator component and of the discriminator, the time
of each training phase after compilation (median of ``--repeats``), the cost of one full
iteration with the lazy regularisers amortised (G reg every 4, D reg every 16), and the
EMA generator's render time per image at batch 8.
"""

import argparse

import common  # bench/common.py
import jax

from head360_jax import parallel
from head360_jax.data import pipeline, sources
from head360_jax.models import layers
from head360_jax.training import build
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', help='dataset root (default: build a tiny one)')
  parser.add_argument('--config', default='configs/tiny.py')
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  config = common.load_config(args.config)
  with common.dataset_root(args.root, resolution=config.data.resolution) as root:
    config.data.root = root
    print(
      f'jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s)); '
      f'config {args.config}: output {config.model.output_resolution}², raw {config.model.neural_resolution}², '
      f'batch {config.train.batch_size}'
    )
    networks = build.build_models(config)
    g = networks.generator
    components = [
      'texture_mapping',
      'hair_mapping',
      'sr_mapping',
      'texture_synthesis',
      'static_synthesis',
      'decoder',
      'superres',
    ]
    for name in components:
      print(f'  G {name:18s} {layers.parameter_count(getattr(g, name)):>12,d} parameters')
    print(f'  G total              {layers.parameter_count(g):>12,d} parameters')
    print(f'  D total              {layers.parameter_count(networks.discriminator):>12,d} parameters')

    mesh = parallel.make_mesh(config.train.num_devices)
    models, state = state_lib.create(config, networks)
    state = jax.device_put(state, state_lib.state_sharding(state, mesh))
    step_fns = steps_lib.make_steps(models, config=config, mesh=mesh)
    source = sources.SynHeadSource(config.data.root, config.data.resolution)
    dataset = pipeline.make_dataset(
      source, batch_size=config.train.batch_size, seed=0, resolution=config.model.output_resolution
    )
    batch = pipeline.make_global_batch(next(iter(dataset)), mesh)
    rng = jax.random.key(0)
    phase_time = {}
    for phase in ('g_main', 'd_main', 'g_reg', 'd_reg'):
      # Steps donate their state: feed each call the state the previous one returned.
      holder = {'state': state}

      def call(phase=phase, holder=holder):
        holder['state'], metrics = step_fns[phase](holder['state'], batch, rng)
        return metrics

      first, median = common.time_fn(call, args.repeats)
      state = holder['state']
      phase_time[phase] = median
      print(f'  {phase:8s} first call {first:6.2f} s, then {1000 * median:8.1f} ms')
    train = config.train
    iteration = (
      phase_time['g_main']
      + phase_time['d_main']
      + phase_time['g_reg'] / train.density_reg_interval
      + phase_time['d_reg'] / train.r1_interval
    )
    print(
      f'  one training iteration (regularisers amortised): {1000 * iteration:.1f} ms = '
      f'{train.batch_size / iteration:.1f} images/s'
    )

    sample = steps_lib.make_sampler(models, mesh=mesh)
    eval_batch = pipeline.make_global_batch(
      next(iter(pipeline.make_dataset(source, batch_size=8, seed=1, resolution=config.model.output_resolution))), mesh
    )
    first, median = common.time_fn(lambda: sample(state.g_ema, eval_batch, rng)['image'], args.repeats)
    print(f'  render (EMA G, batch 8): first call {first:.2f} s, then {1000 * median / 8:.1f} ms per image')


if __name__ == '__main__':
  main()
