"""Stages 2 and 3 at toy size: stage 2 from stage 1, bald and swapped renders, the hair protocol, the RefineNet."""

import jax
import numpy as np
import pytest
import toy_run
from flax import nnx

from configs import refine as refine_config
from configs import stage2
from head360_jax import checkpoint, evaluate, hair_eval, inference, parallel
from head360_jax.training import loop, refine_loop
from head360_jax.training import state as state_lib
from head360_jax.training.build import build_models

pytestmark = pytest.mark.slow  # minutes on 2 cores: started first (tests/conftest.py)

RES = toy_run.RES


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp('anny32')
  # identity 0 with identity 1's hair, for the hair protocol
  toy_run.build(root, swap_pairs=1)
  return root


_config = toy_run.config


def test_stage2_starts_from_stage1_resumes_itself_and_renders_bald(dataset, tmp_path):
  stage1_dir, stage2_dir = tmp_path / 'stage1', tmp_path / 'stage2'
  stage1 = _config(dataset, 1)
  stage1.train.seed = 1  # weights unlike a fresh seed-0 state, so the start is visibly stage 1's
  checkpoint.write_config(stage1_dir, stage1)
  with checkpoint.Checkpointer(stage1_dir) as checkpointer:  # a finished "run" without compiling its steps
    checkpointer.save(0, state_lib.create(stage1, build_models(stage1))[1], wait=True)

  config = stage2.stage2(_config(dataset, 1))
  # L1 only and no evaluation during training: fewer programs to compile; this part is about the start and resume
  config.train.update(init_from=str(stage1_dir), eval_every=0, gan_weight=0.0, density_reg=0.0)
  # the start: stage 1's weights, a fresh step counter and optimiser
  models, fresh = state_lib.create(config, build_models(config))
  mesh = parallel.make_mesh(None)
  started = loop.initialize_from(fresh, state_lib.abstract_state(fresh, mesh), stage1_dir, config)
  stage1_g_ema = checkpoint.restore_generator_ema(stage1_dir, build_models)[0]
  expected = jax.tree.leaves(nnx.to_pure_dict(nnx.state(stage1_g_ema, nnx.Param)))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(started.g_ema), expected, strict=True))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), started.g_params, fresh.g_params)
  assert int(started.step) == 0 and any(jax.tree.leaves(changed))
  assert jax.tree.all(jax.tree.map(np.array_equal, started.g_opt_state, fresh.g_opt_state))

  first = loop.train_and_evaluate(config, stage2_dir, build_models=build_models)
  assert max(first) == 1 and all(np.isfinite(v) for m in first.values() for v in m.values())
  assert first[1]['g/loss_alpha'] > 0  # stage 2 trains the opacity term (configs/stage2.py)
  config.train.steps = 2
  assert min(loop.train_and_evaluate(config, stage2_dir, build_models=build_models)) == 2  # resumed stage 2

  renderer = inference.HeadRenderer(stage2_dir)
  s, t, h = renderer.identity(0)
  labels = inference.orbit_labels(1)
  haired = renderer.render(s, t, h, np.zeros(52, np.float32), labels)
  bald = renderer.render(s, t, h, np.zeros(52, np.float32), labels, bald=True)
  assert np.isfinite(bald).all() and np.abs(haired - bald).max() > 0  # the hair planes are added only with hair

  result = hair_eval.evaluate_hair(stage2_dir, build_models)
  summary = result['summary']
  assert summary['hair_swap/count'] == 2 and summary['bald/count'] == 2  # view 30 x 2 expressions of identity 0
  assert all(0 <= summary[f'{name}/hair_alpha'] <= 1 for name in ('hair_swap', 'bald', 'haired'))
  assert np.isfinite([summary['hair_swap/image/psnr'], summary['bald/image/ssim']]).all()
  assert (result['outputs'] / 'hair_swap.png').is_file() and len(result['rows']) == 4

  # Stage 3: a RefineNet on the stage-2 run's renders, resumed, applied by the renderer and evaluate.
  config = refine_config.refine(_config(dataset, 2), steps=2, ngf=8, n_downsampling=2, n_blocks=1, ndf=8)
  config.train.update(init_from=str(stage2_dir), checkpoint_every=1)
  config.refine.vgg_loss = False  # its backward pass doubles the compile time; refine_test checks the VGG loss
  assert sorted(refine_loop.train_refine(config, tmp_path / 'refine', build_models=build_models)) == [1, 2]
  config.train.steps = 3
  assert sorted(refine_loop.train_refine(config, tmp_path / 'refine', build_models=build_models)) == [3]
  refined = inference.HeadRenderer(tmp_path / 'refine').render(s, t, h, np.zeros(52, np.float32), labels)
  plain = inference.HeadRenderer(tmp_path / 'refine', refine=False).render(s, t, h, np.zeros(52, np.float32), labels)
  np.testing.assert_array_equal(plain, haired)  # without the RefineNet: the base run's own image
  assert refined.shape == plain.shape and np.abs(refined - plain).max() > 1e-3 and np.abs(refined).max() <= 1
  result = evaluate.evaluate_run(tmp_path / 'refine', build_models, nets=('alex',), write=False)
  runs = [row.split(' | ')[0] for row in result['rows']][::2]  # one row per region
  assert runs == ['| stage2 (no refine)', '| refine (full, RefineNet step 3)']
  assert result['trained'] != result['step0']

  with pytest.raises(loop.InitFromError, match='no config.json'):
    config.train.init_from = str(tmp_path / 'missing')
    loop.train_and_evaluate(config, tmp_path / 'other', build_models=build_models)
  other = stage2.stage2(_config(dataset, 1))
  other.model.plane_resolution = 16
  other.train.init_from = str(stage1_dir)
  with pytest.raises(loop.InitFromError, match='plane_resolution: 32 there vs 16 here'):
    loop.train_and_evaluate(other, tmp_path / 'third', build_models=build_models)
