"""The code's shape, kept: short functions and imports that run one way (docs/architecture.md).

Static checks with :mod:`ast` over the source files; nothing is imported or run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80

#: Which first-party packages each package may import (itself always allowed).
ALLOWED = {
    "coldstream_data": set(),
    "encoders": set(),
    "streams": {"encoders", "coldstream_data"},
    # training may use the event contract and the Kafka client side of streams, not the worker
    # and the worker's candidate step, which the offline harness scores as delivered
    # (training/served.py): pipeline, ids and stores, never the agents or the app
    "training": {"encoders", "coldstream_data", "streams.events", "streams.client",
                 "streams.broker", "streams.settings", "streams.errors", "streams.pipeline",
                 "streams.ids", "streams.stores"},
}
FIRST_PARTY = {"coldstream", "coldstream_data", "encoders", "streams", "training", "bench"}


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Absolute names of first-party modules ``path`` imports (at any depth of the file),
    including ``importlib.import_module("...")`` with a literal name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return {n for n in names if n.split(".")[0] in FIRST_PARTY}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_one_way(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    wrong = [f"{path.relative_to(ROOT)} imports {name}"
             for path in sources(package) for name in sorted(imported_modules(path))
             if not any(name == a or name.startswith(a + ".") for a in allowed)]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    """The check above can fail: it finds plain, from- and importlib imports."""
    path = tmp_path / "m.py"
    path.write_text("import training.cli\nfrom streams.worker import run_worker\n"
                    "def f():\n    import importlib\n    importlib.import_module('bench.cli')\n")
    assert imported_modules(path) == {"training.cli", "streams.worker", "bench.cli"}


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
            f"({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("package", ["streams", "encoders", "training", "coldstream_data",
                                     "bench"])
def test_no_function_is_longer_than_80_lines(package: str) -> None:
    found = [hit for path in sources(package) for hit in long_functions(path)]
    assert not found, "split these by what they do:\n" + "\n".join(found)
