# Over 400 lines on purpose: Dockerfile template, wheelhouse and image builds change together.
"""Pinned Docker images of the environments: Dockerfiles, wheelhouse, build context, builds.

An image ``liteport/<env>:<lockhash>`` installs the same lock file the venv runtime uses, on
the same Python, into ``/opt/liteport`` inside the image. Nothing is resolved or downloaded
during a build: the host fills a wheelhouse from the lock (``pip wheel``, so torch stays the
CPU build pip's configuration points at) under ``<cache>/wheels/py<X.Y>`` and the build
installs from it with ``--no-index``. The build context is staged in a temporary folder:
``Dockerfile``, ``lock.txt``, ``wheels/`` (only this lock's wheels), ``src/`` (liteport) and
``plugins/``: a wheel of every distribution the environment declares (``EnvironmentSpec.distributions``,
a third-party plugin's own), built on the host from what the host has installed, as the venv
runtime's overlay installs it. Their content is part of the image's source hash.

The Docker SDK is imported lazily by the callers; this module only needs a client object.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

import liteport
from liteport.errors import EnvironmentBuildError
from liteport.runtimes.base import Progress, lock_hash, read_lock
from liteport.runtimes.interpreters import find_python
from liteport.runtimes.venv import default_cache_dir
from liteport.types import EnvironmentSpec

# Defaults of the Dockerfiles' BASE argument: official images pinned to an exact version tag.
OFFICIAL_BASES = {
    "3.9": "python:3.9.23-slim-bullseye",
    "3.10": "python:3.10.18-slim-bookworm",
    "3.11": "python:3.11.14-slim-bookworm",
    "3.12": "python:3.12.12-slim-bookworm",
}
# Local bases made without a registry by images/base/build.sh (debootstrap + docker import).
BASE_SUITES = {"3.11": "bookworm", "3.9": "bullseye"}
# glibc minor of the images' Debian per Python (bookworm 2.36, bullseye 2.31; the official slim
# images use the same suites): the wheelhouse must not take a manylinux wheel newer than that.
GLIBC_MINOR = {"3.9": 31, "3.10": 36, "3.11": 36, "3.12": 36}
LABEL = "org.liteport"
# liteport's own build requirement, staged with every lock so src/ builds offline.
BUILD_PINS = ("setuptools==80.9.0",)

DOCKERFILE_TEMPLATE = """\
# liteport environment image "{env}" (Python {python}): the same complete lock the venv runtime
# installs, into /opt/liteport, offline from a wheelhouse. Build it with `liteport images build {env}`,
# which stages the context: lock.txt, wheels/ (filled on the host from the lock), src/ (liteport)
# and plugins/ (wheels of the environment's third-party plugin distributions; often none).
# BASE defaults to an official image pinned to an exact tag; sites without a registry pass the
# local one `liteport images base` makes (liteport does that by itself when it exists).
# Every environment's Dockerfile is this template; a new environment is one more copy of it.
ARG BASE={base}

FROM ${{BASE}} AS deps
COPY lock.txt /build/lock.txt
COPY wheels/ /build/wheels/
ARG PIP_DEPS=--no-deps
# A complete lock: install exactly it, nothing resolved, nothing downloaded.
RUN python3 -m venv /opt/liteport \\
 && /opt/liteport/bin/python -m pip install --no-cache-dir --disable-pip-version-check \\
      --no-index --find-links /build/wheels ${{PIP_DEPS}} -r /build/lock.txt

FROM deps AS project
COPY src/ /build/src/
RUN /opt/liteport/bin/python -m pip wheel --no-cache-dir --disable-pip-version-check \\
      --no-index --find-links /build/wheels --no-deps -w /build/dist /build/src

FROM ${{BASE}}
# Non-root user; /root opened up so host folders under it (the default cache) can be mounted.
RUN useradd --uid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin liteport \\
 && chmod 0755 /root
# The big layer first and alone, so a change to liteport's source rebuilds only the small one below.
COPY --from=deps /opt/liteport /opt/liteport
COPY --from=project /build/dist/ /tmp/dist/
COPY plugins/ /tmp/dist/
RUN /opt/liteport/bin/python -m pip install --no-cache-dir --disable-pip-version-check \\
      --no-index --no-deps /tmp/dist/*.whl \\
 && rm -rf /tmp/dist
ENV PATH=/opt/liteport/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    VIRTUAL_ENV=/opt/liteport HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ARG ENV_NAME={env}
ARG LOCK_HASH=unknown
ARG PROJECT_HASH=unknown
LABEL {label}.environment=${{ENV_NAME}} {label}.lock-hash=${{LOCK_HASH}} {label}.project=${{PROJECT_HASH}}
USER 10001
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "liteport.stages.worker"]
"""


# -- names -------------------------------------------------------------------------------------


def image_repo(spec: EnvironmentSpec) -> str:
    return f"liteport/{spec.name}"


def image_tag(spec: EnvironmentSpec) -> str:
    return f"{image_repo(spec)}:{lock_hash(spec)}"


def local_base_tag(python: str) -> str | None:
    suite = BASE_SUITES.get(python)
    return f"liteport/base:{suite}-py{python}" if suite else None


# -- the source tree ---------------------------------------------------------------------------


def project_root() -> Path | None:
    """The checkout liteport runs from (``core/`` is the package), or None for an installed wheel."""
    root = Path(liteport.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "liteport"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _require_root() -> Path:
    root = project_root()
    if root is None:
        raise EnvironmentBuildError(
            "building images needs liteport's source tree",
            hint="install liteport from a checkout (pip install -e .)",
        )
    return root


def dockerfile_path(spec: EnvironmentSpec) -> Path | None:
    root = project_root()
    return root / "images" / spec.name / "Dockerfile" if root else None


def render_dockerfile(spec: EnvironmentSpec) -> str:
    base = OFFICIAL_BASES.get(spec.python, f"python:{spec.python}-slim")
    return DOCKERFILE_TEMPLATE.format(env=spec.name, python=spec.python, base=base, label=LABEL)


def dockerfile_text(spec: EnvironmentSpec) -> str:
    """``images/<env>/Dockerfile`` when the checkout has one, else the template rendered for ``spec``."""
    path = dockerfile_path(spec)
    if path is not None and path.is_file():
        return path.read_text(encoding="utf-8")
    return render_dockerfile(spec)


def write_dockerfiles(specs: Sequence[EnvironmentSpec]) -> list[Path]:
    """Write ``images/<env>/Dockerfile`` from the template for environments that have none."""
    written = []
    for spec in specs:
        path = dockerfile_path(spec)
        if path is not None and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_dockerfile(spec), encoding="utf-8")
            written.append(path)
    return written


def _source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """What of the checkout goes into an image: packaging metadata and the two package trees."""
    for name in ("pyproject.toml", "setup.py", "README.md"):
        yield name, root / name
    for tree in ("core", "backends"):
        for path in sorted((root / tree).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                yield str(path.relative_to(root)), path


def source_hash(spec: EnvironmentSpec) -> str:
    """What an image of ``spec`` holds besides its lock: liteport's source and its plugin distributions."""
    if not spec.distributions:
        return project_hash()
    from liteport.runtimes.overlay import content_key

    combined = f"{project_hash()}+{content_key(spec.distributions)}"
    return hashlib.sha256(combined.encode()).hexdigest()[:12]


def project_hash() -> str:
    """Hash of liteport's source as an image would contain it: a change means a stale image."""
    root = project_root()
    if root is None:
        return f"installed-{liteport.__version__}"
    digest = hashlib.sha256()
    for rel, path in _source_files(root):
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


# -- the wheelhouse ----------------------------------------------------------------------------


def wheelhouse(python: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "wheels" / f"py{python}"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _pins(spec: EnvironmentSpec) -> list[tuple[str, str]]:
    pins = []
    for line in [*read_lock(spec), *BUILD_PINS]:
        requirement = line.split(";")[0].split("#")[0].strip()
        name, sep, version = requirement.partition("==")
        if not sep:
            raise EnvironmentBuildError(f"lock {spec.lock} has a line without an exact pin: {line!r}")
        pins.append((name.split("[")[0].strip(), version.strip()))
    return sorted(set(pins))


def _platform_ok(filename: str, glibc_minor: int) -> bool:
    """Whether a wheel's platform tags run on an image with glibc 2.<glibc_minor> (x86_64)."""
    platforms = filename[: -len(".whl")].split("-")[-1].split(".")
    for tag in platforms:
        if tag == "any" or tag in ("manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"):
            return True
        match = re.fullmatch(r"manylinux_2_(\d+)_x86_64", tag)
        if match and int(match.group(1)) <= glibc_minor:
            return True
        if tag == "linux_x86_64":
            return True  # built on the host from an sdist (pure or old-glibc code)
    return False


def _wheels_for(folder: Path, name: str, version: str, glibc_minor: int = 99) -> list[Path]:
    """Usable wheels in ``folder`` for ``name==version`` (a local label like +cpu matches, as in pip)."""
    found = []
    for path in folder.glob("*.whl"):
        parts = path.name.split("-")
        if (
            len(parts) >= 5
            and _norm(parts[0]) == _norm(name)
            and parts[1].split("+")[0] == version
            and _platform_ok(path.name, glibc_minor)
        ):
            found.append(path)
    return found


def _pip(argv: list[str], log: Path) -> int:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def fill_wheelhouse(
    spec: EnvironmentSpec, progress: Progress, cache_dir: Path | None = None
) -> dict[str, list[Path]]:
    """Every pin of ``spec`` as wheels in the host wheelhouse; downloads only what is missing.

    Binary wheels are fetched for the image's platform (glibc of its Debian suite, not the
    host's); a pin with no such wheel (an sdist) is built into a wheel once on the host.
    """
    folder = wheelhouse(spec.python, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    glibc = GLIBC_MINOR.get(spec.python, 31)
    pins = _pins(spec)
    missing = [f"{n}=={v}" for n, v in pins if not _wheels_for(folder, n, v, glibc)]
    if missing:
        progress(f"wheelhouse {folder}: fetching {len(missing)} of {len(pins)} pins for {spec.name}")
        log = folder.parent / f"pip-wheel-{spec.name}.log"
        log.write_text("", encoding="utf-8")
        pip = [find_python(spec.python), "-m", "pip", "--disable-pip-version-check"]
        platform = ["--platform", f"manylinux_2_{glibc}_x86_64", "--python-version", spec.python]
        download = [*pip, "download", "--no-deps", "--only-binary=:all:", *platform, "-d", str(folder)]
        if _pip([*download, *missing], log) != 0:  # one pin without a fitting wheel: go one by one
            for pin in missing:
                name, _, version = pin.partition("==")
                if _wheels_for(folder, name, version, glibc) or _pip([*download, pin], log) == 0:
                    continue
                if _pip([*pip, "wheel", "--no-deps", "-w", str(folder), pin], log) != 0:
                    raise EnvironmentBuildError(
                        f"could not fill the wheelhouse for {spec.name}: no usable wheel of {pin}",
                        hint=f"log: {log}",
                    )
    files: dict[str, list[Path]] = {}
    for name, version in pins:
        wheels = _wheels_for(folder, name, version, glibc)
        if not wheels:
            raise EnvironmentBuildError(
                f"no wheel of {name}=={version} for glibc 2.{glibc} in {folder}",
                hint="a wheel built on this host may need a newer glibc than the image",
            )
        files[f"{name}=={version}"] = wheels
    return files


# -- building ----------------------------------------------------------------------------------


def stage_context(
    spec: EnvironmentSpec, dest: Path, progress: Progress, cache_dir: Path | None = None
) -> None:
    """Write the build context of ``spec`` into ``dest``."""
    root = _require_root()
    (dest / "wheels").mkdir(parents=True)
    # Images built at once for one Python share its wheelhouse: one fills it at a time, and no
    # build links a wheel another pip is still writing.
    folder = wheelhouse(spec.python, cache_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        wheels = fill_wheelhouse(spec, progress, cache_dir)
        for paths in wheels.values():
            for path in paths:
                target = dest / "wheels" / path.name
                try:
                    os.link(path, target)  # same filesystem: no copy of a 200 MB torch wheel
                except OSError:
                    shutil.copy2(path, target)
    shutil.copyfile(spec.lock, dest / "lock.txt")
    (dest / "Dockerfile").write_text(dockerfile_text(spec), encoding="utf-8")
    for rel, path in _source_files(root):
        target = dest / "src" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    stage_distributions(spec, dest / "plugins", progress, cache_dir)


def stage_distributions(
    spec: EnvironmentSpec, dest: Path, progress: Progress, cache_dir: Path | None = None
) -> list[Path]:
    """A wheel in ``dest`` of every distribution ``spec`` declares, as the host has it installed.

    A source checkout (an editable install) is built from its folder, anything else from its
    ``name==version`` with pip's own configuration; ``dest`` exists afterwards, even when empty.
    """
    from liteport.runtimes.overlay import copy_source, source_of

    dest.mkdir(parents=True, exist_ok=True)
    if not spec.distributions:
        return []
    log = (cache_dir or default_cache_dir()) / "logs" / f"image-{spec.name}-plugins.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")
    progress(f"building wheels of {', '.join(spec.distributions)} for {spec.name}")
    for name in spec.distributions:
        pin, folder = source_of(name)
        argv = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps"]
        with tempfile.TemporaryDirectory(prefix="liteport-src-") as copies:
            source = str(copy_source(folder, Path(copies) / name)) if folder is not None else pin
            code = _pip([*argv, "-w", str(dest), source], log)
        if code != 0:
            raise EnvironmentBuildError(
                f"could not build a wheel of {name} ({folder or pin}) for the {spec.name} image",
                hint=f"log: {log}",
            )
    wheels = sorted(dest.glob("*.whl"))
    made = {_norm(wheel.name.split("-")[0]) for wheel in wheels}
    missing = [name for name in spec.distributions if _norm(name) not in made]
    if missing:
        raise EnvironmentBuildError(f"pip made no wheel of {', '.join(missing)}", hint=f"log: {log}")
    return wheels


def choose_base(client: Any, spec: EnvironmentSpec, explicit: str | None = None) -> str | None:
    """BASE for a build: explicit, else ``LITEPORT_DOCKER_BASE_3_11``, else the local base when built."""
    if explicit:
        return explicit
    variable = os.environ.get("LITEPORT_DOCKER_BASE_" + spec.python.replace(".", "_"))
    if variable:
        return variable
    local = local_base_tag(spec.python)
    if local and _image_or_none(client, local) is not None:
        return local
    return None  # the Dockerfile's default: the official image (needs a registry)


def build_image(
    client: Any,
    spec: EnvironmentSpec,
    progress: Progress,
    *,
    base: str | None = None,
    cache_dir: Path | None = None,
    steps: bool = False,
) -> tuple[str, float]:
    """Build ``liteport/<env>:<lockhash>``; returns the image ID and the build seconds.

    ``steps``: report every Dockerfile step through ``progress`` (else only start and end).
    """
    tag = image_tag(spec)
    base = choose_base(client, spec, base)
    log = (cache_dir or default_cache_dir()) / "logs" / f"image-{spec.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"liteport-image-{spec.name}-") as tmp:
        context = Path(tmp)
        stage_context(spec, context, progress, cache_dir)
        args = {"ENV_NAME": spec.name, "LOCK_HASH": lock_hash(spec), "PROJECT_HASH": source_hash(spec)}
        if base:
            args["BASE"] = base
        if not spec.no_deps:
            args["PIP_DEPS"] = ""
        progress(f"building image {tag} from {base or 'the Dockerfile default base'}; log: {log}")
        image_id = _stream_build(client, context, tag, args, log, progress if steps else None)
    seconds = time.perf_counter() - started
    progress(f"built {tag} ({image_id[:19]}) in {seconds:.0f} s")
    return image_id, seconds


def _stream_build(
    client: Any, context: Path, tag: str, args: dict[str, str], log: Path, progress: Progress | None
) -> str:
    image_id = ""
    with open(log, "w", encoding="utf-8") as out:
        out.write(f"# docker build {tag} args={json.dumps(args)}\n")
        try:
            stream = client.api.build(
                path=str(context), tag=tag, buildargs=args, rm=True, forcerm=True, decode=True, pull=False
            )
            for chunk in stream:
                text = chunk.get("stream") or chunk.get("status") or ""
                if text:
                    out.write(text)
                    out.flush()
                    if progress is not None and text.startswith("Step "):
                        progress(text.strip())
                if "error" in chunk:
                    out.write(f"ERROR: {chunk['error']}\n")
                    raise EnvironmentBuildError(
                        f"docker build of {tag} failed: {str(chunk['error']).strip().splitlines()[-1][:300]}",
                        hint=f"log: {log}",
                    )
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = str(aux["ID"])
        except EnvironmentBuildError:
            raise
        except Exception as exc:  # the SDK's APIError / connection errors
            raise EnvironmentBuildError(f"docker build of {tag} failed: {exc}", hint=f"log: {log}") from exc
    return image_id or str(client.images.get(tag).id)


def _image_or_none(client: Any, name: str) -> Any:
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def image_status(client: Any, spec: EnvironmentSpec) -> tuple[str, Any]:
    """("built" | "stale" | "missing", the image or None). Stale: older lock or older liteport source."""
    image = _image_or_none(client, image_tag(spec))
    if image is not None:
        labels = image.labels or {}
        if labels.get(f"{LABEL}.project") == source_hash(spec):
            return "built", image
        return "stale", image
    others = client.images.list(name=image_repo(spec))
    return ("stale" if others else "missing"), None


def build_base(suite: str, certs: Sequence[str], progress: Progress, tag: str | None = None) -> None:
    """Run images/base/build.sh (debootstrap + docker import) for ``suite``."""
    root = _require_root()
    script = root / "images" / "base" / "build.sh"
    argv = ["bash", str(script), "--suite", suite]
    for cert in certs:
        argv += ["--ca-cert", cert]
    if tag:
        argv += ["--tag", tag]
    progress(f"$ {' '.join(argv)}")
    code = subprocess.run(argv, check=False).returncode
    if code != 0:
        raise EnvironmentBuildError(f"building the {suite} base image failed (exit {code})")
