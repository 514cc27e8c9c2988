"""Rendering throughput: orbit images per second of a trained run, for several batch sizes (HeadRenderer chunks).

Usage::

  .venv/bin/python bench/render_bench.py --workdir runs/demo/run [--batches 1,8 --views 48]

Prints, per batch size, the compile time (first call) and the images/s of the following
calls (an orbit of ``--views`` cameras of training identity 0, rendered ``--repeats`` times).
On a GPU machine the same command measures the GPU (the issue's target: >= 30 frames/s at
512² for synhead on one H100 in bf16); on this 2-core CPU it gives the CPU figure.
"""

import argparse
import time

import jax
import numpy as np

from head360_jax import inference


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--batches', default='1,8')
  parser.add_argument('--views', type=int, default=48)
  parser.add_argument('--repeats', type=int, default=2)
  args = parser.parse_args()
  labels = inference.orbit_labels(args.views)
  print(f'device: {jax.devices()[0].device_kind}; run {args.workdir}')
  print('batch  compile_s  images_per_s  resolution')
  for batch in (int(b) for b in args.batches.split(',')):
    renderer = inference.HeadRenderer(args.workdir, chunk=batch)
    s, t, h = renderer.identity(0)
    b = np.zeros(52, np.float32)
    tic = time.perf_counter()
    images = renderer.render(s, t, h, b, labels[:batch], 1.0)
    compile_s = time.perf_counter() - tic
    tic = time.perf_counter()
    for _ in range(args.repeats):
      images = renderer.render(s, t, h, b, labels, 1.0)
    rate = args.repeats * len(labels) / (time.perf_counter() - tic)
    print(f'{batch:5d}  {compile_s:9.1f}  {rate:12.1f}  {images.shape[1]}x{images.shape[2]}')


if __name__ == '__main__':
  main()
