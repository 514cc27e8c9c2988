"""The Head360 generator: mesh + neural texture -> hex-planes (+ hair planes) -> volume render -> SR.

Legend: ``b`` batch, ``v`` mesh vertices, ``z`` latent size, ``w`` style size, ``T`` texture
side, ``c`` texture channels, ``P`` plane side, ``r`` neural rendering resolution, ``R``
output resolution, ``C`` decoded feature channels.

Data flow (paper Fig. 2, ARCHITECTURE D3-D5, reference-spec §3.1):

```
t, c[:25] -> texture mapping -> w_t -> StyleGAN2 synthesis -> neural texture (b, T, T, c)
vertices (b, v, 3) --six orthographic rasterisations--> hex-planes (b, 3, P, P, 2c), alpha
h, c[:25] -> hair mapping -> w_h -> StyleGAN2 synthesis -> static/hair planes (b, 3, P, P, 2c)
stage 1: planes = alpha * hex + (1 - alpha) * static   (stage 2: a per-sample hair flag)
rays of c (r^2) -> coarse + importance samples -> plane features -> decoder -> composite
features (b, r, r, C), raw rgb = features[..., :3]; z_noise -> SR mapping -> SR -> image (b, R, R, 3)
```

Representations (``GeneratorConfig.representation``; the ablations of paper Table 3 and
SphereHead, one code path each; mapping, decoder, volume rendering, SR unchanged):

* ``'hexplane'``: the flow above (Head360).
* ``'triplane'``: the neural texture rasterised into three views (front, +x side, top;
  ``hexplane_views.triplanes``) packed into a tri-plane of ``c`` channels per plane, composed
  with ``c``-channel static planes as above (Next3D-style; paper Table 3 "Tri-plane").
* ``'eg3d'``: no mesh: one StyleGAN2 (``plane_synthesis``, styled by ``w_t``) generates a
  tri-plane (b, 3, P, P, 2c) (EG3D); the expression enters through the mapping's label.
* ``'spherical_triplane'``: as 'eg3d', with SphereHead's dual spherical tri-plane
  (b, 2, 3, P, P, 2c) sampled in spherical coordinates (``rendering/spherical.py``).
* ``'nerf'``: no planes: a positional-encoded NeRF MLP (``models/nerf.py``) conditioned on
  ``w_t`` gives each point's features.

With 'eg3d', 'spherical_triplane' and 'nerf' the mapping networks of ``t`` and ``h`` see the
77-d label ``[c (25), b (52)]`` (the expression; ``mapping(..., expression=b)``), since no
mesh carries it; vertices are then ignored, and there is no hair branch (``h`` unused).

Latent codes (ARCHITECTURE D3, ``GeneratorConfig.latent``): with 'codes' a training identity
``i`` has fixed codes ``t_i, h_i ~ N(0, I)`` derived from ``(codes_seed, i)``
(``identity_codes``), mapped by two networks (``texture_mapping``, ``hair_mapping``); new
heads use fresh Gaussian codes. With 'identity_factor' (the reference, reference-spec §1.6,
§3.2, §8.1 item 2) both ``t`` and ``h`` are the identity's row of the bilinear model's factor
matrix (its shape code; ``z`` = the model's rank, 50 in the reference), and one network
(``main_mapping``) maps both; a new head's look then follows its shape code. Either way the
paired L1 loss (reference-spec §5.1) compares a render with that identity's ground truth, and
a hairstyle swap gives ``h`` of another head (``training/build.py`` ``identity_latents``).

Optional front-view refinement (``mouth_unet``, ``blending_unet``; reference-spec §3.6): before
the composition, the front view's ``c`` channels of plane 0 go through the mouth crop (box from
the 12 lip landmarks) -> mouth StyleUNet -> paste, then the neural-blending StyleUNet, both
styled by the hair branch's ``w_h`` (the reference's ``eg3d_ws``).

Styles: ``ws['texture']``, ``ws['hair']`` and ``ws['sr']`` are (b, w) per sample (broadcast to
every layer), or (b, n, w) per layer for style mixing (``stylegan.mix_styles``); the hair
branch's per-layer styles drive the static planes and both StyleUNets (same layer count).

Precision (``layers.py``; reference-spec §3.3, §3.10, §5.2): ``compute_dtype`` 'float32' with
``sr_num_bf16_res`` > 0 is the reference's mixed precision (the SR blocks in bfloat16, clamp
256; the StyleGAN2/StyleUNet blocks at the ``num_bf16_res`` highest resolutions, 0 in the
reference). 'bfloat16' runs every synthesis, StyleUNet and SR convolution in bfloat16. Always
float32, because bfloat16's 8-bit mantissa is not enough there: the mapping and affine (style)
layers and the demodulation; the rasterisation and texture/plane sampling (sub-pixel
coordinates); the decoder and volume rendering (the density regulariser compares densities of
points 0.004 apart, below bfloat16's relative resolution of 2^-8; transmittance is a product
over 96 samples); every skip/toRGB image sum.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from head360_jax.geometry import arkit
from head360_jax.models import decoder as decoder_lib
from head360_jax.models import layers, nerf, stylegan, styleunet, superres
from head360_jax.rendering import hexplane, hexplane_views, mouth, ray_sampling, spherical
from head360_jax.rendering import render as render_lib


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  """Sizes of the generator (reference values in ``configs/synhead.py``, reference-spec §3)."""

  z_dim: int = 512
  latent: str = 'codes'  # 'codes' (two mappings of t, h) | 'identity_factor' (one shared mapping, the reference)
  c_dim: int = 25
  w_dim: int = 512
  mapping_layers: int = 2
  texture_resolution: int = 256
  texture_channels: int = 32
  plane_resolution: int = 256
  channel_base: int = 32768
  channel_max: int = 512
  decoder_hidden: int = 64
  feature_channels: int = 64
  num_coarse: int = 48
  num_fine: int = 48
  neural_rendering_resolution: int = 64
  image_resolution: int = 512
  sr_channels: tuple[int, ...] = (256, 128)
  sr_noise_dim: int = 512
  box_warp: float = 1.0
  stage: int = 1
  mouth_unet: bool = False  # mouth crop -> StyleUNet -> paste on the front view (spec §3.6)
  blending_unet: bool = False  # neural-blending StyleUNet over the whole front view (spec §3.6)
  compute_dtype: str = 'float32'  # 'float32' | 'bfloat16' (see the module docstring)
  num_bf16_res: int = 0  # texture/static StyleGAN2s and StyleUNets: bf16 highest resolutions (reference 0)
  sr_num_bf16_res: int = 0  # super-resolution: bf16 highest resolutions (reference 4 = all, clamp 256)
  representation: str = 'hexplane'  # REPRESENTATIONS (module docstring)
  nerf_frequencies: int = 10  # 'nerf': positional-encoding frequencies (NeRF: 10)
  nerf_hidden: int = 64  # 'nerf': MLP width (NeRF: 256)
  nerf_layers: int = 8  # 'nerf': MLP hidden layers (NeRF: 8)


LATENTS = ('codes', 'identity_factor')
REPRESENTATIONS = ('hexplane', 'triplane', 'eg3d', 'spherical_triplane', 'nerf')
MESH_REPRESENTATIONS = ('hexplane', 'triplane')  # the neural texture rasterised through the mesh


def expression_label_dim(representation: str) -> int:
  """Width of the expression appended to the mapping label: 52 for mesh-free representations, else 0."""
  return 0 if representation in MESH_REPRESENTATIONS else len(arkit.ARKIT_NAMES)


class Topology(nnx.Variable):
  """Constant mesh topology carried by the generator (arrays only; never trained)."""


class Head360Generator(nnx.Module):
  """Head360 generator (module owns parameters only; see the module docstring for the flow)."""

  def __init__(
    self,
    config: GeneratorConfig,
    *,
    faces: np.ndarray,
    face_uv_coords: np.ndarray,
    landmark_vertices: np.ndarray | None = None,
    rngs: nnx.Rngs,
  ):
    """Builds the networks.

    Args:
      config: sizes.
      faces: (f, 3) int triangles of the mesh topology.
      face_uv_coords: (f, 3, 2) per-corner OBJ UVs in [0, 1].
      landmark_vertices: (l,) int landmark vertex indices, the first 12 the lip contour
        (reference-spec §1.5); needed (and kept) only with ``config.mouth_unet``.
      rngs: parameter initialisation.

    Raises:
      ValueError: if ``config.mouth_unet`` is on without 12 landmark vertices, on an unknown
        ``latent``, ``representation`` or ``compute_dtype``, a negative ``num_bf16_res``, or a
        mesh-free representation with the StyleUNets or stage 2 (both need the mesh's planes).
    """
    if config.latent not in LATENTS:
      raise ValueError(f'latent must be one of {LATENTS}, got {config.latent!r}')
    if config.representation not in REPRESENTATIONS:
      raise ValueError(f'representation must be one of {REPRESENTATIONS}, got {config.representation!r}')
    mesh_based = config.representation in MESH_REPRESENTATIONS
    if not mesh_based and (config.mouth_unet or config.blending_unet or config.stage != 1):
      raise ValueError(
        f'representation {config.representation!r} has no mesh planes: it needs mouth_unet = blending_unet = False '
        f'and stage 1 (got {config.mouth_unet}, {config.blending_unet}, stage {config.stage})'
      )
    self.config = config
    cfg = config
    # Channels of one plane (the decoder's input): two views per hex-plane, one per tri-plane.
    plane_channels = cfg.texture_channels if cfg.representation == 'triplane' else 2 * cfg.texture_channels
    self.plane_channels = plane_channels
    self.faces = Topology(jnp.asarray(faces, jnp.int32))
    self.face_uv_coords = Topology(jnp.asarray(face_uv_coords, jnp.float32))
    dtype = layers.compute_dtype(cfg.compute_dtype)
    precision = dict(num_bf16_res=cfg.num_bf16_res, compute_dtype=dtype)
    unet_args = dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, **precision, rngs=rngs)
    if cfg.mouth_unet:
      if landmark_vertices is None or len(landmark_vertices) < 12:
        raise ValueError('mouth_unet needs the 12 lip landmark vertices (landmark_vertices[:12])')
      self.landmark_vertices = Topology(jnp.asarray(landmark_vertices[:12], jnp.int32))
      size = cfg.plane_resolution // 4  # the reference's 64² crop of the 256² plane
      self.mouth_unet = styleunet.StyleUNet(
        cfg.w_dim,
        size,
        4,
        cfg.texture_channels,
        cfg.texture_channels,
        output_resolution=cfg.plane_resolution,
        num_cond_res=size,
        **unet_args,
      )
    else:
      self.landmark_vertices = self.mouth_unet = None
    if cfg.blending_unet:
      self.blending_unet = styleunet.StyleUNet(
        cfg.w_dim,
        cfg.plane_resolution,
        cfg.plane_resolution // 4,
        cfg.texture_channels,
        cfg.texture_channels,
        output_resolution=cfg.plane_resolution,
        num_cond_res=cfg.plane_resolution,
        **unet_args,
      )
    else:
      self.blending_unet = None
    mapping_args = dict(num_layers=cfg.mapping_layers, rngs=rngs)
    label_dim = cfg.c_dim + expression_label_dim(cfg.representation)
    if cfg.latent == 'codes':
      self.main_mapping = None
      self.texture_mapping = stylegan.MappingNetwork(cfg.z_dim, label_dim, cfg.w_dim, **mapping_args)
      self.hair_mapping = stylegan.MappingNetwork(cfg.z_dim, label_dim, cfg.w_dim, **mapping_args)
    else:  # one network for both branches; no unused weights are created
      self.main_mapping = stylegan.MappingNetwork(cfg.z_dim, label_dim, cfg.w_dim, **mapping_args)
      self.texture_mapping = self.hair_mapping = None
    self.sr_mapping = stylegan.MappingNetwork(
      cfg.sr_noise_dim, cfg.c_dim, cfg.w_dim, num_layers=cfg.mapping_layers, embed_features=cfg.w_dim, rngs=rngs
    )
    synthesis_args = dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, **precision, rngs=rngs)
    # Each attribute is assigned once (NNX fixes an attribute's data/static status on first assignment).
    texture_synthesis = static_synthesis = plane_synthesis = field_mlp = None
    if mesh_based:
      texture_synthesis = stylegan.SynthesisNetwork(
        cfg.w_dim, cfg.texture_resolution, cfg.texture_channels, **synthesis_args
      )
      static_synthesis = stylegan.SynthesisNetwork(
        cfg.w_dim, cfg.plane_resolution, 3 * plane_channels, **synthesis_args
      )
    elif cfg.representation == 'nerf':
      field_mlp = nerf.NerfMLP(
        cfg.w_dim,
        plane_channels,
        frequencies=cfg.nerf_frequencies,
        hidden=cfg.nerf_hidden,
        num_layers=cfg.nerf_layers,
        rngs=rngs,
      )
    else:  # 'eg3d' (3 planes) | 'spherical_triplane' (2 spheres x 3 planes)
      planes = 3 if cfg.representation == 'eg3d' else spherical.NUM_SPHERES * spherical.PLANES_PER_SPHERE
      plane_synthesis = stylegan.SynthesisNetwork(
        cfg.w_dim, cfg.plane_resolution, planes * plane_channels, **synthesis_args
      )
    self.texture_synthesis = nnx.data(texture_synthesis)
    self.static_synthesis = nnx.data(static_synthesis)
    self.plane_synthesis = nnx.data(plane_synthesis)
    self.field_mlp = nnx.data(field_mlp)
    self.decoder = decoder_lib.Decoder(plane_channels, cfg.decoder_hidden, cfg.feature_channels, rngs=rngs)
    self.superres = superres.SuperResolution(
      cfg.feature_channels,
      cfg.w_dim,
      cfg.neural_rendering_resolution,
      cfg.image_resolution,
      channels=cfg.sr_channels,
      num_bf16_res=cfg.sr_num_bf16_res,
      compute_dtype=dtype,
      rngs=rngs,
    )

  def branch_mapping(self, branch: str) -> stylegan.MappingNetwork:
    """The mapping network of ``branch`` ('texture' | 'hair'): ``main_mapping`` for both with 'identity_factor'.

    Raises:
      ValueError: for another branch name.
    """
    if branch not in ('texture', 'hair'):
      raise ValueError(f"branch must be 'texture' or 'hair', got {branch!r}")
    if self.main_mapping is not None:
      return self.main_mapping
    return self.texture_mapping if branch == 'texture' else self.hair_mapping

  def style_layers(self) -> dict[str, int]:
    """Per-layer style counts of the codes that drive synthesis networks: ``{'t': n_t, 'h': n_h}`` (mesh
    representations), ``{'t': n}`` ('eg3d', 'spherical_triplane'), ``{}`` ('nerf': one style)."""
    if self.texture_synthesis is not None:
      return {'t': self.texture_synthesis.num_ws, 'h': self.static_synthesis.num_ws}
    if self.plane_synthesis is not None:
      return {'t': self.plane_synthesis.num_ws}
    return {}

  def mapping_label(
    self, c: Float[Array, 'b _'], expression: Float[Array, 'b 52'] | None = None
  ) -> Float[Array, 'b _']:
    """The label the ``t``/``h`` mapping networks see: the camera ``c[:, :25]``, plus the expression for mesh-free
    representations (module docstring), taken from ``expression`` or else from a 77-d ``c``.

    Raises:
      ValueError: if a mesh-free representation gets neither ``expression`` nor a 77-d label.
    """
    width = expression_label_dim(self.config.representation)
    if width == 0:
      return c[..., :25]
    if expression is None:
      if c.shape[-1] < 25 + width:
        raise ValueError(
          f'representation {self.config.representation!r} maps [c, b]: pass the (b, 52) expression or 77-d labels'
        )
      expression = c[..., 25 : 25 + width]
    return jnp.concatenate([c[..., :25], jnp.asarray(expression, c.dtype)], axis=-1)

  def mapping(
    self,
    t: Float[Array, 'b z'],
    h: Float[Array, 'b z'],
    c: Float[Array, 'b 25'],
    z_noise: Float[Array, 'b n'],
    expression: Float[Array, 'b 52'] | None = None,
  ) -> dict[str, Float[Array, 'b w']]:
    """Maps codes to (un-truncated, un-broadcast) styles ``{'texture', 'hair', 'sr'}``, each (b, w).

    ``t`` drives the texture branch, ``h`` the static/hair planes and the StyleUNets, each through
    ``branch_mapping`` (one shared network with 'identity_factor': equal codes give equal styles).
    Their label is ``mapping_label(c, expression)``; the SR mapping sees the camera only.

    Raises:
      ValueError: as ``mapping_label``.
    """
    label = self.mapping_label(c, expression)
    return {
      'texture': self.branch_mapping('texture')(t, label),
      'hair': self.branch_mapping('hair')(h, label),
      'sr': self.sr_mapping(z_noise, c[..., :25]),
    }

  def neural_texture(
    self, ws: dict[str, Array], *, noise_mode: str = 'random', key: jax.Array | None = None
  ) -> Float[Array, 'b T T c']:
    """The neural texture (b, T, T, c) synthesised from ``ws['texture']`` (b, w) or (b, n, w) (paper Fig. 2).

    Raises:
      ValueError: for a mesh-free representation (no neural texture).
    """
    if self.texture_synthesis is None:
      raise ValueError(f'representation {self.config.representation!r} has no neural texture')
    ws_texture = stylegan.layer_styles(ws['texture'], self.texture_synthesis.num_ws)
    return self.texture_synthesis(ws_texture, noise_mode=noise_mode, key=key)

  def rasterize(self, vertices: Float[Array, 'b v 3']) -> hexplane_views.MeshRaster | None:
    """The mesh-only half of ``planes`` (``hexplane_views.rasterize_meshes``): no parameter enters it.

    Returns:
      The ``raster`` that ``planes``/``__call__``/``density`` accept for these meshes, or None for
      a mesh-free representation.
    """
    cfg = self.config
    if cfg.representation not in MESH_REPRESENTATIONS:
      return None
    views = hexplane_views.TRIPLANE_VIEWS if cfg.representation == 'triplane' else tuple(range(6))
    return hexplane_views.rasterize_meshes(
      vertices, self.faces[...], self.face_uv_coords[...], resolution=cfg.plane_resolution, views=views
    )

  def planes(
    self,
    ws: dict[str, Array],
    vertices: Float[Array, 'b v 3'],
    *,
    noise_mode: str = 'random',
    key: jax.Array | None = None,
    hair: Int[Array, ' b'] | None = None,
    texture: Float[Array, 'b T T c'] | None = None,
    raster: hexplane_views.MeshRaster | None = None,
  ) -> Float[Array, 'b 3 P P 2c']:
    """Composed hex-planes (tri-planes: 'triplane') of meshes ``vertices`` (mesh units) under ``ws`` (D4, D5).

    ``texture`` replaces the synthesised neural texture (then ``ws['texture']`` is unused): the
    photo fit optimises the texture itself (paper §3.4, reference-spec §6). ``raster`` is
    ``self.rasterize(vertices)`` when the caller already has it (training computes it once per
    batch for all phases); None rasterises here.

    Returns:
      (b, 3, P, P, C) planes, C = ``self.plane_channels``.

    Raises:
      ValueError: for a mesh-free representation (use ``scene``).
    """
    cfg = self.config
    if cfg.representation not in MESH_REPRESENTATIONS:
      raise ValueError(f'representation {cfg.representation!r} has no mesh planes; use scene()')
    keys = jax.random.split(key, 2) if key is not None else (None, None)
    ws_hair = stylegan.layer_styles(ws['hair'], self.static_synthesis.num_ws)
    if texture is None:
      texture = self.neural_texture(ws, noise_mode=noise_mode, key=keys[0])
    rasterise = hexplane_views.triplanes if cfg.representation == 'triplane' else hexplane_views.hexplanes
    hex_planes = rasterise(
      vertices, self.faces[...], self.face_uv_coords[...], texture, resolution=cfg.plane_resolution, raster=raster
    )
    tex_planes = hex_planes.planes
    if cfg.mouth_unet or cfg.blending_unet:
      tex_planes = self._refine_front(tex_planes, vertices, ws['hair'], noise_mode=noise_mode, key=key)
    static = self.static_synthesis(ws_hair, noise_mode=noise_mode, key=keys[1])
    batch = static.shape[0]
    static = static.reshape(batch, cfg.plane_resolution, cfg.plane_resolution, 3, self.plane_channels)
    static = jnp.moveaxis(static, 3, 1)
    return hexplane.compose_planes(tex_planes, hex_planes.alpha, static, stage=cfg.stage, hair=hair)

  def scene(
    self,
    ws: dict[str, Array],
    vertices: Float[Array, 'b v 3'],
    *,
    noise_mode: str = 'random',
    key: jax.Array | None = None,
    hair: Int[Array, ' b'] | None = None,
    texture: Float[Array, 'b T T c'] | None = None,
    raster: hexplane_views.MeshRaster | None = None,
  ) -> Array:
    """What the representation's field reads (module docstring), one per sample.

    Returns:
      'hexplane'/'triplane': ``planes(...)`` (b, 3, P, P, C); 'eg3d': (b, 3, P, P, C);
      'spherical_triplane': (b, 2, 3, P, P, C); 'nerf': the conditioning style (b, w) (the
      mean over layers of per-layer styles). ``vertices``, ``hair``, ``texture`` and ``raster``
      (``planes``) are read by the mesh representations only.
    """
    cfg = self.config
    if cfg.representation in MESH_REPRESENTATIONS:
      return self.planes(ws, vertices, noise_mode=noise_mode, key=key, hair=hair, texture=texture, raster=raster)
    w = ws['texture']
    if cfg.representation == 'nerf':
      return w if w.ndim == 2 else jnp.mean(w, axis=1)
    out = self.plane_synthesis(stylegan.layer_styles(w, self.plane_synthesis.num_ws), noise_mode=noise_mode, key=key)
    res = cfg.plane_resolution
    if cfg.representation == 'eg3d':
      return jnp.moveaxis(out.reshape(-1, res, res, 3, self.plane_channels), 3, 1)
    out = out.reshape(-1, res, res, spherical.NUM_SPHERES, spherical.PLANES_PER_SPHERE, self.plane_channels)
    return jnp.moveaxis(out, (3, 4), (1, 2))

  def point_features(self, scene: Array, points: Float[Array, 'b n 3']) -> Float[Array, 'b n C']:
    """The decoder's input at world points (b, n, 3): plane features (Cartesian planes: ``hexplane.sample_planes``;
    'spherical_triplane': ``spherical.sample_spherical_planes``) averaged over the planes, or the NeRF MLP's
    output at the unit-cube point ``2 p / box_warp``; C = ``self.plane_channels``."""
    cfg = self.config
    if cfg.representation == 'nerf':
      return self.field_mlp(points * (2.0 / cfg.box_warp), scene)
    if cfg.representation == 'spherical_triplane':
      return hexplane.aggregate(spherical.sample_spherical_planes(scene, points, cfg.box_warp))
    return hexplane.aggregate(hexplane.sample_planes(scene, points, cfg.box_warp))

  def field(self, scene: Array, points: Float[Array, 'b n 3']) -> dict[str, Array]:
    """Raw density and features at world points: ``point_features`` then the decoder.

    Args:
      scene: from ``scene``.
      points: (b, n, 3) world units.

    Returns:
      ``{'sigma': (b, n, 1) raw density, 'features': (b, n, C_out)}`` (``Decoder``).
    """
    return self.decoder(self.point_features(scene, points))

  def _refine_front(
    self,
    planes: Float[Array, 'b 3 P P 2c'],
    vertices: Float[Array, 'b v 3'],
    w: Float[Array, 'b w'] | Float[Array, 'b n w'],
    *,
    noise_mode: str,
    key: jax.Array | None,
  ) -> Float[Array, 'b 3 P P 2c']:
    """Front view (plane 0, channels [:c]) through mouth crop/StyleUNet/paste and the blending StyleUNet."""
    channels = self.config.texture_channels
    front = planes[:, 0, :, :, :channels]
    # Keys derived by fold_in so the texture/static noise streams match the config without UNets.
    key_mouth, key_blend = (None, None) if key is None else (jax.random.fold_in(key, 2), jax.random.fold_in(key, 3))
    if self.mouth_unet is not None:
      landmarks = vertices[:, self.landmark_vertices[...]]
      box = jax.vmap(lambda lms: hexplane_views.mouth_box(lms, front.shape[1]))(jax.lax.stop_gradient(landmarks))
      crop = mouth.mouth_crop(front, box, self.mouth_unet.in_size)
      ws_mouth = stylegan.layer_styles(w, self.mouth_unet.num_ws)
      patch = self.mouth_unet(crop, ws_mouth, noise_mode=noise_mode, key=key_mouth)
      front = mouth.mouth_paste(front, patch, box)
    if self.blending_unet is not None:
      ws_blend = stylegan.layer_styles(w, self.blending_unet.num_ws)
      front = self.blending_unet(front, ws_blend, noise_mode=noise_mode, key=key_blend)
    return planes.at[:, 0, :, :, :channels].set(front)

  def __call__(
    self,
    ws: dict[str, Array],
    c: Float[Array, 'b 25'],
    vertices: Float[Array, 'b v 3'],
    *,
    key: jax.Array | None = None,
    noise_mode: str = 'random',
    hair: Int[Array, ' b'] | None = None,
    texture: Float[Array, 'b T T c'] | None = None,
    raster: hexplane_views.MeshRaster | None = None,
  ) -> dict[str, Array]:
    """Renders images from styles (``mapping``), cameras ``c`` and meshes.

    Args:
      ws: styles from ``mapping`` (possibly truncated by the caller), each (b, w) or per layer
        (b, n, w) (the synthesis network's ``num_ws``; ``ws['sr']``: only the last is read).
      c: (b, 25) cameras (docs/conventions.md); (b, 77) labels are accepted.
      vertices: (b, v, 3) meshes in mesh units (``bilinear.vertices(model, s, b)``).
      key: randomness for synthesis noise and ray jitter; None = deterministic
        (constant noise buffers, unjittered samples).
      noise_mode: 'random' | 'const' | 'none' for the StyleGAN2 noise inputs.
      hair: (b,) 0/1 per-sample hair flag: required in stage 2; in stage 1, 0 turns the
        static (hair) planes off (``hexplane.compose_planes``).
      texture: optional (b, T, T, c) neural texture used instead of the synthesised one.
      raster: optional ``self.rasterize(vertices)``, computed by the caller (``planes``).

    Returns:
      ``image`` (b, R, R, 3), ``image_raw`` (b, r, r, 3), both roughly in [-1, 1] with a
      white background at +1; ``image_depth`` (b, r, r, 1) in world units; ``image_alpha``
      (b, r, r, 1) the raw render's opacity in [0, 1].
    """
    cfg = self.config
    if key is None and noise_mode == 'random':
      noise_mode = 'const'
    keys = jax.random.split(key, 2) if key is not None else (None, None)
    scene = self.scene(ws, vertices, noise_mode=noise_mode, key=keys[0], hair=hair, texture=texture, raster=raster)
    origins, directions = ray_sampling.rays_from_camera(c[..., :25], cfg.neural_rendering_resolution)
    out = render_lib.render_field(
      lambda points: self.field(scene, points),
      origins,
      directions,
      num_coarse=cfg.num_coarse,
      num_fine=cfg.num_fine,
      key=keys[1],
      box_warp=cfg.box_warp,
    )
    res = cfg.neural_rendering_resolution
    features = out['features'].reshape(-1, res, res, cfg.feature_channels)
    # render_rays already maps the white-backed features to [-1, 1] (spec §3.9).
    image_raw = features[..., :3]
    ws_sr = stylegan.broadcast(ws['sr'], self.superres.num_ws) if ws['sr'].ndim == 2 else ws['sr']
    image = self.superres(image_raw, features, ws_sr)
    return {
      'image': image,
      'image_raw': image_raw,
      'image_depth': out['depth'].reshape(-1, res, res, 1),
      'image_alpha': out['weights_sum'].reshape(-1, res, res, 1),
    }

  def density(
    self,
    ws: dict[str, Array],
    vertices: Float[Array, 'b v 3'],
    points: Float[Array, 'b n 3'],
    *,
    key: jax.Array | None = None,
    noise_mode: str = 'random',
    hair: Int[Array, ' b'] | None = None,
    raster: hexplane_views.MeshRaster | None = None,
  ) -> Float[Array, 'b n 1']:
    """Raw density ``sigma`` at world points (density regularisation, spec §5.1); ``hair``, ``raster``: ``__call__``."""
    if key is None and noise_mode == 'random':
      noise_mode = 'const'
    scene = self.scene(ws, vertices, noise_mode=noise_mode, key=key, hair=hair, raster=raster)
    return self.field(scene, points)['sigma']


def identity_codes(identity: Int[Array, ' b'], z_dim: int, seed: int) -> tuple[Float[Array, 'b z'], ...]:
  """Fixed Gaussian texture and hair codes ``(t, h)`` of training identities, (b, z_dim) each (latent 'codes')."""
  base = jax.random.key(seed)

  def one(i):
    key = jax.random.fold_in(base, i)
    key_t, key_h = jax.random.split(key)
    return jax.random.normal(key_t, (z_dim,)), jax.random.normal(key_h, (z_dim,))

  return jax.vmap(one)(jnp.asarray(identity, jnp.int32))
