"""The four training phases as pure step functions ``fn(state, batch, rng) -> (state, metrics)``.

Legend: ``b`` global batch, ``H W`` output resolution, ``h w`` neural rendering (raw)
resolution, ``v`` mesh vertices, ``n`` density sample points, ``R`` lazy interval.

Phases (reference-spec §5.1; EG3D lazy regularisation), in the order the loop runs them
for iteration ``s`` (``state.step == s``):

1. ``g_reg`` if ``s % density_reg_interval == 0``: density regularisation, gain ``R``;
2. ``g_main``: ``gan_weight`` × non-saturating GAN (1 in the reference; 0 leaves the
   discriminator out, the L1-only recipe of short CPU runs, ``docs/quality.md``) +
   ``l1_weight`` × L1 to the batch's own image (+ ``alpha_weight`` × L1 of the raw render's
   opacity to the image's alpha, area-downsampled; ours, 0 in the reference: batches then
   carry ``alpha``; + ``lpips_weight`` × LPIPS-VGG to the image, ours, 0 in the reference),
   then the G_ema update and ``stats_update``;
3. ``d_reg`` if ``s % r1_interval == 0``: R1 on the real images, ``γ/2``, gain ``R``;
4. ``d_main``: logistic loss on fakes and reals, plus with ``train.view_consistency`` > 0
   that weight × SphereHead's view-image consistency loss (the reals scored with wrong camera
   labels, ``camera.mismatched_labels``, as fakes; ``losses.view_consistency_loss``); increments
   ``state.step``. With ``gan_weight`` 0 the loop runs neither D phase and ``g_main``
   increments it instead.

The regulariser phases are separate compiled programs chosen by a Python ``if`` in the
loop. Each phase draws its randomness from ``fold_in(fold_in(rng, state.step), phase)``,
so a run resumed from a checkpoint repeats an uninterrupted one exactly.

One data batch serves all phases of an iteration. ``GeneratorInputs`` (a dict, built by
``generator_inputs``) is what the generator sees:

* ``t`` (b, z_t), ``h`` (b, z_h): texture and hair codes (``Networks.codes(batch)``);
* ``c`` (b, 25): the camera to render (the batch's camera label);
* ``c_cond`` (b, 25): the camera fed to the mapping networks: ``c``, or with the
  generator pose-conditioning probability the next sample's camera (``roll`` by 1);
* ``vertices`` (b, v, 3), ``expression`` (b, 52), ``identity`` (b,) int32, ``hair`` (b,)
  int32 (1 haired, 0 bald): from the batch;
* ``prepared`` (only when the batch has it): ``batch['prepared']``, the parameter-free work
  ``Models.prepare`` did once for the whole iteration (the meshes' hex-plane rasterisation);
* ``mixing`` (only with ``train.style_mixing_prob > 0``): per code name of
  ``Models.mixing_layers``, a second code ``(b, z)`` ~ N(0, I) and per-sample ``cutoff`` (b,)
  int32 (``style_mixing``); the render adapter takes the styles of layers ``>= cutoff`` from
  the second code's mapping (StyleGAN2 style mixing; 0 in Head360, reference-spec §5.1). The
  main and regulariser phases mix; the EMA sampler does not.

G is asked to re-render the batch's images (same identity, mesh and camera), is L1
supervised against them, and the same images are the discriminator's reals; fakes are
scored with the label they were rendered with. The discriminator sees the output image
blurred by the fading ``blur_sigma`` and the raw image; reals get an antialiased
downsample of the image as their raw image, blurred too (EG3D ``blur_raw_target``).
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from head360_jax import parallel
from head360_jax.geometry import camera
from head360_jax.metrics import lpips as lpips_lib
from head360_jax.models import stylegan
from head360_jax.training import losses, schedules
from head360_jax.training.state import Models, TrainState

PHASES = ('g_main', 'g_reg', 'd_main', 'd_reg')
GRAD_LIMIT = 1e5  # the reference replaces inf gradients by ±1e5 and NaN by 0 (reference-spec §5.2)


def style_mixing(key: jax.Array, codes: dict, mixing_layers: dict[str, int], prob: float) -> dict:
  """Style-mixing draws ``{name: {'code': (b, z), 'cutoff': (b,) int32}}`` for each code in ``mixing_layers``.

  Per sample and code, independently: a fresh code ~ N(0, I) shaped like ``codes[name]``, and
  with probability ``prob`` a cutoff uniform in [1, n), else n (no mixing), n =
  ``mixing_layers[name]`` (``stylegan.mixing_cutoffs``).

  Raises:
    ValueError: if ``mixing_layers`` names a code that ``codes`` lacks.
  """
  missing = sorted(set(mixing_layers) - set(codes))
  if missing:
    raise ValueError(f'mixing_layers names codes {missing} that codes(batch) does not give')
  draws = {}
  for index, name in enumerate(sorted(mixing_layers)):
    key_code, key_cut = jax.random.split(jax.random.fold_in(key, index))
    code = codes[name]
    draws[name] = {
      'code': jax.random.normal(key_code, code.shape, code.dtype),
      'cutoff': stylegan.mixing_cutoffs(key_cut, code.shape[0], mixing_layers[name], prob),
    }
  return draws


def generator_inputs(
  models: Models, batch: dict, key: jax.Array, swap_prob, *, one_coin: bool = False, style_mixing_prob: float = 0.0
) -> dict:
  """Builds ``GeneratorInputs`` from a data batch (see the module docstring).

  Args:
    models: gives the ``codes`` function and ``mixing_layers``.
    batch: the data batch (``camera``, ``vertices``, ``expression``, ``identity``, ``hair``).
    key: PRNG key of the pose-conditioning swap (and of style mixing, through ``fold_in``).
    swap_prob: probability that a sample's mapping camera is its neighbour's.
    one_coin: one swap decision for the whole batch (EG3D's density-regularisation quirk).
    style_mixing_prob: a static float; > 0 adds ``mixing`` (0 leaves the inputs exactly as
      without mixing).

  Raises:
    ValueError: if ``style_mixing_prob > 0`` and ``models.mixing_layers`` is empty.
  """
  camera = batch['camera']
  coins = jax.random.uniform(key, (1 if one_coin else camera.shape[0], 1))
  c_cond = jnp.where(coins < swap_prob, jnp.roll(camera, 1, axis=0), camera)
  codes = models.codes(batch)
  inputs = {
    't': codes['t'],
    'h': codes['h'],
    'c': camera,
    'c_cond': c_cond,
    'vertices': batch['vertices'],
    'expression': batch['expression'],
    'identity': batch['identity'],
    'hair': batch['hair'],
  }
  if 'prepared' in batch:
    inputs['prepared'] = batch['prepared']
  if style_mixing_prob > 0:
    if not models.mixing_layers:
      raise ValueError('style_mixing_prob > 0 needs a generator with per-layer styles (Networks.mixing_layers)')
    key_mix = jax.random.fold_in(key, 1)  # the swap coins above keep their stream
    inputs['mixing'] = style_mixing(key_mix, codes, models.mixing_layers, style_mixing_prob)
  return inputs


def scrub(grads: dict) -> dict:
  """NaN → 0 and ±inf → ±1e5 in every gradient leaf, before the optimiser (reference-spec §5.2)."""
  return jax.tree.map(lambda g: jnp.nan_to_num(g, nan=0.0, posinf=GRAD_LIMIT, neginf=-GRAD_LIMIT), grads)


def _apply(tx: optax.GradientTransformation, grads: dict, opt_state, params: dict) -> tuple[dict, object]:
  updates, opt_state = tx.update(scrub(grads), opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _phase_keys(rng: jax.Array, step: jax.Array, phase: str, num: int) -> jax.Array:
  return jax.random.split(jax.random.fold_in(jax.random.fold_in(rng, step), PHASES.index(phase)), num)


def make_phases(models: Models, *, config: ml_collections.ConfigDict) -> dict[str, Callable]:
  """The four phases as pure functions ``fn(state, batch, rng, g_rest, d_rest, lpips_params=None) -> (state, metrics)``.

  ``g_rest``/``d_rest`` (the fixed non-``Param`` variables) and ``lpips_params`` (the frozen
  LPIPS-VGG network, ``metrics.lpips.load_lpips('vgg')``, needed by ``g_main`` when
  ``train.lpips_weight`` > 0) are arguments so that ``jax.jit`` does not fold them into the
  program; ``make_steps`` binds them.

  Args:
    models: the static model description (``state.create``).
    config: reads ``train.batch_size`` (global), ``l1_weight``,
      ``gan_weight`` (1 if absent; 0 drops the discriminator from ``g_main``), ``r1_gamma``,
      ``r1_interval``, ``density_reg``, ``density_reg_interval``, ``density_reg_points``,
      ``density_reg_p_dist``, ``ema_kimg``, ``ema_rampup``, ``blur_sigma``,
      ``blur_fade_kimg``, ``gpc_prob``, ``gpc_fade_kimg``, ``style_mixing_prob`` (0 if absent),
      ``view_consistency`` (0 if absent: ``d_main`` as without it, same D calls and random
      streams), ``lpips_weight`` (0 if absent: no perceptual term, the reference's loss; > 0
      adds that weight × the batch mean of LPIPS-VGG between the output image and the batch
      image, a short-run recipe option, ``docs/quality.md``) and ``model.neural_resolution``.

  Returns:
    ``{'g_main', 'g_reg', 'd_main', 'd_reg'}`` → step function; metrics are flat dicts of
    float32 scalars.

  Raises:
    ValueError: from ``g_main`` when ``train.lpips_weight`` > 0 and it is called without
      ``lpips_params``.
  """
  train = config.train
  batch_size = train.batch_size
  raw_res = config.model.neural_resolution
  mixing_prob = float(train.get('style_mixing_prob', 0.0))
  gan_weight = float(train.get('gan_weight', 1.0))
  view_weight = float(train.get('view_consistency', 0.0))
  alpha_weight = float(train.get('alpha_weight', 0.0))
  lpips_weight = float(train.get('lpips_weight', 0.0))

  def schedule(step):
    seen = step * batch_size
    sigma = schedules.blur_sigma(seen, train.blur_fade_kimg, train.blur_sigma)
    return seen, sigma, schedules.gpc_swap_prob(seen, train.gpc_fade_kimg, train.gpc_prob)

  def blur(images, sigma):
    return losses.blur(images, sigma, train.blur_sigma if train.blur_fade_kimg > 0 else 0.0)

  def real_pair(batch, sigma):
    image = batch['image']
    raw = jax.image.resize(image, (image.shape[0], raw_res, raw_res, image.shape[-1]), 'linear', antialias=True)
    return image, blur(raw, sigma)

  def raw_alpha(batch):
    alpha = batch['alpha']
    return jax.image.resize(alpha, (alpha.shape[0], raw_res, raw_res, 1), 'linear', antialias=True)

  def g_main(state: TrainState, batch, rng, g_rest, d_rest, lpips_params=None):
    k_swap, k_gen, k_stats = _phase_keys(rng, state.step, 'g_main', 3)
    seen, sigma, swap_prob = schedule(state.step)
    inputs = generator_inputs(models, batch, k_swap, swap_prob, style_mixing_prob=mixing_prob)
    discriminator = models.discriminator(state.d_params, d_rest)

    def loss_fn(g_params):
      out = models.render(models.generator(g_params, g_rest), inputs, k_gen)
      loss_l1 = losses.l1_photometric(out['image'], batch['image'])
      loss = train.l1_weight * loss_l1
      metrics = {'g/loss_l1': loss_l1}
      if alpha_weight > 0:  # static: opacity of the raw render vs the ground truth's alpha
        loss_alpha = losses.l1_photometric(out['image_alpha'], raw_alpha(batch))
        loss = loss + alpha_weight * loss_alpha
        metrics['g/loss_alpha'] = loss_alpha
      if lpips_weight > 0:  # static: perceptual distance of the output to the image (VGG, frozen)
        if lpips_params is None:
          raise ValueError('train.lpips_weight > 0 needs lpips_params (make_steps loads them)')
        loss_lpips = jnp.mean(lpips_lib.lpips(lpips_params, out['image'], batch['image']))
        loss = loss + lpips_weight * loss_lpips
        metrics['g/loss_lpips'] = loss_lpips
      if gan_weight > 0:  # static: 0 trains the generator on the photometric losses alone
        logits = discriminator(blur(out['image'], sigma), out['image_raw'], batch['label'])
        loss_gan = losses.generator_loss(logits)
        loss = loss + gan_weight * loss_gan
        metrics |= {'g/loss_gan': loss_gan, 'g/score_fake': jnp.mean(logits)}
      return loss, metrics | {'g/loss': loss}

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.g_params)
    g_params, g_opt_state = _apply(models.tx_g, grads, state.g_opt_state, state.g_params)
    beta = schedules.ema_beta(batch_size, seen, train.ema_kimg, train.ema_rampup)
    g_ema = jax.tree.map(lambda ema, p: p + (ema - p) * beta, state.g_ema, g_params)
    g_stats = state.g_stats
    if models.stats_update is not None:
      g_stats = models.stats_update(models.generator(g_params, g_rest), g_stats, inputs, k_stats)
    metrics |= {'g/grad_norm': optax.tree.norm(grads), 'g/ema_beta': beta}
    metrics |= {'schedule/blur_sigma': sigma, 'schedule/gpc_prob': swap_prob}
    state = state.replace(g_params=g_params, g_opt_state=g_opt_state, g_ema=g_ema, g_stats=g_stats)
    if gan_weight == 0:  # static: no D phase runs to end the iteration, so this one counts it
      state = state.replace(step=state.step + 1)
    return state, metrics

  def g_reg(state: TrainState, batch, rng, g_rest, d_rest, lpips_params=None):
    del d_rest, lpips_params
    k_swap, k_points, k_noise, k_gen = _phase_keys(rng, state.step, 'g_reg', 4)
    _, _, swap_prob = schedule(state.step)
    inputs = generator_inputs(models, batch, k_swap, swap_prob, one_coin=True, style_mixing_prob=mixing_prob)
    shape = (batch['camera'].shape[0], train.density_reg_points, 3)
    points = jax.random.uniform(k_points, shape, minval=-1.0, maxval=1.0)
    perturbed = points + train.density_reg_p_dist * jax.random.normal(k_noise, shape)

    def loss_fn(g_params):
      both = jnp.concatenate([points, perturbed], axis=1)
      sigma = models.density(models.generator(g_params, g_rest), inputs, both, k_gen)
      reg = losses.density_regularisation(*jnp.split(sigma, 2, axis=1))
      return train.density_reg * reg * train.density_reg_interval, reg

    grads, reg = jax.grad(loss_fn, has_aux=True)(state.g_params)
    g_params, g_opt_state = _apply(models.tx_g, grads, state.g_opt_state, state.g_params)
    return state.replace(g_params=g_params, g_opt_state=g_opt_state), {'g/density_reg': reg}

  def d_main(state: TrainState, batch, rng, g_rest, d_rest, lpips_params=None):
    del lpips_params
    # Static: without the view loss the keys are the plain 2-way split. With JAX's default partitionable threefry
    # the first two keys of a 3-way split are the same, so enabling it leaves the fakes' streams as they were.
    if view_weight > 0:
      k_swap, k_gen, k_view = _phase_keys(rng, state.step, 'd_main', 3)
      wrong_label = camera.mismatched_labels(k_view, batch['label'])
    else:
      k_swap, k_gen = _phase_keys(rng, state.step, 'd_main', 2)
    _, sigma, swap_prob = schedule(state.step)
    inputs = generator_inputs(models, batch, k_swap, swap_prob, style_mixing_prob=mixing_prob)
    fake = jax.lax.stop_gradient(models.render(models.generator(state.g_params, g_rest), inputs, k_gen))
    real_image, real_raw = real_pair(batch, sigma)

    def loss_fn(d_params):
      discriminator = models.discriminator(d_params, d_rest)
      real_input = blur(real_image, sigma)
      fake_logits = discriminator(blur(fake['image'], sigma), fake['image_raw'], batch['label'])
      real_logits = discriminator(real_input, real_raw, batch['label'])
      loss_fake = losses.discriminator_loss_fake(fake_logits)
      loss_real = losses.discriminator_loss_real(real_logits)
      loss = loss_fake + loss_real
      metrics = {'d/score_fake': jnp.mean(fake_logits), 'd/score_real': jnp.mean(real_logits)}
      if view_weight > 0:  # static: SphereHead's view-image consistency, reals with wrong cameras as fakes
        mismatched_logits = discriminator(real_input, real_raw, wrong_label)
        loss_view = losses.view_consistency_loss(mismatched_logits)
        loss = loss + view_weight * loss_view
        metrics |= {'d/loss_view': loss_view, 'd/score_mismatched': jnp.mean(mismatched_logits)}
      return loss, metrics | {'d/loss_fake': loss_fake, 'd/loss_real': loss_real, 'd/loss': loss}

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.d_params)
    d_params, d_opt_state = _apply(models.tx_d, grads, state.d_opt_state, state.d_params)
    metrics['d/grad_norm'] = optax.tree.norm(grads)
    return state.replace(step=state.step + 1, d_params=d_params, d_opt_state=d_opt_state), metrics

  def d_reg(state: TrainState, batch, rng, g_rest, d_rest, lpips_params=None):
    del rng, g_rest, lpips_params
    _, sigma, _ = schedule(state.step)
    real_image, real_raw = real_pair(batch, sigma)

    def loss_fn(d_params):
      discriminator = models.discriminator(d_params, d_rest)
      score = lambda image, raw: jnp.sum(discriminator(blur(image, sigma), raw, batch['label']))
      grad_image, grad_raw = jax.grad(score, argnums=(0, 1))(real_image, real_raw)
      r1 = jnp.mean(losses.r1_penalty(grad_image, grad_raw))
      return r1 * (train.r1_gamma / 2) * train.r1_interval, r1

    grads, r1 = jax.grad(loss_fn, has_aux=True)(state.d_params)
    d_params, d_opt_state = _apply(models.tx_d, grads, state.d_opt_state, state.d_params)
    return state.replace(d_params=d_params, d_opt_state=d_opt_state), {'d/r1': r1}

  return {'g_main': g_main, 'g_reg': g_reg, 'd_main': d_main, 'd_reg': d_reg}


def make_steps(models: Models, *, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> dict[str, Callable]:
  """The phases compiled for ``mesh``: ``fn(state, batch, rng) -> (state, metrics)``.

  Each is a ``jax.jit`` with the state and metrics replicated and the batch split over
  ``data``; the input state is donated (do not reuse it after the call).

  Args:
    models: the static model description.
    config: the run config (see ``make_phases``).
    mesh: a ``('data',)`` mesh (``parallel.make_mesh``); the global batch must divide
      over its devices.
  """
  replicated, split = parallel.replicated(mesh), parallel.data_sharding(mesh)
  g_rest = jax.device_put(models.g_rest, replicated)
  d_rest = jax.device_put(models.d_rest, replicated)
  lpips_params = None
  if config.train.get('lpips_weight', 0.0) > 0:
    lpips_params = jax.device_put(lpips_lib.load_lpips('vgg'), replicated)
  steps = {}
  for name, phase in make_phases(models, config=config).items():
    compiled = jax.jit(
      phase,
      in_shardings=(replicated, split, replicated, replicated, replicated, replicated),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
    )
    steps[name] = functools.partial(_bind_rest, compiled, g_rest, d_rest, lpips_params)
  return steps


def _bind_rest(compiled: Callable, g_rest: dict, d_rest: dict, lpips_params, state: TrainState, batch: dict, rng):
  """Calls a jitted phase with the bound fixed arguments (``lpips_params`` None unless ``train.lpips_weight`` > 0)."""
  return compiled(state, batch, rng, g_rest, d_rest, lpips_params)


def make_sampler(models: Models, *, mesh: jax.sharding.Mesh) -> Callable:
  """``sample(g_ema, batch, key) -> generator outputs``: renders a batch with the EMA weights (no pose swap)."""
  replicated = parallel.replicated(mesh)
  g_rest = jax.device_put(models.g_rest, replicated)

  @functools.partial(jax.jit, in_shardings=(replicated, replicated, replicated, replicated), out_shardings=replicated)
  def sample(g_ema, batch, key, g_rest):
    k_swap, k_gen = jax.random.split(key)
    return models.render(models.generator(g_ema, g_rest), generator_inputs(models, batch, k_swap, 0.0), k_gen)

  return lambda g_ema, batch, key: sample(g_ema, batch, key, g_rest)
