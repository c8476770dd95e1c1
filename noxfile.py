# /// script
# dependencies = ["nox==2026.10.20"]
# ///
"""liteport's coordination layer: tests, lint, the demo (the README's main job), benchmarks.

Converter environments are built by liteport itself (``liteport env build``) into its cache,
keyed by lock hash, so every session reuses them; nox only manages the host-side venvs.
"""

from __future__ import annotations

import glob
import os
import shutil

import nox

nox.needs_version = ">=2025.2.9"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True  # host venvs are cheap to keep; their deps are pinned

# The host-side test venv needs torch for the unit tests of model loading; pin it in the same
# install command so pip takes the local CPU wheel and never resolves a CUDA build.
TORCH = ("torch==2.13.0", "numpy==2.4.6")


def _install(session: nox.Session, *extras: str) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over the whole project."""
    # A "strict" editable install lays out liteport as a tree of links mypy can follow
    # (core/ is imported as liteport, backends/ as liteport.backends).
    session.install("-e", ".[lint]", "--config-settings", "editable_mode=strict")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", "core", "backends", "tests", "noxfile.py")
    tree = os.path.abspath(sorted(glob.glob("build/__editable__.liteport-*"))[-1])
    session.run("mypy", "-p", "liteport", env={"MYPYPATH": tree})
    session.run("mypy", "noxfile.py")
    # Layers, the public plugin API and no cycles: contracts in pyproject.toml [tool.importlinter].
    session.run("lint-imports", "--no-cache", env={"PYTHONPATH": tree})


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests (fake plugins, no converters), then integration tests with real environments."""
    _install(session, "test", "ray")  # ray: the --executor ray tests start small local clusters
    session.install(*TORCH)
    # The out-of-tree plugins are tested the way a user gets them: installed beside liteport.
    session.install("-e", "plugins/liteport-onnx2tf", "-e", "plugins/liteport-nobuco")
    # Two xdist workers, one per core (CI measured: unit 223 -> 198 s, integration 1648 -> 1171 s);
    # integration tests go a module per worker, so each module's converter workers stay warm.
    session.run("pytest", "tests/unit", "-q", "-n", "2", *session.posargs)
    session.run("liteport", "env", "build", external=False)
    session.run(
        "pytest",
        "tests/integration",
        "-q",
        "-n",
        "2",
        "--dist",
        "loadfile",
        "-m",
        "integration and not routes",
        "--timeout=3600",
        "--durations=15",
        *session.posargs,
    )


@nox.session(default=False)
def routes(session: nox.Session) -> None:
    """mobilenet_v2 through the newer third-party routes (onnx2tf 2.x, nobuco), fp32 and int8: the
    figures behind the README's route table. Left out of `tests` for CI time (their conformance
    suites run there)."""
    _install(session, "test")
    session.install(*TORCH)
    session.install("-e", "plugins/liteport-onnx2tf", "-e", "plugins/liteport-nobuco")
    session.run("pytest", "tests/integration", "-q", "-s", "-m", "routes", "--timeout=3600", *session.posargs)


@nox.session
def unit(session: nox.Session) -> None:
    """Unit tests only (fast, no converter environments; the wheel test runs in `tests` or when named)."""
    _install(session, "test")
    session.install(*TORCH)
    session.run("pytest", "tests/unit", "-q", *(session.posargs or ["-m", "not packaging"]))


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main job: mobilenet_v2 to TFLite in fp32 and int8 through ai-edge-torch."""
    _install(session)
    out = os.path.join("liteport-out")
    for mode in ("fp32", "int8"):
        session.run(
            "liteport",
            "convert",
            "zoo:mobilenet_v2",
            "--quant",
            mode,
            "--backend",
            "ai-edge-torch",
            "-o",
            os.path.join(out, f"mobilenet_v2-{mode}.tflite"),
        )


@nox.session(default=False)
def survey(session: nox.Session) -> None:
    """Zoo models x environments x modes through the real pipeline: metrics, ops, latency, conversion time."""
    _install(session)
    session.run("python", "tests/bench/zoo_survey.py", *session.posargs)


# Backend environments, read from the lock files so `nox -l` needs no import of liteport.
BACKEND_ENVS = sorted(os.path.basename(p)[: -len(".txt")] for p in glob.glob("backends/*/locks/*.txt"))
MATRIX_DIR = "liteport-matrix"


@nox.session(default=False, tags=["matrix"])
@nox.parametrize("environment", BACKEND_ENVS, ids=BACKEND_ENVS)
def matrix_env(session: nox.Session, environment: str) -> None:
    """Build one backend environment and run its matrix cells (one CI job each)."""
    _install(session)
    session.run("liteport", "env", "build", environment)
    out = os.path.join(MATRIX_DIR, environment)
    session.run("liteport", "matrix", "--envs", environment, "--resume", "-o", out, *session.posargs)


@nox.session(default=False)
def matrix(session: nox.Session) -> None:
    """The whole matrix: zoo models x every backend environment x fp32/fp16/dynamic/int8."""
    _install(session)
    session.run("liteport", "matrix", "--resume", "-o", os.path.join(MATRIX_DIR, "all"), *session.posargs)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Merge every matrix journal under liteport-matrix/ into one report."""
    _install(session)
    journals = sorted(glob.glob(os.path.join(MATRIX_DIR, "*", "journal.jsonl")))
    if not journals:
        session.error(f"no journals under {MATRIX_DIR}/: run `nox -t matrix` or `nox -s matrix` first")
    session.run("liteport", "report", *journals, "-o", os.path.join(MATRIX_DIR, "report"))


RAY_SMALL_MATRIX = (
    "--models",
    "zoo:tiny_cnn",
    "--envs",
    "litert-torch-0.10,ai-edge-torch-nightly",
    "--modes",
    "fp32,int8",
)


@nox.session(default=False)
def ray_cluster(session: nox.Session) -> None:
    """A small matrix on a two-node Ray cluster started on this machine (loopback only), then stopped.

    tiny_cnn x 2 environments x 2 modes with --executor ray, journaled into liteport-matrix/ray/
    (resumed when there). The nodes are ``ray start`` processes of tests/raycluster.py: only they are
    stopped at the end, never another Ray on the machine. ``-- ARGS`` are added to the matrix command.
    """
    _install(session, "ray")
    session.run(
        "liteport",
        "env",
        "build",
        "torch-2.13",
        "litert-runtime",
        "litert-torch-0.10",
        "ai-edge-torch-nightly",
    )
    out = os.path.join(MATRIX_DIR, "ray")
    matrix = ["liteport", "matrix", *RAY_SMALL_MATRIX, "--executor", "ray", "--resume", "-o", out]
    session.run(
        "python", "tests/raycluster.py", "--nodes", "2", "--cpus", "1", "--", *matrix, *session.posargs
    )


@nox.session
def browser(session: nox.Session) -> None:
    """matrix.html in headless Chromium (installs Debian's chromium when missing and root)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        if os.geteuid() != 0:
            session.error("chromium is missing: install Debian's package (apt-get install chromium)")
        session.run("apt-get", "update", "-q", external=True)
        session.run("apt-get", "install", "-y", "-q", "chromium", external=True)
    _install(session, "test")
    session.run("pytest", "tests/browser", "-q", *session.posargs)


ONNX_TF_ENVS = ("onnx-tf-tf2.8", "onnx-tf-tf2.15")
ONNX_TF_MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")


REUSE_BENCH_ENVS = "litert-torch-0.10,onnx-tf-tf2.15"


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The 4-mode matrix before/after reuse between modes; onnx-tf install time, size, time per mode.

    First mobilenet_v2 and resnet, fp32/fp16/dynamic/int8 on litert-torch and onnx-tf, ``--jobs 1``,
    with liteport as it was when the throughput issue was filed (installed once into the cache),
    with ``--no-reuse`` (before) and with reuse (after): wall times, per-stage split, same bytes
    (tests/bench/matrix_reuse.py). ``-- --reuse-only`` stops there. Then onnx-tf per environment
    and its integration tests with the slow ones on; ``-- --no-tests`` skips those tests.
    """
    import json
    import tempfile
    import time

    _install(session, "test")
    session.install(*TORCH)
    session.run("liteport", "env", "build", "torch-2.13", "litert-runtime", *REUSE_BENCH_ENVS.split(","))
    session.run("python", "tests/bench/matrix_reuse.py", "--envs", REUSE_BENCH_ENVS)
    if "--reuse-only" in session.posargs:
        return
    rows: list[str] = []
    for env in ONNX_TF_ENVS:
        # An empty liteport cache: the environment is built from scratch (pip's own cache stays warm).
        with tempfile.TemporaryDirectory(prefix="liteport-bench-") as cache:
            started = time.perf_counter()
            session.run("liteport", "env", "build", env, env={"LITEPORT_CACHE": cache})
            seconds = time.perf_counter() - started
            size = sum(
                os.path.getsize(os.path.join(folder, name))
                for folder, _, names in os.walk(os.path.join(cache, "envs"))
                for name in names
                if not os.path.islink(os.path.join(folder, name))
            )
        rows.append(f"{env}: install into an empty cache {seconds:.0f} s, environment {size / 2**20:.0f} MiB")
    session.run("liteport", "env", "build", *ONNX_TF_ENVS)  # the user's cache, for the conversions
    for env in ONNX_TF_ENVS:
        for mode in ONNX_TF_MODES:
            argv = ["liteport", "convert", "zoo:mobilenet_v2", "--backend", "onnx-tf", "--env", env]
            out = session.run(*argv, "--quant", mode, "--json", silent=True, success_codes=[0, 1])
            text = str(out)  # the JSON document, possibly with progress lines (stderr) around it
            doc, _ = json.JSONDecoder().raw_decode(text[text.index("\n{") + 1 if "\n{" in text else 0 :])
            t, facts, metrics = doc.get("timings", {}), doc.get("facts", {}), doc.get("metrics", {})
            nan = float("nan")
            rows.append(
                f"{env} mobilenet_v2 {mode:8s} {doc['status']:8s} "
                f"onnx-tf {t.get('convert_s', nan):6.2f} s + "
                f"TFLiteConverter {t.get('quantize_s', nan):6.2f} s "
                f"(all stages {t.get('total_s', nan):6.1f} s); cosine {metrics.get('cosine', nan):.4f}, "
                f"SQNR {metrics.get('sqnr_db', nan):5.1f} dB, {facts.get('transpose_ops')} TRANSPOSE, "
                f"{facts.get('latency_ms', nan):.1f} ms"
            )
    session.log("onnx-tf bench:\n" + "\n".join(rows))
    if "--no-tests" not in session.posargs:
        session.run(
            "pytest",
            "tests/integration/test_onnx_tf.py",
            "-q",
            "--timeout=3600",
            env={"LITEPORT_SLOW_TESTS": "1"},
        )


# -- Docker images and the docker runtime ----------------------------------------------------------

# What the Docker integration tests need: the shared validation runtime, the reference env and one backend.
# onnx2tf-1.29: a third-party plugin's image (its distribution staged in), ~3 GB.
DOCKER_TEST_ENVS = ("litert-runtime", "torch-2.13", "litert-torch-0.10", "onnx2tf-1.29")


def _docker_engine(session: nox.Session) -> None:
    """Debian's docker.io + debootstrap when missing, and a running dockerd (started in the background)."""
    import shutil
    import subprocess
    import time

    if not (shutil.which("dockerd") and shutil.which("debootstrap")):
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "docker.io", "debootstrap", external=True)
    if os.environ.get("DOCKER_HOST"):
        return  # a remote or explicitly chosen engine: not ours to start
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        return
    log_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "liteport-dockerd.log")
    session.log(f"starting dockerd (log: {log_path})")
    with open(log_path, "a", encoding="utf-8") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(60):
        if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(1)
    session.error(f"dockerd did not come up within 60 s; see {log_path}")


@nox.session(venv_backend="none", default=False)
def images(session: nox.Session) -> None:
    """Build the local base images when missing, then every environment's image (up-to-date ones are kept)."""
    import sys

    # No nox venv: liteport is installed into the interpreter running nox, as `pip install -e .` would.
    session.run(sys.executable, "-m", "pip", "install", "-q", "-e", ".[docker]", external=True)
    session.run(sys.executable, "-m", "liteport", "images", "base", external=True)
    session.run(sys.executable, "-m", "liteport", "images", "build", *session.posargs, external=True)
    session.run(sys.executable, "-m", "liteport", "images", "list", external=True)


@nox.session(default=False)
def docker(session: nox.Session) -> None:
    """CI for the docker runtime: engine, local base, the images the tests use, the Docker integration tests.

    A warm run reuses the images, the engine's layer cache and the wheelhouse in ~/.cache/liteport/wheels.
    """
    _install(session, "test", "docker")
    session.install("-e", "plugins/liteport-onnx2tf")  # the third-party plugin whose image is tested
    _docker_engine(session)
    session.run("liteport", "images", "base", "--suite", "bookworm")  # every image tested here is Python 3.11
    session.run("liteport", "images", "build", *DOCKER_TEST_ENVS)
    session.run("pytest", "tests/integration/test_docker.py", "-q", "-m", "integration", "--timeout=3600")


@nox.session(default=False)
def qat(session: nox.Session) -> None:
    """QAT transplant vs post-training int8 on the QAT zoo (agreement with PyTorch's int8 on XNNPACK and
    the reference kernels), then the op-level table (tests/integration/test_qat_ops.py)."""
    _install(session, "test")
    session.install(*TORCH)
    session.run(
        "pytest",
        "tests/integration/test_qat_transplant.py",
        "tests/integration/test_qat_ops.py",
        "-q",
        "-s",
        "-m",
        "integration",
        "--timeout=3600",
        *session.posargs,
    )


@nox.session(default=False)
def bench_explain(session: nox.Session) -> None:
    """liteport explain against a plain convert+validate of the same cell (mobilenet_v2 int8).

    Both start from an empty work folder (reference outputs included) with built environments and
    warm workers' overlays; the issue's budget is explain <= 2x. ``-- BACKEND ENV`` picks the cell.
    """
    import json
    import tempfile
    import time

    _install(session, "test")
    defaults = ["ai-edge-torch", "litert-torch-0.10"]
    backend, env = [*session.posargs, *defaults[len(session.posargs) :]][:2]
    cell = ["zoo:mobilenet_v2", "--quant", "int8", "--backend", backend, "--env", env]
    session.run("liteport", "env", "build", "torch-2.13", "litert-runtime", env)
    with tempfile.TemporaryDirectory(prefix="liteport-bench-warm-") as warm:  # overlays and disk caches
        session.run("liteport", "convert", "zoo:tiny_cnn", *cell[3:], "--workdir", warm, silent=True)
    seconds: dict[str, float] = {}
    docs: dict[str, dict[str, object]] = {}
    for command in ("convert", "explain"):
        with tempfile.TemporaryDirectory(prefix=f"liteport-bench-{command}-") as work:
            started = time.perf_counter()
            argv = ["liteport", command, *cell, "--json", "--workdir", work]
            text = str(session.run(*argv, silent=True, success_codes=[0, 1]))
            seconds[command] = time.perf_counter() - started
            docs[command], _ = json.JSONDecoder().raw_decode(text[text.index("{") :])
    explained = docs["explain"]
    first = explained.get("first_divergent")
    ratio = seconds["explain"] / seconds["convert"]
    coverage = explained.get("coverage") or {}
    fraction = coverage.get("fraction") if isinstance(coverage, dict) else None
    verdict = "within" if ratio <= 2 else "OVER"
    session.log(
        f"mobilenet_v2 int8 {backend} {env}: convert+validate {seconds['convert']:.1f} s, "
        f"explain {seconds['explain']:.1f} s = {ratio:.2f}x (budget 2x: {verdict}); "
        f"explain's parts {json.dumps(explained.get('timings'))}; matched fraction {fraction}, "
        f"first divergent {first.get('module') if isinstance(first, dict) else None}"
    )
