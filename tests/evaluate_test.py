"""Tests of the held-out evaluation helpers (the full CLI path runs in training/end_to_end_test.py)."""

import numpy as np
import pytest

from head360_jax import evaluate

R = 32


def _eval_set(identities, views, expressions):
  n = len(identities)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (n, R, R, 3)).astype(np.float32)
  batches = []
  for start in range(0, n, evaluate.EVAL_BATCH):
    chunk = images[start : start + evaluate.EVAL_BATCH]
    valid = np.arange(evaluate.EVAL_BATCH) < len(chunk)
    chunk = np.concatenate([chunk, np.repeat(chunk[:1], evaluate.EVAL_BATCH - len(chunk), axis=0)])
    batches.append({'image': chunk, 'valid': valid})
  eval_set = evaluate.EvalSet(
    name='novel_view',
    batches=batches,
    identity=np.asarray(identities, np.int32),
    view=np.asarray(views, np.int32),
    expression_name=tuple(expressions),
  )
  return eval_set, images


def test_subset_spreads_evenly():
  np.testing.assert_array_equal(evaluate._subset(10, None), np.arange(10))
  np.testing.assert_array_equal(evaluate._subset(10, 20), np.arange(10))
  np.testing.assert_array_equal(evaluate._subset(9, 3), [0, 4, 8])


def test_comparison_grid_puts_ground_truth_over_renders_in_view_order():
  # identity 1 has records at views 30, 3 (expression a) and 11 (expression b)
  eval_set, images = _eval_set([0, 1, 1, 1, 0], [3, 30, 3, 11, 11], ['a', 'a', 'a', 'b', 'a'])
  renders = -images
  grid = evaluate.comparison_grid(eval_set, renders, 1)
  assert grid.shape == (2 * R, 2 * R, 3) and grid.dtype == np.uint8
  to_uint8 = lambda x: np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8)
  np.testing.assert_array_equal(grid[:R, :R], to_uint8(images[2]))  # view 3 first
  np.testing.assert_array_equal(grid[:R, R:], to_uint8(images[1]))  # then view 30
  np.testing.assert_array_equal(grid[R:, :R], to_uint8(renders[2]))
  with pytest.raises(ValueError, match='identity 7'):
    evaluate.comparison_grid(eval_set, renders, 7)


def test_image_figures_foreground_weights_pixels_by_alpha():
  rng = np.random.default_rng(1)
  render, target = rng.uniform(-1, 1, (2, 2, R, R, 3)).astype(np.float32)
  alpha = np.zeros((2, R, R, 1), np.float32)
  alpha[:, 8:24, 8:24] = 1.0
  figures = evaluate.image_figures(render, target, alpha, {})
  inside = np.abs(render - target)[:, 8:24, 8:24].mean(axis=(1, 2, 3))
  np.testing.assert_allclose(figures['foreground/l1'], inside, rtol=1e-5)
  np.testing.assert_allclose(figures['image/l1'], np.abs(render - target).mean(axis=(1, 2, 3)), rtol=1e-5)
  mse = ((render - target)[:, 8:24, 8:24] ** 2).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(figures['foreground/psnr'], 10 * np.log10(4 / mse), rtol=1e-5)
  identical = evaluate.image_figures(target, target, alpha, {})
  np.testing.assert_allclose(identical['image/ssim'], 1.0, atol=1e-6)


def test_table_rows_one_per_set_and_region():
  summary = {'novel_view/count': 4.0, 'novel_view/image/l1': 0.1, 'novel_view/image/psnr': 21.234}
  summary |= {'novel_view/foreground/l1': 0.2}
  rows = evaluate.table_rows('run', 7, summary)
  assert rows[0] == '| run | 7 | novel_view | image | 4 | 0.1000 | 21.23 | - | - | - |'
  assert rows[1].startswith('| run | 7 | novel_view | foreground | 4 | 0.2000 | - |')
  assert evaluate.TABLE_HEADER.count('|') == 2 * (rows[0].count('|'))


def test_eval_sets_hold_the_requested_views_and_reject_seen_views_that_were_held_out(tmp_path):
  from configs import tiny
  from head360_jax.data import synthetic

  synthetic.write_fake_dataset(tmp_path, resolution=16, views=6)
  config = tiny.get_config()
  config.model.output_resolution = 16
  config.data.update(root=str(tmp_path), resolution=16, held_out_views=(1, 4), held_out_expressions=('jawOpen',))
  sets = evaluate.load_eval_sets(config, seen_views=(0, 2))
  assert list(sets) == ['novel_view', 'novel_expression', 'seen_view']
  assert sorted(set(sets['novel_view'].view)) == [1, 4] and sorted(set(sets['seen_view'].view)) == [0, 2]
  assert set(sets['seen_view'].expression_name) == {'browDwonLeft'}  # the held-out expression stays out
  assert len(sets['novel_expression']) == 2 * 6 and set(sets['novel_expression'].expression_name) == {'jawOpen'}
  with pytest.raises(ValueError, match=r'seen_views \[4\] are held-out views'):
    evaluate.load_eval_sets(config, seen_views=(0, 4))
