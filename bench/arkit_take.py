"""ARKit performance capture check: a generated 10 s Live Link Face take drives a head; does the mouth follow jawOpen?

Usage::

  .venv/bin/python bench/arkit_take.py --workdir runs/demo/run [--seconds 10 --fps 30]

Writes ``take.csv`` (jawOpen a slow random walk in [0, 1], a little smile and blink, no head
rotation), renders it with ``render.py --arkit_csv ... --frames`` for training identity 0 and
prints the Pearson correlation between the CSV's jawOpen column and the mouth region's mean
absolute change from the take's first frame (mouth region: rows 55-85 %, columns 35-65 % of
the frontal image, where the mouth of every identity projects).
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

import imageio.v3 as iio
import numpy as np

from head360_jax.geometry import arkit, livelink

REPO = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--seconds', type=float, default=10.0)
  parser.add_argument('--fps', type=int, default=30)
  parser.add_argument('--out', default=None, help='output folder (default: a temporary one)')
  args = parser.parse_args()
  out = pathlib.Path(args.out or tempfile.mkdtemp(prefix='arkit_take_'))
  out.mkdir(parents=True, exist_ok=True)
  n = int(round(args.seconds * args.fps))
  rng = np.random.default_rng(0)
  weights = np.zeros((n, arkit.NUM_BLENDSHAPES), np.float32)
  walk = np.cumsum(rng.normal(0, 0.15, n))
  weights[:, arkit.index('jawOpen')] = 0.5 + 0.5 * np.sin(walk + np.linspace(0, 6 * np.pi, n))
  weights[0, arkit.index('jawOpen')] = 0.0
  weights[:, arkit.index('mouthSmileLeft')] = 0.2 * rng.uniform(size=n)
  weights[:, arkit.index('eyeBlinkLeft')] = (rng.uniform(size=n) > 0.95).astype(np.float32)
  take = out / 'take.csv'
  livelink.write_take(take, weights, fps=args.fps)
  command = [sys.executable, 'render.py', '--workdir', args.workdir, '--identities', '0', '--arkit_csv', str(take)]
  command += ['--frames', '--output', str(out)]
  subprocess.run(command, cwd=REPO, check=True)
  frames = np.stack([iio.imread(p) for p in sorted((out / 'identity000_take_frames').glob('*.png'))]).astype(np.float32)
  h, w = frames.shape[1:3]
  mouth = frames[:, int(0.55 * h) : int(0.85 * h), int(0.35 * w) : int(0.65 * w)]
  change = np.abs(mouth - mouth[0]).mean(axis=(1, 2, 3))
  jaw = weights[:, arkit.index('jawOpen')]
  r = float(np.corrcoef(change, jaw)[0, 1])
  print(f'{len(frames)} frames ({frames.shape[1]}x{frames.shape[2]}) at {args.fps} fps in {out}')
  print(f'Pearson r(jawOpen, mouth-region change) = {r:.3f}')


if __name__ == '__main__':
  main()
