"""liteport explain: matching module outputs to TFLite tensors, with fake captures and fake graphs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from liteport.explain import names
from liteport.explain.match import Matcher, aligned_tensors, views

RNG = np.random.default_rng(0)
SAMPLES = 2


def _module(
    key: str, kind: str, shape: list[int] | None, inputs: list[str | None], **extra: Any
) -> dict[str, Any]:
    path = "" if key == "(model)" else key
    return {
        "key": key,
        "path": path,
        "type": f"torch.nn.modules.x.{kind}",
        "leaf": extra.pop("leaf", True),
        "inputs": inputs,
        "shape": shape,
        "alias_of": extra.pop("alias_of", None),
        "passthrough": extra.pop("passthrough", False),
        **extra,
    }


class _Net:
    """A fake capture: stem conv -> bn -> relu (a Sequential), a 1x1 conv, an add in a container, dropout."""

    def __init__(self, channels: int = 4, size: int = 6) -> None:
        c, s = channels, size
        shape = [1, c, s, s]
        self.values = {
            "stem.0": RNG.standard_normal((SAMPLES, *shape)).astype(np.float32),
        }
        self.values["stem.1"] = (self.values["stem.0"] * 1.5 + 0.2).astype(np.float32)
        self.values["stem.2"] = np.maximum(self.values["stem.1"], 0)
        self.values["block.conv"] = RNG.standard_normal((SAMPLES, *shape)).astype(np.float32)
        self.values["block"] = self.values["block.conv"] + self.values["stem.2"]
        self.values["head"] = RNG.standard_normal((SAMPLES, 1, 3)).astype(np.float32)
        self.modules = [
            _module("stem.0", "Conv2d", shape, ["input_0"], array="stem.0"),
            _module("stem.1", "BatchNorm2d", shape, ["stem.0"], array="stem.1"),
            _module("stem.2", "ReLU", shape, ["stem.1"], array="stem.2"),
            _module("stem", "Sequential", shape, ["input_0"], leaf=False, alias_of="stem.2"),
            _module("block.conv", "Conv2d", shape, ["stem.2"], array="block.conv"),
            _module("block", "Residual", shape, ["stem.2"], leaf=False, array="block"),
            _module("drop", "Dropout", [1, 4 * 36], [None], passthrough=True, array="drop"),
            _module("head", "Linear", [1, 3], ["drop"], array="head"),
            _module("(model)", "Net", [1, 3], ["input_0"], leaf=False, alias_of="head"),
        ]
        self.values["drop"] = RNG.standard_normal((SAMPLES, 1, 4 * 36)).astype(np.float32)
        self.manifest = {
            "samples": SAMPLES,
            "modules": self.modules,
            "outputs": ["head"],
            "root_type": "x.Net",
        }


def _graph(tensors: list[tuple[str, str, list[int]]], outputs: list[int]) -> dict[str, Any]:
    """Ops in order, one output tensor each: (op, tensor name, shape)."""
    return {
        "tensors": {
            i: {
                "name": name,
                "shape": shape,
                "producer": i,
                "scales": [],
                "zero_points": [],
                "dtype": "float32",
            }
            for i, (_, name, shape) in enumerate(tensors)
        },
        "ops": [
            {"index": i, "op": op, "inputs": [i - 1] if i else [], "outputs": [i]}
            for i, (op, _, _) in enumerate(tensors)
        ],
        "inputs": [],
        "outputs": outputs,
    }


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, 2, -1))


def _onnx_graph(net: _Net, named: bool, noise: float = 0.0) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    """What an ONNX-route converter leaves: NHWC tensors, conv+bn+relu fused into one CONV_2D."""

    def name(text: str, fallback: str) -> str:
        return text if named else fallback

    graph = _graph(
        [
            ("CONV_2D", name("/stem/stem.0/Conv", "model/tf.nn.relu6/Relu6;Const_3"), [1, 6, 6, 4]),
            ("TRANSPOSE", name("/stem/stem.0/Conv_nchw", "transpose_1"), [1, 4, 6, 6]),
            ("CONV_2D", name("/block/conv/Conv", "model/conv_1"), [1, 6, 6, 4]),
            ("ADD", name("/block/Add", "model/add_3"), [1, 6, 6, 4]),
            ("FULLY_CONNECTED", "StatefulPartitionedCall:0", [1, 3]),
        ],
        outputs=[4],
    )
    values = {
        0: _nhwc(net.values["stem.2"]),
        1: net.values["stem.2"].copy(),
        2: _nhwc(net.values["block.conv"]),
        3: _nhwc(net.values["block"]),
        4: net.values["head"].copy(),
    }
    if noise:
        values = {k: (v + noise * RNG.standard_normal(v.shape)).astype(np.float32) for k, v in values.items()}
    return graph, values


def _matcher(net: _Net, graph: dict[str, Any], values: dict[int, np.ndarray], mode: str) -> Matcher:
    return Matcher(net.manifest, {k: v for k, v in net.values.items()}, graph, values, mode)


def test_onnx_scopes_keep_container_indices_with_their_name() -> None:
    assert names.onnx_scopes("features.3.conv.0.0") == [
        "features",
        "features.3",
        "conv",
        "conv.0",
        "conv.0.0",
    ]
    table = names.key_table(["features.3.conv.0.0", "features.3"])
    assert names.modules_in_name("onnx_tf_prefix_/features/features.3/Add", table) == ["features.3"]
    assert names.modules_in_name("/features/features.3/conv/conv.0/conv.0.0/Conv_output_0", table) == [
        "features.3.conv.0.0"
    ]


def test_names_drop_roles_and_ignore_bare_counters() -> None:
    table = names.key_table(["quant", "2", "model.features.0.0"])
    assert names.modules_in_name("quant:nhwc:pad", table) == ["quant"]
    assert names.modules_in_name("model.features.0.0", table) == ["model.features.0.0"]
    assert names.modules_in_name("Relu6;2", table) == []  # "2" is a counter here, not module "2"
    assert names.modules_in_name("transpose_1", table) == []


def test_views_try_both_layouts_when_channels_equal_height() -> None:
    values = RNG.standard_normal((2, 1, 4, 4, 4))
    assert [layout for layout, _ in views(values, [1, 4, 4, 4])] == ["same", "NHWC"]
    assert [layout for layout, _ in views(RNG.standard_normal((2, 1, 1, 1, 8)), [1, 8])] == ["squeezed"]
    assert views(RNG.standard_normal((2, 1, 5)), [1, 6]) == []


def test_names_match_the_fold_chain_end_and_report_fused_and_passthrough() -> None:
    net = _Net()
    graph, values = _onnx_graph(net, named=True)
    m = _matcher(net, graph, values, "int8")
    m.match_all()
    assert m.matches["stem.2"].tensor == 0 and m.matches["stem.2"].layout == "NHWC"  # conv+bn+relu in one op
    assert m.matches["stem.2"].how == "name"
    assert m.matches["block"].tensor == 3 and m.matches["head"].how == "output"
    status = m.statuses()
    assert status["stem.0"] == status["stem.1"] == "fused"
    assert status["drop"] == "passthrough"
    coverage = m.coverage()
    assert coverage["fraction"] == 1.0 and coverage["matched"] == 4, coverage


def test_a_tensor_equal_to_an_earlier_one_does_not_displace_it() -> None:
    net = _Net()
    graph, values = _onnx_graph(net, named=True)  # tensor 1 (TRANSPOSE) copies tensor 0
    m = _matcher(net, graph, values, "fp32")
    m.match_all()
    assert m.matches["stem.2"].tensor == 0


def test_without_names_quantized_modes_leave_modules_unmatched_rather_than_guess() -> None:
    net = _Net()
    graph, values = _onnx_graph(net, named=False, noise=0.05)
    m = _matcher(net, graph, values, "int8")
    m.match_all()
    assert set(m.matches) == {"head"}  # only the graph output, by position
    assert m.coverage()["unmatched"] == 5 and m.coverage()["fused"] == 0


def test_float_modes_match_by_values_and_lend_them_to_the_quantized_graph() -> None:
    net = _Net()
    float_graph, float_values = _onnx_graph(net, named=False)
    anchor = _matcher(net, float_graph, float_values, "fp32")
    anchor.match_all()
    assert anchor.matches["stem.2"].how == "value" and anchor.matches["block.conv"].how == "value"
    # The quantized graph of another run: other names, same op sequence.
    q_graph, q_values = _onnx_graph(net, named=False, noise=0.05)
    for info in q_graph["tensors"].values():
        info["name"] = "q/" + info["name"]
    target = _matcher(net, q_graph, q_values, "int8")
    target.match_all(anchor=anchor)
    assert {k: v.how for k, v in target.matches.items()} == {
        "head": "output",
        "stem.2": "anchor",
        "block.conv": "anchor",
        "block": "anchor",
    }
    assert target.matches["stem.2"].agreement.cosine < 0.9999  # judged on its own values


def test_value_matching_needs_close_agreement() -> None:
    net = _Net()
    graph, values = _onnx_graph(net, named=False, noise=0.3)
    m = _matcher(net, graph, values, "fp32")
    m.match_all()
    assert "stem.2" not in m.matches


def test_hook_map_wins_over_default_names() -> None:
    net = _Net()
    graph, values = _onnx_graph(net, named=False)
    m = _matcher(net, graph, values, "int8")
    m.match_all(tensor_map={"model/conv_1": "block.conv", "model/add_3": "block"})
    assert m.matches["block.conv"].how == "hook" and m.matches["block"].tensor == 3


def test_a_shape_keeping_conv_is_not_part_of_a_fold_chain() -> None:
    net = _Net()
    m = _matcher(net, *_onnx_graph(net, named=True), "int8")
    assert m.chain("stem.0") == ["stem.0", "stem.1", "stem.2"]
    assert m.chain("stem.2") == ["stem.2"]  # block.conv consumes it, same shape, but it is a conv


def _chain_graph(ops: list[str], shape: list[int]) -> dict[str, Any]:
    """Graph input 100 -> op 0 -> op 1 -> ...; every op also takes a constant (its weights)."""
    tensors: dict[int, Any] = {100: {"name": "x", "shape": shape, "producer": None}}
    graph_ops = []
    for i, op in enumerate(ops):
        tensors[i] = {"name": f"t{i}", "shape": shape, "producer": i}
        tensors[200 + i] = {"name": f"w{i}", "shape": [1], "producer": None, "constant": True}
        graph_ops.append({"index": i, "op": op, "inputs": [i - 1 if i else 100, 200 + i], "outputs": [i]})
    return {"tensors": tensors, "ops": graph_ops, "inputs": [100], "outputs": [len(ops) - 1]}


def test_aligned_tensors_follow_the_graph_and_skip_quantize_ops() -> None:
    a = _chain_graph(["CONV_2D", "CONV_2D", "ADD"], [1, 4])
    b = _chain_graph(["QUANTIZE", "CONV_2D", "CONV_2D", "ADD", "DEQUANTIZE"], [1, 4])
    assert aligned_tensors(a, b) == {0: 1, 1: 2, 2: 3}


def test_aligned_tensors_drop_a_proposal_fed_by_something_else() -> None:
    a = _chain_graph(["CONV_2D", "ADD"], [1, 4])
    b = _chain_graph(["CONV_2D", "ADD"], [1, 4])
    a["ops"][1]["inputs"] = [0, 100]  # anchor: conv(x) + x
    b["ops"][1]["inputs"] = [100, 100]  # target: x + x, in the same place of the sequence
    assert aligned_tensors(a, b) == {0: 0}


def test_aligned_tensors_pick_the_thread_up_after_a_stretch_built_differently() -> None:
    a = _chain_graph(["CONV_2D", "CONV_2D", "CONV_2D", "ADD"], [1, 4])
    b = _chain_graph(["CONV_2D", "MUL", "CONV_2D", "ADD"], [1, 4])  # the middle conv became a MUL
    assert aligned_tensors(a, b) == {0: 0, 2: 2, 3: 3}


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_coverage_of_an_empty_graph_is_zero_not_an_error(mode: str) -> None:
    net = _Net()
    m = _matcher(net, _graph([], outputs=[]), {}, mode)
    m.match_all()
    assert m.coverage()["fraction"] == 0.0


def test_a_weightless_scale_folded_into_the_conv_before_it_counts_as_fused() -> None:
    shape = [1, 4, 3, 3]
    ref = {k: RNG.standard_normal((SAMPLES, *shape)).astype(np.float32) for k in ("c", "g", "r")}
    modules = [
        _module("c", "Conv2d", shape, ["input_0"], array="c", weights=True),
        _module("g", "ChannelGain", shape, ["c"], array="g", weights=False),
        _module("r", "ReLU", shape, ["g"], array="r", weights=False),
    ]
    manifest = {"samples": SAMPLES, "modules": modules, "outputs": ["r"], "root_type": "x.Net"}
    graph = _graph([("CONV_2D", "/r/Relu", [1, 4, 3, 3])], outputs=[0])
    m = Matcher(manifest, ref, graph, {0: ref["r"].copy()}, "int8")
    m.match_all()
    assert m.statuses() == {"c": "fused", "g": "fused", "r": "matched"}
    assert m.chain("c") == ["c"]  # for matching, only foldable kinds extend a chain
