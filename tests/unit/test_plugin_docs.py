"""The plugin author's guide documents every hook with its exact signature and docstring summary."""

from __future__ import annotations

import inspect
import re
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


def _public_api_table() -> list[str]:
    """Names in the first column of the guide's public-API table (``name``, ``name(args)`` → ...)."""
    guide = GUIDE.read_text(encoding="utf-8")
    table = guide[guide.index("**public plugin API, `liteport.api`**") :].split("\n\n")[1]
    names: list[str] = []
    for row in table.splitlines()[2:]:  # after the header and the |---| line
        first_cell = row.split("|")[1]
        names += [re.split(r"[(\s]", code)[0] for code in re.findall(r"`([^`]+)`", first_cell)]
    return names


def test_every_name_the_guide_calls_public_is_importable_from_liteport_api() -> None:
    import liteport.api

    documented = _public_api_table()
    assert len(documented) >= 20, documented
    missing = [name for name in documented if not hasattr(liteport.api, name)]
    assert not missing, f"plugins/README.md calls these public, but liteport.api lacks them: {missing}"
    undocumented = sorted(set(liteport.api.__all__) - set(documented))
    assert not undocumented, f"liteport.api exports names the guide's table does not list: {undocumented}"
