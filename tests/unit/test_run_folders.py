"""Run folders shared by processes: one maker per reference, and files that appear whole or not at all."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from liteport.stages.reference import run_reference
from liteport.types import Job, ModelSpec

# One liteport process asking for zoo:tiny_cnn's reference with the fake backend. The events it
# makes are files in GATE: making-<pid> (it runs the reference stage, inside the run folder's lock;
# it then waits for GATE/go) and waiting-<pid> (filelock logs that it waits for a lock held elsewhere).
ASK = textwrap.dedent("""
    import json, logging, os, sys, time
    from pathlib import Path

    import liteport_fake
    from liteport.pipeline import Engine
    from liteport.plugins import PluginManager
    from liteport.runtimes.local import LocalRuntime
    from liteport.types import ModelSpec

    gate, work, me = Path(sys.argv[1]), Path(sys.argv[2]), os.getpid()


    class Waiting(logging.Handler):
        def emit(self, record):
            text = record.getMessage()
            if "not acquired" in text and ".reference.lock" in text:
                (gate / f"waiting-{me}").touch()


    logging.getLogger("filelock").setLevel(logging.DEBUG)
    logging.getLogger("filelock").addHandler(Waiting())


    def progress(message):
        if message.startswith("reference outputs"):
            (gate / f"making-{me}").touch()
            while not (gate / "go").exists():
                time.sleep(0.05)


    pm = PluginManager()
    pm.register(liteport_fake, name="fake", distribution="liteport-fake")
    backend = pm.backends()["fake"]
    model = ModelSpec(ref="zoo:tiny_cnn", calibration_size=4, validation_size=2)
    with Engine(pm=pm, runtime=LocalRuntime(), work_root=work, progress=progress) as engine:
        attempt = engine.attempt(model, backend, backend.environments[0], "fp32")
    print(json.dumps({"status": attempt.status, "cause": attempt.cause}))
""")


def _wait_until(event: Callable[[], bool], procs: Sequence[subprocess.Popen[str]], what: str) -> None:
    """Until ``event()`` holds, failing at once when one of ``procs`` ends first."""
    deadline = time.monotonic() + 300  # only a guard against hanging forever
    while not event():
        for proc in procs:
            if proc.poll() is not None:
                _, stderr = proc.communicate()
                pytest.fail(f"a process ended (exit {proc.returncode}) before {what}: {stderr}")
        if time.monotonic() > deadline:
            for proc in procs:
                proc.kill()
            pytest.fail(f"never saw {what}")
        time.sleep(0.05)


def test_two_processes_asking_for_one_reference_make_it_once(fake_plugins: Path, tmp_path: Path) -> None:
    gate, work = tmp_path / "gate", tmp_path / "work"
    gate.mkdir()

    def ask() -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", ASK, str(gate), str(work)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def makers() -> int:
        return len(list(gate.glob("making-*")))

    first = ask()
    _wait_until(lambda: makers() == 1, [first], "the first process making the reference")
    second = ask()
    # The second one now waits for the first one's lock (or, were there none, makes its own copy).
    _wait_until(lambda: any(gate.glob("waiting-*")) or makers() > 1, [second], "the second process")
    (gate / "go").touch()
    for proc in (first, second):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == {"status": "ok", "cause": ""}
    assert makers() == 1, "both processes made the reference"
    (run_dir,) = (work / "runs").iterdir()
    with np.load(run_dir / "reference.npz") as reference:
        assert reference["output_0"].shape[0] == 2
    assert not [p.name for p in run_dir.iterdir() if "partial" in p.name]


NET = """
import torch

def build():
    return torch.nn.Linear(4, 3), torch.randn(1, 4)
"""


def test_reference_files_appear_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "net.py"
    model.write_text(NET)
    real_savez = np.savez

    def disk_full(file: str, **arrays: np.ndarray) -> None:
        real_savez(file, **arrays)
        with open(file, "r+b") as written:
            written.truncate(64)  # the disk filled up halfway through the archive
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        run_reference(Job(kind="reference", id="r", workdir=str(run), model=ModelSpec(ref=f"{model}:build")))
    # A later stage, or another process, must never find a reference.npz that looks made.
    assert sorted(p.name for p in run.iterdir()) == []
