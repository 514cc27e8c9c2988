"""Benchmark: tiny-config training step time per precision, render time per image, parameter counts (CPU or GPU).

Usage::

  .venv/bin/python bench/train_bench.py [--root runs/demo/anny_small] [--config configs/tiny.py] [--repeats 5]
      [--precision float32,bfloat16] [--no-shared-raster]

Without ``--root`` a 2-identity x 1-expression dataset is built in a temporary folder.
Prints the parameter count of each generator component and of the discriminator, then for each
``--precision`` (comma-separated: ``float32`` everything float32; ``mixed`` the reference's
bfloat16 SR and 4 highest discriminator resolutions; ``bfloat16`` every convolution in
bfloat16; ``config`` the config's own fields; see ``common.PRECISIONS``) the time of each
training phase after compilation (median of ``--repeats``), the cost of one full iteration
with the lazy regularisers amortised (G reg every 4, D reg every 16), and the EMA generator's
render time per image at batch 8; last, the precisions side by side.
"""

import argparse
import json
import time

import common  # bench/common.py
import jax

from head360_jax import parallel
from head360_jax.data import pipeline, sources
from head360_jax.models import layers
from head360_jax.training import build, loop
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib

PHASES = ('g_main', 'd_main', 'g_reg', 'd_reg')


def bench_precision(
  config, source, repeats: int, peak_tflops: float | None = None, share_raster: bool = True
) -> dict[str, float]:
  """Seconds per phase (median after compilation), per amortised ``iteration`` and per rendered image.

  With ``share_raster`` (train.py's way) the batch's hex-plane rasterisation runs once, as its own
  ``prepare`` row, and every phase reads it; without, each phase rasterises for itself.
  Also each phase's compile time and XLA FLOPs, images/s, and with ``peak_tflops`` the model FLOP
  utilisation (XLA's FLOP count of a phase / its time / the peak).
  """
  networks = build.build_models(config)
  mesh = parallel.make_mesh(config.train.num_devices)
  models, state = state_lib.create(config, networks)
  state = jax.device_put(state, state_lib.state_sharding(state, mesh))
  step_fns = steps_lib.make_steps(models, config=config, mesh=mesh)
  dataset = pipeline.make_dataset(
    source, batch_size=config.train.batch_size, seed=0, resolution=config.model.output_resolution
  )
  batch = pipeline.make_global_batch(next(iter(dataset)), mesh)
  rng = jax.random.key(0)
  times = {'prepare': 0.0, 'prepare_flops': 0.0}
  prepare = loop.make_prepare(models, list(PHASES)) if share_raster else None
  if prepare is not None:  # as train.py: the batch's rasterisation once per iteration, read by every phase
    compiled = prepare.lower(state.g_params, batch).compile()
    times['prepare_flops'] = common.cost_flops(compiled) or 0.0
    first, times['prepare'] = common.time_fn(lambda: compiled(state.g_params, batch)['prepared'], repeats)
    print(
      f'  prepare  (hex-plane rasterisation, once per batch): first call {first:6.2f} s, then '
      f'{1000 * times["prepare"]:8.1f} ms',
      flush=True,
    )
    batch = compiled(state.g_params, batch)
  for phase in PHASES:
    # Compiled ahead of time for XLA's FLOP count; steps donate their state, so each call gets
    # the state the previous one returned.
    jitted, *rest = step_fns[phase].args
    start = time.perf_counter()
    compiled = jitted.lower(state, batch, rng, *rest).compile()
    times[f'{phase}_compile'] = time.perf_counter() - start
    times[f'{phase}_flops'] = common.cost_flops(compiled) or 0.0
    holder = {'state': state}

    def call(compiled=compiled, holder=holder, rest=rest):
      holder['state'], metrics = compiled(holder['state'], batch, rng, *rest)
      return metrics

    first, median = common.time_fn(call, repeats)
    state = holder['state']
    times[phase] = median
    mfu = ''
    if peak_tflops:
      achieved = times[f'{phase}_flops'] / median / 1e12
      mfu = f', {achieved:.1f} TFLOP/s = {100 * achieved / peak_tflops:.1f} % MFU'
    print(
      f'  {phase:8s} compile {times[f"{phase}_compile"]:6.2f} s, first call {first:6.2f} s, then '
      f'{1000 * median:8.1f} ms ({times[f"{phase}_flops"] / 1e12:.3f} TFLOP by XLA{mfu})',
      flush=True,
    )
  train = config.train
  times['iteration'] = (
    times['prepare']
    + times['g_main']
    + times['d_main']
    + times['g_reg'] / train.density_reg_interval
    + times['d_reg'] / train.r1_interval
  )
  amortised = lambda key: (
    times[f'prepare{key}']
    + times[f'g_main{key}']
    + times[f'd_main{key}']
    + times[f'g_reg{key}'] / train.density_reg_interval
    + times[f'd_reg{key}'] / train.r1_interval
  )
  times['iteration_flops'] = amortised('_flops')
  times['images_per_s'] = train.batch_size / times['iteration']
  mfu = ''
  if peak_tflops:
    times['mfu'] = times['iteration_flops'] / times['iteration'] / (peak_tflops * 1e12)
    mfu = f'; {100 * times["mfu"]:.1f} % MFU of {peak_tflops:g} TFLOP/s'
  print(
    f'  one training iteration (regularisers amortised): {1000 * times["iteration"]:.1f} ms = '
    f'{times["images_per_s"]:.1f} images/s; {times["iteration_flops"] / 1e12:.3f} TFLOP by XLA{mfu}'
  )
  sample = steps_lib.make_sampler(models, mesh=mesh)
  eval_dataset = pipeline.make_dataset(source, batch_size=8, seed=1, resolution=config.model.output_resolution)
  eval_batch = pipeline.make_global_batch(next(iter(eval_dataset)), mesh)
  first, median = common.time_fn(lambda: sample(state.g_ema, eval_batch, rng)['image'], repeats)
  times['render_per_image'] = median / 8
  side = config.model.output_resolution
  print(
    f'  render {side}² (EMA G, batch 8): first call {first:.2f} s, then {1000 * median / 8:.1f} ms per image '
    f'= {8 / median:.1f} frames/s'
  )
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', help='dataset root (default: build a tiny one)')
  parser.add_argument('--config', default='configs/tiny.py')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--precision', default='float32', help='comma-separated: float32, mixed, bfloat16, config')
  parser.add_argument(
    '--no-shared-raster',
    action='store_true',
    help='each phase rasterises the meshes itself (the loop before it rasterised once per batch), for A/B runs',
  )
  parser.add_argument('--batch-size', type=int, help="global batch (default: the config's)")
  parser.add_argument('--peak-tflops', type=float, help='device peak for MFU, e.g. 989 (H100 SXM dense bf16)')
  parser.add_argument('--json', help='also write every number to this file')
  parser.add_argument('--make-root', help='only build the benchmark dataset into this folder (for bench/gpu_check.sh)')
  args = parser.parse_args()
  precisions = args.precision.split(',')
  unknown = set(precisions) - {*common.PRECISIONS, 'config'}
  if unknown:
    parser.error(f'unknown --precision {sorted(unknown)}')
  config = common.load_config(args.config)
  rank = config.model.z_dim if config.model.get('latent', 'codes') == 'identity_factor' else None
  if args.make_root:
    common.build_root(args.make_root, resolution=config.data.resolution, rank=rank)
    print(f'built {args.make_root}')
    return
  with common.dataset_root(args.root, resolution=config.data.resolution, rank=rank) as root:
    config.data.root = root
    print(
      f'jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s)); '
      f'config {args.config}: output {config.model.output_resolution}², raw {config.model.neural_resolution}², '
      f'batch {config.train.batch_size}'
    )
    networks = build.build_models(config)
    g = networks.generator
    components = [
      'main_mapping',  # model.latent 'identity_factor' (shared by texture and hair); else the two below
      'texture_mapping',
      'hair_mapping',
      'sr_mapping',
      'texture_synthesis',
      'static_synthesis',
      'decoder',
      'superres',
    ]
    for name in (name for name in components if getattr(g, name, None) is not None):
      print(f'  G {name:18s} {layers.parameter_count(getattr(g, name)):>12,d} parameters')
    print(f'  G total              {layers.parameter_count(g):>12,d} parameters')
    print(f'  D total              {layers.parameter_count(networks.discriminator):>12,d} parameters')

    source = sources.SynHeadSource(config.data.root, config.data.resolution)
    results = {}
    for precision in precisions:
      run_config = common.load_config(args.config)
      run_config.data.root = root
      common.set_precision(run_config, precision)
      if args.batch_size:
        run_config.train.batch_size = args.batch_size
      fields = {name: run_config.model[name] for name in common.PRECISIONS['float32']}
      print(f'\n-- precision {precision}: {fields}', flush=True)
      results[precision] = bench_precision(
        run_config, source, args.repeats, args.peak_tflops, share_raster=not args.no_shared_raster
      )

  if args.json:
    with open(args.json, 'w') as f:
      json.dump(
        {'config': args.config, 'jax': jax.__version__, 'device': str(jax.devices()[0]), **results}, f, indent=1
      )
  if len(results) > 1:
    print('\n== ms per call (median after compilation), side by side ==')
    rows = [*PHASES, 'iteration', 'render_per_image']
    print(f'  {"":18s}' + ''.join(f'{p:>12s}' for p in results))
    for row in rows:
      print(f'  {row:18s}' + ''.join(f'{1000 * r[row]:12.1f}' for r in results.values()))
    base = next(iter(results))
    for precision, r in results.items():
      if precision != base:
        print(f'  iteration {precision} / {base}: {r["iteration"] / results[base]["iteration"]:.2f}x')


if __name__ == '__main__':
  main()
