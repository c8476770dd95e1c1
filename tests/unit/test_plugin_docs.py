"""The plugin author's guide documents every hook with its exact signature and docstring summary."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from liteport.testing.checks import specs

GUIDE = Path(__file__).resolve().parents[2] / "plugins" / "README.md"


def _signature(name: str) -> str:
    """``name(arg: Type, ...) -> Return`` as the hookspec module spells it."""
    signature = inspect.signature(specs()[name])
    params = ", ".join(
        f"{p.name}: {p.annotation}" if p.annotation is not inspect.Parameter.empty else p.name
        for p in signature.parameters.values()
    )
    return f"{name}({params}) -> {signature.return_annotation}"


def _markdown(text: str) -> str:
    return text.replace("``", "`")  # docstrings use reStructuredText literals, the guide Markdown


def test_the_hookspecs_are_found() -> None:
    assert len(specs()) >= 6


@pytest.mark.parametrize("name", sorted(specs()))
def test_hook_is_documented_with_its_signature_and_summary(name: str) -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    assert f"`{_signature(name)}`" in guide, f"plugins/README.md lacks `{_signature(name)}`"
    summary = _markdown((inspect.getdoc(specs()[name]) or "").splitlines()[0])
    assert summary and summary in guide, f"plugins/README.md lacks the summary of {name}: {summary!r}"
