"""ModelRef parsing and loading, inputs files, model hashing and the reference stage on user files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from liteport.errors import BadInput
from liteport.stages import workfiles
from liteport.stages.modelref import load_model, model_hash, model_name, parse_ref
from liteport.stages.reference import run_reference
from liteport.stages.tensors import load_input_samples
from liteport.types import Job, ModelSpec

MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.fc(x))


def build():
    torch.manual_seed(0)
    return Net(), torch.randn(1, 4)


def build_list():
    torch.manual_seed(0)
    return Net(), [torch.randn(1, 4)]


def helper_value():
    return 1
"""


@pytest.fixture(autouse=True)
def _isolate_imports() -> Iterator[None]:
    # Loading a file puts its folder on sys.path and registers modules: undo that per test.
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def bad(spec: ModelSpec, *needles: str) -> str:
    """Load ``spec``, expect BadInput with one line containing every needle; return the message."""
    with pytest.raises(BadInput) as info:
        load_model(spec)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


# ------------------------------------------------------------------------------ parsing


def test_parse_forms(tmp_path: Path) -> None:
    path = write(tmp_path, "net.py", MODEL)
    assert parse_ref(f"{path}:build").kind == "file"
    assert parse_ref(f"{path}:build").name == "net:build"
    assert parse_ref("pkg.mod:make").kind == "module"
    assert parse_ref("zoo:tiny_cnn").target == "tiny_cnn"


@pytest.mark.parametrize("ref", ["model_without_factory", "pkg.mod:", ":build", "a b:c"])
def test_parse_rejects_bad_forms(ref: str) -> None:
    with pytest.raises(BadInput, match=r"zoo:NAME|names no factory|neither"):
        parse_ref(ref)


def test_py_file_without_factory_suggests_one(tmp_path: Path) -> None:
    path = write(tmp_path, "net.py", MODEL)
    bad(ModelSpec(ref=str(path)), "names no factory", f"{path}:Net")


def test_missing_file(tmp_path: Path) -> None:
    bad(ModelSpec(ref=f"{tmp_path}/nope.py:build"), "nope.py", "does not exist")


def test_directory_is_not_a_model_file(tmp_path: Path) -> None:
    (tmp_path / "d.py").mkdir()
    bad(ModelSpec(ref=f"{tmp_path}/d.py:build"), "is a directory")


def test_unknown_zoo_name_lists_names() -> None:
    bad(ModelSpec(ref="zoo:resnet9000"), "resnet9000", "tiny_cnn", "mobilenet_v2")


def test_model_name_is_the_display_name_or_the_ref_itself(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text("def build(): ...\n")
    assert model_name("zoo:tiny_cnn") == "tiny_cnn"
    assert model_name(f"{tmp_path}/net.py:build") == "net:build"
    missing = f"{tmp_path}/gone.py:build"  # the stage that loads it says what is wrong
    assert model_name(missing) == missing


# ------------------------------------------------------------------------------ loading


def test_load_file_tensor_and_list_inputs(tmp_path: Path) -> None:
    path = write(tmp_path, "net.py", MODEL)
    for factory in ("build", "build_list"):
        loaded = load_model(ModelSpec(ref=f"{path}:{factory}"))
        assert isinstance(loaded.module, torch.nn.Module)
        assert not loaded.module.training  # eval(): dropout off
        assert isinstance(loaded.example_inputs, tuple)
        assert [tuple(t.shape) for t in loaded.example_inputs] == [(1, 4)]
        assert loaded.name == f"net:{factory}"


def test_sibling_imports_work(tmp_path: Path) -> None:
    write(tmp_path, "sibling_layers_a1.py", "from torch import nn\nWIDTH = 5\n")
    path = write(
        tmp_path,
        "uses_sibling.py",
        """
        import torch
        from sibling_layers_a1 import WIDTH

        def build():
            return torch.nn.Linear(WIDTH, 2), (torch.zeros(1, WIDTH),)
        """,
    )
    assert load_model(ModelSpec(ref=f"{path}:build")).example_inputs[0].shape == (1, 5)


def test_module_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "userpkg_b2"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package, "model.py", MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_model(ModelSpec(ref="userpkg_b2.model:build"))
    assert loaded.name == "userpkg_b2.model:build"


def test_module_not_importable_names_it() -> None:
    bad(ModelSpec(ref="no_such_pkg_c3.model:build"), "no_such_pkg_c3", "not importable")


def test_module_with_missing_dependency_names_the_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "needs_dep_d4.py", "import missing_dependency_d4\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    bad(ModelSpec(ref="needs_dep_d4:build"), "needs_dep_d4", "missing_dependency_d4", "ModuleNotFoundError")


def test_file_that_fails_to_import(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.py", "import torch\nimport missing_dependency_e5\n")
    bad(ModelSpec(ref=f"{path}:build"), "broken.py", "missing_dependency_e5")
    path = write(tmp_path, "syntax.py", "def build(:\n")
    bad(ModelSpec(ref=f"{path}:build"), "syntax.py", "SyntaxError")


def test_factory_not_found_lists_callables(tmp_path: Path) -> None:
    path = write(tmp_path, "net.py", MODEL)
    message = bad(ModelSpec(ref=f"{path}:biuld"), "'biuld' not found", "build", "build_list", "Net")
    assert "Linear" not in message  # imported names are not offered


def test_factory_not_callable(tmp_path: Path) -> None:
    path = write(tmp_path, "const.py", "VALUE = 3\n")
    bad(ModelSpec(ref=f"{path}:VALUE"), "VALUE", "int", "not a callable")


def test_factory_raising(tmp_path: Path) -> None:
    path = write(tmp_path, "raises.py", "def build():\n    raise ValueError('bad size 7\\nsecond line')\n")
    message = bad(ModelSpec(ref=f"{path}:build"), "raised ValueError: bad size 7")
    assert "second line" not in message


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("return 42", ("returned a int", "(module, example_inputs)")),
        ("return (1, 2, 3)", ("returned a tuple of length 3", "(module, example_inputs)")),
        ("return 'model', torch.zeros(1)", ("returned a str where an nn.Module belongs",)),
        ("return torch.nn.Linear(2, 2)", ("only an nn.Module", "(module, example_inputs)")),
    ],
)
def test_factory_returning_wrong_things(tmp_path: Path, body: str, needles: tuple[str, ...]) -> None:
    path = write(tmp_path, "wrong.py", f"import torch\n\ndef build():\n    {body}\n")
    bad(ModelSpec(ref=f"{path}:build"), *needles)


@pytest.mark.parametrize(
    ("inputs", "needles"),
    [
        ("[1.0, 2.0]", ("example input 0", "float", "torch.Tensor")),
        ("(torch.zeros(1), 'x')", ("example input 1", "str")),
        ("()", ("no example inputs",)),
    ],
)
def test_example_inputs_not_tensors(tmp_path: Path, inputs: str, needles: tuple[str, ...]) -> None:
    path = write(
        tmp_path, "inputs.py", f"import torch\n\ndef build():\n    return torch.nn.Identity(), {inputs}\n"
    )
    bad(ModelSpec(ref=f"{path}:build"), *needles)


def test_bare_module_accepted_with_inputs_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bare.py", "import torch\n\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    data = tmp_path / "data.npz"
    np.savez(data, input_0=np.ones((3, 1, 4), np.float32))
    loaded = load_model(ModelSpec(ref=f"{path}:build", inputs=str(data)))
    assert [tuple(t.shape) for t in loaded.example_inputs] == [(1, 4)]


# ------------------------------------------------------------------------------ weights


@pytest.fixture
def net_file(tmp_path: Path) -> Path:
    return write(tmp_path, "net.py", MODEL)


def test_weights_loaded(tmp_path: Path, net_file: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3)}, weights)
    loaded = load_model(ModelSpec(ref=f"{net_file}:build", weights=str(weights)))
    assert torch.equal(loaded.module.state_dict()["fc.weight"], torch.ones(3, 4))
    # Training checkpoints that nest the state dict are accepted too.
    torch.save(
        {"epoch": 3, "state_dict": {"fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3)}}, weights
    )
    load_model(ModelSpec(ref=f"{net_file}:build", weights=str(weights)))


def test_weights_missing(tmp_path: Path, net_file: Path) -> None:
    bad(ModelSpec(ref=f"{net_file}:build", weights=str(tmp_path / "none.pt")), "none.pt", "does not exist")


def test_weights_not_loadable(tmp_path: Path, net_file: Path) -> None:
    weights = tmp_path / "garbage.pt"
    weights.write_bytes(b"not a torch file at all")
    message = bad(
        ModelSpec(ref=f"{net_file}:build", weights=str(weights)), "garbage.pt", "not a torch checkpoint"
    )
    assert "will likely succeed" not in message  # PyTorch's advice to drop weights_only is wrong here
    # Random bytes, an empty file and a checkpoint cut short (an interrupted copy) alike.
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    bad(ModelSpec(ref=f"{net_file}:build", weights=str(weights)), "garbage.pt", "not a torch checkpoint")
    weights.write_bytes(b"")
    bad(ModelSpec(ref=f"{net_file}:build", weights=str(weights)), "garbage.pt", "not a torch checkpoint")
    torch.save({"fc.weight": torch.ones(3, 4), "fc.bias": torch.zeros(3)}, weights)
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    bad(ModelSpec(ref=f"{net_file}:build", weights=str(weights)), "garbage.pt", "not a torch checkpoint")


def test_weights_pickled_module_refused(tmp_path: Path, net_file: Path) -> None:
    weights = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(4, 3), weights)  # a whole pickled module: unsafe to load
    message = bad(ModelSpec(ref=f"{net_file}:build", weights=str(weights)), "whole_model.pt", "state_dict")
    assert "torch.nn.modules.linear.Linear" in message and "will likely succeed" not in message


@pytest.mark.parametrize("content", [torch.zeros(3), [torch.zeros(3)], {"fc.weight": 3}])
def test_weights_not_a_state_dict(tmp_path: Path, net_file: Path, content: object) -> None:
    weights = tmp_path / "w.pt"
    torch.save(content, weights)
    bad(ModelSpec(ref=f"{net_file}:build", weights=str(weights)), "w.pt", "not a state dict")


def test_weights_key_mismatch_names_keys(tmp_path: Path, net_file: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.ones(3, 4), "head.bias": torch.zeros(3)}, weights)
    bad(
        ModelSpec(ref=f"{net_file}:build", weights=str(weights)),
        "does not match",
        "missing keys: fc.bias",
        "unexpected keys: head.bias",
    )
    torch.save({"module.fc.weight": torch.ones(3, 4), "module.fc.bias": torch.zeros(3)}, weights)
    bad(ModelSpec(ref=f"{net_file}:build", weights=str(weights)), "'module.' prefix")


def test_weights_shape_mismatch(tmp_path: Path, net_file: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.ones(5, 4), "fc.bias": torch.zeros(3)}, weights)
    bad(
        ModelSpec(ref=f"{net_file}:build", weights=str(weights)),
        "shape mismatch",
        "fc.weight (5, 4) vs (3, 4)",
    )


# ------------------------------------------------------------------------------ inputs files

EXAMPLES = (torch.zeros(1, 3, 8, 8), torch.zeros(1, 5, dtype=torch.int64))


def inputs_error(path: Path, *needles: str) -> None:
    with pytest.raises(BadInput) as info:
        load_input_samples(str(path), EXAMPLES)
    assert "\n" not in str(info.value)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_inputs_file_named_and_ordered(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    # Named input_<i>: matched by name whatever the order in the archive.
    np.savez(path, input_1=np.ones((4, 1, 5), np.float64), input_0=np.zeros((4, 1, 3, 8, 8), np.float64))
    first, second = load_input_samples(str(path), EXAMPLES)
    assert first.shape == (4, 1, 3, 8, 8) and first.dtype == np.float32
    assert second.shape == (4, 1, 5) and second.dtype == np.int64
    # Other names: matched in order; samples may omit the batch axis of a batch-1 example.
    np.savez(path, images=np.zeros((2, 3, 8, 8)), ids=np.ones((2, 5)))
    first, second = load_input_samples(str(path), EXAMPLES)
    assert first.shape == (2, 1, 3, 8, 8) and second.shape == (2, 1, 5)


def test_inputs_file_missing(tmp_path: Path) -> None:
    inputs_error(tmp_path / "none.npz", "none.npz", "does not exist")


def test_inputs_file_unreadable(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"nonsense")
    inputs_error(garbage, "garbage.npz", "not a readable .npz")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 1, 3, 8, 8)))
    inputs_error(single, "single.npy", "not an archive")


def test_inputs_file_with_non_numeric_arrays_names_the_array(tmp_path: Path) -> None:
    path = tmp_path / "words.npz"
    np.savez(path, input_0=np.zeros((2, 1, 3, 8, 8)), input_1=np.full((2, 1, 5), "token"))
    inputs_error(path, "words.npz", "'input_1'", "text", "numbers")
    # Object arrays are refused unread (allow_pickle=False), and named too.
    np.savez(path, input_0=np.zeros((2, 1, 3, 8, 8)), input_1=np.array([None, {"a": 1}], dtype=object))
    inputs_error(path, "words.npz", "'input_1'")
    np.savez(path, input_0=np.zeros((2, 1, 3, 8, 8), dtype=complex), input_1=np.ones((2, 1, 5)))
    inputs_error(path, "words.npz", "'input_0'", "complex")


def test_inputs_file_wrong_count(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    np.savez(path, input_0=np.zeros((2, 1, 3, 8, 8)))
    inputs_error(path, "holds 1 arrays", "takes 2 inputs", "input_0")


def test_inputs_file_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    np.savez(path, input_0=np.zeros((2, 1, 3, 9, 9)), input_1=np.zeros((2, 1, 5)))
    inputs_error(path, "'input_0'", "(2, 1, 3, 9, 9)", "expected (N, 1, 3, 8, 8)")


def test_inputs_file_inconsistent_or_empty(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    np.savez(path, input_0=np.zeros((2, 1, 3, 8, 8)), input_1=np.zeros((3, 1, 5)))
    inputs_error(path, "different sample counts")
    np.savez(path, input_0=np.zeros((0, 1, 3, 8, 8)), input_1=np.zeros((0, 1, 5)))
    inputs_error(path, "no samples")


# ------------------------------------------------------------------------------ hashing


def test_model_hash_tracks_sources(tmp_path: Path, net_file: Path) -> None:
    base = model_hash(ModelSpec(ref=f"{net_file}:build"))
    assert base == model_hash(ModelSpec(ref=f"{net_file}:build", seed=5))
    assert len(base) == 16 and int(base, 16) >= 0
    assert base != model_hash(ModelSpec(ref=f"{net_file}:build_list"))
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    with_weights = model_hash(ModelSpec(ref=f"{net_file}:build", weights=str(weights)))
    assert with_weights != base
    weights.write_bytes(b"two")
    assert model_hash(ModelSpec(ref=f"{net_file}:build", weights=str(weights))) != with_weights
    net_file.write_text(MODEL + "\n# edited\n")
    assert model_hash(ModelSpec(ref=f"{net_file}:build")) != base
    assert model_hash(ModelSpec(ref="zoo:lstm")) != model_hash(ModelSpec(ref="zoo:resnet"))
    with pytest.raises(BadInput, match="inputs file"):
        model_hash(ModelSpec(ref=f"{net_file}:build", inputs=str(tmp_path / "none.npz")))


def test_model_hash_of_module_and_no_torch(tmp_path: Path, net_file: Path) -> None:
    script = f"""
import sys
from liteport.stages.modelref import model_hash, parse_ref
from liteport.types import ModelSpec
sys.path.insert(0, {str(tmp_path)!r})
print(model_hash(ModelSpec(ref="net:build")))
print(model_hash(ModelSpec(ref={str(net_file) + ":build"!r})))
print(parse_ref("zoo:tiny_cnn").name)
assert "torch" not in sys.modules, "torch was imported"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    module_hash, file_hash, name = done.stdout.split()
    assert module_hash != file_hash  # the kind is part of the hash, the source bytes are the same
    assert name == "tiny_cnn"


# ------------------------------------------------------------------------------ reference stage


def run(
    tmp_path: Path, spec: ModelSpec
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, object]]:
    result = run_reference(Job(kind="reference", id="r1", workdir=str(tmp_path / "run"), model=spec))
    assert result.status == "ok" and result.job_id == "r1" and result.kind == "reference"
    assert set(result.artifacts) == {"reference", "calibration", "reference_json"}
    assert result.versions["torch"] == torch.__version__
    assert result.timings["reference_s"] > 0
    with np.load(result.artifacts["reference"]) as ref, np.load(result.artifacts["calibration"]) as cal:
        reference, calibration = dict(ref), dict(cal)
    summary = json.loads(Path(result.artifacts["reference_json"]).read_text())
    assert summary["model_hash"] == result.facts["model_hash"] == model_hash(spec)
    assert summary["inputs"] == result.facts["inputs"] and summary["outputs"] == result.facts["outputs"]
    assert Path(result.artifacts["reference"]).name == workfiles.REFERENCE_NPZ
    return reference, calibration, dict(result.facts)


NESTED = """
import torch
from torch import nn


class Multi(nn.Module):
    def forward(self, x, ids):
        emb = x.sum(dim=1, keepdim=True) + ids.float()
        return {"a": x * 2, "b": (emb, [ids.max(dim=1).values]), "none": None}


def build():
    return Multi(), (torch.randn(1, 3), torch.tensor([[3, 7, 5, 4]]))


class Fails(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom in forward")


def failing():
    return Fails(), torch.zeros(1, 2)
"""


def test_reference_nested_outputs_and_token_inputs(tmp_path: Path) -> None:
    path = write(tmp_path, "nested.py", NESTED)
    spec = ModelSpec(ref=f"{path}:build", validation_size=5, calibration_size=6, seed=3)
    reference, calibration, facts = run(tmp_path, spec)
    assert sorted(reference) == ["input_0", "input_1", "output_0", "output_1", "output_2"]
    assert reference["input_0"].shape == (5, 1, 3) and reference["input_0"].dtype == np.float32
    ids = reference["input_1"]
    assert ids.shape == (5, 1, 4) and ids.dtype == np.int64
    assert ids.min() >= 3 and ids.max() <= 7  # token ids drawn within the example's range
    assert ids[0].tolist() == [[3, 7, 5, 4]]  # validation sample 0 is the example itself
    assert reference["output_0"].shape == (5, 1, 3) and reference["output_0"].dtype == np.float32
    assert reference["output_1"].shape == (5, 1, 4)
    assert reference["output_2"].shape == (5, 1) and reference["output_2"].dtype == np.int64
    np.testing.assert_allclose(reference["output_0"], reference["input_0"] * 2, rtol=1e-6)
    assert calibration["input_0"].shape == (6, 1, 3) and calibration["input_1"].shape == (6, 1, 4)
    assert not np.allclose(calibration["input_0"][:5], reference["input_0"])  # different seeds
    assert [o["name"] for o in facts["outputs"]] == ["output_0", "output_1", "output_2"]  # type: ignore[attr-defined]
    assert facts["max_abs_reference"] == pytest.approx(float(np.abs(reference["output_1"]).max()), rel=1e-6)


def test_reference_is_deterministic_per_seed(tmp_path: Path) -> None:
    path = write(tmp_path, "nested.py", NESTED)
    first, _, _ = run(tmp_path / "a", ModelSpec(ref=f"{path}:build", seed=1))
    again, _, _ = run(tmp_path / "b", ModelSpec(ref=f"{path}:build", seed=1))
    other, _, _ = run(tmp_path / "c", ModelSpec(ref=f"{path}:build", seed=2))
    # Sample 0 is the factory's own (unseeded) example; the drawn samples follow the seed.
    np.testing.assert_array_equal(first["input_0"][1:], again["input_0"][1:])
    assert not np.array_equal(first["input_0"][1:], other["input_0"][1:])


def test_reference_from_inputs_file(tmp_path: Path, net_file: Path) -> None:
    data = tmp_path / "data.npz"
    samples = np.arange(10 * 4, dtype=np.float32).reshape(10, 1, 4)
    np.savez(data, input_0=samples)
    spec = ModelSpec(ref=f"{net_file}:build", inputs=str(data), validation_size=4, calibration_size=8)
    reference, calibration, facts = run(tmp_path, spec)
    np.testing.assert_array_equal(reference["input_0"], samples[:4])
    # The six samples after the validation ones, reused to make eight.
    np.testing.assert_array_equal(calibration["input_0"], samples[[4, 5, 6, 7, 8, 9, 4, 5]])
    assert facts["data_source"] == "file"
    # Too few samples for validation: they are reused.
    np.savez(data, input_0=samples[:2])
    reference, calibration, _ = run(tmp_path, spec)
    np.testing.assert_array_equal(reference["input_0"], samples[[0, 1, 0, 1]])
    assert calibration["input_0"].shape == (8, 1, 4)


def test_reference_forward_failure_is_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path, "nested.py", NESTED)
    with pytest.raises(BadInput, match="failed on validation sample 0: RuntimeError: boom in forward"):
        run_reference(
            Job(kind="reference", id="r", workdir=str(tmp_path), model=ModelSpec(ref=f"{path}:failing"))
        )
