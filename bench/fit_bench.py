"""Benchmark: time of each stage of ``fit.py`` on one photo (detect, shape fit, targets, appearance, tuning).

Usage::

  .venv/bin/python bench/fit_bench.py [--workdir runs/demo/run] [--image ../shared/data/faces/man.jpg]
      [--steps 100] [--repeats 5]

Needs a trained run (the README's demo writes ``runs/demo/run``). Prints the median time of
the MediaPipe stages (face detection + 468-point mesh, selfie segmentation) over
``--repeats`` calls after a warm-up call, the shape fit (first call, which compiles, and a
second call), and a full ``fit_image`` with the default options (``--steps`` appearance steps
split 3 : 2 over the face and hair passes, ``--tuning_steps`` of pivotal tuning), whose
per-100-steps times exclude the compiling first step of each pass; the total is what a
``fit.py`` user waits for after the model has loaded.
"""

import argparse
import dataclasses
import pathlib
import tempfile
import time

import common  # bench/common.py
import jax
import numpy as np
import timing  # bench/timing.py

from head360_jax import assets, inference
from head360_jax.fitting import align, correspondence, pipeline, shape
from head360_jax.fitting import landmarks as landmarks_lib
from head360_jax.geometry import bilinear
from head360_jax.geometry import rig as rig_lib


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default=str(common.REPO / 'runs' / 'demo' / 'tiny'))
  parser.add_argument('--image', default=str(assets.shared_data_dir() / 'faces' / 'man.jpg'))
  parser.add_argument('--steps', type=int, default=200, help='appearance steps (3/5 face, 2/5 hair pass)')
  parser.add_argument('--tuning_steps', type=int, default=500, help='pivotal tuning steps (fit.py default)')
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()

  photo = landmarks_lib.load_image(args.image)
  landmarker, segmenter = landmarks_lib.FaceLandmarker(), landmarks_lib.SelfieSegmenter()
  detect = timing.median_time(lambda: landmarker(photo), args.repeats)
  segment = timing.median_time(lambda: segmenter(photo), args.repeats)

  renderer = inference.HeadRenderer(args.workdir)
  options = pipeline.FitOptions()
  tic = time.perf_counter()
  model = bilinear.build_from_rig(
    rig_lib.load_rig(renderer.model.rig), options.shape_identities, rank=options.shape_rank, seed=options.shape_seed
  )
  build = time.perf_counter() - tic
  table = correspondence.load_correspondence(renderer.model.rig)
  lm_model = shape.landmark_model(model, table.faces, table.barycentrics)
  detected = landmarker(photo)
  matrix = align.similarity(detected.points, align.template(lm_model, options.crop_size), table.valid)
  target = align.transform_points(matrix, detected.points)
  shape_times = []
  for _ in range(2):
    tic = time.perf_counter()
    fit = shape.fit_shape(
      lm_model,
      target,
      table.valid.astype(np.float32),
      label=align.frontal_label(),
      size=options.crop_size,
      iod=align.inter_ocular(target),
      options=options.shape_options,
    )
    shape_times.append(time.perf_counter() - tic)

  shape_options = options.shape_options
  face = 3 * args.steps // 5
  options = dataclasses.replace(
    options,
    appearance_options=dataclasses.replace(options.appearance_options, face_steps=face, hair_steps=args.steps - face),
    tuning_options=dataclasses.replace(options.tuning_options, steps=args.tuning_steps),
  )
  with tempfile.TemporaryDirectory() as tmp:
    result = pipeline.fit_image(args.image, renderer, pathlib.Path(tmp) / 'out', options, log=lambda _: None)

  print(f'fit.py stages on {pathlib.Path(args.image).name} ({photo.shape[1]}x{photo.shape[0]}), run {args.workdir}')
  print(f'  devices: {jax.devices()}')
  rows = [
    ('detect (face detection + 468-point mesh), median', detect),
    ('selfie segmentation, median', segment),
    (f'shape model build ({options.shape_identities} identities, rank {options.shape_rank})', build),
    (f'shape fit, first call (compiles; {shape_options.pose_steps}+{shape_options.steps} L-BFGS)', shape_times[0]),
    ('shape fit, second call', shape_times[1]),
    ('hairstyle classifier (cached rendered set: train + predict)', result.timings['hairstyle']),
    (f'multi-view targets ({result.views} views, incl. compiling)', result.timings['targets']),
    (f'appearance fit, {args.steps} steps incl. compiling', result.timings['appearance_fit']),
    ('appearance fit per 100 steps (steady state)', result.timings.get('appearance_per_100_steps', float('nan'))),
    (f'pivotal tuning, {args.tuning_steps} steps incl. compiling and metrics', result.timings['tuning']),
    ('pivotal tuning per 100 steps (steady state)', result.timings.get('tuning_per_100_steps', float('nan'))),
    ('fit_image total (detect ... write)', sum(result.timings[k] for k in pipeline.STAGES)),
  ]
  for name, seconds in rows:
    print(f'  {name:<72} {seconds:9.3f} s')
  print(
    f'  landmark RMS {100 * fit.rms_iod:.2f} % of the inter-ocular distance; face PSNR {result.psnr_face:.2f} dB, '
    f'LPIPS-Alex {result.lpips_face:.3f}'
  )


if __name__ == '__main__':
  main()
