"""Tensors in and out of the user's model: sample inputs from an ``.npz``, outputs flattened.

torch and numpy are imported inside the functions, so the host can import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liteport.errors import BadInput, describe_exception

if TYPE_CHECKING:
    import numpy as np
    import torch

_MAX_LISTED = 8  # how many names / keys an error message lists before "..."
# What a non-numeric array holds, by numpy dtype kind, for error messages.
_KINDS = {
    "U": "text",
    "S": "bytes",
    "O": "Python objects",
    "c": "complex numbers",
    "M": "dates",
    "m": "durations",
}


def listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def read_npz(path_text: str) -> dict[str, np.ndarray]:
    import numpy as np

    path = Path(path_text).expanduser()
    if not path.is_file():
        raise BadInput(
            f"inputs file {path_text!r} does not exist",
            hint="give an .npz with one array per model input, leading sample axis",
        )
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy loads as one bare array
            raise ValueError(f"it holds a single {type(data).__name__}, not an archive of arrays")
    except Exception as exc:
        raise BadInput(
            f"inputs file {path_text!r} is not a readable .npz: {describe_exception(exc)}",
            hint="write it with numpy.savez(path, input_0=..., ...)",
        ) from exc
    arrays: dict[str, np.ndarray] = {}
    with data:
        for key in data.files:
            try:  # arrays are read one by one, so an unreadable one (object arrays) is named
                arrays[key] = np.asarray(data[key])
            except Exception as exc:
                raise BadInput(
                    f"array {key!r} in inputs file {path_text!r} cannot be read: {describe_exception(exc)}",
                    hint="store numeric arrays (float, integer or bool), one per model input",
                ) from exc
    if not arrays:
        raise BadInput(
            f"inputs file {path_text!r} holds no arrays",
            hint="write it with numpy.savez(path, input_0=..., ...)",
        )
    return arrays


def in_input_order(arrays: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(name, array) pairs by input index: by name when named input_0.., else in archive order."""
    names = [f"input_{i}" for i in range(len(arrays))]
    if set(names) == set(arrays):
        return [(name, arrays[name]) for name in names]
    return list(arrays.items())


def load_input_samples(path_text: str, example_inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """Arrays of an inputs .npz, one per model input, each shaped (N, *example_shape).

    Arrays are matched by name when named ``input_0..`` and by order otherwise. An array
    without the batch axis (N, *example_shape[1:]) is accepted when the example batch is 1.
    """
    arrays = read_npz(path_text)
    count = len(example_inputs)
    if len(arrays) != count:
        raise BadInput(
            f"inputs file {path_text!r} holds {len(arrays)} arrays ({listing(list(arrays))}) "
            f"but the model takes {count} input{'s' if count != 1 else ''}",
            hint="store one array per input, named input_0, input_1, ..., with a leading sample axis",
        )
    samples = []
    counts = set()
    for (key, array), example in zip(in_input_order(arrays), example_inputs):
        if array.dtype.kind not in "biuf":  # text, objects, dates or complex cannot feed a model
            raise BadInput(
                f"array {key!r} in inputs file {path_text!r} holds "
                f"{_KINDS.get(array.dtype.kind, 'values')} ({array.dtype}), not real numbers",
                hint="store float, integer or bool arrays, one per model input",
            )
        shape = tuple(example.shape)
        if array.ndim >= 1 and tuple(array.shape[1:]) == shape:
            pass
        elif shape and shape[0] == 1 and array.ndim >= 1 and tuple(array.shape[1:]) == shape[1:]:
            array = array.reshape((array.shape[0], *shape))  # samples stored without the batch axis
        else:
            raise BadInput(
                f"array {key!r} in inputs file {path_text!r} has shape {tuple(array.shape)}, "
                f"expected (N, {', '.join(map(str, shape))})",
                hint="leading sample axis, then the example input's shape",
            )
        if array.shape[0] == 0:
            raise BadInput(
                f"array {key!r} in inputs file {path_text!r} holds no samples", hint="store at least one"
            )
        counts.add(array.shape[0])
        samples.append(array.astype(_numpy_dtype(example), copy=False))
    if len(counts) > 1:
        raise BadInput(
            f"arrays in inputs file {path_text!r} hold different sample counts {sorted(counts)}",
            hint="give every input the same number of samples",
        )
    return samples


def _numpy_dtype(tensor: torch.Tensor) -> Any:
    import torch

    return torch.empty(0, dtype=tensor.dtype).numpy().dtype


# ------------------------------------------------------------------------------ hashing


def flatten_outputs(value: Any) -> list[torch.Tensor]:
    """Tensors of a (nested) tuple/list/dict output, depth first, in order; ``None`` leaves dropped."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if value is None:
        return []
    if isinstance(value, Mapping):
        items: list[Any] = list(value.values())
    elif isinstance(value, (tuple, list)):
        items = list(value)
    else:
        raise BadInput(
            f"the model returned a {type(value).__name__} among its outputs",
            hint="return tensors, or tuples / lists / dicts of tensors",
        )
    return [tensor for item in items for tensor in flatten_outputs(item)]
