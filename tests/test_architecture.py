"""The package's import graph: no cycle, and the plain-torch core never reaches up into the rest.

Imports are read from the source (``TYPE_CHECKING`` blocks and function-level imports included),
so a cycle hidden from the interpreter still fails here.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hf_unlearn"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every hf_unlearn module ``path`` imports, resolved to a module (not a name inside one)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c.startswith("hf_unlearn") and c in MODULES}
    return found - {name}


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _parents(name: str) -> set[str]:
    """A package's ``__init__`` runs before its modules: importing ``a.b.c`` imports ``a.b`` too."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts))}


def _find_cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            # a submodule importing its own package's __init__ is how Python works, not a cycle
            if nxt in _parents(node):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_import_graph_is_read():
    assert "hf_unlearn.training.trainer" in GRAPH["hf_unlearn.scripts.unlearn"]
    assert "hf_unlearn.methods.base" in GRAPH["hf_unlearn.methods.pgu"]


def test_no_import_cycle():
    cycle = _find_cycle()
    assert cycle is None, " -> ".join(cycle)


def test_a_cycle_would_be_found(monkeypatch):
    trainer = "hf_unlearn.training.trainer"
    monkeypatch.setitem(GRAPH, "hf_unlearn.core.space", GRAPH["hf_unlearn.core.space"] | {trainer})
    assert _find_cycle() is not None


# The floors of the house, bottom up: a package may import only packages on lower floors.
FLOORS = {
    "hf_unlearn.core": 1,  # plain torch
    "hf_unlearn.utils": 1,
    "hf_unlearn.models": 1,
    "hf_unlearn": 2,  # the package face: the core eagerly, the trainer lazily
    "hf_unlearn.protection": 2,
    "hf_unlearn.control": 2,
    "hf_unlearn.data": 3,
    "hf_unlearn.evaluation": 4,
    "hf_unlearn.methods": 4,
    "hf_unlearn.exact": 5,
    "hf_unlearn.cards": 5,
    "hf_unlearn.training": 6,
    "hf_unlearn.sequential": 7,
    "hf_unlearn.audit": 7,  # many trainings and unlearning runs, scored per example
    "hf_unlearn.scripts": 8,
    "hf_unlearn.cli": 9,  # the console entry point: dispatches to the scripts
}


def _package(module: str) -> str:
    return module if module == "hf_unlearn" else ".".join(module.split(".")[:2])


def test_every_package_has_a_floor():
    assert {_package(m) for m in GRAPH} == set(FLOORS)


def test_no_upward_import():
    upward = []
    for module, imported in GRAPH.items():
        here = _package(module)
        for target in imported:
            there = _package(target)
            if there != here and there not in _parents(module) | {"hf_unlearn"} and FLOORS[there] >= FLOORS[here]:
                upward.append(f"{module} -> {target}")
    assert not upward, upward


def test_an_upward_import_would_be_found(monkeypatch):
    monkeypatch.setitem(GRAPH, "hf_unlearn.control.state", GRAPH["hf_unlearn.control.state"] | {"hf_unlearn.methods"})
    with pytest.raises(AssertionError):
        test_no_upward_import()


def test_few_top_level_modules():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(top) <= 6, top


MAX_FILE_LINES = 400  # a module a reader can hold in mind
MAX_FUNCTION_LINES = 80  # a function that does one job (signature and docstring included)


def _too_long(modules: dict[str, Path]) -> tuple[list[str], list[str]]:
    files, functions = [], []
    for name, path in sorted(modules.items()):
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            files.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    functions.append(f"{name}.{node.name}: {length} lines")
    return files, functions


def test_no_file_and_no_function_is_too_long():
    files, functions = _too_long(MODULES)
    assert not files, f"split these modules (at most {MAX_FILE_LINES} lines): {files}"
    assert not functions, f"split these functions into named steps (at most {MAX_FUNCTION_LINES} lines): {functions}"


def test_a_long_file_or_function_would_be_found(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path, short = tmp_path / "long.py", tmp_path / "short.py"
    path.write_text(f"def long():\n{body}\n" + "\n" * MAX_FILE_LINES)
    short.write_text(f"def short():\n{body[: body.rindex(chr(10))]}\n")  # exactly at both limits
    files, functions = _too_long({"hf_unlearn.long": path, "hf_unlearn.short": short})
    assert files == [f"hf_unlearn.long: {MAX_FUNCTION_LINES + 1 + MAX_FILE_LINES} lines"]
    assert functions == [f"hf_unlearn.long.long: {MAX_FUNCTION_LINES + 1} lines"]
