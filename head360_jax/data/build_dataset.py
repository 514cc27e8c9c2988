"""Builds a SynHead100-layout dataset from a rig: bilinear-model meshes, appearance, hair, 72 views.

Legend: ``n`` identities, ``e`` expressions, ``v`` vertices, ``l`` landmarks, ``r`` resolution.

Usage::

  python -m head360_jax.data.build_dataset --rig anny --identities 4 \\
      --expressions jawOpen,eyeBlinkLeft,mouthSmileLeft,browInnerUp,neutral --resolution 128 --out /tmp/synhead --seed 0

Writes exactly the layout of ``data/layout.py`` (reference-spec §1.1-1.5; docs/dataset.md):
RGBA renders with a transparent background from ``camera.dataset_cameras()`` (haired
under ``split_<r>``, the same cameras without hair under ``split_<r>_bald``), the 25-d
camera labels and 52-d ARKit labels (one-hot per ARKit folder, zeros for ``neutral``),
each (identity, expression)'s mesh as OBJ (template topology with UVs) and its landmarks,
plus ``bilinear.npz`` (the model the meshes come from) and ``build.json``.

Meshes are ``bilinear.vertices(model, model.identity_codes[i], b)`` of a model built from
the rig's first ``n`` identity draws (rank clipped to ``n``, so they are the rig's meshes
up to float32 rounding). Identity ``i``'s appearance and hair come from
``np.random.default_rng([seed, i])``; hairstyles are dealt from a seed-shuffled
``hair.STYLES`` so that up to 9 identities all get different styles.

With ``swap_pairs = N > 0`` it also renders hair-swap ground truth (our extension, see
``layout.py``): for each of ``N`` ordered pairs (A, B) of ``swap_pair_indices``, identity A
(its mesh per expression and its skin texture) wearing identity B's hairstyle, hair colour
and strand randomness (B's generator in the state B's own ``hair.grow`` call starts from),
grown on A's neutral scalp, at A's cameras and expressions, under ``split_<r>_swap`` with
``split_<r>_swap/pairs.json``. B's hair is regrown from its own fresh generator, so every
other output is the same with or without swap pairs.

Every file is written atomically (``assets.atomic_write_bytes``), so a killed build leaves
only complete files (plus stray ``.*.tmp`` files, which the next run deletes); a rerun
skips images, meshes and landmarks that exist. The output is a deterministic function of
the arguments (same bytes twice), except ``bilinear.npz``, whose zip entries carry the
write time.
"""

import argparse
import concurrent.futures
import io
import json
import math
import pathlib
import time

import numpy as np
from PIL import Image
from tqdm import tqdm

from head360_jax import assets
from head360_jax.data import appearance, hair, layout
from head360_jax.geometry import arkit, bilinear, camera, obj
from head360_jax.geometry.rig import Rig, load_rig
from head360_jax.rendering import gl

TEXTURE_SIZE = 512


def parse_expressions(names: str | list[str] | None) -> list[str]:
  """Validates expression folder names (ARKit names or ``neutral``); ``None`` = all 52 ARKit names.

  Returns:
    The names, deduplicated and sorted as strings (the order the loaders list folders in).

  Raises:
    ValueError: listing every unknown name and the valid ones.
  """
  if names is None:
    return sorted(arkit.ARKIT_NAMES)
  if isinstance(names, str):
    names = [name.strip() for name in names.split(',') if name.strip()]
  valid = set(arkit.ARKIT_NAMES) | {layout.NEUTRAL}
  unknown = [name for name in names if name not in valid]
  if unknown or not names:
    raise ValueError(
      f'unknown expression name(s) {unknown or names}; valid names are {layout.NEUTRAL!r} and the 52 '
      f'ARKit blendshapes: {", ".join(arkit.ARKIT_NAMES)}'
    )
  return sorted(set(names))


def expression_weights(name: str) -> np.ndarray:
  """The 52-d ARKit weight vector of an expression folder: one-hot, or zeros for ``neutral``."""
  weights = np.zeros(arkit.NUM_BLENDSHAPES, np.float32)
  if name != layout.NEUTRAL:
    weights[arkit.index(name)] = 1.0
  return weights


def default_supersample(resolution: int) -> int:
  """Anti-aliasing factor: ~384 rendered pixels across at small sizes, at least 2x, at most 4x."""
  return int(min(4, max(2, math.ceil(384 / resolution))))


def _png(rgba: np.ndarray) -> bytes:
  """RGBA uint8 PNG bytes of a float render (straight alpha, colour zeroed where transparent)."""
  image = np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8)
  image[image[..., 3] == 0] = 0
  buffer = io.BytesIO()
  Image.fromarray(image, 'RGBA').save(buffer, format='PNG')
  return buffer.getvalue()


def _to_world(mesh: gl.Mesh) -> gl.Mesh:
  return gl.Mesh(
    mesh.vertices * camera.WORLD_PER_MESH,
    mesh.faces,
    mesh.vertex_colors,
    mesh.uvs,
    mesh.face_uvs,
    mesh.texture,
    mesh.tile_texture,
  )


def swap_pair_indices(num_identities: int, count: int) -> list[tuple[int, int]]:
  """The first ``count`` ordered hair-swap pairs ``(a, b)`` (identity a wearing b's hair) of ``num_identities``.

  Pair ``k`` is ``(k mod n, (k mod n + 1 + k // n) mod n)``: the first ``n`` pairs give
  every identity the hair of the next one (a cycle, so each identity is worn and donates
  once), the next ``n`` the hair of the one after that, and so on; the ``n(n - 1)`` pairs
  are all distinct with ``a != b``. The rule does not depend on the seed (which already
  deals the styles and colours), and a larger ``count`` only appends pairs.

  Raises:
    ValueError: if ``count < 0``, or ``count > 0`` with fewer than 2 identities or
      ``count > n(n - 1)``.
  """
  n = num_identities
  if count < 0 or (count > 0 and (n < 2 or count > n * (n - 1))):
    raise ValueError(
      f'swap_pairs must be in [0, n(n - 1)] = [0, {max(n * (n - 1), 0)}] for {n} identities '
      f'(and needs at least 2 identities), got {count}'
    )
  return [(k % n, (k % n + 1 + k // n) % n) for k in range(count)]


def _look(seed: int, index: int) -> tuple[appearance.Appearance, np.random.Generator]:
  """Identity ``index``'s appearance and its generator in the state its ``hair.grow`` call starts from."""
  rng = np.random.default_rng([seed, index])
  return appearance.sample_appearance(rng), rng


def _clean_temporaries(root: pathlib.Path) -> int:
  """Deletes the ``.<name>.*.tmp`` files a killed run's atomic writes left behind."""
  stray = list(root.rglob('.*.tmp'))
  for path in stray:
    path.unlink(missing_ok=True)
  return len(stray)


def build(
  root: str | pathlib.Path,
  *,
  rig: str | Rig = 'anny',
  num_identities: int = 4,
  expressions: str | list[str] | None = None,
  resolution: int = 512,
  seed: int = 0,
  supersample: int | None = None,
  workers: int = 2,
  progress: bool = True,
  views: tuple[int, ...] | list[int] | None = None,
  swap_pairs: int = 0,
) -> dict:
  """Builds (or completes) a dataset under ``root``.

  Args:
    root: output folder (created).
    rig: rig name for ``load_rig`` or a loaded ``Rig``.
    num_identities: number of identities, >= 1.
    expressions: expression folders (comma-separated string or list; ARKit names or
      ``neutral``); ``None`` = all 52 ARKit blendshapes.
    resolution: image width = height in pixels, >= 8.
    seed: seeds identities, appearance and hair.
    supersample: anti-aliasing factor (default ``default_supersample(resolution)``).
    workers: threads that encode and write PNGs while the next views render.
    progress: show a tqdm bar over images.
    views: render only these camera indices in [0, 72) (``camera.dataset_cameras`` order), e.g.
      the near-frontal views that ``fitting.hairstyle`` needs; ``None`` = all 72 (a complete
      dataset). The labels list the rendered views only and ``build.json`` records them.
    swap_pairs: also render this many hair-swap pairs (``swap_pair_indices``) under
      ``split_<r>_swap`` (0 = none; ``build.json`` records the count when > 0). At most
      ``n(n - 1)``; needs ``num_identities >= 2``.

  Returns:
    A summary: ``{'images_written', 'images_skipped', 'seconds', 'stray_tmp_removed'}``.

  Raises:
    ValueError: for unknown expression names, ``num_identities < 1``, ``resolution < 8``,
      views that are empty or outside [0, 72), or ``swap_pairs`` outside [0, n(n - 1)]
      (or > 0 with one identity).
  """
  names = parse_expressions(expressions)
  if num_identities < 1 or resolution < 8:
    raise ValueError(f'need num_identities >= 1 and resolution >= 8, got {num_identities}, {resolution}')
  pairs = swap_pair_indices(num_identities, int(swap_pairs))
  view_list = list(range(layout.NUM_VIEWS)) if views is None else sorted({int(v) for v in views})
  if not view_list or not all(0 <= v < layout.NUM_VIEWS for v in view_list):
    raise ValueError(f'views must be a non-empty set of camera indices in [0, {layout.NUM_VIEWS}), got {views}')
  supersample = supersample or default_supersample(resolution)
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  stray = _clean_temporaries(root)
  rig = load_rig(rig) if isinstance(rig, str) else rig
  model = bilinear.build_from_rig(rig, num_identities=num_identities, rank=50, seed=seed)
  if not (root / 'bilinear.npz').exists():
    bilinear.save(model, root / 'bilinear.npz')
  cameras = camera.dataset_cameras()
  cam2world, intrinsics = cameras[:, :16].reshape(-1, 4, 4), cameras[:, 16:].reshape(-1, 3, 3)
  styles = [str(s) for s in np.random.default_rng(seed).permutation(hair.STYLES)]
  renderer = gl.Renderer()
  poses, exps, identities = {}, {}, []
  total = (num_identities * 2 + len(pairs)) * len(names) * len(view_list)
  written = skipped = 0
  bar = tqdm(total=total, unit='img', disable=not progress, desc='build_dataset')
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = []
    for i in range(num_identities):
      identity = layout.identity_name(i)
      look, rng = _look(seed, i)
      style = styles[i % len(styles)]
      identities.append(
        {
          'identity': identity,
          'hairstyle': style,
          'skin_tone': look.skin_tone,
          'hair_color': look.hair_name,
          'iris_color': look.iris_name,
        }
      )
      code = np.asarray(model.identity_codes[i])
      neutral = np.asarray(bilinear.vertices(model, code, np.zeros(arkit.NUM_BLENDSHAPES, np.float32)))
      donors = [b for a, b in pairs if a == i]  # identities whose hair i wears in the swap split
      # Appearance and hair are made lazily: a finished identity costs nothing. hair_meshes maps 'hair'
      # to i's own hair (from i's generator) and a donor index b to b's hair regrown on i's scalp.
      texture, hair_meshes = None, {}
      for name in names:
        weights = expression_weights(name)
        variants = {
          kind: {view: layout.image_relpath(resolution, identity, name, view, kind == 'bald') for view in view_list}
          for kind in ('hair', 'bald')
        }
        for b in donors:
          variants[b] = {
            view: layout.swap_relpath(resolution, identity, layout.identity_name(b), name, view) for view in view_list
          }
        for view, relpath in variants['hair'].items():
          poses[relpath], exps[relpath] = cameras[view], weights
        vertices = np.asarray(bilinear.vertices(model, code, weights))
        if not layout.mesh_path(root, identity, name).exists():
          obj.write_obj(layout.mesh_path(root, identity, name), vertices, model.faces, model.uvs, model.face_uvs)
        if not layout.landmarks_path(root, identity, name).exists():
          rows = ''.join(f'{x:.9g} {y:.9g} {z:.9g}\n' for x, y, z in vertices[model.landmark_vertices].tolist())
          assets.atomic_write_bytes(layout.landmarks_path(root, identity, name), rows.encode())
        for kind, relpaths in variants.items():
          missing = [view for view, rel in relpaths.items() if not (root / layout.IMAGES / rel).exists()]
          skipped += len(view_list) - len(missing)
          bar.update(len(view_list) - len(missing))
          if not missing:
            continue
          if texture is None:
            texture = appearance.head_texture(rig, neutral, look, TEXTURE_SIZE, renderer)
          if kind != 'bald' and kind not in hair_meshes:
            if kind == 'hair':  # i's generator is used for nothing else after its appearance
              donor_style, donor_look, donor_rng = style, look, rng
            else:  # a fresh generator of donor b: b's own hair is reproduced, i's generator is untouched
              donor_style = styles[kind % len(styles)]
              donor_look, donor_rng = _look(seed, kind)
            grown = hair.grow(donor_style, neutral, model.faces, rig.vertex_groups['scalp'], donor_look.hair, donor_rng)
            hair_meshes[kind] = [_to_world(mesh) for mesh in grown.meshes]
          head = gl.Mesh(
            vertices * camera.WORLD_PER_MESH, model.faces, uvs=model.uvs, face_uvs=model.face_uvs, texture=texture
          )
          scene = [head] if kind == 'bald' else [head, *hair_meshes[kind]]
          renders = renderer.render_views(
            scene, cam2world[missing], intrinsics[missing], resolution, supersample=supersample
          )
          for view, out in zip(missing, renders, strict=True):
            path = root / layout.IMAGES / relpaths[view]
            pending.append(pool.submit(lambda p, rgba: assets.atomic_write_bytes(p, _png(rgba)), path, out['rgba']))
            written += 1
            if len(pending) > 4 * workers:  # bound the memory held by queued renders
              pending.pop(0).result()
              bar.update(1)
    for future in pending:
      future.result()
      bar.update(1)
  bar.close()
  renderer.release()
  images = root / layout.IMAGES
  layout.write_labels(images / layout.POSE_JSON, poses)
  layout.write_labels(images / layout.EXPRESSION_JSON, exps)
  settings = {
    'rig': rig.name,
    'identities': num_identities,
    'expressions': names,
    'resolution': resolution,
    'seed': seed,
    'supersample': supersample,
    'texture_size': TEXTURE_SIZE,
    'bilinear_rank': int(model.rank),
    'camera': {
      'radius': camera.CAMERA_RADIUS,
      'focal': camera.FOCAL,
      'pitches_deg': camera.DATASET_PITCHES_DEG,
      'yaw_step_deg': camera.DATASET_YAW_STEP_DEG,
      'num_yaws': camera.DATASET_NUM_YAWS,
      'frontal_view': camera.FRONTAL_VIEW,
      'world_per_mesh': camera.WORLD_PER_MESH,
    },
    'lighting': {
      'ambient': gl.AMBIENT,
      'directions': gl.LIGHT_DIRECTIONS.tolist(),
      'intensities': gl.KEY_INTENSITIES.tolist(),
    },
    'per_identity': identities,
  }
  if views is not None:
    settings['views'] = view_list
  if pairs:
    settings['swap_pairs'] = len(pairs)
    swaps = [
      {
        'identity': layout.identity_name(a),
        'hair_from': layout.identity_name(b),
        'hairstyle': identities[b]['hairstyle'],
        'hair_color': identities[b]['hair_color'],
        'folder': layout.swap_folder(layout.identity_name(a), layout.identity_name(b)),
      }
      for a, b in pairs
    ]
    assets.atomic_write_bytes(layout.swap_pairs_path(root, resolution), json.dumps({'pairs': swaps}, indent=1).encode())
  assets.atomic_write_bytes(root / 'build.json', json.dumps(settings, indent=1).encode())
  return {
    'images_written': written,
    'images_skipped': skipped,
    'seconds': time.perf_counter() - start,
    'stray_tmp_removed': stray,
  }


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rig', default='anny', help='rig name: anny (default) or ict')
  parser.add_argument('--identities', type=int, default=4)
  parser.add_argument(
    '--expressions', default=None, help='comma-separated ARKit names and/or "neutral" (default: all 52 ARKit names)'
  )
  parser.add_argument('--resolution', type=int, default=512)
  parser.add_argument('--out', required=True, help='dataset root')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--supersample', type=int, default=None, help='anti-aliasing factor (default from resolution)')
  parser.add_argument('--workers', type=int, default=2, help='PNG encoding threads')
  parser.add_argument(
    '--swap-pairs',
    type=int,
    default=0,
    help="also render N hair-swap pairs (identity A wearing B's hair) under split_<res>_swap (default 0)",
  )
  args = parser.parse_args(argv)
  try:
    summary = build(
      args.out,
      rig=args.rig,
      num_identities=args.identities,
      expressions=args.expressions,
      resolution=args.resolution,
      seed=args.seed,
      supersample=args.supersample,
      workers=args.workers,
      swap_pairs=args.swap_pairs,
    )
  except ValueError as e:
    parser.error(str(e))
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
