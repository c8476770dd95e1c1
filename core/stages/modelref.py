# Over 400 lines on purpose: every ModelRef form (file, module, zoo, .pt2) and its one-line errors.
"""Parse and load a ModelRef (``file.py:factory``, ``package.module:factory``, ``zoo:NAME``, ``x.pt2``).

Runs inside environments that have torch, but torch is imported only inside the functions
that need it, so parsing and hashing work on the host. Every unusable input raises
``BadInput`` with one line that names the input and says what to do.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

from liteport import zoo
from liteport.errors import BadInput, LiteportError, describe_exception
from liteport.stages.tensors import in_input_order, listing, read_npz
from liteport.types import ModelSpec

if TYPE_CHECKING:
    import torch

FORMS = "path/to/file.py:factory, package.module:factory, zoo:NAME or program.pt2 (torch.export.save)"


@dataclasses.dataclass
class LoadedModel:
    """A model ready to run: module in eval mode, its example inputs and a display name."""

    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    name: str


@dataclasses.dataclass(frozen=True)
class ParsedRef:
    """A ModelRef split into its parts; ``kind`` is "file", "module", "zoo" or "pt2"."""

    kind: str
    target: str  # file path, dotted module name or zoo model name
    factory: str  # attribute name in the file/module ("" for zoo)

    @property
    def name(self) -> str:
        if self.kind == "zoo":
            return self.target
        if self.kind == "pt2":
            return Path(self.target).stem
        stem = Path(self.target).stem if self.kind == "file" else self.target
        return f"{stem}:{self.factory}"


def model_name(ref: str) -> str:
    """``ref``'s display name as every stage prints it (``mobilenet_v2``, ``net.py`` -> ``net:build``);
    ``ref`` itself when it does not parse (the stage that loads it says why)."""
    try:
        return parse_ref(ref).name
    except LiteportError:
        return ref


def parse_ref(ref: str) -> ParsedRef:
    """Split ``ref`` into a ParsedRef; checks the form and that a referenced file exists."""
    ref = ref.strip()
    if ref.startswith("zoo:"):
        name = ref[len("zoo:") :]
        if name not in zoo.MODELS:
            raise BadInput(f"unknown zoo model {name!r} in {ref!r}", hint=f"known: {', '.join(zoo.MODELS)}")
        return ParsedRef(kind="zoo", target=name, factory="")
    if ref.endswith(".pt2"):  # a torch.export program: no factory, its example inputs are inside
        path = Path(ref).expanduser()
        if not path.is_file():
            raise BadInput(
                f"program file {ref!r} does not exist",
                hint="save one with torch.export.save(torch.export.export(model, example_inputs), path)",
            )
        return ParsedRef(kind="pt2", target=str(path.resolve()), factory="")
    target, sep, factory = ref.rpartition(":")
    if not sep or not target or not factory:
        hint = f"expected {FORMS}"
        if ref.endswith(".py") and Path(ref).is_file():
            found = _file_callables(Path(ref))
            hint = f"add the factory name, e.g. {ref}:{found[0] if found else 'build'}"
        raise BadInput(f"model reference {ref!r} names no factory", hint=hint)
    looks_like_file = target.endswith(".py") or "/" in target or os.sep in target
    if looks_like_file:
        path = Path(target).expanduser()
        if not path.is_file():
            why = "is a directory" if path.is_dir() else "does not exist"
            raise BadInput(f"model file {target!r} {why}", hint=f"give an existing .py file as {FORMS}")
        return ParsedRef(kind="file", target=str(path.resolve()), factory=factory)
    if not all(part.isidentifier() for part in target.split(".")):
        raise BadInput(
            f"model reference {ref!r}: {target!r} is neither a .py file nor a module name",
            hint=f"expected {FORMS}",
        )
    return ParsedRef(kind="module", target=target, factory=factory)


def _file_callables(path: Path) -> list[str]:
    """Public top-level functions and classes of a Python file, read without executing it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except SyntaxError:
        return []
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and not node.name.startswith("_")
    ]


def _module_callables(module: ModuleType) -> list[str]:
    """Public callables defined in ``module`` itself (not the ones it imported)."""
    found = []
    for attr, value in vars(module).items():
        if attr.startswith("_") or not callable(value):
            continue
        if getattr(value, "__module__", None) == module.__name__:
            found.append(attr)
    return found


def _import_file(path: Path) -> ModuleType:
    # The file's folder goes first on sys.path so `import sibling` works, as with `python file.py`.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    module_name = f"_liteport_model_{path.stem.replace('-', '_')}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BadInput(f"model file {str(path)!r} cannot be imported as Python", hint="give a .py file")
    module = importlib.util.module_from_spec(spec)
    # Executed afresh on every load (a long-lived worker must see an edited file); registered
    # before executing because dataclasses and pickling look the module up by name.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise BadInput(
            f"importing model file {str(path)!r} failed: {describe_exception(exc)}",
            hint="fix the file or install what it imports in the torch environment",
        ) from exc
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise BadInput(
                f"module {name!r} is not importable: no module named {exc.name!r}",
                hint="install it in the torch environment, put it on PYTHONPATH, or give a file path",
            ) from exc
        raise BadInput(
            f"importing module {name!r} failed: {describe_exception(exc)}",
            hint="install what it imports in the torch environment",
        ) from exc
    except Exception as exc:
        raise BadInput(
            f"importing module {name!r} failed: {describe_exception(exc)}", hint="fix the module"
        ) from exc


def resolve_factory(parsed: ParsedRef) -> Callable[[], Any]:
    """Import the file/module of ``parsed`` and return its factory callable."""
    if parsed.kind == "zoo":
        zoo_factory: Callable[[], Any] = zoo.get(parsed.target)
        return zoo_factory
    if parsed.kind == "file":
        module = _import_file(Path(parsed.target))
        where = f"model file {parsed.target!r}"
    else:
        module = _import_module(parsed.target)
        where = f"module {parsed.target!r}"
    value: Any = module
    for part in parsed.factory.split("."):  # "Class.build" style dotted names are allowed
        if not hasattr(value, part):
            available = _module_callables(module)
            hint = f"callables there: {listing(available)}" if available else "it defines no public callables"
            raise BadInput(f"factory {parsed.factory!r} not found in {where}", hint=hint)
        value = getattr(value, part)
    if not callable(value):
        raise BadInput(
            f"{parsed.factory!r} in {where} is a {type(value).__name__}, not a callable factory",
            hint="name a function returning (module, example_inputs)",
        )
    return value  # type: ignore[no-any-return]


def _coerce_inputs(ref: str, raw: Any) -> tuple[torch.Tensor, ...]:
    import numpy as np
    import torch

    items = list(raw) if isinstance(raw, (tuple, list)) else [raw]
    if not items:
        raise BadInput(
            f"factory {ref!r} returned no example inputs",
            hint="return (module, example_inputs) with at least one tensor",
        )
    tensors = []
    for index, item in enumerate(items):
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(item)
        if not isinstance(item, torch.Tensor):
            raise BadInput(
                f"example input {index} of {ref!r} is a {type(item).__name__}, not a torch.Tensor",
                hint="return (module, example_inputs) with a tensor or a tuple of tensors",
            )
        tensors.append(item.detach().cpu())
    return tuple(tensors)


def _unpack(ref: str, built: Any, spec: ModelSpec) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    import torch

    expected = "expected (module, example_inputs) with an nn.Module and a tensor or tuple of tensors"
    if isinstance(built, torch.nn.Module):
        if spec.inputs is None:
            raise BadInput(
                f"factory {ref!r} returned only an nn.Module, without example inputs",
                hint="return (module, example_inputs)",
            )
        # A bare module is usable when an inputs file says what to feed: sample 0 is the example.
        arrays = read_npz(spec.inputs)
        ordered = [array for _, array in in_input_order(arrays)]
        if any(arr.ndim == 0 or arr.shape[0] == 0 for arr in ordered):
            raise BadInput(
                f"inputs file {spec.inputs!r} has an array without samples",
                hint="store one array per input with a leading sample axis",
            )
        return built, tuple(torch.from_numpy(arr[0].copy()) for arr in ordered)
    if not isinstance(built, (tuple, list)) or len(built) != 2:
        what = f"a {type(built).__name__}" + (
            f" of length {len(built)}" if isinstance(built, (tuple, list)) else ""
        )
        raise BadInput(f"factory {ref!r} returned {what}", hint=expected)
    module, raw_inputs = built
    if not isinstance(module, torch.nn.Module):
        raise BadInput(
            f"factory {ref!r} returned a {type(module).__name__} where an nn.Module belongs", hint=expected
        )
    return module, _coerce_inputs(ref, raw_inputs)


# A legacy (pre-zip) torch.save file opens with this magic number, pickled as a LONG1.
_LEGACY_TORCH_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _unloadable_weights(weights: str, path: Path, exc: Exception) -> BadInput:
    """Why ``torch.load(weights_only=True)`` failed, in words that fit the file: never PyTorch's
    advice to retry with ``weights_only=False``, which is wrong for a corrupt file and unsafe otherwise."""
    import zipfile

    with open(path, "rb") as data:
        head = data.read(64)
    if not zipfile.is_zipfile(path) and _LEGACY_TORCH_MAGIC not in head:
        return BadInput(
            f"weights file {weights!r} is not a torch checkpoint (neither a torch.save archive nor a "
            "legacy torch file; truncated or corrupt?)",
            hint="save one with torch.save(model.state_dict(), path)",
        )
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        # The checkpoint pickles objects besides tensors (a whole module, a class): name them.
        detail = " ".join(text.split("WeightsUnpickler error:", 1)[1].split())
        reason = detail.split(". ")[0].rstrip(".") if detail else "objects other than tensors"
        return BadInput(
            f"weights file {weights!r} holds more than tensors, which liteport never unpickles: {reason}",
            hint="save a plain state dict with torch.save(model.state_dict(), path)",
        )
    return BadInput(
        f"weights file {weights!r} is a damaged torch checkpoint: {describe_exception(exc)}",
        hint="save it again with torch.save(model.state_dict(), path)",
    )


def load_weights(module: torch.nn.Module, weights: str) -> None:
    """Load a state dict from ``weights`` (``weights_only=True``) into ``module``, strictly."""
    import torch

    path = Path(weights).expanduser()
    if not path.is_file():
        raise BadInput(
            f"weights file {weights!r} does not exist",
            hint="save one with torch.save(model.state_dict(), path)",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _unloadable_weights(weights, path, exc) from exc
    if isinstance(state, Mapping):
        # Training checkpoints often nest the state dict under one of these keys.
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        what = type(state).__name__ if not isinstance(state, Mapping) else "mapping with non-tensor values"
        raise BadInput(
            f"weights file {weights!r} holds a {what}, not a state dict",
            hint="save one with torch.save(model.state_dict(), path)",
        )
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {listing(unexpected)}")
        hint = "the weights were saved from a different model"
        if unexpected and all(k.startswith("module.") for k in unexpected):
            hint = "strip the 'module.' prefix of DataParallel before saving"
        raise BadInput(f"weights file {weights!r} does not match the model ({'; '.join(parts)})", hint=hint)
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise BadInput(
            f"weights file {weights!r} does not match the model (shape mismatch: {listing(wrong)})",
            hint="the weights were saved from a different model configuration",
        )
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise BadInput(
            f"weights file {weights!r} does not load: {describe_exception(exc)}",
            hint="save it with torch.save(model.state_dict(), path)",
        ) from exc


def load_model(spec: ModelSpec) -> LoadedModel:
    """Import, build and prepare the model of ``spec`` (eval mode, weights loaded)."""
    parsed = parse_ref(spec.ref)
    if parsed.kind == "pt2":
        return _load_program(spec, parsed)
    factory = resolve_factory(parsed)
    try:
        built = factory()
    except BadInput:
        raise
    except Exception as exc:
        raise BadInput(
            f"factory {spec.ref!r} raised {describe_exception(exc)}", hint="fix the factory"
        ) from exc
    module, example_inputs = _unpack(spec.ref, built, spec)
    module.eval()
    if spec.weights:
        load_weights(module, spec.weights)
    return LoadedModel(module=module, example_inputs=example_inputs, name=parsed.name)


def _load_program(spec: ModelSpec, parsed: ParsedRef) -> LoadedModel:
    """A ``torch.export.save`` file: its graph as a module, its own example inputs unless --inputs."""
    import torch

    if spec.weights:
        raise BadInput(
            f"{spec.ref!r} is a torch.export program, which holds its weights", hint="drop --weights"
        )
    try:
        program = torch.export.load(parsed.target)
    except Exception as exc:
        raise BadInput(
            f"program file {spec.ref!r} cannot be loaded by torch.export.load: {describe_exception(exc)}",
            hint="save it with torch.export.save on torch 2.13 (the reference environment's)",
        ) from exc
    args, kwargs = program.example_inputs or ((), {})
    if kwargs:
        raise BadInput(
            f"program {spec.ref!r} takes keyword inputs ({', '.join(kwargs)})",
            hint="export it with positional example inputs only",
        )
    module = program.module()
    # The unlifted module refuses train()/eval() (its mode was fixed at export), which the ONNX
    # exporter calls: make them no-ops. Export the model in eval mode.
    module.train = types.MethodType(lambda self, mode=True: self, module)  # type: ignore[method-assign]
    module.eval = types.MethodType(lambda self: self, module)  # type: ignore[method-assign]
    if args:
        return LoadedModel(module=module, example_inputs=_coerce_inputs(spec.ref, args), name=parsed.name)
    if spec.inputs is None:
        raise BadInput(f"program {spec.ref!r} has no example inputs", hint="give --inputs data.npz")
    _, example_inputs = _unpack(spec.ref, torch.nn.Module(), spec)  # sample 0 of the inputs file
    return LoadedModel(module=module, example_inputs=example_inputs, name=parsed.name)


# ------------------------------------------------------------------------------ inputs file


def _find_module_source(name: str) -> Path | None:
    """The source file of a dotted module, searched on sys.path without importing anything."""
    parts = name.split(".")
    for entry in [os.getcwd(), *sys.path]:
        base = Path(entry or ".").joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _hash_file(digest: Any, path: Path) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def model_hash(spec: ModelSpec) -> str:
    """Short sha256 over the model source, factory name, weights and inputs files (no torch)."""
    parsed = parse_ref(spec.ref)
    digest = hashlib.sha256()
    digest.update(f"{parsed.kind}\0{parsed.factory}\0".encode())
    if parsed.kind in ("file", "pt2"):
        _hash_file(digest, Path(parsed.target))
    elif parsed.kind == "zoo":
        digest.update(parsed.target.encode())
        for zoo_source in sorted((Path(__file__).parent / "zoo").glob("*.py")):  # models.py, qat.py, ...
            _hash_file(digest, zoo_source)
    else:
        source = _find_module_source(parsed.target)
        if source is not None:
            _hash_file(digest, source)
        else:  # e.g. a compiled or zipped module: its name is all we can hash
            digest.update(parsed.target.encode())
    for label, extra in (("weights", spec.weights), ("inputs", spec.inputs)):
        if extra:
            path = Path(extra).expanduser()
            if not path.is_file():
                raise BadInput(
                    f"{label} file {extra!r} does not exist", hint=f"give an existing {label} file"
                )
            digest.update(f"\0{label}\0".encode())
            _hash_file(digest, path)
    return digest.hexdigest()[:16]
