"""liteport from Python: ``liteport.convert(...)`` and ``liteport.matrix(...)``, the CLI's two main jobs.

Both take the CLI's options as keyword arguments and return the typed records its JSON output
holds: ``convert`` a :class:`Conversion` (every ``Attempt`` of the chain and the one kept; its
``to_dict()`` is exactly ``liteport convert --json``), ``matrix`` a :class:`MatrixRun` (every cell
with its ``Attempt``, and the ``matrix.json`` document with its per-environment and chain
coverage). ``convert`` also takes an in-memory ``nn.Module`` with its example inputs: it is
exported with ``torch.export`` (in eval mode) and handed to the workers as a ``.pt2`` file.

Errors are raised as ``liteport.errors.LiteportError`` subclasses (``BadInput`` for unusable
input), never printed; a conversion that fails in every backend is a result (``chosen`` is None),
not an error. Progress lines go to ``progress`` when given.

Importing this module is cheap; torch is imported only to export an in-memory module.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liteport.chain import PICKS, Candidate, configured_chain, default_candidates, resolve, run_chain
from liteport.errors import BadInput, UsageError
from liteport.matrix.cells import Cell, parse_shard, plan, shard
from liteport.matrix.journal import Journal
from liteport.matrix.run import NO_REWRITES, run_matrix
from liteport.pipeline import Engine, StageTimeouts
from liteport.plugins import PluginManager, get_plugin_manager
from liteport.reports import build, entries_from, write_reports
from liteport.runtimes import get_runtime
from liteport.runtimes.venv import default_cache_dir
from liteport.types import MODES, Attempt, BackendInfo, ModelSpec
from liteport.validators.thresholds import default_thresholds

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Conversion:
    """What ``liteport.convert`` found: every attempt in order, the one kept, where it was written."""

    attempts: list[Attempt]
    chosen: Attempt | None
    pick: str
    output: Path | None = None

    @property
    def ok(self) -> bool:
        return self.chosen is not None

    @property
    def tflite(self) -> Path | None:
        """The kept model: ``output`` when one was asked for, else the file in the work folder."""
        if self.chosen is None or self.chosen.tflite is None:
            return None
        return self.output or Path(self.chosen.tflite)

    def to_dict(self) -> dict[str, Any]:
        """The document ``liteport convert --json`` prints."""
        shown = self.chosen or self.attempts[-1]
        return {
            **shown.to_dict(),
            "pick": self.pick,
            "chosen": self.attempts.index(self.chosen) if self.chosen else None,
            "attempts": [a.to_dict() for a in self.attempts],
            "output": str(self.output) if self.chosen and self.output else None,
        }


@dataclass(frozen=True)
class MatrixRun:
    """What ``liteport.matrix`` ran: each cell with its attempt, and the report document."""

    cells: list[tuple[Cell, Attempt]]  # every cell of the journal, resumed ones included
    document: dict[str, Any]  # exactly matrix.json
    paths: list[Path] = field(default_factory=list)  # matrix.json, matrix.md, matrix.html
    interrupted: bool = False

    @property
    def coverage(self) -> dict[str, dict[str, Any]]:
        """Per mode: valid models per environment and for the chain."""
        coverage: dict[str, dict[str, Any]] = self.document.get("coverage", {})
        return coverage


def convert(
    model: Any,
    example_inputs: Sequence[Any] | None = None,
    *,
    quant: str = "fp32",
    backend: str | None = None,
    env: str | None = None,
    chain: Sequence[str] | None = None,
    pick: str = "first",
    output: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    inputs: str | None = None,
    channels_last: bool = False,
    opset: int | None = None,
    rewrites: bool = True,
    thresholds: Mapping[str, float] | str | None = None,
    timeout: float = 1800.0,
    seed: int = 0,
    runtime: str = "venv",
    workdir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    plugins: PluginManager | None = None,
) -> Conversion:
    """Convert ``model`` (a ModelRef string, a ``.pt2`` path, or an ``nn.Module`` with
    ``example_inputs``) in mode ``quant`` through the fallback chain; keep the first valid attempt
    (``pick``). The options are ``liteport convert``'s: ``backend``/``env`` use one candidate,
    ``chain`` lists backends or environments to try in order, ``output`` copies the kept .tflite.
    """
    if quant not in MODES:
        raise UsageError(f"unknown mode {quant!r}", hint=f"choose one of: {', '.join(MODES)}")
    if pick not in PICKS:
        raise UsageError(f"unknown pick {pick!r}", hint=f"choose one of: {', '.join(PICKS)}")
    pm = plugins or get_plugin_manager()
    work_root = Path(workdir) if workdir is not None else default_cache_dir() / "work"
    ref = _model_ref(model, example_inputs, work_root)
    candidates = candidates_for(pm.backends(), quant, backend=backend, env=env, chain=chain)
    spec = ModelSpec(ref=ref, weights=weights, inputs=inputs, seed=seed)
    for label, value in (("weights", weights), ("inputs", inputs)):
        if value and not Path(value).is_file():
            raise BadInput(f"{label} file {value} does not exist", hint="check the path")
    limits = default_thresholds(quant).updated(_threshold_text(thresholds)).to_dict()
    options: dict[str, Any] = {"channels_last": True} if channels_last else {}
    if opset is not None:
        options["opset"] = opset
    with Engine(
        pm=pm,
        runtime=get_runtime(runtime),
        work_root=work_root,
        cwd=str(Path.cwd()),
        progress=progress or (lambda message: None),
        timeouts=StageTimeouts(convert=timeout),
    ) as engine:
        outcome = run_chain(
            engine, spec, candidates, quant, pick=pick, options=options, thresholds=limits, rewrites=rewrites
        )
    written: Path | None = None
    if outcome.chosen is not None and outcome.chosen.tflite and output is not None:
        written = Path(output)
        written.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(outcome.chosen.tflite, written)
    return Conversion(attempts=outcome.attempts, chosen=outcome.chosen, pick=outcome.pick, output=written)


def matrix(
    models: Sequence[str] | str = ("zoo:all",),
    *,
    modes: Sequence[str] | str = ("fp32", "fp16", "dynamic", "int8"),
    backends: Sequence[str] | str = (),
    envs: Sequence[str] | str = (),
    jobs: int | None = None,
    out: str | os.PathLike[str] = "liteport-matrix",
    journal: str | os.PathLike[str] | None = None,
    resume: bool = False,
    shard_of: str | None = None,
    rewrites: bool = True,
    timeout: float = 1800.0,
    runtime: str = "venv",
    workdir: str | os.PathLike[str] | None = None,
    plugins: PluginManager | None = None,
) -> MatrixRun:
    """Run models x backends x environments x modes (``liteport matrix``); write the reports to
    ``out`` and return every cell with its attempt. ``shard_of`` is ``--shard`` ("k/n")."""
    mode_list = _names(modes)
    unknown = [m for m in mode_list if m not in MODES]
    if unknown:
        raise UsageError(f"unknown mode {', '.join(unknown)}", hint=f"choose from: {', '.join(MODES)}")
    pm = plugins or get_plugin_manager()
    cells = plan(
        pm,
        _names(models),
        mode_list,
        backends=_names(backends),
        environments=_names(envs),
        options=None if rewrites else {NO_REWRITES: True},
    )
    if shard_of:
        cells = shard(cells, *parse_shard(shard_of))
    out_dir = Path(out)
    journal_path = Path(journal) if journal is not None else out_dir / "journal.jsonl"
    if journal_path.exists() and journal_path.stat().st_size and not resume:
        raise UsageError(
            f"journal {journal_path} already holds results", hint="pass resume=True, or another out/journal"
        )
    jobs = jobs or os.cpu_count() or 1
    engine = Engine(
        pm=pm,
        runtime=get_runtime(runtime),
        work_root=Path(workdir) if workdir is not None else default_cache_dir() / "work",
        cwd=str(Path.cwd()),
        timeouts=StageTimeouts(convert=timeout),
        workers_per_env=jobs,
    )
    try:
        outcome = run_matrix(engine, cells, Journal(journal_path), jobs=jobs, resume=resume)
    finally:
        engine.close()
    entries = entries_from([journal_path])
    document = build(entries)
    paths = write_reports(document, out_dir)
    planned = {c.key: c for c in cells}
    ran = [(planned[e["key"]], Attempt.from_dict(e["attempt"])) for e in entries if e["key"] in planned]
    return MatrixRun(cells=ran, document=document, paths=paths, interrupted=outcome.interrupted)


def candidates_for(
    backends: Mapping[str, BackendInfo],
    mode: str,
    *,
    backend: str | None = None,
    env: str | None = None,
    chain: Sequence[str] | None = None,
) -> list[Candidate]:
    """The (backend, environment) pairs to try, as ``liteport convert`` chooses them."""
    if chain and (backend or env):
        raise UsageError("chain cannot be combined with backend/env", hint="put them in the chain")
    if chain:
        found = resolve(backends, list(chain))
    elif backend or env:
        found = [
            (b, e)
            for b in backends.values()
            for e in b.environments
            if (backend is None or b.name == backend) and (env is None or e.name == env)
        ]
        if not found:
            raise UsageError(
                f"no installed backend {backend or ''} with environment {env or '(any)'}".replace("  ", " "),
                hint=f"installed: {', '.join(backends)}",
            )
        found = found if env else found[:1]  # a backend alone means its preferred environment
    else:
        configured = configured_chain(Path.cwd())
        found = resolve(backends, configured) if configured else default_candidates(backends, mode)
    if not found:
        raise UsageError(f"no installed backend offers mode {mode}", hint="see `liteport backends`")
    return found


def _model_ref(model: Any, example_inputs: Sequence[Any] | None, work_root: Path) -> str:
    """A ModelRef for ``model``: strings and paths as they are, an nn.Module saved as a .pt2."""
    if isinstance(model, (str, os.PathLike)):
        if example_inputs is not None:
            raise BadInput("example_inputs go with an nn.Module", hint="a ModelRef names its own inputs")
        return os.fspath(model)
    if not callable(getattr(model, "forward", None)):
        raise BadInput(
            f"model is a {type(model).__name__}",
            hint="pass a ModelRef string, a .pt2 path, or an nn.Module with example_inputs",
        )
    if example_inputs is None:
        raise BadInput(f"an in-memory {type(model).__name__} needs example_inputs", hint="a tuple of tensors")
    return save_program(model, tuple(example_inputs), work_root / "programs")


def save_program(module: Any, example_inputs: tuple[Any, ...], folder: Path) -> str:
    """``module`` exported in eval mode and saved as ``<folder>/<Class>-<content hash>.pt2``.

    Named by content, so converting the same module again reuses its run folder (reference, exports).
    """
    import torch

    training = bool(module.training)
    module.eval()
    try:
        program = torch.export.export(module, example_inputs)
    except Exception as exc:
        raise BadInput(
            f"torch.export cannot capture the {type(module).__name__}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
            hint="make it exportable, or pass a ModelRef (file.py:factory) for converters to trace",
        ) from exc
    finally:
        module.train(training)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".pt2", dir=folder)
    os.close(handle)
    torch.export.save(program, temporary)
    digest = hashlib.sha256(Path(temporary).read_bytes()).hexdigest()[:12]
    path = folder / f"{type(module).__name__}-{digest}.pt2"
    os.replace(temporary, path)
    return str(path)


def _names(value: Sequence[str] | str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def _threshold_text(value: Mapping[str, float] | str | None) -> str | None:
    """The CLI's ``--threshold`` spelling ("cosine=0.99,sqnr=12") of a mapping, so both mean the same."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(f"{key}={number}" for key, number in value.items())
