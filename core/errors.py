"""Exceptions that carry an error kind and a one-line message meant for people."""

from __future__ import annotations

from typing import ClassVar

from liteport.types import ErrorKind


def first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def describe_exception(exc: BaseException) -> str:
    """``Type: first line of message``, for one-line error messages."""
    message = first_line(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class LiteportError(Exception):
    """Base error: ``kind`` is one of liteport.types.ERROR_KINDS; str(error) is one line."""

    kind: ClassVar[ErrorKind] = "worker_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class BadInput(LiteportError):
    """The user's input (model file, factory, weights, data, option) is unusable."""

    kind: ClassVar[ErrorKind] = "bad_input"


class UsageError(BadInput):
    """A command-line option or name that does not exist (unknown backend, mode, env)."""


class ExportError(LiteportError):
    kind: ClassVar[ErrorKind] = "export_error"


class UnsupportedOp(LiteportError):
    kind: ClassVar[ErrorKind] = "unsupported_op"


class ConverterError(LiteportError):
    kind: ClassVar[ErrorKind] = "converter_error"


class QuantizerError(LiteportError):
    kind: ClassVar[ErrorKind] = "quantizer_error"


class ValidatorError(LiteportError):
    kind: ClassVar[ErrorKind] = "validator_error"


class EnvironmentBuildError(LiteportError):
    """An environment could not be created (interpreter missing, install failed)."""

    kind: ClassVar[ErrorKind] = "env_error"


class PluginError(LiteportError):
    """A plugin failed to load or two plugins claim one name."""

    kind: ClassVar[ErrorKind] = "worker_error"


class NotProvided(LiteportError):
    """No plugin in this environment provides the backend, quantizer or validator a job names."""

    kind: ClassVar[ErrorKind] = "env_error"
