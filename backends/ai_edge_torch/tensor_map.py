"""Tensor names of AI Edge Torch files -> PyTorch module paths (the ``liteport_tensor_map`` hook).

Both converters name a tensor after the module stacks of the ops fused into it, ``;``-joined, the
producing op first: ``pkg.Root/torch.nn.modules.container.Sequential_features/pkg.Block_3/
torch.nn.modules.conv.Conv2d_project``. Each step is ``<module>.<class qualname>_<attribute>``;
it is resolved against the model's own modules (paths and types from ``job.options["modules"]``),
so attributes and class names containing underscores are told apart. Imports only the flatbuffer
schema of ai-edge-litert, which both environments carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from liteport.api import Job, Result, tflite_tensor_names


def run(job: Job) -> Result:
    modules: Sequence[Mapping[str, Any]] = job.options["modules"]
    names = tflite_tensor_names(str(job.options["tflite"]))
    resolver = _Resolver((str(m["path"]), str(m["type"])) for m in modules)
    found = {name: path for name in names if (path := resolver.module_of(name)) is not None}
    return Result(status="ok", job_id=job.id, kind=job.kind, facts={"tensor_map": found})


class _Resolver:
    def __init__(self, modules: Iterable[tuple[str, str]]) -> None:
        self.types: dict[str, str] = {}
        self.children: dict[str, list[str]] = {}
        for path, kind in modules:
            if path in self.types:
                continue
            self.types[path] = kind
            if path:
                parent = path.rsplit(".", 1)[0] if "." in path else ""
                self.children.setdefault(parent, []).append(path)

    def module_of(self, name: str) -> str | None:
        """The deepest module of the first location that starts at the model's root class."""
        location = next((loc for loc in name.split(";") if loc), "")
        steps = location.split("/")
        root = self.types.get("")
        if not steps or root is None or not _same_class(steps[0], root):
            return None
        current = ""
        for step in steps[1:]:
            child = next((c for c in self.children.get(current, []) if self._is_step(step, c)), None)
            if child is None:
                break
            current = child
        return current or None

    def _is_step(self, step: str, path: str) -> bool:
        attribute = path.rsplit(".", 1)[-1]
        return step.endswith("_" + attribute) and _same_class(step[: -len(attribute) - 1], self.types[path])


def _same_class(text: str, kind: str) -> bool:
    # The class qualname decides; the module part may differ (a model file is imported under a
    # generated module name in each environment).
    qualname = kind.rsplit(".", 1)[-1]
    return text in (kind, qualname) or text.endswith("." + qualname)
