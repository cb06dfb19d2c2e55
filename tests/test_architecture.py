"""The library's shape: no import cycle among its modules, modules of one sitting, a curated top level,
no hidden test machinery in the product."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hematolib"
MODULES = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__main__"}


def imports_of(path: Path) -> set[str]:
    """The sibling modules a module imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found & set(MODULES)


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> modules it imports) as a path, or None."""
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle_among_the_librarys_modules():
    assert cycle_in({name: imports_of(path) for name, path in MODULES.items()}) is None


def test_the_cycle_check_finds_a_cycle_when_there_is_one():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_reads_in_one_sitting(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= 380, f"hematolib/{name}.py has {lines} lines: split it by job"


def test_no_test_machinery_or_string_registry_in_the_product():
    for name, path in MODULES.items():
        text = path.read_text()
        assert "unittest.mock" not in text and "register_layers" not in text, name


def test_the_top_level_names_the_common_entry_points_without_loading_tensorflow():
    code = ("import sys, hematolib as hl; assert 'tensorflow' not in sys.modules; "
            "assert hl.Config is hl.config.Config and hl.open_dataset is hl.data.open_dataset; "
            "assert {'Config', 'build', 'Predictor', 'set_seed'} <= set(dir(hl))")
    subprocess.run([sys.executable, "-c", code], check=True)
