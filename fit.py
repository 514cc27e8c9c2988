"""head360-jax `fit.py`: fit a trained model to one photograph (paper §3.4).

  python fit.py --workdir runs/demo/run --image ../shared/data/faces/man.jpg --out runs/demo/fitted/man

Detects the face (MediaPipe), fits the shape code, head pose and ARKit weights to its
landmarks, then the neural texture and hair style to the aligned photo and its re-projections
into other views through the frozen generator, then tunes the generator's decoder, SR and hair
planes around that pivot (PTI; ``--tuning_steps 0`` turns it off), and writes ``fitted.npz``
(orbit or animate it with ``render.py --fitted``), the aligned photo, the targets, a mesh
overlay, a before/after image, an orbit, the loss log and metrics
(head360_jax/fitting/pipeline.py; stage times: bench/fit_bench.py). A failed fit (not an image,
too small, no face) exits with one message and writes nothing.
"""

import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training work directory (config.json + checkpoints).', required=True)
_IMAGE = flags.DEFINE_string('image', None, 'The photo to fit (one face).', required=True)
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: <workdir>/fitted/<photo name>).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
_FACE_STEPS = flags.DEFINE_integer('face_steps', 120, 'Adam steps of the face (bald) pass.')
_HAIR_STEPS = flags.DEFINE_integer('hair_steps', 80, 'Adam steps of the hair pass.')
_SHAPE_IDENTITIES = flags.DEFINE_integer('shape_identities', 50, 'Identities (and rank) of the fit shape model.')
_EXPRESSION = flags.DEFINE_boolean('expression', True, "Also fit the photo's ARKit expression weights.")
_HAIRSTYLE_IDENTITIES = flags.DEFINE_integer(
  'hairstyle_identities', None, 'Rendered heads per hairstyle for the hairstyle classifier (default 6; cached).'
)
_MULTIVIEW = flags.DEFINE_boolean(
  'multiview', True, 'Also fit the photo re-projected through the fitted mesh into 7 other views (paper §3.4).'
)
_MULTIVIEW_WEIGHT = flags.DEFINE_float(
  'multiview_weight', None, "Weight of a re-projected view against the photo's own (1) (default: AppearanceOptions)."
)
_TUNING_STEPS = flags.DEFINE_integer('tuning_steps', 500, 'Pivotal tuning steps of the generator (0: no tuning).')
_TUNING_LR = flags.DEFINE_float(
  'tuning_learning_rate', None, 'Adam step size of pivotal tuning (default: TuningOptions).'
)
_TUNING_DECAY = flags.DEFINE_enum(
  'tuning_decay',
  None,
  ['none', 'cosine'],
  'Step-size decay of pivotal tuning after the warm-up (default: TuningOptions).',
)
_TUNE = flags.DEFINE_list(
  'tune', None, 'Generator parts pivotal tuning changes (default: decoder, superres, static_synthesis, the StyleUNets).'
)
_NO_REFINE = flags.DEFINE_boolean(
  'no_refine', False, 'With a RefineNet run (configs/*_refine.py) as --workdir: skip the RefineNet.'
)
_COMPILATION_CACHE = flags.DEFINE_boolean(
  'compilation_cache', True, 'Persistent XLA compilation cache in ~/.cache/head360_jax/xla (HEAD360_COMPILATION_CACHE).'
)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:  # progress and results only; --verbosity=0 brings INFO logs back
    logging.set_verbosity(logging.WARNING)
  from head360_jax import checkpoint, compilation_cache, xla_options

  xla_options.apply()
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
      defaults.appearance_options,
      face_steps=_FACE_STEPS.value,
      hair_steps=_HAIR_STEPS.value,
      multiview_weight=defaults.appearance_options.multiview_weight
      if _MULTIVIEW_WEIGHT.value is None
      else _MULTIVIEW_WEIGHT.value,
    ),
    multiview=_MULTIVIEW.value,
    hairstyle_identities_per_style=_HAIRSTYLE_IDENTITIES.value,
    tuning_options=dataclasses.replace(
      defaults.tuning_options,
      steps=_TUNING_STEPS.value,
      parts=tuple(_TUNE.value) if _TUNE.value else defaults.tuning_options.parts,
      learning_rate=_TUNING_LR.value or defaults.tuning_options.learning_rate,
      decay=_TUNING_DECAY.value or defaults.tuning_options.decay,
    ),
  )
  try:
    # Check the photo first: a bad file must not wait for the model to load.
    landmarks.FaceLandmarker()(landmarks.load_image(image))
    renderer = inference.HeadRenderer(_WORKDIR.value, step=_STEP.value, refine=not _NO_REFINE.value)
    result = pipeline.fit_image(image, renderer, out, options)
  except landmarks.NoFaceError as error:
    sys.exit(f'fit.py: {image}: {error}')
  except (landmarks.ImageError, FileNotFoundError) as error:
    sys.exit(f'fit.py: {error}')
  times = ', '.join(f'{name} {seconds:.1f} s' for name, seconds in result.timings.items())
  print(f'fit.py: wrote {out} ({times}); landmark RMS {100 * result.rms_iod:.2f} % of the inter-ocular distance')


if __name__ == '__main__':
  app.run(main)
