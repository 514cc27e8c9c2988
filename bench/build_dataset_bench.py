"""Prints the dataset builder's throughput (images/s, haired + bald) at 128^2 and, for a few images, 512^2.

Run: .venv/bin/python bench/build_dataset_bench.py   (about 1 minute on 2 CPU cores)
"""

import tempfile

from head360_jax.data import build_dataset


def main():
  for resolution, identities, expressions in ((128, 1, 'jawOpen,neutral'), (512, 1, 'neutral')):
    with tempfile.TemporaryDirectory() as root:
      summary = build_dataset.build(
        root, rig='anny', num_identities=identities, expressions=expressions, resolution=resolution, progress=False
      )
    rate = summary['images_written'] / summary['seconds']
    print(
      f'{resolution}^2: {summary["images_written"]} images in {summary["seconds"]:.1f} s = {rate:.1f} images/s '
      f'(supersample {build_dataset.default_supersample(resolution)}, incl. rig load and model build)'
    )


if __name__ == '__main__':
  main()
