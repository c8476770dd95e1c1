"""liteport's own code for the workers, kept apart from the locked environments.

A locked environment holds only its lock's packages and is shared, untouched, by every liteport
install on the machine. What runs the worker — liteport itself and the plugin distributions an
environment declares — goes into an *overlay*: ``<cache>/overlays/<key>/``, installed with
``pip install --no-deps --target`` and put first on the worker's ``PYTHONPATH``. The key hashes
the content of every distribution in it, so two checkouts, a CI clone and a released wheel each
get their own overlay, side by side; an overlay is built in a temporary folder and renamed into
place, never changed afterwards, so no worker ever sees files swapped under it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path

from filelock import FileLock

from liteport.errors import EnvironmentBuildError
from liteport.runtimes.base import Progress

MARKER = ".liteport-overlay.json"  # written last: its presence means the overlay is complete
# Folders never part of a distribution's source: VCS data, build output, caches, test venvs.
_SKIPPED = {"build", "dist", "__pycache__", "node_modules", "tests"}


def source_of(name: str) -> tuple[str, Path | None]:
    """How distribution ``name`` is installed on the host: ``name==version``, or its source folder."""
    found = list(metadata.distributions(name=name))
    if not found:
        raise EnvironmentBuildError(f"{name} is not installed on the host", hint=f"pip install {name}")
    # A source tree's stray *.egg-info is not the install: prefer the one pip recorded.
    dist = next((d for d in found if d.read_text("direct_url.json")), found[0])
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    url = str(direct.get("url", ""))
    if url.startswith("file://") and Path(url[len("file://") :]).is_dir():
        return f"{name}=={dist.version}", Path(url[len("file://") :])
    return f"{name}=={dist.version}", None


def _tree_files(root: Path) -> Iterator[Path]:
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(
            d
            for d in subfolders
            if not d.startswith(".") and d not in _SKIPPED and not d.endswith(".egg-info")
        )
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                yield Path(folder) / name


def content_key(distributions: Sequence[str]) -> str:
    """Hash of what the overlay of ``distributions`` would contain."""
    digest = hashlib.sha256(f"python{sys.version_info[0]}".encode())
    for name in distributions:
        pin, folder = source_of(name)
        digest.update(pin.encode() + b"\0")
        if folder is not None:  # a checkout: its files decide, not its version number
            for path in _tree_files(folder):
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def ensure_overlay(cache_dir: Path, distributions: Sequence[str], progress: Progress) -> Path:
    """The overlay holding ``distributions`` as the host has them, built once per content."""
    target = cache_dir / "overlays" / content_key(distributions)
    if (target / MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / MARKER).exists():  # another process built it while we waited
            return target
        staging = target.with_name(f".building-{target.name}-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        log = cache_dir / "logs" / f"overlay-{target.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        copies = target.with_name(f".sources-{target.name}-{os.getpid()}")
        shutil.rmtree(copies, ignore_errors=True)
        found = [source_of(name) for name in distributions]
        sources = [str(folder) if folder is not None else pin for pin, folder in found]
        progress(f"installing {', '.join(distributions)} for the workers (overlay {target.name})")
        try:
            built = [
                str(copy_source(folder, copies / name)) if folder is not None else pin
                for name, (pin, folder) in zip(distributions, found)
            ]
            argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps"]
            argv += ["--no-compile", "--target", str(staging), *built]
            with open(log, "w", encoding="utf-8") as out:
                out.write(f"$ {' '.join(argv)}\n")
                out.flush()
                code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
            if code != 0:
                tail = (log.read_text(encoding="utf-8", errors="replace").strip().splitlines() or [""])[-1]
                what = ", ".join(distributions)
                raise EnvironmentBuildError(
                    f"could not install {what} for the workers: exit {code}: {tail[:300]}",
                    hint=f"full log: {log}",
                )
            (staging / MARKER).write_text(json.dumps({"distributions": sources}, indent=2), encoding="utf-8")
            shutil.rmtree(target, ignore_errors=True)  # an interrupted older build without a marker
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(copies, ignore_errors=True)
    return target


def copy_source(folder: Path, copy: Path) -> Path:
    """The files of source tree ``folder`` that the overlay's key hashes, copied to ``copy``.

    pip builds a source folder in place (setuptools writes ``build/`` and ``*.egg-info`` into it):
    two builds at once from one checkout (``liteport env build`` makes two environments' overlays
    at a time; an image build stages wheels) would collide there, and a user's checkout would be
    written to. A copy of exactly the hashed files is built instead.
    """
    for path in _tree_files(folder):
        dest = copy / path.relative_to(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return copy
