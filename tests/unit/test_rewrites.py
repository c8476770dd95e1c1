"""Graph rewrites: the built-ins keep the model's numbers, the trigger reads the failure, and the chain
retries a backend with a third-party plugin's rewrite (fake backend, real rewrite stage, local runtime)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from liteport.chain import run_chain
from liteport.errors import UnsupportedOp
from liteport.pipeline import Engine
from liteport.pipeline.rewriting import rewrites_for
from liteport.plugins import PluginManager
from liteport.rewrites import builtin
from liteport.rewrites import plugin as builtin_plugin
from liteport.runtimes.local import LocalRuntime
from liteport.stages.modelref import load_model
from liteport.stages.rewrite import run_rewrite
from liteport.stages.tensors import flatten_outputs
from liteport.types import Attempt, ErrorInfo, Job, ModelSpec


def test_registration_imports_no_torch() -> None:
    script = (
        "import sys\n"
        "from liteport.rewrites.plugin import liteport_rewrites\n"
        "names = [r.name for r in liteport_rewrites()]\n"
        "assert len(names) >= 3, names\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


class _Gelu(nn.Module):
    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.a, self.b, self.approximate = nn.Linear(8, 16), nn.Linear(16, 4), approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.b(F.gelu(self.a(x) * 3.0, approximate=self.approximate))
        return out


class _Pool(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.conv, self.size = nn.Conv2d(3, 4, 3, padding=1), size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        out: torch.Tensor = F.adaptive_max_pool2d(y, self.size) + F.adaptive_avg_pool2d(y, self.size)
        return out


class _Recurrent(nn.Module):
    def __init__(self, cell: type[nn.Module], **kwargs: Any) -> None:
        super().__init__()
        self.rnn = cell(6, 5, **kwargs)

    def forward(self, x: torch.Tensor) -> Any:
        return self.rnn(x)


class _LogSoftmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(x * 4.0, dim=-1)


CASES = {
    "gelu": ("gelu-erf-free", lambda: _Gelu(), (torch.randn(4, 8),), 1, "aten.gelu.default"),
    "gelu-tanh": ("gelu-erf-free", lambda: _Gelu("tanh"), (torch.randn(4, 8),), 0, ""),
    "pool": (
        "adaptive-pool-fixed",
        lambda: _Pool(4),
        (torch.randn(1, 3, 16, 16),),
        2,
        "aten.adaptive_max_pool2d",
    ),
    "pool-uneven": ("adaptive-pool-fixed", lambda: _Pool(5), (torch.randn(1, 3, 16, 16),), 0, ""),
    "lstm": (
        "recurrent-unroll",
        lambda: _Recurrent(nn.LSTM, num_layers=2, batch_first=True, bidirectional=True),
        (torch.randn(2, 7, 6),),
        1,
        "aten.lstm.input",
    ),
    "gru": (
        "recurrent-unroll",
        lambda: _Recurrent(nn.GRU, num_layers=2),
        (torch.randn(7, 2, 6),),
        1,
        "aten.gru.input",
    ),
    "log_softmax": ("log-softmax-decompose", _LogSoftmax, (torch.randn(3, 10),), 1, "aten.log_softmax"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_builtin_rewrite_keeps_the_outputs(case: str) -> None:
    name, build, args, expected, gone = CASES[case]
    torch.manual_seed(0)
    module = build().eval()
    with torch.no_grad():
        want = flatten_outputs(module(*args))
    graph = torch.export.export(module, args, strict=False).module()
    assert builtin.apply(name, graph) == expected
    program = torch.export.export(graph, args, strict=False)  # what the rewrite stage does next
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    if gone:
        assert not any(t.startswith(gone) for t in targets), targets
    with torch.no_grad():
        got = flatten_outputs(program.module()(*args))
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, atol=2e-6, rtol=1e-5)


def _attempt(kind: str, message: str) -> Attempt:
    return Attempt(
        model="m",
        backend="b",
        environment="e",
        mode="fp32",
        status="invalid" if kind in ("invalid_model", "validation_failed") else "failed",
        error=ErrorInfo(kind=kind, message=message),  # type: ignore[arg-type]
    )


def test_the_failure_names_the_rewrite() -> None:
    registered = {r.name: r for r in builtin_plugin.REWRITES}
    erf = _attempt("unsupported_op", "m: TensorFlow op Erf has no TFLite builtin kernel (fp32)")
    assert rewrites_for(erf, registered) == ["gelu-erf-free"]
    assert rewrites_for(erf, registered, applied=["gelu-erf-free"]) == []
    lowering = _attempt(
        "unsupported_op", "m: aten.adaptive_max_pool2d.default has no lowering in this converter"
    )
    assert rewrites_for(lowering, registered) == ["adaptive-pool-fixed"]
    refused = _attempt(
        "invalid_model", "LiteRT refuses model.tflite: Node number 9 (LOG_SOFTMAX) failed to prepare."
    )
    assert rewrites_for(refused, registered) == ["log-softmax-decompose"]
    # litert-torch's PT2E quantizer (int8) refuses PyTorch's GRU node; unrolled, there is no GRU.
    quantizer = _attempt(
        "quantizer_error", "gru: PT2E quantization failed: AssertionError: expecting GRU to have two outputs"
    )
    assert rewrites_for(quantizer, registered) == ["recurrent-unroll"]
    assert rewrites_for(_attempt("unsupported_op", "m: op Erfc is not implemented"), registered) == []
    assert rewrites_for(_attempt("validation_failed", "Erf cosine 0.5 < 0.9999"), registered) == []


def test_rewrite_stage_writes_a_program_every_backend_loads(tmp_path: Path) -> None:
    pm = PluginManager()
    pm.register(builtin_plugin, name="rewrites", distribution="liteport")
    model = ModelSpec(ref="zoo:gelu_mixer")
    job = Job(
        kind="rewrite", id="r", workdir=str(tmp_path), model=model, options={"rewrites": ["gelu-erf-free"]}
    )
    result = run_rewrite(pm, job)
    assert result.ok and result.facts["rewrites"] == ["gelu-erf-free"]
    assert result.facts["rewrite_nodes"] == {"gelu-erf-free": 4} and result.facts["rewrite_max_abs"] < 1e-5
    path = Path(result.artifacts["pt2"])
    assert path.name == "gelu_mixer+gelu-erf-free.pt2"
    loaded, original = load_model(ModelSpec(ref=str(path))), load_model(model)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.module(*loaded.example_inputs), original.module(*original.example_inputs)
        )
    nothing = Job(
        kind="rewrite",
        id="n",
        workdir=str(tmp_path),
        model=ModelSpec(ref="zoo:tiny_cnn"),
        options=job.options,
    )
    with pytest.raises(UnsupportedOp, match="nothing to rewrite: gelu-erf-free"):
        run_rewrite(pm, nothing)


@pytest.fixture
def picky_engine(rewrite_plugins: Path, tmp_path: Path) -> Engine:
    import liteport_rewrite_probe  # type: ignore[import-not-found]  # on the path only through the fixture

    pm = PluginManager()
    pm.register(liteport_rewrite_probe, name="rewrite-probe", distribution="liteport-rewrite-probe")
    return Engine(pm=pm, runtime=LocalRuntime(), work_root=tmp_path / "work")


def test_chain_retries_a_backend_with_a_third_party_rewrite(
    picky_engine: Engine, rewrite_plugins: Path
) -> None:
    backend = picky_engine.pm.backends()["picky"]
    candidates = [(backend, backend.environments[0])]
    model = ModelSpec(
        ref=f"{rewrite_plugins / 'hardswish_model.py'}:build", calibration_size=2, validation_size=2
    )
    with picky_engine:
        outcome = run_chain(picky_engine, model, candidates, "fp32")
        plain = run_chain(picky_engine, model, candidates, "fp32", rewrites=False)
    first, rewritten = outcome.attempts
    assert first.status == "failed" and first.error is not None and first.error.kind == "unsupported_op"
    assert "aten.hardswish" in first.error.message and first.rewrites == ()
    assert rewritten.ok and outcome.chosen is rewritten
    assert rewritten.rewrites == ("hardswish-explicit",) and rewritten.model == model.ref
    assert rewritten.facts["rewrite_nodes"] == {"hardswish-explicit": 1}
    assert rewritten.facts["rewritten_from"] == first.cause
    assert "aten.hardswish.default" not in rewritten.facts["picky_ops"]
    assert list(rewritten.to_dict()["rewrites"]) == ["hardswish-explicit"]
    assert Attempt.from_dict(rewritten.to_dict()) == rewritten  # journals round-trip the rewrites
    assert [a.status for a in plain.attempts] == ["failed"] and plain.chosen is None
