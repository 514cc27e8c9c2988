"""Optimisers and training schedules (reference-spec §5.1-5.2): pure functions of images seen.

Legend: ``R`` lazy-regularisation interval (the regulariser runs every ``R`` steps),
``n_img`` images shown to the generator so far (``step · global batch``), ``kimg`` = 1,000
images. The reference's stage-1 loop counts "kimg" as 100 images for its EMA and its
length (reference-spec §8.2); here a kimg is always 1,000 images.

Every function accepts Python numbers or traced JAX scalars, so the same code computes a
schedule inside a jitted step and in a test.
"""

import jax.numpy as jnp
import optax

ADAM_BETA1 = 0.0
ADAM_BETA2 = 0.99
ADAM_EPS = 1e-8


def lazy_ratio(interval: int | None) -> float:
  """``R / (R + 1)``: the share of optimiser steps that are main steps (1 without lazy regularisation).

  Raises:
    ValueError: if ``interval`` is negative.
  """
  if interval is None or interval == 0:
    return 1.0
  if interval < 0:
    raise ValueError(f'lazy regularisation interval must be positive, got {interval}')
  return interval / (interval + 1)


def lazy_adam(
  learning_rate: float, interval: int | None, *, decay_steps: int | None = None, final_fraction: float = 0.0
) -> optax.GradientTransformation:
  """Adam β = (0, 0.99), ε = 1e-8, corrected for lazy regularisation (StyleGAN2 appendix B).

  With a regulariser every ``R`` steps sharing the optimiser, the main and regulariser
  steps together take ``R + 1`` Adam steps per ``R`` iterations, so the learning rate is
  scaled by ``R/(R+1)`` and the betas are raised to ``R/(R+1)``: G (R = 4) 0.0025 → 0.002,
  β2 = 0.99^0.8; D (R = 16) 0.002 → 0.002·16/17, β2 = 0.99^(16/17) (reference-spec §5.2).

  Args:
    learning_rate: the base learning rate.
    interval: the regulariser's interval ``R``; None or 0 for none.
    decay_steps: None (the reference): a constant rate. Else the rate follows a half cosine
      from its full value down to ``final_fraction`` of it over this many training
      iterations (``decay_steps · (R + 1) / R`` optimiser updates, since the regulariser
      steps count too), then stays there (ours: short CPU runs, ``docs/quality.md``).
    final_fraction: the rate's end value as a fraction of the start, in [0, 1].

  Raises:
    ValueError: if ``decay_steps`` is not positive or ``final_fraction`` is outside [0, 1].
  """
  ratio = lazy_ratio(interval)
  rate = learning_rate * ratio
  if decay_steps is not None:
    if decay_steps <= 0 or not 0.0 <= final_fraction <= 1.0:
      raise ValueError(f'need decay_steps > 0 and final_fraction in [0, 1], got {decay_steps}, {final_fraction}')
    rate = optax.cosine_decay_schedule(rate, max(1, round(decay_steps / ratio)), alpha=final_fraction)
  return optax.adam(rate, b1=ADAM_BETA1**ratio, b2=ADAM_BETA2**ratio, eps=ADAM_EPS)


def ema_beta(batch_size: int, images_seen, ema_kimg: float, rampup: float | None = 0.05):
  """Per-step decay of the generator EMA: half-life ``ema_kimg`` thousand images, ramped up.

  ``β = 0.5^(batch / ema_nimg)`` with ``ema_nimg = min(1000·ema_kimg, rampup·n_img)`` (StyleGAN2-ADA),
  so early in training the average follows the weights closely (β = 0 at ``n_img = 0``).

  Args:
    batch_size: global batch size (images per step).
    images_seen: ``n_img``, images shown before this step.
    ema_kimg: half-life in thousands of images (true kimg, reference-spec §8.2).
    rampup: ramp-up fraction of ``n_img``; None disables the ramp-up.
  """
  ema_nimg = ema_kimg * 1000.0
  if rampup is not None:
    ema_nimg = jnp.minimum(ema_nimg, jnp.asarray(images_seen, jnp.float32) * rampup)
  return jnp.power(0.5, batch_size / jnp.maximum(ema_nimg, 1e-8))


def blur_sigma(images_seen, fade_kimg: float, start_sigma: float = 10.0):
  """Width (pixels) of the discriminator input blur: ``start_sigma`` fading linearly to 0 over ``fade_kimg``.

  ``σ = start_sigma · max(0, 1 − n_img / (1000·fade_kimg))`` (reference-spec §5.1); 0 when
  ``fade_kimg`` is 0 (no blur).
  """
  if fade_kimg <= 0:
    return jnp.zeros((), jnp.float32)
  fraction = jnp.asarray(images_seen, jnp.float32) / (fade_kimg * 1000.0)
  return start_sigma * jnp.maximum(0.0, 1.0 - fraction)


def gpc_swap_prob(images_seen, fade_kimg: float, final_prob: float):
  """Probability of conditioning the generator's mapping on another sample's camera.

  Generator pose-conditioning regularisation (reference-spec §5.1): starts at 1 (always
  swapped) and fades linearly to ``final_prob`` over ``fade_kimg``; ``final_prob`` from the
  start when ``fade_kimg`` is 0.
  """
  if fade_kimg <= 0:
    return jnp.asarray(final_prob, jnp.float32)
  fraction = jnp.minimum(jnp.asarray(images_seen, jnp.float32) / (fade_kimg * 1000.0), 1.0)
  return 1.0 + (final_prob - 1.0) * fraction
