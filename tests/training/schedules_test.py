"""Lazy-regularisation Adam, EMA, blur and pose-swap schedules against the reference numbers (spec §5.1-5.2)."""

import jax.numpy as jnp
import numpy as np
import pytest

from head360_jax.training import schedules


def _two_adam_updates(tx, g1, g2):
  params = jnp.zeros(2)
  opt_state = tx.init(params)
  u1, opt_state = tx.update(jnp.asarray(g1), opt_state, params)
  u2, _ = tx.update(jnp.asarray(g2), opt_state, params)
  return np.asarray(u1), np.asarray(u2)


@pytest.mark.parametrize(
  'base_lr, interval, lr, beta2',
  [
    (0.0025, 4, 0.002, 0.99**0.8),  # G: density regularisation every 4
    (0.002, 16, 0.002 * 16 / 17, 0.99 ** (16 / 17)),  # D: R1 every 16
    (0.002, None, 0.002, 0.99),
  ],
)
def test_lazy_adam_scales_lr_and_betas(base_lr, interval, lr, beta2):
  g1, g2 = np.array([0.3, -2.0]), np.array([-1.0, 0.5])
  u1, u2 = _two_adam_updates(schedules.lazy_adam(base_lr, interval), g1, g2)
  # β1 = 0: no momentum; the first step is -lr·sign(g) (bias-corrected ν = g²).
  np.testing.assert_allclose(u1, -lr * np.sign(g1), rtol=1e-5)
  nu = (beta2 * (1 - beta2) * g1**2 + (1 - beta2) * g2**2) / (1 - beta2**2)
  np.testing.assert_allclose(u2, -lr * g2 / (np.sqrt(nu) + 1e-8), rtol=1e-5)


def test_lazy_adam_cosine_decay_follows_the_half_cosine_in_iterations():
  """With a constant gradient and β1 = 0 every Adam update is -rate·sign(g): the updates trace the rate."""
  base_lr, interval, iterations, final = 0.01, 4, 40, 0.05
  tx = schedules.lazy_adam(base_lr, interval, decay_steps=iterations, final_fraction=final)
  params = jnp.zeros(1)
  opt_state = tx.init(params)
  rates = []
  for _ in range(70):  # past the end: the rate stays at the final fraction
    update, opt_state = tx.update(jnp.ones(1), opt_state, params)
    rates.append(-float(update[0]))
  ratio = interval / (interval + 1)
  updates = iterations / ratio  # 50: the density steps take Adam updates too
  k = np.minimum(np.arange(70, dtype=np.float64), updates)
  expected = base_lr * ratio * (final + (1 - final) * 0.5 * (1 + np.cos(np.pi * k / updates)))
  np.testing.assert_allclose(rates, expected, rtol=1e-4)
  assert rates[-1] == pytest.approx(base_lr * ratio * final, rel=1e-4)


@pytest.mark.parametrize('decay_steps, final', [(0, 0.1), (10, 1.5), (10, -0.1)])
def test_lazy_adam_rejects_a_bad_decay(decay_steps, final):
  with pytest.raises(ValueError, match='decay_steps'):
    schedules.lazy_adam(0.01, 4, decay_steps=decay_steps, final_fraction=final)


def test_lazy_ratio_rejects_negative_interval():
  with pytest.raises(ValueError, match='positive'):
    schedules.lazy_ratio(-1)


def test_ema_beta_ramps_up_to_the_half_life():
  batch, kimg = 32, 10.0
  assert float(schedules.ema_beta(batch, 0, kimg)) == 0.0  # first step copies the weights
  # Ramp-up: half-life 5% of the images seen (1,000 of 20,000).
  np.testing.assert_allclose(schedules.ema_beta(batch, 20_000, kimg), 0.5 ** (32 / 1000), rtol=1e-6)
  # Past the ramp-up: true kimg, half-life 10,000 images.
  np.testing.assert_allclose(schedules.ema_beta(batch, 10**7, kimg), 0.5 ** (32 / 10_000), rtol=1e-6)
  np.testing.assert_allclose(schedules.ema_beta(batch, 0, kimg, rampup=None), 0.5 ** (32 / 10_000), rtol=1e-6)


def test_blur_sigma_fades_linearly_to_zero():
  values = [float(schedules.blur_sigma(n, 200.0)) for n in (0, 100_000, 200_000, 10**6)]
  np.testing.assert_allclose(values, [10.0, 5.0, 0.0, 0.0], atol=1e-6)
  assert float(schedules.blur_sigma(0, 0.0)) == 0.0


def test_gpc_swap_prob_fades_from_one_to_final():
  values = [float(schedules.gpc_swap_prob(n, 1000.0, 0.5)) for n in (0, 500_000, 10**7)]
  np.testing.assert_allclose(values, [1.0, 0.75, 0.5], atol=1e-6)
  assert float(schedules.gpc_swap_prob(0, 0.0, 0.5)) == 0.5
