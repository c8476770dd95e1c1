"""Faults and bad input at the command line (issue 11): one line naming the input, exit 2, before any work."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liteport.cli.matrix import print_resume

FAKE = ("--backend", "fake", "--runtime", "local")


def _liteport(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liteport", *args],
        capture_output=True,
        text=True,
        # The numeric validator needs ai-edge-litert, which the local interpreter lacks.
        env={**os.environ, "LITEPORT_DISABLE_PLUGINS": "numeric", **env},
        timeout=600,
    )


def _one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> str:
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "Traceback" not in text, text
    lines = [line for line in out.stderr.splitlines() if line.startswith("liteport: error:")]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file: nothing can be created under it, whoever runs the tests (root included)."""
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


needs_non_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders"
)


# ---------------------------------------------------------------------------- 5: -o


def test_output_naming_a_directory_fails_before_any_work(
    fake_plugins: Path, cache_dir: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    out = _liteport("convert", "zoo:tiny_cnn", *FAKE, "--workdir", str(work), "-o", str(tmp_path))
    _one_line_error(out, str(tmp_path), "directory")
    assert not work.exists(), "conversion work started before the output was checked"


def test_output_in_a_place_that_cannot_be_created(
    fake_plugins: Path, cache_dir: Path, tmp_path: Path, a_file: Path
) -> None:
    work = tmp_path / "work"
    target = a_file / "sub" / "model.tflite"
    out = _liteport("convert", "zoo:tiny_cnn", *FAKE, "--workdir", str(work), "-o", str(target))
    _one_line_error(out, str(target), str(a_file))
    assert not work.exists()


@needs_non_root
def test_output_in_a_read_only_folder(fake_plugins: Path, cache_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        out = _liteport("convert", "zoo:tiny_cnn", *FAKE, "-o", str(folder / "model.tflite"))
        _one_line_error(out, str(folder), "writable")
    finally:
        folder.chmod(0o700)


def test_output_is_replaced_atomically(fake_plugins: Path, cache_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "model.tflite"
    target.parent.mkdir()
    target.write_bytes(b"previous model")
    # A reader holding the previous file (here: a hard link to it) must never see a half-copied one.
    os.link(target, tmp_path / "previous.tflite")
    out = _liteport("convert", "zoo:tiny_cnn", *FAKE, "-o", str(target))
    assert out.returncode == 0, out.stderr
    assert target.read_bytes() == b"not a real model"  # what the fake backend writes
    assert (tmp_path / "previous.tflite").read_bytes() == b"previous model"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.tflite"], "a temporary file is left"


# ---------------------------------------------------------------------------- 6: the cache


@pytest.mark.parametrize(
    "command",
    [
        ("convert", "zoo:tiny_cnn", *FAKE),
        ("matrix", "--models", "zoo:tiny_cnn", "--backends", "fake", "--modes", "fp32", "--runtime", "local"),
        ("env", "build", "fake-env"),
    ],
    ids=["convert", "matrix", "env-build"],
)
def test_cache_that_cannot_be_created(
    fake_plugins: Path, tmp_path: Path, a_file: Path, command: tuple[str, ...]
) -> None:
    cache = a_file / "cache"
    extra = ("-o", str(tmp_path / "m")) if command[0] == "matrix" else ()
    out = _liteport(*command, *extra, LITEPORT_CACHE=str(cache))
    _one_line_error(out, str(cache), "LITEPORT_CACHE")


def test_default_cache_that_cannot_be_created(fake_plugins: Path, a_file: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LITEPORT_CACHE"}
    out = subprocess.run(
        [sys.executable, "-m", "liteport", "convert", "zoo:tiny_cnn", *FAKE],
        capture_output=True,
        text=True,
        env={**env, "LITEPORT_DISABLE_PLUGINS": "numeric", "XDG_CACHE_HOME": str(a_file)},
        timeout=600,
    )
    _one_line_error(out, str(a_file / "liteport"), "LITEPORT_CACHE")


@needs_non_root
def test_read_only_cache(fake_plugins: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        _one_line_error(_liteport("convert", "zoo:tiny_cnn", *FAKE, LITEPORT_CACHE=str(cache)), str(cache))
    finally:
        cache.chmod(0o700)


# ---------------------------------------------------------------------------- 7: --inputs


def test_inputs_with_text_arrays_name_the_file_and_the_array(
    fake_plugins: Path, cache_dir: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "words.npz"
    np.savez(inputs, input_0=np.full((2, 1, 3, 32, 32), "x"))
    out = _liteport("convert", "zoo:tiny_cnn", *FAKE, "--inputs", str(inputs))
    _one_line_error(out, "words.npz", "'input_0'", "numbers")


# ---------------------------------------------------------------------------- 8: global options


MODELS = """
import torch
from torch import nn

def raises():
    raise ValueError("dataset path not configured")
"""


def test_verbose_before_the_subcommand_counts(tmp_path: Path, cache_dir: Path) -> None:
    models = tmp_path / "models.py"
    models.write_text(MODELS)
    ref = f"{models}:raises"
    for argv in (("-v", "convert", ref), ("convert", ref, "-v")):
        out = _liteport(*argv, "--runtime", "local", "--backend", "ai-edge-torch")
        assert out.returncode == 2, out.stderr
        assert "Traceback" in out.stderr, argv


def test_strict_plugins_before_the_subcommand_counts(broken_plugins: Path) -> None:
    for argv in (("--strict-plugins", "backends"), ("backends", "--strict-plugins")):
        out = _liteport(*argv)
        assert out.returncode == 1, (argv, out.stderr)
        assert "plugin 'broken' from liteport-broken failed to load" in out.stderr


# ---------------------------------------------------------------------------- 10: --weights


def test_random_bytes_as_weights_are_not_a_checkpoint(
    fake_plugins: Path, cache_dir: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "random.pt"
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    models = tmp_path / "models.py"
    models.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 2), torch.randn(1, 4)\n")
    out = _liteport("convert", f"{models}:build", *FAKE, "--weights", str(weights))
    line = _one_line_error(out, "random.pt", "not a torch checkpoint")
    assert "weights_only=False" not in line and "will likely succeed" not in line


# ---------------------------------------------------------------------------- 14: resume command


def test_resume_command_is_one_line_at_any_width(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["matrix", "--models", "zoo:tiny_cnn,zoo:lstm", "-o", str(tmp_path / ("long-" * 20 + "out"))]
    argv += ["--resume", "--jobs", "1"]
    err = io.StringIO()
    from rich.console import Console

    print_resume(Console(file=err, width=80), 2, 6, tmp_path / "journal.jsonl", argv)
    assert "interrupted" in err.getvalue()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"liteport matrix --models zoo:tiny_cnn,zoo:lstm -o {argv[4]} --jobs 1 --resume"]
