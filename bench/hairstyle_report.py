"""Report: the hairstyle classifier's held-out confusion matrix and its answers on photos.

Legend: ``k`` hairstyle classes (``hair.STYLES``), ``S`` = 512, the side of the fit's canonical crop.

Usage::

  .venv/bin/python bench/hairstyle_report.py [--run-root runs/anny_3expr] [--folds 3]
      [--photos ../shared/data/faces/000134.jpg ../shared/data/faces/man.jpg astronaut] [--out /tmp/hair]

1. Renders (or loads from the cache) ``hairstyle.rendered_hair_masks`` (every style of
   ``hair.STYLES``; prints how long rendering took) and prints ``hairstyle.cross_validate``'s
   confusion matrix (rows true, columns predicted; every mask classified by a classifier
   that never saw its identity) and the accuracy.
2. For each photo (a path, or ``astronaut`` for ``skimage.data.astronaut()``), gets the hair
   mask the way ``fit.py`` does (``pipeline.detect`` -> ``pipeline.align_and_fit_shape`` ->
   ``Alignment.hair``, the S² crop) and prints the prediction and the top probabilities of
   the classifier trained on the whole rendered set. With ``--run-root``, also the style the
   fit would start from in that run (``hairstyle.training_identity``) and, for comparison,
   the answer of the classifier trained on the run's dataset alone (``source='dataset'``).
   With ``--out``, writes ``<photo>_hair.png`` (the crop with the hair mask tinted red) and
   ``<photo>_mask.png`` (the S² mask that is classified).
"""

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np
from PIL import Image

from head360_jax.fitting import hairstyle, pipeline

SHARED_FACES = pathlib.Path(__file__).resolve().parent.parent.parent / 'shared' / 'data' / 'faces'
DEFAULT_PHOTOS = (str(SHARED_FACES / '000134.jpg'), str(SHARED_FACES / 'man.jpg'), 'astronaut')


def _photo_path(name: str, tmp: pathlib.Path) -> pathlib.Path:
  if name != 'astronaut':
    return pathlib.Path(name)
  from skimage import data

  path = tmp / 'astronaut.png'
  Image.fromarray(data.astronaut()).save(path)
  return path


def _top(classes: tuple[str, ...], probabilities: np.ndarray, n: int = 3) -> str:
  order = np.argsort(-probabilities)[:n]
  return ', '.join(f'{classes[j]} {probabilities[j]:.2f}' for j in order)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument(
    '--run-root', default=None, help="a run's dataset: show its starting style and its own classifier"
  )
  parser.add_argument('--rig', default='anny', help='rig of the rendered set (default anny; --run-root overrides)')
  parser.add_argument('--folds', type=int, default=3, help='cross-validation folds over identities')
  parser.add_argument('--photos', nargs='*', default=list(DEFAULT_PHOTOS), help='photo paths, or "astronaut"')
  parser.add_argument('--out', default=None, help='folder for <photo>_hair.png overlays')
  args = parser.parse_args(argv)

  rig = args.rig
  if args.run_root:
    rig = json.loads((pathlib.Path(args.run_root) / 'build.json').read_text()).get('rig', 'anny')
  folder = hairstyle.rendered_set_dir(rig=rig)
  cached = (folder / 'masks.npz').is_file()
  start = time.perf_counter()
  masks, styles, identities = hairstyle.rendered_hair_masks(rig=rig, progress=True)
  seconds = time.perf_counter() - start
  if cached:
    with np.load(folder / 'masks.npz') as data:
      print(f'rendered set: {folder} (cached; rendering it took {float(data["seconds"]):.0f} s)')
  else:
    print(f'rendered set: {folder}, rendered and masked in {seconds:.0f} s')
  print(
    f'{len(masks)} masks: {len(set(styles))} styles x {hairstyle.TRAINING_IDENTITIES_PER_STYLE} identities x '
    f'{len(hairstyle.TRAINING_EXPRESSIONS)} expressions x {len(hairstyle.NEAR_FRONTAL_VIEWS)} views, '
    f'{masks.shape[1]}²'
  )
  start = time.perf_counter()
  evaluation = hairstyle.cross_validate(masks, styles, identities, folds=args.folds)
  print(f'\nheld-out confusion matrix ({args.folds}-fold cross-validation over identities, mirrored training masks):')
  print(evaluation.format())
  print(f'({time.perf_counter() - start:.1f} s)')

  if args.run_root:
    classifier = hairstyle.train_classifier(args.run_root)
    own = hairstyle.train_classifier(args.run_root, source='dataset')
  else:
    classifier = hairstyle.fit_classifier(masks, styles, identities)
    own = None
  out = pathlib.Path(args.out) if args.out else None
  if out:
    out.mkdir(parents=True, exist_ok=True)
  options = pipeline.FitOptions()
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.photos:
      path = _photo_path(name, pathlib.Path(tmp))
      aligned = pipeline.align_and_fit_shape(pipeline.detect(path), rig, options)
      style, probabilities = hairstyle.predict(classifier, aligned.hair)
      line = f'\n{path.name}: {style} (p {probabilities.max():.2f}); top: {_top(classifier.classes, probabilities)}'
      line += f'; hair {aligned.hair.mean():.1%} of the crop'
      print(line)
      if own is not None:
        identity = hairstyle.training_identity(classifier, probabilities)
        available = [c for c, ids in zip(classifier.classes, classifier.identities_by_class, strict=True) if ids]
        start_style = hairstyle.nearest_training_style(style, probabilities, available, classifier.classes)
        own_style, own_p = hairstyle.predict(own, aligned.hair)
        print(f'  the run starts from {identity} ({start_style})')
        print(f"  the run's own-dataset classifier: {own_style} (p {own_p.max():.2f}); top: {_top(own.classes, own_p)}")
      if out:
        crop = aligned.crop.astype(np.float32)
        crop[aligned.hair] = 0.5 * crop[aligned.hair] + 0.5 * np.array([255, 0, 0])
        Image.fromarray(crop.astype(np.uint8)).save(out / f'{path.stem}_hair.png')
        Image.fromarray(aligned.hair.astype(np.uint8) * 255).save(out / f'{path.stem}_mask.png')


if __name__ == '__main__':
  main()
