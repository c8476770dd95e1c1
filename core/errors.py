"""Exceptions that carry an error kind and a one-line message meant for people."""

from __future__ import annotations


class LiteportError(Exception):
    """Base error: ``kind`` is one of liteport.types.ERROR_KINDS; str(error) is one line."""

    kind = "worker_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class BadInput(LiteportError):
    """The user's input (model file, factory, weights, data, option) is unusable."""

    kind = "bad_input"


class UsageError(BadInput):
    """A command-line option or name that does not exist (unknown backend, mode, env)."""


class ExportError(LiteportError):
    kind = "export_error"


class UnsupportedOp(LiteportError):
    kind = "unsupported_op"


class ConverterError(LiteportError):
    kind = "converter_error"


class QuantizerError(LiteportError):
    kind = "quantizer_error"


class ValidatorError(LiteportError):
    kind = "validator_error"


class EnvironmentBuildError(LiteportError):
    """An environment could not be created (interpreter missing, install failed)."""

    kind = "env_error"


class PluginError(LiteportError):
    """A plugin failed to load or two plugins claim one name."""

    kind = "worker_error"
