"""liteport explain, torch side: module outputs by forward hooks (or a graph's module stacks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from liteport.stages.activations import _Capture, run_activations  # noqa: E402
from liteport.types import Job, ModelSpec  # noqa: E402


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = self.act(h) + self.act(-h)  # one module called twice
        return self.head(self.drop(torch.flatten(h, 1)))


def _samples(n: int = 2) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(1, 3, 8, 8, generator=g),) for _ in range(n)]


def test_hooks_record_every_call_in_order_with_aliases_and_inplace_ops() -> None:
    torch.manual_seed(0)
    manifest, arrays = _Capture(_Net().eval(), 1e9).run(_samples())
    by_key = {m["key"]: m for m in manifest["modules"]}
    keys = [m["key"] for m in manifest["modules"]]
    assert keys == ["stem.0", "stem.1", "stem.2", "stem", "act", "act#2", "drop", "head", "(model)"]
    # in-place ReLU: a new value of the same tensor, not an alias of the BatchNorm's output
    assert by_key["stem.2"]["alias_of"] is None and by_key["stem.2"]["inputs"] == ["stem.1"]
    assert by_key["stem"]["alias_of"] == "stem.2"
    assert by_key["act"]["inputs"] == ["stem.2"] and by_key["act#2"]["inputs"] == [
        None
    ]  # -h: no module made it
    assert by_key["drop"]["passthrough"] and by_key["head"]["inputs"] == ["drop"]
    assert manifest["outputs"] == ["head"] and by_key["stem.0"]["inputs"] == ["input_0"]
    assert by_key["stem.0"]["weights"] and not by_key["stem.2"]["weights"]
    assert arrays[by_key["stem.1"]["array"]].shape == (2, 1, 4, 8, 8)
    assert not np.array_equal(arrays[by_key["stem.1"]["array"]], arrays[by_key["stem.2"]["array"]])
    assert manifest["root_type"].endswith("._Net") and not manifest["dropped"]


def test_the_memory_cap_keeps_the_earliest_modules_and_says_which_were_dropped() -> None:
    torch.manual_seed(0)
    per_sample = 4 * 4 * 8 * 8  # bytes of one conv output
    manifest, arrays = _Capture(_Net().eval(), 2.5 * per_sample).run(_samples())
    assert manifest["dropped"][0] == "stem.2" and "head" in manifest["dropped"]
    assert len(arrays) == 2
    assert "stem.2 … head" in manifest["notes"][0] and "--max-activation-mb" in manifest["notes"][0]


def test_an_exported_graph_is_grouped_by_its_module_stack() -> None:
    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    torch.manual_seed(0)
    graph = torch.export.export(Small().eval(), _samples(1)[0]).module()
    manifest, arrays = _Capture(graph, 1e9).run(_samples())
    by_key = {m["key"]: m for m in manifest["modules"]}
    assert {"body.0", "body.1", "body", "head"} <= set(by_key)
    assert by_key["body"]["alias_of"] == "body.1" and by_key["head"]["inputs"] == ["body.1"]
    assert manifest["outputs"] == ["head"]
    eager = Small().eval()
    eager.load_state_dict({k: v for k, v in graph.state_dict().items()})
    with torch.no_grad():
        expected = eager.body(_samples()[1][0]).numpy()
    np.testing.assert_allclose(arrays[by_key["body.1"]["array"]][1], expected, rtol=1e-5, atol=1e-6)


def test_run_activations_writes_the_manifest_and_arrays(tmp_path: Path) -> None:
    model = tmp_path / "m.py"
    model.write_text(
        "import torch\nfrom torch import nn\n"
        "def build():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU()).eval(), (torch.randn(1, 3, 4, 4),)\n"
    )
    np.savez(
        tmp_path / "reference.npz",
        input_0=np.random.default_rng(0).standard_normal((5, 1, 3, 4, 4)).astype("float32"),
    )
    job = Job(
        kind="activations",
        id="j",
        workdir=str(tmp_path),
        model=ModelSpec(ref=f"{model}:build"),
        options={
            "out": str(tmp_path / "explain" / "acts"),
            "reference": str(tmp_path / "reference.npz"),
            "samples": 3,
        },
    )
    result = run_activations(job)
    assert result.ok, result.error
    manifest = json.loads(Path(result.artifacts["activations"]).read_text())
    assert [m["key"] for m in manifest["modules"]] == ["0", "1", "(model)"]
    assert manifest["samples"] == 3 and manifest["reference"] == "float"
    with np.load(result.artifacts["arrays"]) as data:
        assert data[manifest["modules"][1]["array"]].shape == (3, 1, 2, 4, 4)
