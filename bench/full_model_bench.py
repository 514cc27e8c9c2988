"""Benchmark: the Head360 generator and discriminator at the paper's size vs reference-spec §7 (CPU or GPU).

Usage::

  .venv/bin/python bench/full_model_bench.py [--config configs/synhead.py] [--tiny-config configs/tiny.py]
      [--skip-train] [--skip-components] [--skip-forward] [--precision float32] [--json PATH] [--root DATASET]
      [--repeats 1]

Prints, for ``--config`` (the reference sizes):

1. parameters per component vs the analytic counts of reference-spec §7, with the % difference
   (models built abstractly with ``nnx.eval_shape``: no weights are allocated);
2. FLOPs of one batch-1 generator forward from XLA's cost analysis (``compiled.cost_analysis()``),
   in total and per component, vs the analytic 0.71 TFLOP, with the known differences;
3. time and peak memory of that forward, and of the same forward at ``--tiny-config`` in the
   same run (growth with resolution);
4. unless ``--skip-train``: compile time, XLA FLOPs and memory, run time and peak memory of
   each of the four training phases (g_main, d_main, g_reg, d_reg) at batch 1, with the
   generator ``--config`` builds (``configs/synhead.py``: mouth and blending StyleUNets on; the
   section names the StyleUNets it trains). A phase whose XLA buffers would not fit in the
   memory available now is skipped with a message.

``--precision`` sets the precision fields of both configs (``common.PRECISIONS``: float32,
mixed = the reference's bfloat16 SR and discriminator top resolutions, bfloat16 = every
convolution); the default ``config`` keeps each config's own (synhead: mixed). ``--skip-forward``
skips sections 2-3 (the full-size networks are then built only for the training phases).

Without ``--root`` a 2-identity x 1-expression dataset is built at 64² in a temporary folder
(only the mesh topology and a batch of labels are needed; images are resized to the model's
output resolution); with ``model.latent = 'identity_factor'`` (synhead) its bilinear model is
built from ``z_dim`` (50) identities, so its rank matches. Peak memory is the process's resident
set sampled every 10 ms, minus what it was before the measured step ("+RSS"), beside XLA's own
buffer sizes.
"""

import argparse
import json
import math
import resource
import time

import common  # bench/common.py
import jax
import jax.numpy as jnp
import numpy as np
import psutil
from flax import nnx

from head360_jax import parallel
from head360_jax.data import pipeline, sources
from head360_jax.models import layers, stylegan
from head360_jax.rendering import hexplane_views, ray_sampling
from head360_jax.rendering import render as render_lib
from head360_jax.training import build
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib

# Reference-spec §7 (analytic, forward of one 512² image): (label, params M, fwd GFLOPs).
SPEC = {
  'main_mapping': ('main mapping (z 50 + c 25 -> 512)', 0.32, 0.0),
  'sr_mapping': ('SR mapping (z_noise 512 + c -> 512)', 0.80, 0.0),
  'texture': ('texture StyleGAN2 (256², 32 ch)', 28.0, 92.0),
  'static': ('static-plane StyleGAN2 (256², 192 ch)', 28.5, 97.0),
  'mouth': ('mouth StyleUNet', 60.6, 137.0),
  'blending': ('neural-blending StyleUNet', 8.8, 176.0),
  'lookup': ('tri-plane lookup', 0.0, 0.6),
  'decoder': ('decoder 64->64->65', 0.008, 6.5),
  'superres': ('super-resolution 8XDC', 1.74, 200.0),
  'g_total': ('generator total (used)', 128.7, 709.0),
  'd_trunk': ('D trunk + epilogue (6 ch, 512²)', 29.3, 123.0),
  'd_camera': ('D camera mapping (25 -> 512, 8 FC)', 2.12, 0.0),
  'd_expression': ('D expression mapping (52 -> 32, 8 FC)', 0.01, 0.0),
}
SPEC_TRAIN_TFLOP = 4.4  # per training image per iteration, regularisers amortised (§7)
# Generator attributes that may hold the StyleUNets (model.mouth_unet / model.blending_unet).
UNET_ATTRS = {
  'mouth': ('mouth_unet', 'mouth', 'mouth_net', 'mouth_backbone'),
  'blending': ('blending_unet', 'neural_blending', 'blending', 'blending_net'),
}
UNET_FLAGS = {'mouth': 'mouth_unet', 'blending': 'blending_unet'}
KNOWN_G_ATTRS = {'main_mapping', 'texture_mapping', 'hair_mapping', 'sr_mapping', 'texture_synthesis'}
KNOWN_G_ATTRS |= {'static_synthesis', 'decoder'}
KNOWN_G_ATTRS |= {'superres'} | {name for names in UNET_ATTRS.values() for name in names}


def _pct(ours: float | None, ref: float | None) -> str:
  if ours is None or not ref:
    return '-'
  return f'{100 * (ours - ref) / ref:+.1f} %'


def _child_modules(module: nnx.Module) -> dict[str, nnx.Module]:
  return {name: value for name, value in vars(module).items() if isinstance(value, nnx.Module)}


def _unet(generator: nnx.Module, kind: str) -> tuple[str | None, nnx.Module | None]:
  for name in UNET_ATTRS[kind]:
    value = getattr(generator, name, None)
    if isinstance(value, nnx.Module):
      return name, value
  return None, None


def _abstract_networks(config) -> tuple[nnx.Module, nnx.Module]:
  """(generator, discriminator) of ``build_models(config)`` with abstract (shape-only) parameters."""

  def networks():  # not named ``build``: that is the module
    built = build.build_models(config)
    return built.generator, built.discriminator

  return nnx.eval_shape(networks)


# ----------------------------------------------------------------------------------------------------------------------
# 1. Parameters


def parameter_rows(config, g: nnx.Module, d: nnx.Module) -> tuple[list[dict], list[str]]:
  """Per-component parameter counts vs the spec; returns (rows, notes)."""
  count = layers.parameter_count
  rows, notes = [], []

  def add(key, ours, detail=''):
    label, spec_m, _ = SPEC[key]
    rows.append({'key': key, 'component': label, 'ours': ours, 'spec_m': spec_m, 'detail': detail})

  shared = getattr(g, 'main_mapping', None)
  if shared is not None:  # model.latent 'identity_factor': one network for both branches, counted once
    main = count(shared)
    add('main_mapping', main, f'g.main_mapping, shared by texture and hair (z_dim {config.model.z_dim})')
  else:
    tex, hair = count(g.texture_mapping), count(g.hair_mapping)
    main = tex + hair
    add('main_mapping', main, f'texture {tex / 1e6:.3f} M + hair {hair / 1e6:.3f} M')
  add('sr_mapping', count(g.sr_mapping))
  add('texture', count(g.texture_synthesis))
  add('static', count(g.static_synthesis))
  for kind in ('mouth', 'blending'):
    name, module = _unet(g, kind)
    flag = UNET_FLAGS[kind]
    if module is not None:
      add(kind, count(module), f'g.{name}')
    elif flag in config.model and not config.model[flag]:
      add(kind, None, f'not built (model.{flag} = False)')
    else:
      add(kind, None, 'not built (not in models/generator.py yet)')
  add('decoder', count(g.decoder))
  add('superres', count(g.superres))
  others = {n: count(m) for n, m in _child_modules(g).items() if n not in KNOWN_G_ATTRS}
  others = {n: c for n, c in others.items() if c}
  if others:
    listed = ', '.join(f'{n} {c:,d}' for n, c in others.items())
    notes.append(f'G parameters in modules not matched to a spec row: {listed}')
  add('g_total', count(g), 'all Params of Head360Generator')
  missing = [k for k in ('mouth', 'blending') if _unet(g, k)[1] is None]
  spec_built = round(SPEC['g_total'][1] - sum(SPEC[k][1] for k in missing), 3)
  if missing:
    rows.append(
      {
        'key': 'g_total_built',
        'component': 'generator total without ' + ' + '.join(missing) + ' UNet',
        'ours': count(g),
        'spec_m': spec_built,
        'detail': 'spec total minus the rows not built',
      }
    )
  trunk = sum(count(getattr(d, f'b{r}')) for r in d.block_resolutions) + count(d.b4)
  add('d_trunk', trunk, f'b{d.block_resolutions[0]}..b8 + b4')
  add('d_camera', count(d.mapping))
  add('d_expression', count(d.mapping2))

  # The reference's single main mapping, built with our layers at its sizes (z 50, embed 50).
  ref_mapping = nnx.eval_shape(
    lambda: stylegan.MappingNetwork(50, config.model.c_dim, config.model.w_dim, num_layers=2, rngs=nnx.Rngs(0))
  )
  z_dim = config.model.z_dim
  if shared is not None:
    notes.append(
      f"main mapping: model.latent = 'identity_factor', as the reference: ONE mapping of the identity's "
      f'bilinear factor row (z_dim {z_dim}; camera embedding 25->{z_dim}; FC {2 * z_dim}->512->512) whose w '
      f'drives the texture, the static/hair planes and the StyleUNets (a hairstyle swap maps another '
      f"identity's row). Our MappingNetwork at the reference sizes has {count(ref_mapping) / 1e6:.4f} M "
      f'parameters (spec 0.32 M, rounded).'
    )
  else:
    notes.append(
      f"main mapping: model.latent = 'codes': two mappings (texture code t and hair code h, z_dim {z_dim} each, "
      f'camera embedding 25->{z_dim}, FC {2 * z_dim}->512->512) where Head360 has ONE mapping of the identity '
      f'factor (z_dim 50; camera embedding 25->50; FC 100->512->512; configs/synhead.py sets latent '
      f"'identity_factor'); hence {main / count(ref_mapping):.1f}x the reference mapping. Our MappingNetwork "
      f'built at the reference sizes has {count(ref_mapping) / 1e6:.4f} M parameters (spec 0.32 M).'
    )
    single = count(g) - main + count(ref_mapping)
    notes.append(
      f"G total with the reference's single z_dim-50 mapping instead of our two: {single / 1e6:.3f} M "
      f'(vs {spec_built:g} M for the same rows of the spec; {_pct(single / 1e6, spec_built)}).'
    )
  notes.append(
    'Spec figures are rounded to the digits shown, so tiny rows carry rounding: the reference decoder '
    '(FC 64->64 + FC 64->65, with biases) has exactly 8,385 parameters, the spec prints 0.008 M.'
  )
  notes.append(
    'Not created, as in the spec\'s "used" totals: the reference\'s unused weights (3 mappings, '
    'backbone_sr.synthesis, skipped UNet blocks/fusions; ~62.4 M of its 191 M).'
  )
  return rows, notes


# ----------------------------------------------------------------------------------------------------------------------
# 2-3. Generator forward


def _forward_fn(models: state_lib.Models):
  """``forward(g_params, g_rest, batch, key)``: the sampler's computation (mapping + G, no pose swap)."""

  def forward(g_params, g_rest, batch, key):
    k_swap, k_gen = jax.random.split(key)
    inputs = steps_lib.generator_inputs(models, batch, k_swap, 0.0)
    return models.render(models.generator(g_params, g_rest), inputs, k_gen)

  return forward


def _batch(config, root: str, batch_size: int, mesh) -> dict:
  source = sources.SynHeadSource(root, config.data.resolution)
  dataset = pipeline.make_dataset(
    source, batch_size=batch_size, seed=0, num_threads=0, resolution=config.model.output_resolution
  )
  return pipeline.make_global_batch(next(iter(dataset)), mesh)


def build_for_bench(config, root: str) -> tuple:
  """``(networks, models, state, batch, mesh)`` at batch 1: what ``forward_bench`` and ``train_bench`` run."""
  config.train.batch_size = 1
  mesh = parallel.make_mesh(1)
  networks = build.build_models(config)
  models, state = state_lib.create(config, networks)
  return networks, models, state, _batch(config, root, 1, mesh), mesh


def forward_bench(config, root: str, repeats: int, label: str) -> tuple[dict, tuple]:
  """Builds the networks, compiles and times one batch-1 forward; returns (numbers, (networks, models, batch))."""
  config.train.batch_size = 1
  mesh = parallel.make_mesh(1)
  with common.PeakRSS() as build_mem:
    networks = build.build_models(config)
    models, state = state_lib.create(config, networks)
  batch = _batch(config, root, 1, mesh)
  forward = _forward_fn(models)
  key = jax.random.key(0)
  with common.PeakRSS() as compile_mem:
    compiled = jax.jit(forward).lower(state.g_params, models.g_rest, batch, key).compile()
  with common.PeakRSS() as run_mem:
    first, median = common.time_fn(lambda: compiled(state.g_params, models.g_rest, batch, key)['image'], repeats)
  out = compiled(state.g_params, models.g_rest, batch, key)
  finite = bool(all(np.isfinite(np.asarray(v)).all() for v in out.values()))
  numbers = {
    'config': label,
    'output_resolution': config.model.output_resolution,
    'neural_resolution': config.model.neural_resolution,
    'g_parameters': layers.parameter_count(networks.generator),
    'build_s': build_mem.seconds,
    'compile_s': compile_mem.seconds,
    'compile_peak_rss_delta': compile_mem.delta,
    'first_call_s': first,
    'median_s': median,
    'repeats': repeats,
    'run_peak_rss_delta': run_mem.delta,
    'run_peak_rss': run_mem.peak,
    'xla_flops': common.cost_flops(compiled),
    'xla_memory': common.memory_bytes(compiled),
    'outputs_finite': finite,
    'output_shapes': {k: list(v.shape) for k, v in out.items()},
  }
  return numbers, (networks, models, state, batch, mesh)


def component_flops(generator: nnx.Module, batch: dict) -> list[dict]:
  """XLA FLOPs of each generator stage at batch 1, each compiled alone (abstract lowering, deterministic noise)."""
  graphdef, gstate = nnx.split(generator)
  cfg = generator.config
  b = 1
  w = jax.ShapeDtypeStruct((b, cfg.w_dim), jnp.float32)
  texture = jax.ShapeDtypeStruct((b, cfg.texture_resolution, cfg.texture_resolution, cfg.texture_channels), jnp.float32)
  planes = jax.ShapeDtypeStruct(
    (b, 3, cfg.plane_resolution, cfg.plane_resolution, 2 * cfg.texture_channels), jnp.float32
  )
  r = cfg.neural_rendering_resolution
  raw = jax.ShapeDtypeStruct((b, r, r, 3), jnp.float32)
  feats = jax.ShapeDtypeStruct((b, r, r, cfg.feature_channels), jnp.float32)
  camera = batch['camera'][:b]
  vertices = batch['vertices'][:b]
  z = jax.ShapeDtypeStruct((b, cfg.z_dim), jnp.float32)
  zn = jax.ShapeDtypeStruct((b, cfg.sr_noise_dim), jnp.float32)

  def mapping(s, t, h, c, zn):
    return nnx.merge(graphdef, s).mapping(t, h, c, zn)

  def texture_fn(s, w):
    g = nnx.merge(graphdef, s)
    return g.texture_synthesis(stylegan.broadcast(w, g.texture_synthesis.num_ws), noise_mode='const')

  def static_fn(s, w):
    g = nnx.merge(graphdef, s)
    return g.static_synthesis(stylegan.broadcast(w, g.static_synthesis.num_ws), noise_mode='const')

  def raster_fn(s, vertices, texture):
    g = nnx.merge(graphdef, s)
    faces, uvs = g.faces[...], g.face_uv_coords[...]
    hp = hexplane_views.hexplanes(vertices, faces, uvs, texture, resolution=cfg.plane_resolution)
    return hp.planes, hp.alpha

  def render_fn(s, planes, camera):
    g = nnx.merge(graphdef, s)
    origins, directions = ray_sampling.rays_from_camera(camera[..., :25], r)
    return render_lib.render_rays(
      g.decoder, planes, origins, directions, num_coarse=cfg.num_coarse, num_fine=cfg.num_fine, box_warp=cfg.box_warp
    )

  def sr_fn(s, raw, feats, w):
    g = nnx.merge(graphdef, s)
    return g.superres(raw, feats, stylegan.broadcast(w, g.superres.num_ws))

  def unet_fn(name):
    def fn(s, front, w):
      unet = getattr(nnx.merge(graphdef, s), name)
      return unet(front, stylegan.broadcast(w, unet.num_ws), noise_mode='const')

    return fn

  unet_stages = []
  for kind, label in (('mouth', 'mouth StyleUNet (crop -> 256²)'), ('blending', 'neural-blending StyleUNet')):
    name, unet = _unet(generator, kind)
    if unet is not None:
      side = unet.in_size
      front = jax.ShapeDtypeStruct((b, side, side, cfg.texture_channels), jnp.float32)
      unet_stages.append((f'{label}, {side}² input', (kind,), unet_fn(name), (front, w)))
  stages = [
    ('mappings (texture + hair + SR)', ('main_mapping', 'sr_mapping'), mapping, (z, z, camera, zn)),
    ('texture StyleGAN2', ('texture',), texture_fn, (w,)),
    ('static-plane StyleGAN2', ('static',), static_fn, (w,)),
    ('six hex-plane rasterisations + texture sampling', (), raster_fn, (vertices, texture)),
    (
      f'rays + plane lookup + decoder + marcher ({r}² x {cfg.num_coarse}+{cfg.num_fine})',
      ('lookup', 'decoder'),
      render_fn,
      (planes, camera),
    ),
    *unet_stages,
    ('super-resolution', ('superres',), sr_fn, (raw, feats, w)),
  ]
  rows = []
  for label, spec_keys, fn, args in stages:
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(gstate, *args).compile()
    rows.append(
      {
        'component': label,
        'xla_gflops': (common.cost_flops(compiled) or 0.0) / 1e9,
        'spec_gflops': sum(SPEC[k][2] for k in spec_keys) if spec_keys else None,
        'compile_s': time.perf_counter() - start,
      }
    )
  return rows


# ----------------------------------------------------------------------------------------------------------------------
# 4. Training iteration


def train_bench(config, networks_models) -> list[dict]:
  """Compiles and runs each phase once at batch 1 (skipping any whose XLA buffers exceed the free memory)."""
  networks, models, state, batch, mesh = networks_models
  unets = [name for name in ('mouth_unet', 'blending_unet') if getattr(networks.generator, name, None) is not None]
  print(f'  generator trained with StyleUNets: {", ".join(unets) or "none"}', flush=True)
  state = jax.device_put(state, state_lib.state_sharding(state, mesh))
  step_fns = steps_lib.make_steps(models, config=config, mesh=mesh)
  rng = jax.random.key(0)
  rows = []
  for phase in ('g_main', 'd_main', 'g_reg', 'd_reg'):
    # make_steps returns partial(_bind_rest, jitted, g_rest, d_rest, lpips_params): compile ahead of
    # time to read XLA's memory needs before running.
    jitted, *rest = step_fns[phase].args
    row = {'phase': phase}
    with common.PeakRSS() as compile_mem:
      compiled = jitted.lower(state, batch, rng, *rest).compile()
    row['compile_s'] = compile_mem.seconds
    row['compile_peak_rss_delta'] = compile_mem.delta
    row['xla_flops'] = common.cost_flops(compiled)
    row['xla_memory'] = memory = common.memory_bytes(compiled)
    available = psutil.virtual_memory().available
    row['available_before'] = available
    if memory is not None and memory['temp'] + memory['outputs'] > 0.9 * available:
      row['skipped'] = (
        f'needs {common.gib(memory["temp"] + memory["outputs"])} of new buffers, '
        f'{common.gib(available)} available: not run'
      )
      print(f'  {phase}: {row["skipped"]}', flush=True)
      rows.append(row)
      continue
    with common.PeakRSS() as run_mem:
      start = time.perf_counter()
      state, metrics = compiled(state, batch, rng, *rest)
      jax.block_until_ready((state, metrics))
      row['run_s'] = time.perf_counter() - start
    row['run_peak_rss_delta'] = run_mem.delta
    row['run_peak_rss'] = run_mem.peak
    row['metrics_finite'] = bool(all(np.isfinite(np.asarray(v)).all() for v in metrics.values()))
    print(
      f'  {phase}: compile {row["compile_s"]:.1f} s, run {row["run_s"]:.1f} s, '
      f'+RSS {common.gib(run_mem.delta)} (peak {common.gib(run_mem.peak)}), '
      f'XLA {(row["xla_flops"] or 0) / 1e12:.3f} TFLOP',
      flush=True,
    )
    rows.append(row)
  return rows


# ----------------------------------------------------------------------------------------------------------------------


def _print_parameters(rows, notes, label: str) -> None:
  print(f'\n== 1. Parameters per component ({label}) vs reference-spec §7 ==')
  table = []
  for row in rows:
    ours = row['ours']
    table.append(
      [
        row['component'],
        'not built' if ours is None else f'{ours / 1e6:.3f}',
        f'{row["spec_m"]:g}',
        _pct(None if ours is None else ours / 1e6, row['spec_m']),
        row['detail'],
      ]
    )
  print(common.table(['component', 'ours (M)', 'spec (M)', 'diff', 'note'], table))
  for note in notes:
    print(f'  * {note}')


def _print_flops(full: dict, components: list[dict] | None, unets_built: bool) -> None:
  print('\n== 2. XLA cost analysis, one generator forward, batch 1 ==')
  total = (full['xla_flops'] or 0) / 1e9
  table = []
  if components:
    for row in components:
      spec = row['spec_gflops']
      spec_text = '-' if spec is None else f'{spec:g}'
      table.append([row['component'], f'{row["xla_gflops"]:.1f}', spec_text, _pct(row['xla_gflops'], spec)])
    listed = sum(row['xla_gflops'] for row in components)
    table.append(['remainder (whole forward - stages above)', f'{total - listed:.1f}', '', ''])
  if not unets_built:
    table.append(['mouth + blending StyleUNets', 'not built', f'{SPEC["mouth"][2] + SPEC["blending"][2]:g}', ''])
    spec_wo = SPEC['g_total'][2] - SPEC['mouth'][2] - SPEC['blending'][2]
    table.append(['whole forward vs spec without the UNets', f'{total:.1f}', f'{spec_wo:g}', _pct(total, spec_wo)])
  table.append(['whole forward (one jit)', f'{total:.1f}', f'{SPEC["g_total"][2]:g}', _pct(total, SPEC['g_total'][2])])
  print(common.table(['stage', 'XLA GFLOP', 'spec GFLOP', 'diff'], table))
  print(
    '  * XLA counts 2 FLOPs per multiply-add of convolutions and dots (as the spec) plus 1 per element of every\n'
    '    elementwise op, reduction and resize, which the spec ignores (activations, demodulation, noise, FIR\n'
    '    filters, bilinear lookups); the spec counts only convs and FCs.\n'
    '  * lax.while_loop / fori_loop bodies are counted ONCE, whatever the trip count (checked on jax '
    f'{jax.__version__}:\n'
    '    a 10-step fori_loop of a matmul reports the FLOPs of one matmul). The hard rasteriser (tiled job list)\n'
    '    and the hex-plane hole fill (flood fill to convergence) are while loops, so the rasterisation row is a\n'
    '    lower bound; the spec ignores rasterisation entirely (its cost is memory traffic, not FLOPs).\n'
    '  * The per-stage rows isolate these effects: conv-dominated stages (StyleGAN2, SR) should agree with the\n'
    '    spec within a few % (the spec adds a 16-tap FIR per up-sampling conv; XLA adds elementwise ops); the\n'
    '    render stage is elementwise-heavy (ray sampling, bilinear weights, softplus/sigmoid, compositing over\n'
    "    64² x 96 samples), so XLA counts more there than the spec's FC-only figure."
  )


def _print_forward(fwd: list[dict]) -> None:
  print('\n== 3. Generator forward (mapping + G), batch 1, time and memory, same run ==')
  table = []
  for row in fwd:
    mem = row['xla_memory'] or {}
    table.append(
      [
        row['config'],
        f'{row["output_resolution"]}² / {row["neural_resolution"]}²',
        f'{row["g_parameters"] / 1e6:.2f} M',
        f'{(row["xla_flops"] or 0) / 1e9:.1f}',
        f'{row["compile_s"]:.1f} s',
        f'{1000 * row["median_s"]:.0f} ms',
        common.gib(row['run_peak_rss_delta']),
        common.gib(mem.get('temp')),
        'yes' if row['outputs_finite'] else 'NO',
      ]
    )
  print(
    common.table(
      ['config', 'out / raw', 'G params', 'XLA GFLOP', 'compile', 'forward', '+RSS run', 'XLA temp', 'finite'], table
    )
  )
  if len(fwd) == 2 and fwd[0]['median_s'] > 0:
    tiny, full = fwd
    print(
      f'  * full / tiny: time x{full["median_s"] / tiny["median_s"]:.0f}, '
      f'FLOPs x{(full["xla_flops"] or 0) / max(tiny["xla_flops"] or 1, 1):.0f}, '
      f'output pixels x{(full["output_resolution"] / tiny["output_resolution"]) ** 2:.0f}; '
      f'full size runs at {(full["xla_flops"] or 0) / full["median_s"] / 1e9:.1f} GFLOP/s '
      f'({psutil.cpu_count()} CPU threads visible to this process: {len(psutil.Process().cpu_affinity())})'
    )


def _print_train(rows: list[dict], config) -> None:
  unets = [name for name in ('mouth_unet', 'blending_unet') if config.model.get(name, False)]
  precision = {name: config.model.get(name) for name in common.PRECISIONS['float32']}
  print(f'\n== 4. One training iteration at batch 1 (all four phases; StyleUNets: {", ".join(unets) or "none"}) ==')
  print(f'  precision: {precision}')
  table = []
  for row in rows:
    mem = row['xla_memory'] or {}
    table.append(
      [
        row['phase'],
        f'{row["compile_s"]:.1f} s',
        row.get('skipped', f'{row.get("run_s", math.nan):.1f} s'),
        common.gib(row.get('run_peak_rss_delta')),
        common.gib(row.get('run_peak_rss')),
        common.gib(mem.get('temp')),
        f'{(row["xla_flops"] or 0) / 1e12:.3f}',
      ]
    )
  print(common.table(['phase', 'compile', 'run', '+RSS run', 'peak RSS', 'XLA temp', 'XLA TFLOP'], table))
  by = {row['phase']: row for row in rows}
  if all('run_s' in by.get(p, {}) for p in ('g_main', 'd_main', 'g_reg', 'd_reg')):
    train = config.train
    amortise = lambda key: (
      by['g_main'][key]
      + by['d_main'][key]
      + by['g_reg'][key] / train.density_reg_interval
      + by['d_reg'][key] / train.r1_interval
    )
    all4 = sum(by[p]['run_s'] for p in by)
    flops = amortise('xla_flops') / 1e12
    print(
      f'  * all four phases back to back: {all4:.1f} s; regularisers amortised (G reg / '
      f'{train.density_reg_interval}, D reg / {train.r1_interval}): {amortise("run_s"):.1f} s per image-iteration'
    )
    print(
      f'  * XLA FLOPs per image-iteration (amortised): {flops:.2f} TFLOP vs spec ≈{SPEC_TRAIN_TFLOP} TFLOP '
      f'({_pct(flops, SPEC_TRAIN_TFLOP)}; the spec includes the StyleUNets and counts only convs/FCs)'
    )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/synhead.py')
  parser.add_argument('--tiny-config', default='configs/tiny.py')
  parser.add_argument('--root', help='dataset root (default: build a 2-identity one at --data-resolution)')
  parser.add_argument('--data-resolution', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=1, help='timed full-size forwards after the first')
  parser.add_argument('--tiny-repeats', type=int, default=5)
  parser.add_argument('--skip-train', action='store_true', help='skip the full-size training iteration')
  parser.add_argument('--skip-components', action='store_true', help='skip the per-stage FLOP compiles')
  parser.add_argument('--skip-forward', action='store_true', help='skip the forward timings (sections 2-3)')
  parser.add_argument('--precision', default='config', help='float32, mixed, bfloat16 or config (keep the configs)')
  parser.add_argument('--json', help='also write every number to this JSON file')
  args = parser.parse_args()

  if args.precision not in {*common.PRECISIONS, 'config'}:
    parser.error(f'unknown --precision {args.precision!r}')
  config = common.load_config(args.config)
  tiny_config = common.load_config(args.tiny_config)
  for cfg in (config, tiny_config):
    common.set_precision(cfg, args.precision)
  report = {'jax': jax.__version__, 'device': jax.devices()[0].platform, 'config': args.config}
  report['precision'] = {name: config.model[name] for name in common.PRECISIONS['float32']}
  rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  print(
    f'jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s)), '
    f'{psutil.virtual_memory().total / 2**30:.0f} GiB RAM; config {args.config} vs {args.tiny_config}',
    flush=True,
  )
  # 'identity_factor' needs a bilinear model of rank z_dim (build_models checks it).
  rank = config.model.z_dim if config.model.get('latent', 'codes') == 'identity_factor' else None
  with common.dataset_root(args.root, resolution=args.data_resolution, rank=rank) as root:
    for cfg in (config, tiny_config):
      cfg.data.root = root
      cfg.data.resolution = args.data_resolution if args.root is None else cfg.data.resolution

    start = time.perf_counter()
    g_abs, d_abs = _abstract_networks(config)
    rows, notes = parameter_rows(config, g_abs, d_abs)
    report['parameters'] = rows
    report['parameter_notes'] = notes
    _print_parameters(rows, notes, args.config)
    print(f'  (abstract build and count: {time.perf_counter() - start:.1f} s)', flush=True)
    unets_built = any(_unet(g_abs, k)[1] is not None for k in UNET_ATTRS)

    held = None
    if args.skip_forward:
      print('\n== 2-3. Forward timings: skipped (--skip-forward) ==', flush=True)
    else:
      print('\n-- tiny forward ...', flush=True)
      tiny, _ = forward_bench(tiny_config, root, args.tiny_repeats, args.tiny_config)
      print(f'   {1000 * tiny["median_s"]:.1f} ms', flush=True)
      print('-- full-size forward (compiling) ...', flush=True)
      full, held = forward_bench(config, root, args.repeats, args.config)
      print(
        f'   compile {full["compile_s"]:.1f} s, first {full["first_call_s"]:.1f} s, median {full["median_s"]:.1f} s, '
        f'{(full["xla_flops"] or 0) / 1e9:.1f} GFLOP',
        flush=True,
      )
      report['forward'] = [tiny, full]
      components = None
      if not args.skip_components:
        print('-- per-stage FLOPs (compiling each stage) ...', flush=True)
        components = component_flops(held[0].generator, held[3])
        report['forward_components'] = components
      _print_flops(full, components, unets_built)
      _print_forward([tiny, full])

    if args.skip_train:
      print('\n== 4. Training iteration: skipped (--skip-train) ==')
    else:
      print('\n-- training phases at full size, batch 1 (compile + one run each; minutes) ...', flush=True)
      report['train'] = train_rows = train_bench(config, held or build_for_bench(config, root))
      _print_train(train_rows, config)
  report['max_rss_bytes'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  print(f'\nprocess high-water RSS: {common.gib(report["max_rss_bytes"])} (at start {common.gib(rss0 * 1024)})')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=1, default=str)
    print(f'wrote {args.json}')


if __name__ == '__main__':
  main()
