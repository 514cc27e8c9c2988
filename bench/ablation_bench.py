"""Representation ablations at equal compute (docs/ablations.md): train, evaluate and tabulate each row.

Usage (dataset from the ``configs/small.py`` docstring; about 10 minutes per row on 2 cores)::

  .venv/bin/python bench/ablation_bench.py --data runs/anny_small --out runs/ablations --steps 300
  .venv/bin/python bench/ablation_bench.py --data runs/anny_small --out runs/ablations --steps 300 \
      --rows hexplane_gan,hexplane_gan_vico --report docs/ablations_table.md

Each row trains ``configs/small.py`` with one representation (``model.representation``) for the
same number of steps, batch and data (``--steps``; ``--minutes`` caps each run's wall clock as
a safety net and is reported when it bites), then scores the EMA generator on the held-out
views (``evaluate``: PSNR, SSIM, LPIPS-Alex, whole image on white) and counts faces detected
from behind (``--protocol back_view``). Rows ending in ``_gan`` train with the GAN term
(``train.gan_weight 1``, the discriminator's phases on), ``_vico`` adds SphereHead's
view-image consistency loss (``train.view_consistency 1``): the discriminator-side ablation
needs a discriminator. A finished row (its ``row.json``) is not run again. Prints and writes
(``--report``) the Markdown table, writes ``ablation.json`` and ``grid.jpg`` (identity 0 at the
same cameras, one row per run, under 300 KB) in ``--out``.
"""

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
ROWS = {
  'hexplane': dict(representation='hexplane'),
  'triplane': dict(representation='triplane'),
  'eg3d': dict(representation='eg3d'),
  'spherical_triplane': dict(representation='spherical_triplane'),
  'nerf': dict(representation='nerf'),
  'hexplane_gan': dict(representation='hexplane', gan=True),
  'hexplane_gan_vico': dict(representation='hexplane', gan=True, vico=True),
  'spherical_triplane_gan': dict(representation='spherical_triplane', gan=True),
  'spherical_triplane_gan_vico': dict(representation='spherical_triplane', gan=True, vico=True),
}
# Paper Table 3 (SynHead100, 512², PSNR / SSIM / LPIPS) for the rows it has.
PAPER = {
  'hexplane': '28.92 / 0.883 / 0.0731',
  'triplane': '25.66 / 0.827 / 0.0954',
  'eg3d': '26.45 / - / -',
  'nerf': '24.44 / - / -',
}
GRID_VIEWS = (30, 33, 36, 42, 24)  # yaw 0, 45, 90, 180, -90 at pitch 0 (docs/conventions.md)
RATE = re.compile(r'step (\d+)/\d+\s+([\d.]+) images/s')


def _train(name: str, spec: dict, args: argparse.Namespace, workdir: pathlib.Path) -> dict:
  overrides = [
    f'--config.data.root={args.data}',
    f'--config.model.representation={spec["representation"]}',
    f'--config.train.steps={args.steps}',
    f'--config.train.max_minutes={args.minutes}',
    '--config.train.eval_every=0',
    f'--config.train.sample_every={args.steps}',
    f'--config.train.checkpoint_every={args.steps}',
  ]
  if spec.get('gan'):
    overrides.append('--config.train.gan_weight=1.0')
  if spec.get('vico'):
    overrides.append('--config.train.view_consistency=1.0')
  command = [sys.executable, str(REPO / 'train.py'), '--config', str(REPO / 'configs/small.py'), '--workdir']
  log = workdir.parent / f'{name}.log'
  started = time.monotonic()
  with open(log, 'w') as out:
    subprocess.run([*command, str(workdir), *overrides], check=True, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
  wall = time.monotonic() - started
  rates = [(int(s), float(r)) for s, r in RATE.findall(log.read_text().replace('\r', '\n'))]
  steady = [r for s, r in rates if s > 20] or [r for _, r in rates]
  return {'train_wall_s': wall, 'images_per_s': statistics.median(steady) if steady else float('nan')}


def _evaluate(workdir: pathlib.Path) -> dict:
  from head360_jax import evaluate, inference
  from head360_jax.metrics import back_view
  from head360_jax.models import layers
  from head360_jax.training.build import build_models

  result = evaluate.evaluate_run(workdir, build_models, nets=('alex',), compare_step0=False)
  trained = result['trained']
  renderer = inference.HeadRenderer(workdir)
  identities = list(range(len(renderer.model.identity_codes)))
  faces = back_view.evaluate_back_view(renderer, identities)
  g = renderer.generator
  return {
    'step': result['step'],
    'psnr': trained['novel_view/image/psnr'],
    'ssim': trained['novel_view/image/ssim'],
    'lpips_alex': trained['novel_view/image/lpips_alex'],
    'face_psnr': trained.get('novel_view/face/psnr'),
    'back_rate': faces['render/back_rate'],
    'truth_back_rate': faces['truth/back_rate'],
    'front_rate': faces['render/front_rate'],
    'g_params': layers.parameter_count(g),
    'grid': _grid_row(renderer),
  }


def _grid_row(renderer) -> list:
  from head360_jax import inference
  from head360_jax.geometry import camera

  s, t, h = renderer.identity(0)
  labels = camera.dataset_cameras()[list(GRID_VIEWS)]
  return inference.to_uint8(renderer.render(s, t, h, np.zeros(52, np.float32), labels)).tolist()


def _truth_row(config_root: str, resolution: int) -> np.ndarray:
  from head360_jax.metrics import back_view

  yaws = [(view % 24 - 6) * 15 for view in GRID_VIEWS]
  return back_view.ground_truth_images(config_root, resolution, [0], yaws)


def table(results: dict, steps: int) -> str:
  lines = [
    '| row | steps | PSNR (dB) | SSIM | LPIPS-Alex | faces from behind (truth) | G parameters | images/s | '
    'train wall (min) | paper Table 3 (PSNR / SSIM / LPIPS, 512²) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ]
  for name in ROWS:
    if name not in results:
      continue
    r = results[name]
    lines.append(
      f'| {name} | {r["step"]} | {r["psnr"]:.2f} | {r["ssim"]:.3f} | {r["lpips_alex"]:.3f} | '
      f'{100 * r["back_rate"]:.0f} % ({100 * r["truth_back_rate"]:.0f} %) | {r["g_params"] / 1e6:.2f} M | '
      f'{r["images_per_s"]:.1f} | {r["train_wall_s"] / 60:.1f} | {PAPER.get(name, "-")} |'
    )
  return '\n'.join(lines) + f'\n\nAll rows: `configs/small.py`, {steps} steps (or the wall-clock cap), batch 4.\n'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data', required=True, help='dataset root (build_dataset output, 128²)')
  parser.add_argument('--out', required=True, help='folder for the runs, logs and results')
  parser.add_argument('--steps', type=int, default=300, help='training steps of every row')
  parser.add_argument('--minutes', type=float, default=30.0, help="wall-clock cap of one row's training")
  parser.add_argument('--rows', default=','.join(ROWS), help=f'comma-separated rows of {list(ROWS)}')
  parser.add_argument('--report', default=None, help='also write the Markdown table to this file')
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  names = [n for n in args.rows.split(',') if n]
  unknown = sorted(set(names) - set(ROWS))
  if unknown:
    parser.error(f'unknown rows {unknown}; known: {list(ROWS)}')
  for name in names:
    row_file = out / name / 'row.json'
    if row_file.exists():
      continue
    print(f'[{name}] training {args.steps} steps ...', flush=True)
    try:
      figures = _train(name, ROWS[name], args, out / name)
    except subprocess.CalledProcessError:
      print(f'[{name}] training failed: see {out / name}.log', flush=True)
      continue
    print(f'[{name}] evaluating ...', flush=True)
    figures |= _evaluate(out / name)
    row_file.write_text(json.dumps(figures))
    print(f'[{name}] PSNR {figures["psnr"]:.2f} dB, LPIPS-Alex {figures["lpips_alex"]:.3f}', flush=True)
  results = {n: json.loads((out / n / 'row.json').read_text()) for n in ROWS if (out / n / 'row.json').exists()}
  (out / 'ablation.json').write_text(
    json.dumps({n: {k: v for k, v in r.items() if k != 'grid'} for n, r in results.items()}, indent=1)
  )
  report = table(results, args.steps)
  print(report)
  if args.report:
    pathlib.Path(args.report).write_text(report)
  if results:
    from PIL import Image

    from head360_jax import checkpoint

    config = checkpoint.read_config(out / next(iter(results)))
    rows = [np.concatenate(list(_truth_row(config.data.root, config.data.resolution)), axis=1)]
    rows += [np.concatenate(list(np.asarray(r['grid'], np.uint8)), axis=1) for r in results.values()]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out / 'grid.jpg', quality=85)
    print(f'grid (ground truth, then {", ".join(results)}): {out / "grid.jpg"}')


if __name__ == '__main__':
  main()
