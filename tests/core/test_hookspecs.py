"""Every hook spec is typed and documented, and the generated reference is current."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from core.hookdocs import render_reference, spec_functions
from core.plugins import ENTRY_POINT_GROUP, load_plugins
from tests.core.example_plugins.facts import FactPublisher

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


def every_spec() -> dict[str, tuple[object, dict[str, object]]]:
    """The core's specs, every installed plugin's own specs, and the example plugins'."""
    installed = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    pm, _ = load_plugins(installed, extra=[("facts", FactPublisher())])
    return spec_functions(pm)


SPECS = every_spec()


def test_specs_were_found():
    assert {"identify", "authorize", "scope_filter", "send_message", "example_fact_recorded"} <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_is_fully_typed(name):
    function, _opts = SPECS[name]
    signature = inspect.signature(function)  # type: ignore[arg-type]
    untyped = [arg for arg, param in signature.parameters.items() if param.annotation is inspect.Parameter.empty]
    assert not untyped, f"hook {name}: arguments without a type: {untyped}"
    assert signature.return_annotation is not inspect.Signature.empty, f"hook {name}: no return type"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_documents_each_argument_and_the_result(name):
    function, _opts = SPECS[name]
    doc = inspect.getdoc(function) or ""
    summary = doc.split("\n\n", 1)[0]
    assert len(summary) > 20, f"hook {name}: the docstring needs a summary line"
    for arg in inspect.signature(function).parameters:  # type: ignore[arg-type]
        assert f":param {arg}:" in doc, f"hook {name}: docstring does not describe argument {arg!r}"
    assert ":returns:" in doc, f"hook {name}: docstring does not say what it returns"
    returns = doc.split(":returns:", 1)[1]
    # Callers must know what a None answer means (or that nothing is expected).
    assert re.search(r"\bNone\b|\bNothing\b", returns), f"hook {name}: ':returns:' does not say what None means"


def test_hook_reference_is_current():
    pm, _ = load_plugins()  # what `phongdich docs hooks` documents: the core and the national plugins
    expected = render_reference(pm)
    assert REFERENCE.read_text(encoding="utf-8") == expected, "docs/hooks.md is out of date: run `phongdich docs hooks`"
    for name in spec_functions(pm):
        assert f"### `{name}`" in expected, f"hook {name} is missing from docs/hooks.md"


def test_reference_lists_plugin_hooks_too():
    pm, _ = load_plugins(extra=[("facts", FactPublisher())])
    reference = render_reference(pm)
    assert "## Hooks from `tests.core.example_plugins.fact_events`" in reference
    assert "### `example_fact_recorded`" in reference
