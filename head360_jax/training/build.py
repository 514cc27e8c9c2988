"""Builds the networks of a run from its config and adapts them to the training steps.

Legend: ``b`` batch, ``z`` latent size, ``w`` style size, ``n`` points, ``m`` build identities of the
bilinear model, ``r`` its rank.

``build_models(config)`` is the one place that reads ``config.model``: it makes the
``Head360Generator`` and ``DualDiscriminator`` and wraps them in ``state.Networks`` with the
adapters the steps call (``training/steps.py``): per-identity codes, rendering from
``GeneratorInputs`` (with style mixing when the inputs carry ``mixing``), density for the
density regulariser, and the ``w_avg`` update used by truncation. Models stay free of
training types; this module joins them.

Latent (ARCHITECTURE D3; ``model.latent``, absent = 'codes'): 'codes' gives training identity
``i`` fixed Gaussian codes ``t_i, h_i`` from ``model.codes_seed``; 'identity_factor' (the
reference, reference-spec §1.6, §3.2) gives it ``t_i = h_i =`` its row of the dataset bilinear
model's factor matrix (``identity_codes[i]``, shape (r,)), so ``model.z_dim`` must be that
model's rank ``r``. ``identity_latents`` is the one definition, shared by training and
``inference.HeadRenderer``.

Precision fields (reference-spec §3.3, §3.10, §4, §5.2; ``models/layers.py``):
``model.compute_dtype`` ('float32' | 'bfloat16': every synthesis/StyleUNet/SR/discriminator-block
convolution in bfloat16; mappings, styles, rendering, decoder and the discriminator's epilogue
stay float32), and the reference's mixed precision in bfloat16, per network, as its highest
resolutions in bfloat16: ``model.g_num_bf16_res`` (texture/static StyleGAN2s and StyleUNets;
reference 0), ``model.sr_num_bf16_res`` (reference 4) and ``model.d_num_bf16_res`` (reference
4). Absent fields (configs saved before they existed) mean float32 (``checkpoint.MODEL_FIELDS_ADDED``).
"""

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jaxtyping import Array, Float, Int

from head360_jax import checkpoint
from head360_jax.geometry import bilinear
from head360_jax.models import discriminator as discriminator_lib
from head360_jax.models import generator as generator_lib
from head360_jax.models import layers, stylegan
from head360_jax.training import state as state_lib


def generator_config(model: ml_collections.ConfigDict) -> generator_lib.GeneratorConfig:
  """``generator_lib.GeneratorConfig`` from a config's ``model`` section (configs/base.py names).

  Fields the section lacks (runs saved before they existed) take ``checkpoint.MODEL_FIELDS_ADDED``.
  """
  added = checkpoint.with_model_defaults(model)
  return generator_lib.GeneratorConfig(
    z_dim=model.z_dim,
    c_dim=model.c_dim,
    w_dim=model.w_dim,
    mapping_layers=model.mapping_layers,
    texture_resolution=model.texture_resolution,
    texture_channels=model.texture_channels,
    plane_resolution=model.plane_resolution,
    channel_base=model.channel_base,
    channel_max=model.channel_max,
    decoder_hidden=model.decoder_hidden,
    feature_channels=model.feature_channels,
    num_coarse=model.num_coarse,
    num_fine=model.num_fine,
    neural_rendering_resolution=model.neural_resolution,
    image_resolution=model.output_resolution,
    sr_channels=tuple(model.sr_channels),
    sr_noise_dim=model.sr_noise_dim,
    box_warp=model.box_warp,
    stage=model.stage,
    mouth_unet=added['mouth_unet'],
    blending_unet=added['blending_unet'],
    compute_dtype=added['compute_dtype'],
    num_bf16_res=added['g_num_bf16_res'],
    sr_num_bf16_res=added['sr_num_bf16_res'],
    latent=added['latent'],
    representation=added['representation'],
    nerf_frequencies=added['nerf_frequencies'],
    nerf_hidden=added['nerf_hidden'],
    nerf_layers=added['nerf_layers'],
  )


def identity_latents(
  model: ml_collections.ConfigDict, factors: Float[Array, 'm r'], identity: Int[Array, ' b']
) -> tuple[Float[Array, 'b z'], Float[Array, 'b z']]:
  """Codes ``(t, h)``, (b, z) each, of training identities ``identity`` under ``model.latent``.

  Args:
    model: a config's ``model`` section (``latent``, ``z_dim``, ``codes_seed``).
    factors: (m, r) the dataset bilinear model's ``identity_codes`` (its factor rows; read only
      with 'identity_factor').
    identity: (b,) identity indices in [0, m).

  Returns:
    'codes': the fixed Gaussian ``generator_lib.identity_codes``; 'identity_factor': the factor
    rows, ``t = h = factors[identity]`` (unit-free; the mapping normalises them).
  """
  if checkpoint.with_model_defaults(model)['latent'] == 'identity_factor':
    rows = jnp.asarray(factors, jnp.float32)[jnp.asarray(identity, jnp.int32)]
    return rows, rows
  return generator_lib.identity_codes(identity, model.z_dim, model.codes_seed)


def new_head_latents(
  model: ml_collections.ConfigDict, s: Float[Array, ' r'], key_t: jax.Array, key_h: jax.Array
) -> tuple[Float[Array, ' z'], Float[Array, ' z']]:
  """Codes ``(t, h)``, (z,) each, of a new head with shape code ``s`` under ``model.latent``.

  'codes': ``t ~ N(0, I)`` from ``key_t`` and ``h`` from ``key_h``; 'identity_factor':
  ``t = h = s`` (as the reference: a new head's look follows its shape code).
  """
  if checkpoint.with_model_defaults(model)['latent'] == 'identity_factor':
    s = jnp.asarray(s, jnp.float32)
    return s, s
  return jax.random.normal(key_t, (model.z_dim,)), jax.random.normal(key_h, (model.z_dim,))


def mapping_styles(generator: generator_lib.Head360Generator, inputs: dict, key: jax.Array) -> dict[str, Array]:
  """Styles of ``inputs`` (GeneratorInputs, training/steps.py) with a fresh SR noise code from ``key``.

  The expression ``inputs['expression']`` joins the label of mesh-free representations
  (``Head360Generator.mapping_label``).
  """
  z_noise = jax.random.normal(key, (inputs['t'].shape[0], generator.config.sr_noise_dim))
  return generator.mapping(inputs['t'], inputs['h'], inputs['c_cond'], z_noise, expression=inputs.get('expression'))


def render_styles(generator: generator_lib.Head360Generator, inputs: dict, key: jax.Array) -> dict[str, Array]:
  """The styles one render uses: ``mapping_styles``, style-mixed when ``inputs`` has ``mixing``.

  With ``inputs['mixing']`` (``steps.style_mixing``: second codes and cutoffs for ``t`` and
  ``h``), the texture and hair styles become per layer, (b, n, w): layers below a sample's
  cutoff from its own code, the rest from the second code mapped with the same camera
  (StyleGAN2 ``style_mixing_prob``; reference-spec §5.1). Without it: (b, w) each.
  """
  ws = mapping_styles(generator, inputs, key)
  mixing = inputs.get('mixing')
  if not mixing:
    return ws
  label = generator.mapping_label(inputs['c_cond'], inputs.get('expression'))
  layers_of = generator.style_layers()
  for branch, code in (('texture', 't'), ('hair', 'h')):
    if code not in layers_of:
      continue
    num_ws = layers_of[code]
    second = generator.branch_mapping(branch)(mixing[code]['code'], label)
    ws[branch] = stylegan.mix_styles(
      stylegan.broadcast(ws[branch], num_ws), stylegan.broadcast(second, num_ws), mixing[code]['cutoff']
    )
  return ws


def _render(generator: generator_lib.Head360Generator, inputs: dict, key: jax.Array) -> dict:
  key_z, key_g = jax.random.split(key)
  ws = render_styles(generator, inputs, key_z)
  return generator(ws, inputs['c'], inputs['vertices'], key=key_g, hair=inputs['hair'], raster=inputs.get('prepared'))


def _density(generator: generator_lib.Head360Generator, inputs: dict, points: jax.Array, key: jax.Array) -> jax.Array:
  key_z, key_g = jax.random.split(key)
  ws = render_styles(generator, inputs, key_z)
  raster = inputs.get('prepared')
  return generator.density(ws, inputs['vertices'], points, key=key_g, hair=inputs['hair'], raster=raster)


def _prepare(generator: generator_lib.Head360Generator, batch: dict):
  """``Networks.prepare``: the batch meshes' hex-plane rasterisation (``Head360Generator.rasterize``)."""
  return generator.rasterize(batch['vertices'])


def _update_w_avg(generator: generator_lib.Head360Generator, g_stats: dict, inputs: dict, key: jax.Array) -> dict:
  """Tracks the mean styles used for truncation (reference-spec §3.2, beta 0.998)."""
  ws = jax.lax.stop_gradient(mapping_styles(generator, inputs, key))
  return {name: stylegan.update_w_avg(g_stats[name], ws[name.removeprefix('w_avg_')]) for name in g_stats}


def build_models(config: ml_collections.ConfigDict) -> state_lib.Networks:
  """Builds the generator, discriminator and adapters of a run (``training.state.Networks``).

  The mesh topology comes from the dataset's bilinear model ``<config.data.root>/bilinear.npz``
  (written by ``head360_jax.data.build_dataset``). Parameters are initialised from
  ``config.train.seed``, deterministically.

  Raises:
    FileNotFoundError: if the dataset root has no ``bilinear.npz``.
    ValueError: if ``config.data.root`` is not set, or with ``model.latent = 'identity_factor'``
      if ``model.z_dim`` differs from the bilinear model's rank.
  """
  if config.data.root is None:
    raise ValueError('config.data.root is not set (the dataset folder with bilinear.npz)')
  path = pathlib.Path(config.data.root) / 'bilinear.npz'
  model = bilinear.load(path)
  cfg = generator_config(config.model)
  if cfg.latent == 'identity_factor' and cfg.z_dim != model.rank:
    raise ValueError(
      f"model.latent = 'identity_factor' maps the bilinear model's factor rows, so model.z_dim ({cfg.z_dim}) "
      f'must equal the rank of {path} ({model.rank}; the rank is min(50, identities the dataset was built from)): '
      f'set --config.model.z_dim={model.rank}, or use --config.model.latent=codes'
    )
  rngs = nnx.Rngs(config.train.seed)
  generator = generator_lib.Head360Generator(
    cfg,
    faces=model.faces,
    face_uv_coords=model.uvs[model.face_uvs],
    landmark_vertices=model.landmark_vertices,
    rngs=rngs,
  )
  discriminator = discriminator_lib.DualDiscriminator(
    config.model.output_resolution,
    channel_base=config.model.d_channel_base,
    channel_max=config.model.d_channel_max,
    mbstd_group_size=config.model.d_mbstd_group,
    mbstd_num_channels=config.model.d_mbstd_channels,
    num_bf16_res=checkpoint.with_model_defaults(config.model)['d_num_bf16_res'],
    compute_dtype=layers.compute_dtype(cfg.compute_dtype),
    rngs=rngs,
  )
  model_config, factors = config.model, model.identity_codes

  def codes(batch):
    t, h = identity_latents(model_config, factors, batch['identity'])
    return {'t': t, 'h': h}

  zeros = jnp.zeros((cfg.w_dim,), jnp.float32)
  return state_lib.Networks(
    generator=generator,
    discriminator=discriminator,
    codes=codes,
    render=_render,
    density=_density,
    g_stats={'w_avg_texture': zeros, 'w_avg_hair': zeros},
    stats_update=_update_w_avg,
    mixing_layers=generator.style_layers(),
    prepare=_prepare,
  )
