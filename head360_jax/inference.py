"""Batch rendering helpers for ``render.py``: orbit cameras, rendering, image grids and videos.

Legend: ``b`` batch, ``n`` views, ``v`` vertices, ``R`` image side, ``r`` shape-code rank, ``z`` latent size.

Images leave the generator in [-1, 1] (white background = +1, docs/conventions.md) and are
written as uint8 sRGB. Videos go through imageio (GIF via pillow, MP4 via imageio-ffmpeg).
"""

import pathlib
import warnings

import imageio.v3 as iio
import imageio_ffmpeg
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from head360_jax import checkpoint
from head360_jax.geometry import bilinear, camera
from head360_jax.training.build import build_models, identity_latents, new_head_latents


def parse_ranges(text: str) -> list[int]:
  """``"0,2,5-7"`` -> ``[0, 2, 5, 6, 7]`` (identities and seeds on the command line and in job files).

  Raises:
    ValueError: on a malformed item.
  """
  values = []
  for item in filter(None, (part.strip() for part in text.split(','))):
    first, _, last = item.partition('-')
    try:
      values.extend(range(int(first), int(last or first) + 1))
    except ValueError:
      raise ValueError(f'expected integers or ranges like 0-3, got {item!r}') from None
  return values


def orbit_labels(
  num_views: int,
  pitch_deg: float = 0.0,
  *,
  radius: float = camera.CAMERA_RADIUS,
  focal: float = camera.FOCAL,
  start_yaw_deg: float = 0.0,
) -> np.ndarray:
  """25-d labels of ``num_views`` cameras on a full 360 deg yaw orbit at one pitch, (n, 25) float32.

  Yaw runs from ``start_yaw_deg`` in equal steps (0 = frontal, docs/conventions.md).

  Raises:
    ValueError: if ``num_views`` < 1 or the pitch is outside [-90, 90].
  """
  if num_views < 1:
    raise ValueError(f'num_views must be >= 1, got {num_views}')
  if not -90.0 <= pitch_deg <= 90.0:
    raise ValueError(f'pitch must be in [-90, 90] degrees, got {pitch_deg}')
  yaw = start_yaw_deg + np.arange(num_views, dtype=np.float32) * (360.0 / num_views)
  cam2world = camera.orbit_cam2world(yaw, np.full_like(yaw, pitch_deg), radius)
  intrinsics = jnp.broadcast_to(jnp.asarray(camera.normalized_intrinsics(focal)), (num_views, 3, 3))
  return np.asarray(camera.pack_label(cam2world, intrinsics))


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Maps images in [-1, 1] (any leading dims, channels last) to uint8 [0, 255]."""
  return np.clip(np.rint((np.asarray(images, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
  """Tiles (n, h, w, c) images into one (rows*h, columns*w, c) image (missing tiles white).

  Raises:
    ValueError: if ``images`` is not 4-d or ``columns`` < 1.
  """
  images = np.asarray(images)
  if images.ndim != 4 or columns < 1:
    raise ValueError(f'expected (n, h, w, c) images and columns >= 1, got {images.shape}, {columns}')
  n, h, w, c = images.shape
  rows = -(-n // columns)
  fill = np.iinfo(images.dtype).max if images.dtype.kind == 'u' else 1.0
  grid = np.full((rows * h, columns * w, c), fill, images.dtype)
  for i, image in enumerate(images):
    grid[(i // columns) * h : (i // columns + 1) * h, (i % columns) * w : (i % columns + 1) * w] = image
  return grid


def write_video(path: pathlib.Path, frames: np.ndarray, fps: int = 24) -> None:
  """Writes (n, h, w, 3) uint8 frames as a GIF or MP4 (by suffix), looping for GIFs.

  Raises:
    ValueError: for another suffix.
  """
  path = pathlib.Path(path)
  if path.suffix == '.gif':
    iio.imwrite(path, frames, duration=1000 / fps, loop=0)
  elif path.suffix == '.mp4':
    _write_mp4(path, frames, fps)
  else:
    raise ValueError(f'{path}: video must end in .gif or .mp4')


def _write_mp4(path: pathlib.Path, frames: np.ndarray, fps: int) -> None:
  h, w = frames.shape[1:3]
  writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=1, quality=8)
  with warnings.catch_warnings():
    # Python warns about fork() in a multithreaded (JAX) process; the child execs ffmpeg at once.
    warnings.simplefilter('ignore', RuntimeWarning)
    writer.send(None)
  for frame in frames:
    writer.send(np.ascontiguousarray(frame))
  writer.close()


class HeadRenderer:
  """Renders heads of a trained run: (shape code s, expression b, codes t/h) from any cameras.

  Loads the EMA generator of ``workdir`` (arrays only, ``checkpoint.restore_generator_ema``)
  and the dataset's bilinear model. A head is ``(s, t, h)`` (ARCHITECTURE D3): ``s`` drives
  the mesh with the blendshape weights ``b`` (paper Eq. 1); ``t`` and ``h`` the texture and
  hair styles (with ``model.latent = 'identity_factor'``, shape codes like ``s``: a head's own
  look is ``t = h = s``, and ``h`` of another head swaps the hairstyle). The mapping is
  conditioned on the frontal camera so a head keeps its look along an orbit; ``psi``
  truncates the styles towards ``w_avg``.
  """

  def __init__(self, workdir: str | pathlib.Path, *, step: int | None = None, chunk: int = 8, refine: bool = True):
    """Loads a run (``workdir``; ``step``: its checkpoint, default the latest).

    A RefineNet run (stage 3, ``training/refine_loop.py``) loads the run it refines
    (``train.init_from``) and applies its RefineNet to every image unless ``refine`` is False.

    Raises:
      FileNotFoundError: if the run has no config or checkpoint.
      ValueError: if a refine run's base run is missing.
    """
    from head360_jax.training import refine_loop  # local: plain runs do not need it

    self.refiner, self.refine_step = None, None
    own = checkpoint.read_config(workdir)
    if refine_loop.is_refine_run(own):
      if refine:
        self.refiner, self.refine_step = refine_loop.restore_refiner(workdir)
      workdir = refine_loop.base_workdir(workdir, own)
    self.generator, self.g_stats, self.config, self.step = checkpoint.restore_generator_ema(workdir, build_models, step)
    self.networks = build_models(self.config)
    self.model = bilinear.load(pathlib.Path(self.config.data.root) / 'bilinear.npz')
    self.chunk = chunk
    graphdef, self._params, self._rest = nnx.split(self.generator, nnx.Param, ...)
    frontal = jnp.asarray(camera.dataset_cameras()[camera.FRONTAL_VIEW])

    def styles(params, rest, t, h, psi, expression):
      generator = nnx.merge(graphdef, params, rest)
      z_noise = jax.random.normal(jax.random.key(0), (1, generator.config.sr_noise_dim))
      ws = generator.mapping(t[None], h[None], frontal[None], z_noise, expression=expression[None])
      for name in ('texture', 'hair'):
        w_avg = self.g_stats.get(f'w_avg_{name}')
        if w_avg is not None:
          ws[name] = w_avg + psi * (ws[name] - w_avg)
      return ws

    refiner_graphdef, self._refiner_params = (
      nnx.split(self.refiner, nnx.Param) if self.refiner is not None else (None, None)
    )

    def render(params, rest, ws, vertices, labels, texture, hair, refiner_params):  # vertices (n, v, 3)
      generator = nnx.merge(graphdef, params, rest)
      n = labels.shape[0]
      ws = jax.tree.map(lambda w: jnp.broadcast_to(w, (n, *w.shape[1:])), ws)
      if texture is not None:
        texture = jnp.broadcast_to(texture, (n, *texture.shape))
      hair = jnp.broadcast_to(hair, (n,))
      image = generator(ws, labels, vertices, key=None, noise_mode='const', texture=texture, hair=hair)['image']
      if refiner_params is not None:  # stage 3: pix2pixHD's global generator on the finished image
        image = nnx.merge(refiner_graphdef, refiner_params)(image)
      return image

    self._styles = jax.jit(styles)
    self._render = jax.jit(render)

  def identity(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(s, t, h)`` of training identity ``index``: (r,), (z,), (z,) float32 (``t = h = s`` with 'identity_factor').

    Raises:
      ValueError: if ``index`` is not a training identity.
    """

    if not 0 <= index < len(self.model.identity_codes):
      raise ValueError(f'identity must be in [0, {len(self.model.identity_codes)}), got {index}')
    t, h = identity_latents(self.config.model, self.model.identity_codes, np.array([index]))
    return self.model.identity_codes[index], np.asarray(t[0]), np.asarray(h[0])

  def random_head(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(s, t, h)`` of a new head from ``seed``: (r,), (z,), (z,) float32.

    ``s`` is drawn from the shape prior; ``t, h ~ N(0, I)``, or ``t = h = s`` with
    ``model.latent = 'identity_factor'`` (a new head's look follows its shape, as in the reference).
    """

    key_s, key_t, key_h = jax.random.split(jax.random.key(seed), 3)
    s = np.asarray(bilinear.sample_shape_codes(self.model, key_s, 1)[0])
    t, h = new_head_latents(self.config.model, s, key_t, key_h)
    return s, np.asarray(t), np.asarray(h)

  def styles(
    self, t: np.ndarray, h: np.ndarray, psi: float = 1.0, expression: np.ndarray | None = None
  ) -> dict[str, jax.Array]:
    """Styles ``{'texture', 'hair', 'sr'}``, each (1, w), of codes ``t, h`` (z,) truncated by ``psi``.

    The mapping sees the frontal camera, and the super-resolution noise code is fixed, so a
    head looks the same from every view and in every call. ``expression`` (52,) ARKit weights
    (default neutral) enter the styles of mesh-free representations only ('eg3d',
    'spherical_triplane', 'nerf'; ``Head360Generator.mapping_label``): their renders follow
    the expression given here, not the mesh.
    """
    expression = np.zeros(52, np.float32) if expression is None else np.asarray(expression, np.float32)
    return self._styles(
      self._params, self._rest, jnp.asarray(t), jnp.asarray(h), jnp.float32(psi), jnp.asarray(expression)
    )

  def tuned_params(self, tuned: dict[str, np.ndarray]):
    """The generator's parameters with a photo fit's pivotal-tuning weights in place (``fitting.tuning``).

    Raises:
      ValueError: if the weights do not belong to this run's generator.
    """
    from head360_jax.fitting import tuning  # local: only fitted heads need it (cv2, optax)

    return tuning.apply_tuned(self._params, tuned)

  def render_styles(
    self,
    ws: dict,
    vertices: np.ndarray,
    labels: np.ndarray,
    texture: np.ndarray | None = None,
    *,
    params=None,
    bald: bool = False,
  ) -> np.ndarray:
    """Images (n, R, R, 3) in [-1, 1] of a mesh under styles ``ws`` from cameras ``labels`` (n, 25).

    ``vertices`` is one mesh (v, 3) for every camera or one per camera (n, v, 3) (an
    animation). Cameras are rendered ``chunk`` at a time (fewer if there are fewer); the
    last chunk is padded to full size so that every call runs the same compiled program.
    ``texture`` (T, T, c) replaces the synthesised neural texture (a photo fit's result);
    ``params`` the generator's parameters (``tuned_params``); ``bald`` renders without the
    static/hair planes (a stage-2 run's bald head; in a stage-1 run the mesh-covered part
    only, ``hexplane.compose_planes``).

    Raises:
      ValueError: if ``vertices`` is per camera but their counts differ.
    """
    texture = None if texture is None else jnp.asarray(texture)
    vertices = np.asarray(vertices, np.float32)
    labels = np.asarray(labels, np.float32)
    n = len(labels)
    if vertices.ndim == 3 and len(vertices) != n:
      raise ValueError(f'{len(vertices)} meshes for {n} cameras')
    per_camera = vertices.ndim == 3
    params = self._params if params is None else params
    hair = jnp.float32(0.0 if bald else 1.0)
    size = min(self.chunk, n)
    images = []
    for start in range(0, n, size):
      index = np.minimum(np.arange(start, start + size), n - 1)  # pad with the last camera
      # one mesh per camera always: stills, orbits and animations share one compiled program
      chunk_vertices = vertices[index] if per_camera else np.broadcast_to(vertices, (size, *vertices.shape))
      image = self._render(
        params,
        self._rest,
        ws,
        jnp.asarray(chunk_vertices),
        jnp.asarray(labels[index]),
        texture,
        hair,
        self._refiner_params,
      )
      images.append(np.asarray(image)[: min(size, n - start)])
    return np.concatenate(images)

  def render(
    self,
    s: np.ndarray,
    t: np.ndarray,
    h: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray,
    psi: float = 1.0,
    *,
    bald: bool = False,
  ) -> np.ndarray:
    """Images (n, R, R, 3) in [-1, 1] of one head with ARKit weights ``b`` (52,) from cameras ``labels`` (n, 25).

    ``bald``: without the static/hair planes (``render_styles``).
    """
    return self.render_styles(self.styles(t, h, psi, b), bilinear.vertices(self.model, s, b), labels, bald=bald)


def write_image(path: pathlib.Path, image: np.ndarray) -> None:
  """Writes an (h, w, 3) uint8 image (PNG by suffix)."""
  iio.imwrite(pathlib.Path(path), np.asarray(image))
