"""Tensor names of the transplant's files -> PyTorch module paths (the ``liteport_tensor_map`` hook).

The writer names every tensor after the PyTorch module (or ``QFunctional``) that produced it and
helper tensors ``<name>:<role>`` after the tensor whose parameters they carry, so the map is exact:
the part before the first ``:`` when it is one of the model's module paths.
"""

from __future__ import annotations

from liteport.api import Job, Result, tflite_tensor_names


def run(job: Job) -> Result:
    paths = {str(m["path"]) for m in job.options["modules"] if m.get("path")}
    found = {}
    for name in tflite_tensor_names(str(job.options["tflite"])):
        module = name.split(":", 1)[0]
        if module in paths:
            found[name] = module
    return Result(status="ok", job_id=job.id, kind=job.kind, facts={"tensor_map": found})
