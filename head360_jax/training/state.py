"""The train state: one explicit pytree of arrays, and the static model description beside it.

Legend: ``G`` generator, ``D`` discriminator, ``G_ema`` the exponential moving average of
G's parameters (reference-spec §5.2). Parameters are Flax NNX ``Param`` variables stored
as plain nested dicts (``nnx.to_pure_dict``), so the state checkpoints as arrays only.

What a model builder returns (``Networks``) and how it becomes state:

* ``generator``: an NNX module, and two functions that call it:
  ``render(generator, inputs, key)`` with ``inputs`` a ``GeneratorInputs`` dict
  (``steps.py``) returns ``{'image': (b, H, W, 3), 'image_raw': (b, h, w, 3),
  'image_depth': (b, h, w, 1)}``, images in [-1, 1]; ``density(generator, inputs, points
  (b, n, 3), key)`` returns raw densities σ (b, n, 1) (density regularisation). The
  defaults call ``generator(inputs, key=key)`` and ``generator.density(inputs, points,
  key=key)``; a builder whose generator has another signature passes adapters. ``key``
  drives all of G's randomness (noise inputs, SR latent, ray jitter).
* ``discriminator``: an NNX module, ``discriminator(image, image_raw, label (b, 77))`` →
  logits (b, 1).
* ``codes(batch)``: a pure function of the data batch giving the mapping-network codes
  ``{'t': (b, z_t), 'h': (b, z_h)}`` (e.g. the identity factor of the batch's identity).
* ``g_stats`` and ``stats_update(generator, g_stats, inputs, key) -> g_stats``: running
  statistics of G that are not trained by gradient (e.g. ``{'w_avg_texture': (w,)}``, the
  truncation centres), updated once per G step; ``{}`` and None when there are none.
* ``prepare(generator, batch)``: optional; what ``render``/``density`` need from a data batch
  that no parameter enters (the hex-plane rasterisation of the batch's meshes), as a pytree
  the training loop computes once per batch and passes to every phase as ``batch['prepared']``
  (``inputs['prepared']``). None: nothing to share.
* ``mixing_layers``: for style mixing, the number of per-layer styles each code of
  ``codes(batch)`` drives (e.g. ``{'t': 14, 'h': 14}``); ``render``/``density`` then accept
  ``inputs['mixing']`` (``steps.style_mixing``). ``{}``: the generator cannot mix styles.

Split into state: ``nnx.split(module, nnx.Param, ...)`` gives a graphdef, the trainable
``Param``s (into the ``TrainState``) and the rest (fixed non-``Param`` variables such as
noise constants, kept in ``Models`` and passed to each jitted step as an argument, not
baked into the compiled program). The rest must be a deterministic function of the
config: it is rebuilt, not checkpointed.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from head360_jax import parallel
from head360_jax.training import schedules

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Networks:
  """What a model builder (``build_models(config)``) returns; see the module docstring."""

  generator: nnx.Module
  discriminator: nnx.Module
  codes: Callable[[dict], dict]
  render: Callable[[nnx.Module, dict, jax.Array], dict] | None = None
  density: Callable[[nnx.Module, dict, jax.Array, jax.Array], jax.Array] | None = None
  g_stats: dict = dataclasses.field(default_factory=dict)
  stats_update: Callable | None = None
  mixing_layers: dict[str, int] = dataclasses.field(default_factory=dict)
  prepare: Callable[[nnx.Module, dict], PyTree] | None = None


def call_generator(generator: nnx.Module, inputs: dict, key: jax.Array) -> dict:
  """The default ``Networks.render``: ``generator(inputs, key=key)``."""
  return generator(inputs, key=key)


def call_density(generator: nnx.Module, inputs: dict, points: jax.Array, key: jax.Array) -> jax.Array:
  """The default ``Networks.density``: ``generator.density(inputs, points, key=key)``."""
  return generator.density(inputs, points, key=key)


@dataclasses.dataclass(frozen=True)
class Models:
  """The static half of training: graph definitions, fixed variables and optimisers (not a pytree).

  Attributes:
    g_graphdef, d_graphdef: NNX graph definitions of G and D.
    g_rest, d_rest: their non-``Param`` variables as pure dicts (fixed during training).
    tx_g, tx_d: optax optimisers (lazy-regularisation corrected Adam).
    codes, render, density, stats_update, mixing_layers, prepare: from ``Networks`` (defaults
      filled in).
  """

  g_graphdef: nnx.GraphDef
  d_graphdef: nnx.GraphDef
  g_rest: dict
  d_rest: dict
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  codes: Callable[[dict], dict]
  render: Callable[[nnx.Module, dict, jax.Array], dict]
  density: Callable[[nnx.Module, dict, jax.Array, jax.Array], jax.Array]
  stats_update: Callable | None
  mixing_layers: dict[str, int] = dataclasses.field(default_factory=dict)
  prepare: Callable[[nnx.Module, dict], PyTree] | None = None

  def generator(self, g_params: dict, g_rest: dict | None = None) -> nnx.Module:
    """The generator module with parameters ``g_params`` (e.g. ``state.g_ema``)."""
    return nnx.merge(self.g_graphdef, g_params, self.g_rest if g_rest is None else g_rest)

  def discriminator(self, d_params: dict, d_rest: dict | None = None) -> nnx.Module:
    """The discriminator module with parameters ``d_params``."""
    return nnx.merge(self.d_graphdef, d_params, self.d_rest if d_rest is None else d_rest)


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree of arrays.

  Attributes:
    step: () int32, completed training iterations.
    g_params, g_ema, d_params: nested dicts of parameter arrays.
    g_opt_state, d_opt_state: optax states of ``Models.tx_g`` / ``tx_d``.
    g_stats: running statistics of G (``Networks.g_stats``).
  """

  step: jax.Array
  g_params: dict
  g_ema: dict
  d_params: dict
  g_opt_state: PyTree
  d_opt_state: PyTree
  g_stats: dict


def optimisers(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """G and D Adam with lazy-regularisation scaling (G: density interval, D: R1 interval).

  ``train.g_lr_decay``: ``'none'`` (the reference, the default) or ``'cosine'``: G's rate
  falls to ``train.g_lr_final_fraction`` of ``g_lr`` over ``train.steps`` iterations
  (``schedules.lazy_adam``).

  Raises:
    ValueError: for another ``g_lr_decay``.
  """
  train = config.train
  decay = train.get('g_lr_decay', 'none')
  if decay not in ('none', 'cosine'):
    raise ValueError(f"train.g_lr_decay must be 'none' or 'cosine', got {decay!r}")
  tx_g = schedules.lazy_adam(
    train.g_lr,
    train.density_reg_interval if train.density_reg > 0 else None,
    decay_steps=train.steps if decay == 'cosine' else None,
    final_fraction=train.get('g_lr_final_fraction', 0.0),
  )
  tx_d = schedules.lazy_adam(train.d_lr, train.r1_interval if train.r1_gamma > 0 else None)
  return tx_g, tx_d


def _split(module: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def init_state(models: Models, g_params: dict, d_params: dict, g_stats: dict) -> TrainState:
  """The state at step 0 (pure: usable under ``jax.eval_shape`` to build an abstract state)."""
  copy = lambda tree: jax.tree.map(jnp.array, tree)  # G_ema must not alias G's buffers (donation)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    g_params=copy(g_params),
    g_ema=copy(g_params),
    d_params=copy(d_params),
    g_opt_state=models.tx_g.init(g_params),
    d_opt_state=models.tx_d.init(d_params),
    g_stats=copy(g_stats),
  )


def create(config: ml_collections.ConfigDict, networks: Networks) -> tuple[Models, TrainState]:
  """Splits freshly built networks into static ``Models`` and a step-0 ``TrainState`` (host arrays).

  Args:
    config: the run config (reads ``train.g_lr``, ``d_lr``, ``r1_gamma``, ``r1_interval``,
      ``density_reg``, ``density_reg_interval``).
    networks: what the model builder returned.
  """
  g_graphdef, g_params, g_rest = _split(networks.generator)
  d_graphdef, d_params, d_rest = _split(networks.discriminator)
  tx_g, tx_d = optimisers(config)
  models = Models(
    g_graphdef=g_graphdef,
    d_graphdef=d_graphdef,
    g_rest=g_rest,
    d_rest=d_rest,
    tx_g=tx_g,
    tx_d=tx_d,
    codes=networks.codes,
    render=networks.render or call_generator,
    density=networks.density or call_density,
    stats_update=networks.stats_update,
    mixing_layers=dict(networks.mixing_layers),
    prepare=networks.prepare,
  )
  return models, init_state(models, g_params, d_params, dict(networks.g_stats))


def state_sharding(state: TrainState, mesh: jax.sharding.Mesh) -> TrainState:
  """Shardings of every state leaf: all replicated (data parallelism, ``parallel.py``)."""
  return jax.tree.map(lambda _: parallel.replicated(mesh), state)


def abstract_state(state: TrainState, mesh: jax.sharding.Mesh) -> TrainState:
  """``jax.ShapeDtypeStruct`` leaves with their target shardings, for a sharded restore."""
  return jax.tree.map(
    lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
    state,
    state_sharding(state, mesh),
  )
