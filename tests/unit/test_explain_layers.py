"""liteport explain: per-layer error, the error a layer adds, the first divergent layer, hints, documents."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from liteport.errors import UsageError
from liteport.explain import document
from liteport.explain.layers import dominant_channel_hint, input_sqnr, layer_rows, op_group
from liteport.explain.match import Matcher
from liteport.explain.thresholds import layer_thresholds

RNG = np.random.default_rng(1)
SAMPLES = 3
LAYERS = ["l1", "l2", "l3", "l4", "l5"]


def _noisy(ref: np.ndarray, sqnr_db: float) -> np.ndarray:
    noise = RNG.standard_normal(ref.shape)
    scale = np.sqrt(np.sum(ref**2) / np.sum(noise**2) / 10 ** (sqnr_db / 10))
    return (ref + scale * noise).astype(np.float32)


def _chain(sqnrs: list[float], input_sqnr_db: float = 40.0) -> tuple[Matcher, list[np.ndarray]]:
    """input -> l1 -> ... -> l5 (linear layers of 32 features); TFLite values at the given SQNRs."""
    shape = [1, 32]
    modules: list[dict[str, Any]] = []
    acts: dict[str, np.ndarray] = {}
    previous = "input_0"
    for name in LAYERS:
        modules.append(
            {
                "key": name,
                "path": name,
                "type": "torch.nn.Linear",
                "leaf": True,
                "inputs": [previous],
                "shape": shape,
                "alias_of": None,
                "passthrough": False,
                "array": name,
            }
        )
        acts[name] = RNG.standard_normal((SAMPLES, *shape)).astype(np.float32)
        previous = name
    manifest = {"samples": SAMPLES, "modules": modules, "outputs": ["l5"], "root_type": "Net"}
    reference_input = RNG.standard_normal((SAMPLES, 1, 32)).astype(np.float32)
    tensors: dict[int, dict[str, Any]] = {
        0: {"name": "serving_default_x:0", "shape": shape, "producer": None, "scales": [], "dtype": "float32"}
    }
    values = {0: _noisy(reference_input, input_sqnr_db)}
    ops = []
    for i, (name, sqnr) in enumerate(zip(LAYERS, sqnrs), start=1):
        tensors[i] = {
            "name": f"{name};{name}/MatMul",
            "shape": shape,
            "producer": i - 1,
            "scales": [],
            "dtype": "float32",
        }
        ops.append({"index": i - 1, "op": "FULLY_CONNECTED", "inputs": [i - 1], "outputs": [i]})
        values[i] = _noisy(acts[name], sqnr)
    graph = {"tensors": tensors, "ops": ops, "inputs": [0], "outputs": [len(LAYERS)]}
    matcher = Matcher(manifest, acts, graph, values, "int8")
    matcher.match_all()
    return matcher, [reference_input]


def _rows(sqnrs: list[float]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    matcher, inputs = _chain(sqnrs)
    return layer_rows(matcher, layer_thresholds("int8"), input_sqnr(matcher, inputs))


def test_a_gradual_decline_has_no_divergent_layer() -> None:
    rows, first = _rows([30.0, 26.0, 22.0, 18.0, 13.0])  # below the floor at the end, but each adds little
    assert first is None
    assert [round(r["added_db"]) for r in rows] == [10, 4, 4, 4, 5]


def test_the_layer_that_loses_the_signal_is_first_divergent_not_those_after_it() -> None:
    rows, first = _rows([30.0, 28.0, 2.0, 1.5, 1.0])
    assert first is not None and first["module"] == "l3"
    assert first["added_db"] == pytest.approx(26.0, abs=0.5)
    assert [r["module"] for r in rows if r.get("flag")] == ["l3"]


def test_the_first_layer_is_judged_against_the_quantized_input() -> None:
    matcher, inputs = _chain([3.0, 3.0, 3.0, 3.0, 3.0], input_sqnr_db=40.0)
    rows, first = layer_rows(matcher, layer_thresholds("int8"), input_sqnr(matcher, inputs))
    assert first is not None and first["module"] == "l1"
    assert rows[0]["sqnr_in_db"] == pytest.approx(40.0, abs=0.5)


def test_op_group_walks_back_to_matched_tensors() -> None:
    graph = {
        "tensors": {0: {"producer": None}, 1: {"producer": 0}, 2: {"producer": 1}, 3: {"producer": 2}},
        "ops": [
            {"index": 0, "op": "CONV_2D", "inputs": [0], "outputs": [1]},
            {"index": 1, "op": "PAD", "inputs": [1], "outputs": [2]},
            {"index": 2, "op": "CONV_2D", "inputs": [2, 9], "outputs": [3]},
        ],
    }
    assert op_group(graph, 3, matched={1, 3}) == [1, 2]
    assert op_group(graph, 3, matched={3}) == [0, 1, 2]


@pytest.mark.parametrize(
    ("gain", "rest"), [(1000.0, "are quantized to a single value"), (20.0, "span at most 6 of its 127 steps")]
)
def test_hint_names_the_channel_that_takes_the_int8_range(gain: float, rest: str) -> None:
    x = RNG.uniform(0, 4, size=(2, 1, 5, 5, 16)).astype(np.float32)
    x[..., 0] = 0.0
    x[0, 0, 0, 0, :] = 4.0  # every channel spans [0, 4] ...
    x[..., 0] *= gain  # ... but channel 0, which spans [0, 4 * gain]
    scale = float(np.abs(x).max() / 127)
    x = np.round(x / scale) * scale
    graph = {
        "tensors": {
            7: {"name": "blocks.1.gain;mul", "scales": [scale], "zero_points": [-128], "dtype": "int8"}
        },
        "ops": [{"index": 0, "op": "CONV_2D", "inputs": [7, 8], "outputs": [9]}],
    }
    hint = dominant_channel_hint(graph, {7: x}, [0], {7: "blocks.1.act"})
    assert hint is not None and hint.startswith("one channel (0) holds")
    assert f"int8 range of blocks.1.act's tensor (scale {scale:.3g}); the other 15 channels {rest}" in hint
    assert dominant_channel_hint(graph, {7: RNG.uniform(0, 4, size=(2, 1, 5, 5, 16))}, [0]) is None


def test_layer_thresholds_parse_overrides_and_reject_unknown_keys() -> None:
    t = layer_thresholds("int8").updated("sqnr=12,added=6")
    assert (t.sqnr_db, t.added_db) == (12.0, 6.0)
    assert layer_thresholds("fp32").sqnr_db > layer_thresholds("int8").sqnr_db
    with pytest.raises(UsageError):
        layer_thresholds("int8").updated("cosine=0.9")
    with pytest.raises(UsageError):
        layer_thresholds("int8").updated("sqnr=lots")


def _doc() -> dict[str, Any]:
    rows, first = _rows([30.0, 28.0, 2.0, 1.5, 1.0])
    assert first is not None
    return {
        "schema": document.SCHEMA,
        "model": "m.py:build",
        "backend": "b",
        "environment": "e",
        "mode": "int8",
        "status": "invalid",
        "thresholds": layer_thresholds("int8").to_dict(),
        "coverage": {
            "matched": 5,
            "unmatched": 0,
            "fused": 0,
            "passthrough": 0,
            "dropped": 0,
            "fraction": 1.0,
            "how": {"name": 5},
        },
        "layers": [{k: v for k, v in r.items() if k != "op_indices"} for r in rows],
        "first_divergent": {
            **{k: first[k] for k in ("module", "type", "sqnr_db", "added_db", "cosine")},
            "ops": [
                {
                    "index": 2,
                    "op": "FULLY_CONNECTED",
                    "outputs": [{"dtype": "int8", "scale": 0.5, "zero_point": 3}],
                    "constants": [
                        {
                            "dtype": "int8",
                            "per_channel": {"channels": 32, "axis": 0, "scale_min": 0.01, "scale_max": 0.02},
                        }
                    ],
                }
            ],
            "hint": None,
        },
    }


def test_table_marks_the_first_divergent_layer() -> None:
    rows = document.table_rows(_doc())
    assert [r[0] for r in rows] == LAYERS
    assert rows[2][-1] == "◀ first divergent" and rows[2][1] == "FULLY_CONNECTED"
    assert document.COLUMNS == ("module", "ops", "cosine", "SQNR dB", "added dB", "flag")


def test_summary_shows_coverage_first_divergent_and_its_quantization() -> None:
    text = "\n".join(document.summary_lines(_doc()))
    assert "matched 5 of 5 modules that produce a tensor (100%" in text
    assert "first divergent: l3" in text
    assert "#2 FULLY_CONNECTED -> int8 scale 0.5 zp 3; constants int8 per-channel x32 (axis 0)" in text


def test_compact_keeps_the_curve_for_matrix_cells() -> None:
    small = document.compact(_doc())
    assert small["first_divergent"] == "l3" and len(small["layers"]) == 5
    assert set(small["layers"][0]) == {"module", "ops", "sqnr_db", "added_db", "cosine", "flag"}


def test_explain_command_is_quoted() -> None:
    assert document.command("my model.py:build", "int8", "onnx-tf", "onnx-tf-tf2.15") == (
        "liteport explain 'my model.py:build' --quant int8 --backend onnx-tf --env onnx-tf-tf2.15"
    )
    assert document.summary_lines(document.empty("no converted model"))[0].startswith("nothing to compare")


def test_matrix_reports_carry_the_explain_data_of_a_cell(tmp_path: Any) -> None:
    from liteport.reports import build, write_reports

    entry = {
        "key": "k",
        "cell": {"model": "m.py:build", "backend": "b", "environment": "e", "mode": "int8"},
        "attempt": {"status": "invalid", "error": {"kind": "validation_failed", "message": "cosine"}},
        "explain": document.compact(_doc()),
    }
    doc = build([entry])
    assert doc["cells"][0]["explain"]["first_divergent"] == "l3"
    page = write_reports(doc, tmp_path)[2].read_text()
    assert "function liteportLayerChart" in page and '"first_divergent": "l3"' in page


def test_the_explain_page_embeds_the_chart_and_the_table() -> None:
    from liteport.reports.explain_html import render_explain_html

    page = render_explain_html(_doc())
    assert "liteportLayerChart(JSON.parse" in page and '<tr class="first"><td class="">l3</td>' in page
