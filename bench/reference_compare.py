"""Benchmark: our CPU timings side by side with the PyTorch original's (``../shared/bench/reference_cpu.json``).

Usage::

  .venv/bin/python bench/reference_compare.py [--components texture,static,...|all|none]
      [--phases g_main,d_main,g_reg,d_reg|all|none] [--repeats 3] [--precision float32]
      [--config configs/synhead.py] [--root DATASET] [--json PATH] [--compilation-cache]
      [--torch-calibration CALIBRATION.json]

Every row runs in a fresh child process (this script with ``--worker``), so its peak resident
memory (the process's VmHWM, as the reference reports it) is that row's alone. Each row is
compiled ahead of time (``jit(...).lower(...).compile()``, timed as "compile"), called once as a
warm-up and then ``--repeats`` times; the median is printed beside the PyTorch figure and the
ratio ours / torch (< 1: we are faster). Conditions follow the reference file's ``about``:
batch 1, float32, the synhead config at 512².

Components (fwd = forward; fwd_bwd = forward and backward of the sum of the outputs' means, with
gradients to the parameters and to the sub-network inputs; the discriminator: to its parameters
only): texture, static, mouth, blending (StyleGAN2 and StyleUNet synthesis, random noise),
raster_glue (our six hex-plane rasterisations and texture sampling: the reference's row excludes
PyTorch3D's rasteriser, ours includes the whole JAX rasteriser), renderer (rays, 48 + 48 samples
on 64² rays, decoder, compositing), superres, discriminator, generator (mapping + the whole
forward; its fwd_bwd: gradients to the generator's parameters).

Phases: g_main, d_main, g_reg, d_reg of ``training/steps.py`` at batch 1, one jitted call each
(our phases include the Adam update, which the reference's figures exclude: 0.38 s for G), with
the training step set to 1e6 images seen as the reference's (blur faded out, camera swaps at
their final probability).

The reference was timed on one day and these shared machines drift (the same PyTorch texture
network ran 1.9x faster on 2026-12-07 than the reference file says): ``--torch-calibration`` takes
the JSON of ``bench/torch_calibration.py`` run beside this script and adds "torch today" (the
reference times its factor) and the ratio to it. Compare against those.

The persistent XLA compilation cache is off here unless ``--compilation-cache`` is given, so
compile times are cold compiles.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

import common  # bench/common.py (this script runs as bench/reference_compare.py)
import full_model_bench
import jax
import jax.numpy as jnp
from flax import nnx

from head360_jax import assets, compilation_cache, xla_options
from head360_jax.models import stylegan
from head360_jax.rendering import hexplane_views, ray_sampling
from head360_jax.rendering import render as render_lib
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = 'bench/reference_cpu.json'
COMPONENTS = (
  'texture',
  'static',
  'mouth',
  'blending',
  'raster_glue',
  'renderer',
  'superres',
  'discriminator',
  'generator',
)
PHASES = ('g_main', 'd_main', 'g_reg', 'd_reg')
REFERENCE_IMAGES_SEEN = 1_000_000  # the reference's phases run at cur_nimg = 1e6


def _reference() -> dict:
  """The PyTorch timings, ``../shared/bench/reference_cpu.json`` (beside the shared data folder)."""
  path = pathlib.Path(assets.shared_data_dir()).parent / REFERENCE
  with open(path) as f:
    return json.load(f)


def _vmhwm() -> int:
  """Peak resident set of this process (bytes), from /proc (VmHWM); ru_maxrss elsewhere."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass

  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_vmhwm() -> bool:
  """Resets this process's peak resident set to its current one (Linux ``clear_refs`` 5); False if unsupported."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
  except OSError:
    return False
  return True


# ----------------------------------------------------------------------------------------------------------------------
# Worker side: one row in this process.


def _time(compiled, args, repeats: int, carry_state: bool = False) -> tuple[float, list[float]]:
  """(warm-up seconds, timed seconds): one call, then ``repeats`` calls; phases thread their donated state."""

  def call(args):
    out = compiled(*args)
    jax.block_until_ready(out)
    return (out[0], *args[1:]) if carry_state else args

  start = time.perf_counter()
  args = call(args)
  warm = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    args = call(args)
    times.append(time.perf_counter() - start)
  return warm, times


def _component_fns(name: str, networks, batch: dict):
  """``(fwd(params, *inputs), params, inputs, grad_inputs)`` of one component at batch 1."""

  g, d = networks.generator, networks.discriminator
  cfg = g.config
  key = jax.random.key(0)
  normal = lambda shape, seed: jax.random.normal(jax.random.key(seed), shape, jnp.float32)
  w = normal((1, cfg.w_dim), 1)

  def synthesis(module_name):
    module = getattr(g, module_name)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    ws = stylegan.broadcast(w, module.num_ws)

    def fwd(params, ws):
      return nnx.merge(graphdef, params, rest)(ws, noise_mode='random', key=key)

    return fwd, params, (ws,), True

  def unet(module_name, side):
    module = getattr(g, module_name)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    ws = stylegan.broadcast(w, module.num_ws)
    front = normal((1, side, side, cfg.texture_channels), 2)

    def fwd(params, front, ws):
      return nnx.merge(graphdef, params, rest)(front, ws, noise_mode='random', key=key)

    return fwd, params, (front, ws), True

  if name in ('texture', 'static'):
    return synthesis(f'{name}_synthesis')
  if name == 'mouth':
    return unet('mouth_unet', g.mouth_unet.in_size)
  if name == 'blending':
    return unet('blending_unet', g.blending_unet.in_size)
  if name == 'raster_glue':
    faces, uvs = g.faces[...], g.face_uv_coords[...]
    texture = normal((1, cfg.texture_resolution, cfg.texture_resolution, cfg.texture_channels), 3)

    def fwd(params, vertices, texture):
      hp = hexplane_views.hexplanes(vertices, faces, uvs, texture, resolution=cfg.plane_resolution)
      return hp.planes, hp.alpha

    return fwd, {}, (batch['vertices'][:1], texture), (False, True)
  if name == 'renderer':
    graphdef, params, rest = nnx.split(g.decoder, nnx.Param, ...)
    planes = normal((1, 3, cfg.plane_resolution, cfg.plane_resolution, 2 * cfg.texture_channels), 4)
    camera = batch['camera'][:1, :25]

    def fwd(params, planes, camera):
      r = cfg.neural_rendering_resolution
      origins, directions = ray_sampling.rays_from_camera(camera, r)
      out = render_lib.render_rays(
        nnx.merge(graphdef, params, rest),
        planes,
        origins,
        directions,
        num_coarse=cfg.num_coarse,
        num_fine=cfg.num_fine,
        key=key,
        box_warp=cfg.box_warp,
      )
      return out['features'], out['depth']

    return fwd, params, (planes, camera), (True, False)
  if name == 'superres':
    graphdef, params, rest = nnx.split(g.superres, nnx.Param, ...)
    r = cfg.neural_rendering_resolution
    raw, feats = normal((1, r, r, 3), 5), normal((1, r, r, cfg.feature_channels), 6)
    ws = stylegan.broadcast(w, g.superres.num_ws)

    def fwd(params, raw, feats, ws):
      return nnx.merge(graphdef, params, rest)(raw, feats, ws, noise_mode='random', key=key)

    return fwd, params, (raw, feats, ws), True
  if name == 'discriminator':
    graphdef, params, rest = nnx.split(d, nnx.Param, ...)
    image = jnp.tanh(normal((1, cfg.image_resolution, cfg.image_resolution, 3), 7))
    r = cfg.neural_rendering_resolution
    image_raw = jnp.tanh(normal((1, r, r, 3), 8))
    labels = batch['label'][:1] if 'label' in batch else normal((1, 77), 9)

    def fwd(params, image, image_raw, labels):
      return nnx.merge(graphdef, params, rest)(image, image_raw, labels)

    return fwd, params, (image, image_raw, labels), False
  raise ValueError(f'unknown component {name!r}')


def _run_component(name: str, networks, models, state, batch: dict, repeats: int) -> dict:

  if name == 'generator':
    forward = full_model_bench._forward_fn(models)
    params, rest = state.g_params, models.g_rest
    key = jax.random.key(0)
    fwd = lambda params: forward(params, rest, batch, key)
    args = (params,)
    loss = lambda params: sum(jnp.mean(v) for v in fwd(params).values())
    fwd_bwd = jax.grad(loss)
  else:
    fwd_raw, params, inputs, grad_inputs = _component_fns(name, networks, batch)
    if isinstance(grad_inputs, bool):
      grad_inputs = (grad_inputs,) * len(inputs)
    argnums = (0, *[1 + i for i, g in enumerate(grad_inputs) if g])
    fwd = fwd_raw
    args = (params, *inputs)

    def loss(*args):
      return sum(jnp.mean(leaf.astype(jnp.float32)) for leaf in jax.tree.leaves(fwd_raw(*args)))

    fwd_bwd = jax.grad(loss, argnums=argnums)
  row = {'component': name}
  for mode, fn in (('fwd', fwd), ('fwd_bwd', fwd_bwd)):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    row[f'{mode}_compile_s'] = time.perf_counter() - start
    row[f'{mode}_xla_flops'] = common.cost_flops(compiled)
    warm, times = _time(compiled, args, repeats)
    row[f'{mode}_first_s'], row[f'{mode}_times'] = warm, times
    row[mode] = statistics.median(times)
    print(f'    {name} {mode}: compile {row[f"{mode}_compile_s"]:.1f} s, median {row[mode]:.2f} s', flush=True)
  return row


def _run_phase(name: str, networks_models, config, repeats: int) -> dict:

  _, models, state, batch, mesh = networks_models
  # The reference's conditions: cur_nimg = 1e6 (the blur has faded out, camera swaps at their final rate).
  state = state.replace(step=jnp.asarray(REFERENCE_IMAGES_SEEN // config.train.batch_size, state.step.dtype))
  state = jax.device_put(state, state_lib.state_sharding(state, mesh))
  step = steps_lib.make_steps(models, config=config, mesh=mesh)[name]
  jitted, *rest = step.args
  rng = jax.random.key(0)
  start = time.perf_counter()
  compiled = jitted.lower(state, batch, rng, *rest).compile()
  row = {'phase': name, 'compile_s': time.perf_counter() - start, 'xla_flops': common.cost_flops(compiled)}
  # As the training loop does (loop._compile_ahead): compile, return the compiler's freed heap to
  # the OS, then run. The process peak so far is the compile's; the steps' own peak is read after.
  row['compile_peak_rss'] = _vmhwm()
  xla_options.release_free_heap()
  row['hwm_reset'] = _reset_vmhwm()
  row['xla_memory'] = common.memory_bytes(compiled)
  warm, times = _time(compiled, (state, batch, rng, *rest), repeats, carry_state=True)
  row['first_s'], row['times'], row['seconds'] = warm, times, statistics.median(times)
  print(f'    {name}: compile {row["compile_s"]:.1f} s, median {row["seconds"]:.2f} s', flush=True)
  return row


def worker(args) -> None:
  """Runs one row (``--worker component:NAME`` or ``phase:NAME``) and prints it as JSON on the last line."""

  compilation_cache.enable(args.compilation_cache)
  kind, name = args.worker.split(':')
  config = common.load_config(args.config)
  common.set_precision(config, args.precision)
  config.data.root = args.root
  config.data.resolution = args.data_resolution
  networks, models, state, batch, mesh = full_model_bench.build_for_bench(config, args.root)
  if kind == 'component':
    row = _run_component(name, networks, models, state, batch, args.repeats)
  else:
    # As in train.py, nothing keeps the built modules once the state is split out of them: their
    # own copy of the parameters (0.6 GiB at full size) is not resident while the phase runs.
    del networks
    row = _run_phase(name, (None, models, state, batch, mesh), config, args.repeats)
  row['peak_rss'] = _vmhwm()
  print(json.dumps(row, default=float))


# ----------------------------------------------------------------------------------------------------------------------
# Driver side.


def _fmt(value, digits=2) -> str:
  if value is None:
    return '-'
  if isinstance(value, list):
    return '-'.join(f'{v:.{digits}f}' for v in value)
  return f'{value:.{digits}f}'


def _ratio(ours: float | None, ref) -> str:
  if ours is None or ref is None:
    return '-'
  ref = statistics.mean(ref) if isinstance(ref, list) else ref
  return f'{ours / ref:.2f}x'


def _spawn(row: str, args, root: str) -> dict:
  cmd = [sys.executable, __file__, '--worker', row, '--root', root, '--config', args.config]
  cmd += ['--precision', args.precision, '--repeats', str(args.repeats), '--data-resolution', str(args.data_resolution)]
  if args.compilation_cache:
    cmd.append('--compilation-cache')
  env = dict(os.environ)
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
  if proc.returncode != 0:
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    print(f'  {row}: FAILED (exit {proc.returncode})\n    ' + '\n    '.join(tail), flush=True)
    return {'failed': proc.returncode, 'log_tail': tail}
  for line in proc.stdout.splitlines():
    if line.startswith('    '):
      print(line, flush=True)
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  result['wall_s'] = time.perf_counter() - start
  return result


def _scaled(ref, factor: float | None):
  """A reference figure (a number or a [low, high] range) times ``factor``; None without one."""
  if factor is None or ref is None:
    return None
  return [v * factor for v in ref] if isinstance(ref, list) else ref * factor


def _select(text: str, choices: tuple[str, ...], flag: str) -> list[str]:
  if text == 'all':
    return list(choices)
  if text in ('', 'none'):
    return []
  names = [n.strip() for n in text.split(',') if n.strip()]
  unknown = [n for n in names if n not in choices]
  if unknown:
    raise SystemExit(f'{flag}: unknown {unknown}; choose from {", ".join(choices)}, all or none')
  return names


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--components', default='all', help=f'comma list of {", ".join(COMPONENTS)}; all; none')
  parser.add_argument('--phases', default='all', help=f'comma list of {", ".join(PHASES)}; all; none')
  parser.add_argument('--repeats', type=int, default=3, help='timed calls after one warm-up (median reported)')
  parser.add_argument('--precision', default='float32', help='float32 (the reference conditions), mixed, bfloat16')
  parser.add_argument('--config', default='configs/synhead.py')
  parser.add_argument('--root', help='dataset root (default: a throwaway 2-identity anny dataset at 64²)')
  parser.add_argument('--data-resolution', type=int, default=64)
  parser.add_argument('--json', help='write every number (ours, the reference, ratios) to this file')
  parser.add_argument('--compilation-cache', action='store_true', help='use the persistent XLA cache (warm compiles)')
  parser.add_argument(
    '--torch-calibration',
    help='JSON of bench/torch_calibration.py run on this machine today: adds the reference scaled by its factor',
  )
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(args)
    return

  components = _select(args.components, COMPONENTS, '--components')
  phases = _select(args.phases, PHASES, '--phases')

  reference = _reference()
  config = common.load_config(args.config)
  rank = config.model.z_dim if config.model.get('latent', 'codes') == 'identity_factor' else None
  print(f'{args.config}, batch 1, {args.precision}; median of {args.repeats} after 1 warm-up; one process per row')
  print(f'reference: {REFERENCE} (torch 2.13 CPU, 2 threads)', flush=True)
  report = {'config': args.config, 'precision': args.precision, 'repeats': args.repeats, 'components': {}, 'phases': {}}
  with common.dataset_root(args.root, resolution=args.data_resolution, rank=rank) as root:
    for name in components:
      print(f'-- component {name}', flush=True)
      report['components'][name] = _spawn(f'component:{name}', args, root)
    for name in phases:
      print(f'-- phase {name}', flush=True)
      report['phases'][name] = _spawn(f'phase:{name}', args, root)

  factor = None
  if args.torch_calibration:
    with open(args.torch_calibration) as f:
      calibration = json.load(f)
    factor = calibration['factor']
    report['torch_calibration'] = calibration
    print(f'\ntorch today = reference x {factor:.3f} (bench/torch_calibration.py: the texture row re-timed today)')
  scaled_header = ['torch today', 'ratio today'] if factor is not None else []

  if components:
    rows = []
    for name, ours in report['components'].items():
      ref = reference['components'][name]
      for mode in ('fwd', 'fwd_bwd'):
        ours[f'{mode}_ratio'] = _ratio(ours.get(mode), ref.get(mode))
      today = _scaled(ref.get('fwd_bwd'), factor)
      if factor is not None:
        ours['fwd_bwd_ratio_today'] = _ratio(ours.get('fwd_bwd'), today)
      rows.append(
        [
          name,
          _fmt(ours.get('fwd')),
          _fmt(ref.get('fwd')),
          ours['fwd_ratio'],
          _fmt(ours.get('fwd_bwd')),
          _fmt(ref.get('fwd_bwd')),
          ours['fwd_bwd_ratio'],
          *([_fmt(today), ours['fwd_bwd_ratio_today']] if factor is not None else []),
          _fmt(ours.get('fwd_bwd_compile_s'), 1),
          _fmt((ours.get('peak_rss') or 0) / 2**30),
        ]
      )
    print('\n== Components (seconds; ratio = ours / torch) ==')
    header = ['component', 'fwd', 'torch', 'ratio', 'fwd+bwd', 'torch', 'ratio', *scaled_header]
    header += ['compile fwd+bwd', 'peak GiB']
    print(common.table(header, rows))
  if phases:
    rows = []
    for name, ours in report['phases'].items():
      ref = reference['phases'][name]
      ours['ratio'] = _ratio(ours.get('seconds'), ref.get('seconds'))
      today = _scaled(ref.get('seconds'), factor)
      if factor is not None:
        ours['ratio_today'] = _ratio(ours.get('seconds'), today)
      peak = ours.get('peak_rss')
      rows.append(
        [
          name,
          _fmt(ours.get('seconds')),
          _fmt(ref.get('seconds')),
          ours['ratio'],
          *([_fmt(today), ours['ratio_today']] if factor is not None else []),
          _fmt(ours.get('compile_s'), 1),
          _fmt(ours.get('compile_peak_rss') and ours['compile_peak_rss'] / 2**30),
          _fmt(None if peak is None else peak / 2**30),
          _fmt(ref.get('peak_rss_gb') and ref['peak_rss_gb'] * 1e9 / 2**30),
        ]
      )
    print('\n== Training phases (seconds; ratio = ours / torch) ==')
    header = ['phase', 'ours', 'torch', 'ratio', *scaled_header, 'compile', 'compile peak GiB', 'peak GiB']
    print(common.table([*header, 'torch peak GiB'], rows))
    print('  * compile peak: the process after compiling; peak: while the steps run, after the compiler')
    print("    heap's free pages went back to the OS (xla_options.release_free_heap, as train.py does).")
    print('  * ours include the Adam update (the reference excludes it: 0.38 s for G).')
  report['reference'] = reference
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=1, default=str)
    print(f'wrote {args.json}')


if __name__ == '__main__':
  main()
