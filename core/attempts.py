"""The record of one attempt: one model through one backend, environment and mode."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from liteport.types import ErrorInfo, as_dict, record


@record
class Attempt:
    """Everything known about one conversion attempt, as reported and journaled."""

    model: str
    backend: str
    environment: str
    mode: str
    status: str  # one of liteport.types.STATUSES
    error: ErrorInfo | None = None
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    facts: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict)
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    lock_hash: str | None = None
    runtime: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    validations: Mapping[str, str] = dataclasses.field(default_factory=dict)  # validator -> status
    tflite: str | None = None
    workdir: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def cause(self) -> str:
        """Short reason for a non-ok attempt: the error kind and its message."""
        if self.error is None:
            return ""
        return f"{self.error.kind}: {self.error.message}"

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        fields = dict(data)
        if fields.get("error") is not None:
            fields["error"] = ErrorInfo(**fields["error"])
        return cls(**fields)
