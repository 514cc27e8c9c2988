"""Input-pipeline throughput: images/s of ``make_dataset`` batches for 1 and 2 reading threads.

Legend: ``b`` batch size, ``r`` image resolution.

Usage::

  .venv/bin/python -m bench.pipeline_bench                       # fake data: 256 PNGs at 128²
  .venv/bin/python -m bench.pipeline_bench --root /data/SynHead100 --resolution 512

Without ``--root`` a fake dataset (``head360_jax.data.synthetic``) is written to a
temporary folder first. Each setting reads ``--epochs`` shuffled passes after one warm-up
batch (which pays for thread start-up and the first mesh parses).
"""

import argparse
import pathlib
import tempfile
import time

from head360_jax.data import pipeline, sources, synthetic


def _throughput(source: sources.SynHeadSource, batch_size: int, num_threads: int, epochs: int) -> float:
  """Images per second over ``epochs`` passes, after one warm-up batch."""
  iterator = iter(
    pipeline.make_dataset(
      source,
      batch_size=batch_size,
      seed=0,
      num_epochs=epochs + 1,
      num_threads=num_threads,
      shard_index=0,
      shard_count=1,
    )
  )
  next(iterator)
  batches = epochs * len(source) // batch_size
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--root', type=pathlib.Path, help='existing dataset root (default: write a fake one)')
  parser.add_argument('--resolution', type=int, default=128)
  parser.add_argument('--batch-size', type=int, default=16)
  parser.add_argument('--epochs', type=int, default=3)
  parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    root = args.root
    if root is None:
      root = pathlib.Path(tmp)
      start = time.perf_counter()
      # 2 identities x 2 expressions x 64 views = 256 images.
      synthetic.write_fake_dataset(root, resolution=args.resolution, views=64, num_vertices=2548, num_landmarks=12)
      print(f'wrote a fake dataset of 256 PNGs at {args.resolution}² in {time.perf_counter() - start:.1f} s')
    start = time.perf_counter()
    source = sources.SynHeadSource(root, args.resolution)
    print(f'indexed {len(source)} records in {time.perf_counter() - start:.2f} s')
    for num_threads in args.threads:
      rate = _throughput(source, args.batch_size, num_threads, args.epochs)
      print(f'batch {args.batch_size}, {args.resolution}², num_threads={num_threads}: {rate:.0f} images/s')


if __name__ == '__main__':
  main()
