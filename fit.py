"""head360-jax `fit.py`: fit a trained model to one photograph (paper §3.4).

  python fit.py --workdir runs/demo/run --image ../shared/data/faces/man.jpg --out runs/demo/fitted/man

Detects the face (MediaPipe), fits the shape code, head pose and ARKit weights to its
landmarks, then the neural texture and hair style to the aligned photo through the frozen
generator, and writes ``fitted.npz`` (orbit or animate it with ``render.py --fitted``), the
aligned photo, a mesh overlay, a before/after image, an orbit, the loss log and metrics
(head360_jax/fitting/pipeline.py). About 2 minutes per photo on 2 free CPU cores with the
demo's tiny model (up to 5 when the cores are shared). A failed fit (not an image, too small,
no face) exits with one message and writes nothing.
"""

import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training work directory (config.json + checkpoints).', required=True)
_IMAGE = flags.DEFINE_string('image', None, 'The photo to fit (one face).', required=True)
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: <workdir>/fitted/<photo name>).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
_FACE_STEPS = flags.DEFINE_integer('face_steps', 150, 'Adam steps of the face (bald) pass.')
_HAIR_STEPS = flags.DEFINE_integer('hair_steps', 150, 'Adam steps of the hair pass.')
_SHAPE_IDENTITIES = flags.DEFINE_integer('shape_identities', 50, 'Identities (and rank) of the fit shape model.')
_EXPRESSION = flags.DEFINE_boolean('expression', True, "Also fit the photo's ARKit expression weights.")
_COMPILATION_CACHE = flags.DEFINE_boolean(
  'compilation_cache', True, 'Persistent XLA compilation cache in ~/.cache/head360_jax/xla (HEAD360_COMPILATION_CACHE).'
)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from head360_jax import checkpoint, compilation_cache

  compilation_cache.enable(_COMPILATION_CACHE.value)
  checkpoint.quiet_orbax_logs()
  import dataclasses
  import pathlib

  from head360_jax import inference
  from head360_jax.fitting import landmarks, pipeline

  image = pathlib.Path(_IMAGE.value)
  out = pathlib.Path(_OUT.value or pathlib.Path(_WORKDIR.value) / 'fitted' / image.stem)
  defaults = pipeline.FitOptions()
  options = dataclasses.replace(
    defaults,
    shape_identities=_SHAPE_IDENTITIES.value,
    shape_rank=_SHAPE_IDENTITIES.value,
    shape_options=dataclasses.replace(defaults.shape_options, fit_expression=_EXPRESSION.value),
    appearance_options=dataclasses.replace(
      defaults.appearance_options, face_steps=_FACE_STEPS.value, hair_steps=_HAIR_STEPS.value
    ),
  )
  try:
    # Check the photo first: a bad file must not wait for the model to load.
    landmarks.FaceLandmarker()(landmarks.load_image(image))
    renderer = inference.HeadRenderer(_WORKDIR.value, step=_STEP.value)
    result = pipeline.fit_image(image, renderer, out, options)
  except landmarks.NoFaceError as error:
    sys.exit(f'fit.py: {image}: {error}')
  except (landmarks.ImageError, FileNotFoundError) as error:
    sys.exit(f'fit.py: {error}')
  times = ', '.join(f'{name} {seconds:.1f} s' for name, seconds in result.timings.items())
  print(f'fit.py: wrote {out} ({times}); landmark RMS {100 * result.rms_iod:.2f} % of the inter-ocular distance')


if __name__ == '__main__':
  app.run(main)
