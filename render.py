"""Renders heads of a trained run: 360 deg orbits, ARKit expressions, hair swaps.

Usage::

  .venv/bin/python render.py --workdir runs/demo/run --identities 0,1 --views 24 --pitch 10
  .venv/bin/python render.py --workdir runs/demo/run --seeds 0-7 --expression jawOpen=0.7,eyeBlinkLeft=1
  .venv/bin/python render.py --workdir runs/demo/run --identities 0 --hair_from 2   # identity 0 with 2's hair
  .venv/bin/python render.py --workdir runs/demo/stage2 --identities 0,1 --bald       # without hair (stage 2)
  .venv/bin/python render.py --workdir runs/demo/run --identities 0 --arkit_csv take.csv  # Live Link Face take
  .venv/bin/python render.py --workdir runs/demo/run --fitted runs/demo/fitted/man/fitted.npz --expression jawOpen=1
  .venv/bin/python render.py --job job.yaml --output renders/job   # a batch: manifest.json + index.html

``--job`` renders runs x heads x expressions/takes x cameras from a JSON/YAML file (format in
``head360_jax/jobs.py``) into a folder tree with ``manifest.json`` and a gallery ``index.html``;
running it again skips the finished items.

For each head it writes ``<output>/<head>_orbit.png`` (a grid of the views) and
``<head>_orbit.gif`` (``--mp4`` adds an MP4). A head is a training identity (``--identities``,
its shape, texture and hair codes) or a new one from a seed (``--seeds``: shape from the
bilinear prior, Gaussian texture/hair codes) or a head fitted to a photo by fit.py
(``--fitted runs/demo/fitted/man/fitted.npz``: orbit it; with ``--expression``, animate it
with those ARKit weights instead of the photo's). ``--hair_from i`` gives every head training
identity ``i``'s hair (a fitted head: its hair style); ``--bald`` renders them without the
static/hair planes: a stage-2 run (``configs/*_stage2.py``) then shows the bald head it learnt,
a stage-1 run only the mesh-covered part of its planes (it never learnt to detach hair).
"""

import pathlib
import sys

import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training work directory (config.json + checkpoints).')
_OUTPUT = flags.DEFINE_string('output', None, 'Output folder (default: <workdir>/renders).')
_IDENTITIES = flags.DEFINE_string('identities', '', 'Training identities, e.g. "0,2" or "0-3".')
_SEEDS = flags.DEFINE_string('seeds', '', 'Seeds of new heads, e.g. "0-7".')
_HAIR_FROM = flags.DEFINE_integer('hair_from', None, 'Take the hair code of this training identity (hair swap).')
_ARKIT_CSV = flags.DEFINE_string(
  'arkit_csv', None, 'A Live Link Face CSV take: animate each head with its per-frame ARKit weights (MP4).'
)
_IGNORE_HEAD = flags.DEFINE_boolean('ignore_head_rotation', False, 'With --arkit_csv: keep the frontal camera.')
_FRAMES = flags.DEFINE_boolean('frames', False, 'With --arkit_csv: also write every frame as a PNG.')
_INTERPOLATE = flags.DEFINE_enum(
  'interpolate',
  None,
  ['all', 'shape', 'style', 'hair', 'expression'],
  'Interpolate through the heads of --identities then --seeds (in that order) instead of orbiting each: what moves.',
)
_INTERP_FRAMES = flags.DEFINE_integer('interp_frames', 24, 'With --interpolate: frames per pair of heads.')
_SLERP = flags.DEFINE_boolean('slerp', False, 'With --interpolate: spherical interpolation of codes and styles.')
_INTERP_ORBIT = flags.DEFINE_boolean('interp_orbit', False, 'With --interpolate: orbit the camera once meanwhile.')
_INTERP_EXPRESSIONS = flags.DEFINE_string(
  'interp_expressions', '', 'With --interpolate: ARKit weights per head, ";"-separated (default: --expression).'
)
_EXPORT_MESH = flags.DEFINE_boolean(
  'export_mesh', False, 'Also write each head as <head>.obj (parametric mesh) and <head>_field.ply (marching cubes).'
)
_MESH_RESOLUTION = flags.DEFINE_integer('mesh_resolution', 96, 'With --export_mesh: density grid side.')
_TEXTURE_RESOLUTION = flags.DEFINE_integer(
  'texture_resolution', 256, 'With --export_mesh: side of the baked RGB texture (<head>.png + .mtl); 0 = none.'
)
_MESH_LEVEL = flags.DEFINE_float('mesh_level', 20.0, 'With --export_mesh: raw density of the iso-surface.')
_BALD = flags.DEFINE_boolean('bald', False, 'Render without the hair (static) planes: bald heads of a stage-2 run.')
_EXPRESSION = flags.DEFINE_string('expression', '', 'ARKit weights, e.g. "jawOpen=0.6,eyeBlinkLeft=1".')
_VIEWS = flags.DEFINE_integer('views', 24, 'Number of views on the 360 deg orbit.')
_PITCH = flags.DEFINE_float('pitch', 0.0, 'Orbit elevation in degrees (positive = from above).')
_PSI = flags.DEFINE_float('psi', 1.0, 'Truncation psi (1 = none).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
_MP4 = flags.DEFINE_boolean('mp4', False, 'Also write an MP4 of each orbit.')
_FITTED = flags.DEFINE_string('fitted', None, 'A fitted.npz from fit.py: orbit it (with --expression: animate it).')
_NO_REFINE = flags.DEFINE_boolean(
  'no_refine', False, 'With a RefineNet run (configs/*_refine.py) as --workdir: skip the RefineNet.'
)
_JOB = flags.DEFINE_string(
  'job',
  None,
  'A job file (JSON/YAML, head360_jax/jobs.py): runs x heads x expressions/takes x cameras into --output '
  '(default: the job file without its suffix).',
)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'Cameras (or take frames) rendered per generator call.')
_COMPILATION_CACHE = flags.DEFINE_boolean(
  'compilation_cache', True, 'Persistent XLA compilation cache in ~/.cache/head360_jax/xla (HEAD360_COMPILATION_CACHE).'
)


def _export_mesh(renderer, stem: pathlib.Path, s, ws, b) -> None:
  """``--export_mesh``: the parametric OBJ and the field's marching-cubes PLY; prints the surface-to-mesh distance."""
  from head360_jax import mesh_export
  from head360_jax.geometry import bilinear

  texture = None
  if _TEXTURE_RESOLUTION.value > 0:
    mesh = np.asarray(bilinear.vertices(renderer.model, s, b), np.float32)
    texture = mesh_export.bake_texture(
      renderer.generator, ws, mesh, renderer.model, _TEXTURE_RESOLUTION.value, bald=_BALD.value
    )
  vertices = mesh_export.parametric_obj(stem.with_suffix('.obj'), renderer.model, s, b, texture)
  try:
    surface = mesh_export.field_surface(
      renderer.generator, ws, vertices, _MESH_RESOLUTION.value, level=_MESH_LEVEL.value, bald=_BALD.value
    )
  except ValueError as error:
    print(f'{stem.name}: no field surface ({error}); wrote {stem}.obj (+ .mtl/.png texture) only')
    return
  surface.export(stem.with_name(stem.name + '_field.ply'))
  d = mesh_export.surface_distance_mm(surface, vertices, renderer.model.faces, renderer.model.mm_per_unit)
  print(
    f'{stem.name}: {stem}.obj ({len(vertices)} vertices{", baked texture .png/.mtl" if texture is not None else ""}) '
    f'and _field.ply ({len(surface.vertices)} vertices, '
    f'watertight {surface.is_watertight}); field surface to mesh: median {d["median_mm"]:.1f} mm, '
    f'90th percentile {d["p90_mm"]:.1f} mm (hair included)'
  )


def _render_interpolation(renderer, heads, b, hair, output: pathlib.Path) -> None:
  """``--interpolate``: one video through all heads (``head360_jax.interpolation``)."""
  from head360_jax import inference, interpolation
  from head360_jax.geometry import arkit, bilinear

  per_head = [part for part in _INTERP_EXPRESSIONS.value.split(';')] if _INTERP_EXPRESSIONS.value else []
  try:
    if per_head and len(per_head) != len(heads):
      raise ValueError(f'--interp_expressions gives {len(per_head)} expressions for {len(heads)} heads')
    expressions = [arkit.parse(text) for text in per_head] or [b] * len(heads)
    stops = []
    for (_, (s, t, h)), weights in zip(heads, expressions, strict=True):
      ws = {k: np.asarray(v) for k, v in renderer.styles(t, h if hair is None else hair, _PSI.value).items()}
      stops.append((s, ws, weights))
    frames_path = interpolation.path(stops, _INTERP_FRAMES.value, mode=_INTERPOLATE.value, spherical=_SLERP.value)
  except ValueError as error:
    sys.exit(f'render.py: {error}')
  n = len(frames_path)
  if _INTERP_ORBIT.value:
    labels = inference.orbit_labels(n, _PITCH.value)
  else:
    labels = np.repeat(inference.orbit_labels(1, _PITCH.value), n, axis=0)
  frames = []
  for i, (s, ws, weights) in enumerate(tqdm(frames_path, desc='interpolate', unit='frame')):
    vertices = bilinear.vertices(renderer.model, s, weights)
    image = renderer.render_styles(ws, vertices, labels[i : i + 1], bald=_BALD.value)
    frames.append(inference.to_uint8(image)[0])
  frames = np.stack(frames)
  kind = 'slerp' if _SLERP.value else 'lerp'
  stem = output / f'interp_{_INTERPOLATE.value}_{kind}_{"-".join(name for name, _ in heads)}'
  inference.write_image(stem.with_suffix('.png'), inference.image_grid(frames, columns=min(_INTERP_FRAMES.value, 12)))
  inference.write_video(stem.with_suffix('.gif'), frames)
  if _MP4.value:
    inference.write_video(stem.with_suffix('.mp4'), frames)
  print(f'wrote {n} interpolation frames ({_INTERPOLATE.value}, {kind}) to {stem}.png/.gif')


def _render_take(renderer, heads, fitted_head, hair, output: pathlib.Path) -> None:
  """Animates every head with the Live Link Face take of ``--arkit_csv``: ``<head>_<take>.mp4`` (+ frames)."""
  from head360_jax import inference
  from head360_jax.fitting import fitted
  from head360_jax.geometry import bilinear, livelink

  try:
    take = livelink.read_take(_ARKIT_CSV.value)
  except (OSError, livelink.TakeError) as error:
    sys.exit(f'render.py: {error}')
  head_rotation = np.zeros_like(take.head) if _IGNORE_HEAD.value else take.head
  labels = livelink.head_labels(head_rotation, base_pitch_deg=_PITCH.value)
  stem = pathlib.Path(_ARKIT_CSV.value).stem
  jobs = [(name, code) for name, code in heads] + ([('fitted', None)] if fitted_head is not None else [])
  batch = renderer.chunk * 4  # a few generator calls per progress update
  for name, code in jobs:
    frames = []
    if code is not None:
      s, t, h = code
      ws = renderer.styles(t, h if hair is None else hair, _PSI.value)
    with tqdm(total=len(take), desc=f'{name} {stem}', unit='frame') as bar:
      for i in range(0, len(take), batch):
        weights, views = take.weights[i : i + batch], labels[i : i + batch]
        if code is None:
          images = fitted.render(renderer, fitted_head, weights, views, bald=_BALD.value)
        else:
          images = renderer.render_styles(ws, bilinear.vertices(renderer.model, s, weights), views, bald=_BALD.value)
        frames.append(inference.to_uint8(images))
        bar.update(len(images))
    frames = np.concatenate(frames)
    inference.write_video(output / f'{name}_{stem}.mp4', frames, fps=round(take.fps))
    if _FRAMES.value:
      folder = output / f'{name}_{stem}_frames'
      folder.mkdir(exist_ok=True)
      for i, frame in enumerate(frames):
        inference.write_image(folder / f'{i:05d}.png', frame)
  print(f'wrote {len(jobs)} animation(s) of {len(take)} frames at {take.fps:g} fps to {output}')


def _run_job() -> None:
  """``--job``: every item of the job file into ``--output`` (default: next to the job file), resumable."""
  from head360_jax import jobs

  try:
    job = jobs.load(_JOB.value)
  except jobs.JobError as error:
    sys.exit(f'render.py: {error}')
  output = pathlib.Path(_OUTPUT.value or pathlib.Path(_JOB.value).with_suffix(''))
  rendered = []
  try:
    manifest = jobs.run(
      job, output, batch_size=_BATCH_SIZE.value, refine=not _NO_REFINE.value, after_item=rendered.append
    )
  except (FileNotFoundError, ValueError) as error:
    sys.exit(f'render.py: {error}')
  print(f'{jobs.summary(manifest, rendered)}; {output / jobs.MANIFEST}, gallery {output / jobs.GALLERY}')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:  # progress and results only; --verbosity=0 brings INFO logs back
    logging.set_verbosity(logging.WARNING)
  from head360_jax import checkpoint, compilation_cache, xla_options

  xla_options.apply()
  compilation_cache.enable(_COMPILATION_CACHE.value)
  checkpoint.quiet_orbax_logs()
  if _JOB.value:
    _run_job()
    return
  if not _WORKDIR.value:
    raise app.UsageError('give --workdir (a training run) or --job (a job file)')
  from head360_jax import inference
  from head360_jax.fitting import fitted
  from head360_jax.geometry import arkit

  try:
    identities, seeds = inference.parse_ranges(_IDENTITIES.value), inference.parse_ranges(_SEEDS.value)
    b = arkit.parse(_EXPRESSION.value)
    labels = inference.orbit_labels(_VIEWS.value, _PITCH.value)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  if not identities and not seeds and not _FITTED.value:
    identities = [0]
  output = pathlib.Path(_OUTPUT.value or pathlib.Path(_WORKDIR.value) / 'renders')
  output.mkdir(parents=True, exist_ok=True)
  try:
    renderer = inference.HeadRenderer(
      _WORKDIR.value, step=_STEP.value, refine=not _NO_REFINE.value, chunk=_BATCH_SIZE.value
    )
    heads = [(f'identity{i:03d}', renderer.identity(i)) for i in identities]
    heads += [(f'seed{seed:04d}', renderer.random_head(seed)) for seed in seeds]
    hair = renderer.identity(_HAIR_FROM.value)[2] if _HAIR_FROM.value is not None else None
    head = fitted.load(_FITTED.value) if _FITTED.value else None
  except (FileNotFoundError, ValueError) as error:
    sys.exit(f'render.py: {error}')
  if _ARKIT_CSV.value:
    _render_take(renderer, heads, head, hair, output)
    return
  if _INTERPOLATE.value:
    _render_interpolation(renderer, heads, b, hair, output)
    return
  suffix = ('_' + _EXPRESSION.value.replace('=', '').replace(',', '_')) if _EXPRESSION.value else ''
  suffix += f'_hair{_HAIR_FROM.value:03d}' if hair is not None else ''
  suffix += '_bald' if _BALD.value else ''
  for name, (s, t, h) in tqdm(heads, desc='render', unit='head', disable=not heads):
    frames = renderer.render(s, t, h if hair is None else hair, b, labels, psi=_PSI.value, bald=_BALD.value)
    frames = inference.to_uint8(frames)
    if _EXPORT_MESH.value:
      ws = renderer.styles(t, h if hair is None else hair, _PSI.value)
      _export_mesh(renderer, output / f'{name}{suffix}', s, ws, b)
    stem = output / f'{name}{suffix}_orbit'
    inference.write_image(stem.with_suffix('.png'), inference.image_grid(frames, columns=min(8, len(frames))))
    inference.write_video(stem.with_suffix('.gif'), frames)
    if _MP4.value:
      inference.write_video(stem.with_suffix('.mp4'), frames)
  if head is not None:
    w_hair = None if hair is None else renderer.styles(hair, hair)['hair'][0]
    frames = fitted.render(renderer, head, b if _EXPRESSION.value else head.b, labels, bald=_BALD.value, w_hair=w_hair)
    frames = inference.to_uint8(frames)
    stem = output / f'{pathlib.Path(_FITTED.value).parent.name}{suffix}_orbit'
    inference.write_image(stem.with_suffix('.png'), inference.image_grid(frames, columns=min(8, len(frames))))
    inference.write_video(stem.with_suffix('.gif'), frames)
    if _MP4.value:
      inference.write_video(stem.with_suffix('.mp4'), frames)
    heads.append(('fitted', head))
  print(f'wrote {len(heads)} orbit(s) of {len(labels)} views to {output} (step {renderer.step})')


if __name__ == '__main__':
  app.run(main)
