"""Photo-fit benchmark with ground truth at every angle (issue 11): unseen identities, fitted from one frontal render.

  .venv/bin/python bench/fit_benchmark.py --workdir runs/small --identities 2 --out runs/fit_benchmark

1. Builds identities the run never trained on (``build_dataset`` with another seed; the run's
   rig, resolution ``--resolution``): neutral at yaw 0, ±30, ±60, ±90, 180 (pitch 0), and two
   expressions the run's dataset does not have (``--expressions``) at yaw 0.
2. Fits each identity from its frontal neutral render on white (``fitting.pipeline.fit_image``)
   twice: with the multi-view targets (row ``full fit``; its pivot before tuning is row ``no
   pivotal tuning``) and with the photo alone (row ``single-view target``); row ``prior mean``
   is the start of the fit: the mean shape with the starting identity's codes.
3. Renders every row at the ground truth's cameras (the fitted ARKit weights for neutral, the
   ground truth's weights for the expressions) and scores it against the ground truth resized to
   the generator's resolution, on white: PSNR, SSIM, LPIPS-Alex over the whole image and over
   the face oval of MediaPipe's landmarks on the ground truth (``pipeline.face_metrics``, where
   a face is found), and CSIM / dlib distance (``metrics.face_id``, at yaw 0 and ±30); plus the
   shape error: RMS vertex distance in mm
   between the fitted neutral mesh and the true one after a similarity alignment (Umeyama).

Writes ``<out>/results.json`` and ``<out>/results.md`` (one row per method and view) and prints
the table.
"""

import argparse
import dataclasses
import functools
import json
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VIEWS = {'0': 30, '+30': 32, '-30': 28, '+60': 34, '-60': 26, '+90': 36, '-90': 24, '180': 42}


def similarity_rms(a: np.ndarray, b: np.ndarray) -> float:
  """RMS distance between point sets (n, 3) after the similarity (Umeyama 1991) that best maps ``a`` onto ``b``."""
  a0, b0 = a - a.mean(0), b - b.mean(0)
  u, sigma, vt = np.linalg.svd(b0.T @ a0 / len(a))
  d = np.ones(3)
  d[2] = np.sign(np.linalg.det(u @ vt))
  rotation = u @ np.diag(d) @ vt
  scale = (sigma * d).sum() / a0.var(0).sum()
  return float(np.sqrt(np.mean(np.sum((scale * a0 @ rotation.T - b0) ** 2, -1))))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True, help='a trained run (e.g. runs/small)')
  parser.add_argument('--out', default='runs/fit_benchmark')
  parser.add_argument('--identities', type=int, default=2)
  parser.add_argument('--seed', type=int, default=1000, help='dataset seed of the unseen identities')
  parser.add_argument('--resolution', type=int, default=512)
  parser.add_argument('--expressions', default='mouthSmileRight,eyeBlinkRight')
  parser.add_argument('--face_steps', type=int, default=120, help='fit.py default')
  parser.add_argument('--hair_steps', type=int, default=80, help='fit.py default')
  parser.add_argument('--tuning_steps', type=int, default=500, help='fit.py default')
  parser.add_argument('--reuse', action='store_true', help='score the fits already in <out>/fits instead of refitting')
  args = parser.parse_args()

  from head360_jax import checkpoint, compilation_cache, inference

  compilation_cache.enable(True)
  checkpoint.quiet_orbax_logs()
  import jax.numpy as jnp
  from PIL import Image

  from head360_jax.data import build_dataset, layout
  from head360_jax.fitting import fitted, landmarks, pipeline
  from head360_jax.geometry import arkit, bilinear, camera
  from head360_jax.metrics import image as image_metrics
  from head360_jax.metrics import lpips as lpips_lib

  out = pathlib.Path(args.out)
  renderer = inference.HeadRenderer(args.workdir)
  resolution = renderer.generator.config.image_resolution
  expressions = [e for e in args.expressions.split(',') if e]
  trained = set(renderer.config.data.get('expressions') or [])
  overlap = sorted(set(expressions) & trained)
  if overlap:
    print(f'note: {overlap} are in the run dataset: not unseen', flush=True)
  gt_root = out / 'ground_truth'
  build_dataset.build(
    gt_root,
    rig=renderer.model.rig,
    num_identities=args.identities,
    expressions=[layout.NEUTRAL, *expressions],
    resolution=args.resolution,
    seed=args.seed,
    views=sorted(VIEWS.values()),
  )
  gt_model = bilinear.load(gt_root / 'bilinear.npz')
  labels = camera.dataset_cameras()
  lpips_alex = lpips_lib.load_lpips('alex')

  @functools.cache
  def ground_truth(identity: str, expression: str, view: int) -> np.ndarray:
    path = gt_root / 'images' / layout.image_relpath(args.resolution, identity, expression, view)
    rgba = np.asarray(Image.open(path).convert('RGBA'), np.float32) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return (255 * rgb + 0.5).astype(np.uint8)

  def resize(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.Resampling.LANCZOS))

  landmarker = landmarks.FaceLandmarker()

  @functools.cache
  def face_mask(identity: str, expression: str, view: int) -> np.ndarray | None:
    """The face oval of MediaPipe's landmarks on the ground truth, at the generator's resolution (None: no face)."""
    truth = ground_truth(identity, expression, view)
    try:
      points = landmarker(truth).points[list(landmarks.FACE_OVAL), :2] * (resolution / truth.shape[0])
    except landmarks.NoFaceError:
      return None
    return landmarks.polygon_mask(points, (resolution, resolution))

  def scores(render: np.ndarray, key: tuple[str, str, int], with_identity: bool) -> dict:
    truth_full = ground_truth(*key)
    truth = resize(truth_full)
    a = jnp.asarray(render, jnp.float32)[None] / 255.0
    b = jnp.asarray(truth, jnp.float32)[None] / 255.0
    row = {
      'psnr': float(image_metrics.psnr(a, b, data_range=1.0)[0]),
      'ssim': float(image_metrics.ssim(a, b, data_range=1.0)[0]),
      'lpips': float(lpips_lib.lpips(lpips_alex, 2 * a - 1, 2 * b - 1)[0]),
    }
    mask = face_mask(*key)
    if mask is not None:  # face oval (from the ground truth's landmarks) only
      face = pipeline.face_metrics(render, truth, mask, lpips_alex)
      row.update(face_psnr=face[0], face_ssim=face[1], face_lpips=face[2])
    if with_identity:  # dlib's embedding of the ground truth (full resolution) vs the upscaled render
      try:
        row.update(pipeline.identity_scores(truth_full, {'render': render}, args.resolution, landmarker)['render'])
      except landmarks.NoFaceError:
        pass
    return row

  results = []
  for index in range(args.identities):
    identity = layout.identity_name(index)
    photo = out / 'photos' / f'{identity}.png'
    photo.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ground_truth(identity, layout.NEUTRAL, VIEWS['0'])).save(photo)
    true_neutral = np.asarray(bilinear.vertices(gt_model, gt_model.identity_codes[index], np.zeros(52, np.float32)))
    methods = {}
    for name, multiview in (('full fit', True), ('single-view target', False)):
      options = dataclasses.replace(
        pipeline.FitOptions(),
        multiview=multiview,
        appearance_options=dataclasses.replace(
          pipeline.FitOptions().appearance_options, face_steps=args.face_steps, hair_steps=args.hair_steps
        ),
        tuning_options=dataclasses.replace(pipeline.FitOptions().tuning_options, steps=args.tuning_steps),
      )
      fit_dir = out / 'fits' / f'{identity}_{name.split()[0]}'
      if args.reuse and (fit_dir / 'fitted.npz').is_file():
        aligned = pipeline.align_and_fit_shape(pipeline.detect(photo), renderer.model.rig, options)
        start, _, _ = pipeline.start_identity(renderer.config.data.root, aligned.hair)
        methods[name] = (fitted.load(fit_dir / 'fitted.npz'), start)
        continue
      tic = time.perf_counter()
      result = pipeline.fit_image(photo, renderer, fit_dir, options)
      print(f'{identity} {name}: fitted in {time.perf_counter() - tic:.0f} s', flush=True)
      methods[name] = (result.head, result.start_identity)
    full_head, start = methods['full fit']
    methods['no pivotal tuning'] = (dataclasses.replace(full_head, tuned={}), start)
    for name in ('full fit', 'no pivotal tuning', 'single-view target', 'prior mean'):
      head, start = methods.get(name, (None, start))
      if name == 'prior mean':
        _, t0, h0 = renderer.identity(start)
        mean_codes = np.asarray(fitted.shape_model(full_head).prior_mean, np.float32)
        head = dataclasses.replace(full_head, s=mean_codes, b=np.zeros_like(full_head.b), tuned={})
        ws = renderer.styles(t0, h0)
        render_fn = lambda b, view_labels, head=head, ws=ws: renderer.render_styles(
          ws, bilinear.vertices(fitted.shape_model(head), head.s, b), view_labels
        )
      else:
        render_fn = lambda b, view_labels, head=head: fitted.render(renderer, head, b, view_labels)
      shape_mm = (
        similarity_rms(
          np.asarray(bilinear.vertices(fitted.shape_model(head), head.s, np.zeros(52, np.float32))), true_neutral
        )
        * gt_model.mm_per_unit
      )
      rows = []
      neutral = render_fn(head.b, labels[list(VIEWS.values())])
      for (view_name, view), image in zip(VIEWS.items(), inference.to_uint8(neutral), strict=True):
        key = (identity, layout.NEUTRAL, view)
        rows.append({'view': view_name, **scores(image, key, view_name in ('0', '+30', '-30'))})
      for expression in expressions:
        image = inference.to_uint8(render_fn(arkit.parse(f'{expression}=1'), labels[[VIEWS['0']]]))[0]
        rows.append({'view': f'0 {expression}', **scores(image, (identity, expression, VIEWS['0']), True)})
      for row in rows:
        results.append({'identity': identity, 'method': name, 'shape_mm': shape_mm, **row})
      print(
        f'{identity} {name}: shape {shape_mm:.2f} mm; ' + ', '.join(f'{r["view"]} {r["psnr"]:.2f} dB' for r in rows)
      )

  (out / 'results.json').write_text(json.dumps(results, indent=1) + '\n')
  table = _markdown(results)
  (out / 'results.md').write_text(table)
  print(table)


def _markdown(results: list[dict]) -> str:
  """Per method and view: means over identities (whole image, face oval, identity) and the shape error."""
  keys = ('psnr', 'ssim', 'lpips', 'face_psnr', 'face_lpips', 'csim', 'dlib_distance')
  lines = [
    '| method | view | PSNR (dB) | SSIM | LPIPS-Alex | face PSNR (dB) | face LPIPS | CSIM | dlib dist. | shape (mm) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  methods = list(dict.fromkeys(r['method'] for r in results))
  views = list(dict.fromkeys(r['view'] for r in results))
  for method in methods:
    for view in views:
      rows = [r for r in results if r['method'] == method and r['view'] == view]
      cells = []
      for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
        cells.append(f'{np.mean(values):.3f}' if values else '-')
      shape = np.mean([r['shape_mm'] for r in rows])
      lines.append(f'| {method} | {view} | ' + ' | '.join(cells) + f' | {shape:.2f} |')
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
