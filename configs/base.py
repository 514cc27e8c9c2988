"""Base config: every field a run reads, at the reference sizes (reference-spec §3-5).

Not meant to be run directly; ``synhead.py`` and ``tiny.py`` start from it. Fields:

* ``model.*``: network sizes (read by ``head360_jax.training.build.build_models``);
* ``train.*``: optimisation, schedules (true kimg = 1,000 images), logging, checkpoints;
* ``data.*``: the SynHead100-layout dataset (``head360_jax.data``).

Override any field on the command line, e.g. ``--config.train.batch_size=16``.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The base config; ``arg`` is unused (configs that derive from this take their own)."""
  del arg
  config = ml_collections.ConfigDict()

  model = config.model = ml_collections.ConfigDict()
  model.z_dim = 512  # texture and hair codes t, h ('identity_factor': the bilinear model's rank)
  # 'codes': fixed Gaussian t_i, h_i per identity, two mappings; 'identity_factor': t = h = the identity's
  # bilinear factor row, one shared mapping (the reference, ARCHITECTURE D3; synhead)
  model.latent = 'codes'
  model.w_dim = 512
  model.c_dim = 25
  model.mapping_layers = 2
  model.texture_resolution = 256
  model.texture_channels = 32  # hex-planes have 2 × 32 channels
  model.plane_resolution = 256
  model.plane_channels = 64
  model.channel_base = 32768
  model.channel_max = 512
  model.decoder_hidden = 64
  model.feature_channels = 64
  model.num_coarse = 48
  model.num_fine = 48
  model.neural_resolution = 64  # raw render (b, 64, 64, 3)
  model.output_resolution = 512  # after super-resolution
  model.sr_channels = (256, 128)
  model.sr_noise_dim = 512
  model.box_warp = 1.0
  model.stage = 1
  # 'hexplane' (Head360) | 'triplane' | 'eg3d' | 'spherical_triplane' | 'nerf': the ablations of paper Table 3 and
  # SphereHead (models/generator.py; docs/ablations.md). Mesh-free ones map [c, b] and have no hair branch.
  model.representation = 'hexplane'
  model.nerf_frequencies = 10  # 'nerf' only: positional-encoding frequencies (NeRF: 10)
  model.nerf_hidden = 64  # 'nerf' only: MLP width (NeRF: 256)
  model.nerf_layers = 8  # 'nerf' only: hidden layers (NeRF: 8)
  model.mouth_unet = False  # mouth crop -> StyleUNet -> paste on the front view (spec §3.6; synhead: on)
  model.blending_unet = False  # neural-blending StyleUNet over the front view (spec §3.6; synhead: on)
  model.codes_seed = 0  # fixed per-identity codes (t, h) of latent 'codes'
  model.d_channel_base = 32768
  model.d_channel_max = 512
  model.d_mbstd_group = 2
  model.d_mbstd_channels = 1
  # Precision (reference-spec §3.10, §4, §5.2: fp16 + conv_clamp 256 on SR and the top 4 D resolutions;
  # here bfloat16, parameters and optimiser state float32). compute_dtype 'bfloat16' = every conv in bf16.
  model.compute_dtype = 'float32'  # 'float32' | 'bfloat16'
  model.g_num_bf16_res = 0  # texture/static StyleGAN2s, StyleUNets (--g_num_fp16_res 0)
  model.sr_num_bf16_res = 4  # super-resolution: all blocks (--sr_num_fp16_res 4)
  model.d_num_bf16_res = 4  # discriminator blocks 512, 256, 128, 64 (--d_num_fp16_res 4)

  train = config.train = ml_collections.ConfigDict()
  train.seed = 0
  train.batch_size = 32  # global, split over the devices
  train.num_devices = config_dict.placeholder(int)  # None: all devices
  train.steps = 100_000
  train.g_lr = 0.0025  # before the lazy-regularisation scaling (schedules.lazy_adam)
  train.d_lr = 0.002
  train.g_lr_decay = 'none'  # or 'cosine': G's rate falls to g_lr_final_fraction of g_lr over train.steps (ours)
  train.g_lr_final_fraction = 0.0
  train.l1_weight = 100.0
  train.gan_weight = 1.0  # non-saturating GAN term of G (reference 1); 0: L1 only, no D updates (faster)
  train.lpips_weight = 0.0  # LPIPS-VGG term of G to the image (ours; the reference has none)
  train.r1_gamma = 4.0
  train.r1_interval = 16
  train.density_reg = 0.25
  train.density_reg_interval = 4
  train.density_reg_points = 1000
  train.density_reg_p_dist = 0.004
  train.ema_kimg = 10.0  # half-life batch·10/32 k images (true kimg, reference-spec §8.2)
  train.ema_rampup = 0.05
  train.blur_sigma = 10.0
  train.blur_fade_kimg = 200.0  # batch·200/32 k images
  train.gpc_prob = 0.5
  train.gpc_fade_kimg = 1000.0
  train.style_mixing_prob = 0.0  # StyleGAN2 style mixing of the texture and hair styles (reference 0, spec §5.1)
  # L1 of the raw render's opacity to the images' alpha (ours, not in the reference; 0: off, batches carry no alpha).
  # Stage 2 uses it to keep bald renders' opacity off the hair region (docs/stages.md).
  train.alpha_weight = 0.0
  train.view_consistency = 0.0  # weight of SphereHead's view-image consistency loss in d_main (0: off); ours, 1 if on
  train.log_every = 100
  train.sample_every = 2000
  train.num_samples = 8
  train.checkpoint_every = 2000
  train.keep_checkpoints = 3
  train.max_minutes = 0.0  # wall-clock budget of one train.py call (0: none); the run ends early as at its last step
  train.eval_every = 2000  # held-out figures of G_ema into TensorBoard (needs data.held_out_*; 0: off)
  train.eval_records = 16  # fixed subset of the held-out records scored during training
  train.init_from = ''  # a run's workdir whose latest G/G_ema/D weights start this run (stage 2); '': none

  data = config.data = ml_collections.ConfigDict()
  data.root = config_dict.placeholder(str)
  data.resolution = 512  # the images/split_<resolution> folder; batches are resized to model.output_resolution
  data.include_bald = False
  data.num_threads = 2
  data.held_out_views = ()  # camera views (0..71) never trained on, for evaluation (head360_jax/evaluate.py)
  data.held_out_expressions = ()  # expression folders never trained on, for evaluation
  return config
