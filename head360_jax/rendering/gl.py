"""OpenGL (moderngl on EGL) perspective renderer for the dataset builder and as a test reference.

Legend: ``v`` vertices, ``f`` triangles, ``t`` texture coordinates, ``n`` views,
``h w`` image rows/columns, ``s`` supersampling factor.

Conventions are those of ``geometry/camera.py`` (reference-spec §1.3-1.4): vertices in
world units, ``cam2world`` in the OpenCV convention (x right, y down, z forward),
intrinsics normalised by the image size, row 0 = image top. The projection matrix maps a
camera-space point to the window position ``(fx x/z + cx, fy y/z + cy) * resolution``,
exactly ``camera.project``; GL samples at pixel centres ``i + 0.5``, so a pixel is
covered when the triangle contains its centre (standard rasterisation, top-left rule).
Because window row 0 is read back first, the image needs no flip.

Shading (``lighting=True``): Lambert with world-fixed lights, so a surface point has the
same colour in every view (the GAN's decoder has no view direction input):
``colour = albedo * (AMBIENT + sum_k KEY_INTENSITIES[k] * max(0, n . LIGHT_DIRECTIONS[k]))``.
The key light comes from the front, upper left of the subject; the rim light from behind
and above, so the back of the head is not flat. Triangles are double-sided: the normal is
flipped to face the viewer. ``lighting=False`` returns the albedo.

Depth is exact: the camera z of each fragment (an affine function of position, hence
interpolated exactly by perspective-correct interpolation) is written to a float32
colour attachment, not read back from the non-linear depth buffer.

Anti-aliasing: ``supersample = s`` renders at ``s x resolution`` and box-filters
premultiplied colour and alpha down; ``s = 1`` is plain single-sample rasterisation.
"""

import dataclasses
from collections.abc import Iterator, Sequence

import moderngl
import numpy as np

AMBIENT = 0.45
LIGHT_DIRECTIONS = np.array([[-0.45, 0.55, 0.70], [0.3, 0.5, -0.8]], np.float32)  # towards the lights, world
LIGHT_DIRECTIONS /= np.linalg.norm(LIGHT_DIRECTIONS, axis=-1, keepdims=True)
KEY_INTENSITIES = np.array([0.65, 0.25], np.float32)
DEFAULT_ALBEDO = (0.75, 0.75, 0.75, 1.0)

_VERTEX_SHADER = """
#version 330
uniform mat4 view_projection;
in vec3 in_position;
in vec3 in_normal;
in vec4 in_color;
in vec2 in_uv;
out vec3 world_position;
out vec3 world_normal;
out vec4 color;
out vec2 uv;
void main() {
  world_position = in_position;
  world_normal = in_normal;
  color = in_color;
  uv = in_uv;
  gl_Position = view_projection * vec4(in_position, 1.0);
}
"""

_UV_VERTEX_SHADER = """
#version 330
in vec2 in_uv;
in vec3 in_value;
out vec3 value;
void main() {
  value = in_value;
  gl_Position = vec4(in_uv * 2.0 - 1.0, 0.0, 1.0);
}
"""

_UV_FRAGMENT_SHADER = """
#version 330
in vec3 value;
out vec4 out_value;
void main() { out_value = vec4(value, 1.0); }
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 eye;
uniform vec3 camera_z;
uniform bool use_texture;
uniform bool lighting;
uniform float ambient;
uniform vec3 light_directions[2];
uniform float light_intensities[2];
uniform sampler2D albedo_texture;
in vec3 world_position;
in vec3 world_normal;
in vec4 color;
in vec2 uv;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec2 out_depth;
void main() {
  vec4 albedo = color;
  if (use_texture) {
    // Texture row 0 is uploaded first (t = 0) and holds v = 1 (image convention).
    albedo = texture(albedo_texture, vec2(uv.x, 1.0 - uv.y));
    if (albedo.a < 0.5) discard;  // alpha-tested cards (hair strands); no sorting needed
    albedo.a = 1.0;
  }
  vec3 rgb = albedo.rgb;
  if (lighting) {
    vec3 n = normalize(world_normal);
    if (dot(n, eye - world_position) < 0.0) n = -n;  // double-sided
    float shade = ambient;
    for (int k = 0; k < 2; ++k) shade += light_intensities[k] * max(dot(n, light_directions[k]), 0.0);
    rgb *= shade;
  }
  out_color = vec4(clamp(rgb, 0.0, 1.0), 1.0);
  out_depth = vec2(dot(world_position - eye, camera_z), 1.0);
}
"""


@dataclasses.dataclass(frozen=True, eq=False)
class Mesh:
  """One mesh of a scene, with either per-vertex colours or a UV texture.

  Attributes:
    vertices: (v, 3) positions, world units.
    faces: (f, 3) int triangle indices into ``vertices``.
    vertex_colors: optional (v, 3) or (v, 4) float colours in [0, 1].
    uvs: optional (t, 2) texture coordinates in [0, 1], v up (OBJ convention).
    face_uvs: optional (f, 3) indices into ``uvs`` (seams kept).
    texture: optional (H, W, 3|4) uint8 or float [0, 1] image, row 0 = v = 1. Texels with
      alpha < 0.5 are cut out (alpha test). Without colours or texture the mesh is grey.
    tile_texture: repeat the texture outside [0, 1] (tiling strand textures) instead of
      clamping at its border.
  """

  vertices: np.ndarray
  faces: np.ndarray
  vertex_colors: np.ndarray | None = None
  uvs: np.ndarray | None = None
  face_uvs: np.ndarray | None = None
  texture: np.ndarray | None = None
  tile_texture: bool = False

  def __post_init__(self):
    v = np.asarray(self.vertices)
    f = np.asarray(self.faces)
    if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)):
      raise ValueError(f'vertices must be finite (v, 3), got shape {v.shape}')
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
      raise ValueError(f'faces must be (f, 3) indices into {len(v)} vertices, got shape {f.shape}')
    if self.vertex_colors is not None and np.shape(self.vertex_colors) not in ((len(v), 3), (len(v), 4)):
      raise ValueError(f'vertex_colors must be ({len(v)}, 3|4), got {np.shape(self.vertex_colors)}')
    textured = (self.uvs is not None, self.face_uvs is not None, self.texture is not None)
    if any(textured) and not all(textured):
      raise ValueError('give uvs, face_uvs and texture together, or none of them')
    if all(textured):
      if np.shape(self.face_uvs) != f.shape or np.max(self.face_uvs) >= len(self.uvs) or np.min(self.face_uvs) < 0:
        raise ValueError(f'face_uvs must be {f.shape} indices into {len(self.uvs)} uvs')
      if np.ndim(self.texture) != 3 or np.shape(self.texture)[2] not in (3, 4):
        raise ValueError(f'texture must be (H, W, 3|4), got {np.shape(self.texture)}')


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Area-weighted unit vertex normals (v, 3) float32 (zero for unused vertices)."""
  tri = vertices[faces]
  face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 x area
  normals = np.zeros_like(vertices, dtype=np.float64)
  for corner in range(3):
    np.add.at(normals, faces[:, corner], face_normals)
  length = np.linalg.norm(normals, axis=-1, keepdims=True)
  return (normals / np.maximum(length, 1e-20)).astype(np.float32)


def view_projection(cam2world: np.ndarray, intrinsics: np.ndarray, near: float, far: float) -> np.ndarray:
  """The 4x4 GL matrix world -> clip that reproduces ``camera.project`` (see module doc).

  ``x_ndc = 2 (fx x/z + cx) - 1`` and ``y_ndc = 2 (fy y/z + cy) - 1`` in camera space, so
  window ``(x, y) = camera.project(...)`` with window row 0 = image row 0; camera z in
  ``[near, far]`` maps to depth ``[-1, 1]``. Computed in float64.
  """
  rotation, eye = cam2world[:3, :3].astype(np.float64), cam2world[:3, 3].astype(np.float64)
  view = np.eye(4)
  view[:3, :3] = rotation.T
  view[:3, 3] = -rotation.T @ eye
  fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
  projection = np.array(
    [
      [2 * fx, 0, 2 * cx - 1, 0],
      [0, 2 * fy, 2 * cy - 1, 0],
      [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
      [0, 0, 1, 0],
    ]
  )
  return projection @ view


class Renderer:
  """An EGL context with the shader program and framebuffers, reused across calls.

  Create one per thread (a GL context is bound to the thread that made it). Creating a
  context takes ~0.2 s, which is why ``render_mesh`` takes an optional ``renderer``.

  Raises:
    RuntimeError: if no EGL context can be created (no Mesa/EGL libraries).
  """

  def __init__(self):
    try:
      self.ctx = moderngl.create_standalone_context(backend='egl', require=330)
    except Exception as e:  # moderngl raises plain Exception subclasses from the C layer
      raise RuntimeError(f'cannot create an EGL OpenGL 3.3 context ({e}); is Mesa EGL installed?') from e
    self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
    self.program['ambient'].value = AMBIENT
    self.program['light_directions'].write(LIGHT_DIRECTIONS.tobytes())
    self.program['light_intensities'].write(KEY_INTENSITIES.tobytes())
    self.program['albedo_texture'].value = 0
    self.uv_program = self.ctx.program(vertex_shader=_UV_VERTEX_SHADER, fragment_shader=_UV_FRAGMENT_SHADER)
    self._framebuffers: dict[int, moderngl.Framebuffer] = {}

  def _framebuffer(self, size: int) -> moderngl.Framebuffer:
    if size not in self._framebuffers:
      self._framebuffers[size] = self.ctx.framebuffer(
        color_attachments=[
          self.ctx.renderbuffer((size, size), 4, dtype='f4'),
          self.ctx.renderbuffer((size, size), 2, dtype='f4'),
        ],
        depth_attachment=self.ctx.depth_renderbuffer((size, size)),
      )
    return self._framebuffers[size]

  def _upload(self, mesh: Mesh):
    """Vertex/index buffers, VAO and texture of a mesh; a vertex with several UVs (seam) is split."""
    vertices = np.asarray(mesh.vertices, np.float32)
    faces = np.asarray(mesh.faces, np.int64)
    normals = vertex_normals(vertices, faces)
    colors = np.broadcast_to(np.asarray(DEFAULT_ALBEDO, np.float32), (len(vertices), 4))
    if mesh.vertex_colors is not None:
      colors = np.asarray(mesh.vertex_colors, np.float32)
      if colors.shape[1] == 3:
        colors = np.concatenate([colors, np.ones_like(colors[:, :1])], axis=1)
    texture = None
    if mesh.texture is None:
      corner_vertex, indices = np.arange(len(vertices)), faces.reshape(-1)
      uvs = np.zeros((len(vertices), 2), np.float32)
    else:
      # One GL vertex per distinct (position, uv) pair: seams stay sharp, shared corners are shaded once.
      keys = faces.reshape(-1) * (len(mesh.uvs) + 1) + np.asarray(mesh.face_uvs, np.int64).reshape(-1)
      unique, first, indices = np.unique(keys, return_index=True, return_inverse=True)
      corner_vertex = faces.reshape(-1)[first]
      uvs = np.asarray(mesh.uvs, np.float32)[np.asarray(mesh.face_uvs).reshape(-1)[first]]
      image = np.asarray(mesh.texture)
      if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
      texture = self.ctx.texture(
        (image.shape[1], image.shape[0]), image.shape[2], np.ascontiguousarray(image).tobytes()
      )
      texture.build_mipmaps()
      texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
      texture.repeat_x = texture.repeat_y = mesh.tile_texture
    data = np.concatenate([vertices[corner_vertex], normals[corner_vertex], colors[corner_vertex], uvs], axis=1)
    buffer = self.ctx.buffer(np.ascontiguousarray(data, np.float32).tobytes())
    index_buffer = self.ctx.buffer(np.ascontiguousarray(indices, np.uint32).tobytes())
    vao = self.ctx.vertex_array(
      self.program,
      [(buffer, '3f 3f 4f 2f', 'in_position', 'in_normal', 'in_color', 'in_uv')],
      index_buffer=index_buffer,
      index_element_size=4,
    )
    return (buffer, index_buffer), vao, texture

  def render_views(
    self,
    meshes: Sequence[Mesh],
    cam2world: np.ndarray,
    intrinsics: np.ndarray,
    resolution: int,
    *,
    lighting: bool = True,
    supersample: int = 1,
  ) -> Iterator[dict[str, np.ndarray]]:
    """Renders a scene of several meshes from ``n`` cameras, uploading the meshes once.

    Args:
      meshes: the scene; each with its own colours or texture.
      cam2world: (n, 4, 4) or (4, 4) OpenCV camera-to-world transforms, world units.
      intrinsics: (n, 3, 3) or (3, 3) normalised intrinsics.
      resolution: output width = height in pixels, >= 1.
      lighting: Lambert + ambient shading (module doc) or plain albedo.
      supersample: integer factor >= 1 of the box-filtered supersampling.

    Yields:
      Per view a dict: ``rgba`` (h, w, 4) float32 in [0, 1], colour not premultiplied
      (0 where empty); ``depth`` (h, w) float32 camera z in world units of the nearest
      covered subsample (``np.inf`` where empty); ``coverage`` (h, w) bool, True where
      any subsample is covered (exactly the rasterised pixels when ``supersample = 1``).

    Raises:
      ValueError: for bad shapes, a resolution < 1 or supersample < 1.
    """
    cam2world = np.asarray(cam2world, np.float64).reshape(-1, 4, 4)
    intrinsics = (
      np.broadcast_to(np.asarray(intrinsics, np.float64), (len(cam2world), 3, 3))
      if np.ndim(intrinsics) == 2
      else np.asarray(intrinsics, np.float64)
    )
    if intrinsics.shape != (len(cam2world), 3, 3):
      raise ValueError(f'intrinsics must be (3, 3) or ({len(cam2world)}, 3, 3), got {intrinsics.shape}')
    if int(resolution) != resolution or resolution < 1 or int(supersample) != supersample or supersample < 1:
      raise ValueError(f'resolution and supersample must be positive integers, got {resolution}, {supersample}')
    resolution, supersample = int(resolution), int(supersample)
    size = resolution * supersample
    fbo = self._framebuffer(size)
    uploaded = [self._upload(mesh) for mesh in meshes]
    points = np.concatenate([np.asarray(m.vertices, np.float64) for m in meshes]) if meshes else np.zeros((0, 3))
    self.program['lighting'].value = bool(lighting)
    try:
      for c2w, k in zip(cam2world, intrinsics, strict=True):
        # Tight near/far planes around the scene keep the 24-bit depth test precise.
        z = (points - c2w[:3, 3]) @ c2w[:3, 2]
        far = max(float(z.max()) * 1.01, 1e-3) if len(z) else 1.0
        near = max(float(z.min()) * 0.99, far * 1e-4) if len(z) else 1e-3
        self.program['view_projection'].write(view_projection(c2w, k, near, far).T.astype('f4').tobytes())
        self.program['eye'].value = tuple(c2w[:3, 3])
        self.program['camera_z'].value = tuple(c2w[:3, 2])
        fbo.use()
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.disable(moderngl.CULL_FACE)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        for _, vao, texture in uploaded:
          self.program['use_texture'].value = texture is not None
          if texture is not None:
            texture.use(0)
          vao.render(moderngl.TRIANGLES)
        color = np.frombuffer(fbo.read(components=4, dtype='f4', attachment=0), np.float32).reshape(size, size, 4)
        depth = np.frombuffer(fbo.read(components=2, dtype='f4', attachment=1), np.float32).reshape(size, size, 2)
        yield _downsample(color, depth, supersample)
    finally:
      for buffers, vao, texture in uploaded:
        vao.release()
        for buffer in buffers:
          buffer.release()
        if texture is not None:
          texture.release()

  def uv_attributes(
    self, uvs: np.ndarray, face_uvs: np.ndarray, faces: np.ndarray, attributes: np.ndarray, size: int
  ) -> tuple[np.ndarray, np.ndarray]:
    """Rasterises per-vertex attributes into UV space (texture baking).

    Args:
      uvs: (t, 2) texture coordinates in [0, 1], v up; face_uvs: (f, 3) indices into them.
      faces: (f, 3) indices into ``attributes``.
      attributes: (v, c) float values, interpolated linearly over each UV triangle.
      size: texture width = height in texels.

    Returns:
      ``(values (size, size, c) float32, covered (size, size) bool)`` with row 0 = v = 1
      (image convention); texels whose centre no UV triangle covers hold 0.

    Raises:
      ValueError: for inconsistent shapes.
    """
    attributes = np.asarray(attributes, np.float32)
    faces, face_uvs = np.asarray(faces, np.int64), np.asarray(face_uvs, np.int64)
    if attributes.ndim != 2 or faces.shape != face_uvs.shape or faces.max() >= len(attributes):
      raise ValueError(
        f'attributes (v, c) {attributes.shape}, faces {faces.shape} and face_uvs {face_uvs.shape} do not match'
      )
    fbo = self._framebuffer(size)
    corner_uvs = np.asarray(uvs, np.float32)[face_uvs.reshape(-1)]
    values, covered = [], None
    for start in range(0, attributes.shape[1], 3):  # three channels per pass, alpha = coverage
      chunk = np.zeros((len(attributes), 3), np.float32)
      chunk[:, : attributes.shape[1] - start] = attributes[:, start : start + 3]
      data = np.concatenate([corner_uvs, chunk[faces.reshape(-1)]], axis=1)
      buffer = self.ctx.buffer(np.ascontiguousarray(data).tobytes())
      vao = self.ctx.vertex_array(self.uv_program, [(buffer, '2f 3f', 'in_uv', 'in_value')])
      fbo.use()
      self.ctx.disable(moderngl.DEPTH_TEST)
      fbo.clear(0.0, 0.0, 0.0, 0.0)
      vao.render(moderngl.TRIANGLES)
      image = np.frombuffer(fbo.read(components=4, dtype='f4', attachment=0), np.float32).reshape(size, size, 4)
      vao.release()
      buffer.release()
      image = image[::-1]  # window row 0 is v = 0; textures store v = 1 first
      values.append(image[..., :3])
      covered = image[..., 3] > 0.5
    return np.concatenate(values, axis=-1)[..., : attributes.shape[1]], covered

  def release(self):
    """Frees the GL context; the renderer cannot be used afterwards."""
    self.ctx.release()


def _downsample(color: np.ndarray, depth: np.ndarray, s: int) -> dict[str, np.ndarray]:
  """Box filter of an (s h, s w) render to (h, w) (see ``Renderer.render_views``)."""
  covered = depth[..., 1] > 0.5
  z = np.where(covered, depth[..., 0], np.inf).astype(np.float32)
  if s == 1:
    return {'rgba': color.copy(), 'depth': z, 'coverage': covered}
  h = color.shape[0] // s
  alpha = color[..., 3].reshape(h, s, h, s).mean(axis=(1, 3))
  premultiplied = (color[..., :3] * color[..., 3:]).reshape(h, s, h, s, 3).mean(axis=(1, 3))
  rgb = premultiplied / np.maximum(alpha, 1e-12)[..., None]
  return {
    'rgba': np.concatenate([rgb, alpha[..., None]], -1).astype(np.float32),
    'depth': z.reshape(h, s, h, s).min(axis=(1, 3)),
    'coverage': covered.reshape(h, s, h, s).any(axis=(1, 3)),
  }


_DEFAULT: Renderer | None = None


def default_renderer() -> Renderer:
  """The lazily created renderer of the calling module (one EGL context per process)."""
  global _DEFAULT
  if _DEFAULT is None:
    _DEFAULT = Renderer()
  return _DEFAULT


def render_meshes(
  meshes: Sequence[Mesh],
  cam2world: np.ndarray,
  intrinsics: np.ndarray,
  resolution: int,
  *,
  lighting: bool = True,
  supersample: int = 1,
  renderer: Renderer | None = None,
) -> dict[str, np.ndarray]:
  """Renders a scene of several meshes (head, hair, eyes, ...) from one camera.

  Same arguments and outputs as ``Renderer.render_views`` with one (4, 4) camera.
  """
  if np.shape(cam2world) != (4, 4) or np.shape(intrinsics) != (3, 3):
    raise ValueError(
      f'expected one (4, 4) cam2world and (3, 3) intrinsics, got {np.shape(cam2world)}, {np.shape(intrinsics)}'
    )
  renderer = renderer or default_renderer()
  return next(
    iter(renderer.render_views(meshes, cam2world, intrinsics, resolution, lighting=lighting, supersample=supersample))
  )


def render_mesh(
  vertices,
  faces,
  cam2world,
  intrinsics,
  resolution,
  *,
  vertex_colors=None,
  uvs=None,
  face_uvs=None,
  texture=None,
  lighting=True,
  supersample=1,
  renderer=None,
) -> dict[str, np.ndarray]:
  """Renders one mesh with OpenGL from one camera (reference-spec §1.4 conventions).

  Args:
    vertices: (v, 3) positions in WORLD units (``camera.WORLD_PER_MESH`` x mesh units).
    faces: (f, 3) int triangle indices.
    cam2world: (4, 4) OpenCV cam2world (x right, y down, z forward), world units.
    intrinsics: (3, 3) normalised intrinsics (``fx, fy`` in image widths, ``cx, cy`` in [0, 1]).
    resolution: output width = height in pixels.
    vertex_colors: optional (v, 3|4) colours in [0, 1].
    uvs, face_uvs, texture: optional UV texture (see ``Mesh``), row 0 = v = 1.
    lighting: Lambert + ambient with world-fixed lights (module doc), else albedo only.
    supersample: box-filtered supersampling factor (1 = single sample at pixel centres).
    renderer: a ``Renderer`` to reuse; default: one per process.

  Returns:
    ``{'rgba': (h, w, 4) float32 [0, 1], 'depth': (h, w) float32 camera z in world units
    (np.inf where empty), 'coverage': (h, w) bool}``. Pixel ``(row, col)`` is sampled at
    ``(col + 0.5, row + 0.5)`` in ``camera.project``'s pixel coordinates.

  Raises:
    ValueError: for inconsistent shapes or non-positive resolution/supersample.
    RuntimeError: if no EGL context can be created.
  """
  mesh = Mesh(
    np.asarray(vertices), np.asarray(faces), vertex_colors=vertex_colors, uvs=uvs, face_uvs=face_uvs, texture=texture
  )
  return render_meshes(
    [mesh], cam2world, intrinsics, resolution, lighting=lighting, supersample=supersample, renderer=renderer
  )
