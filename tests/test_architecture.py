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
    assert "hf_unlearn.trainer" in GRAPH["hf_unlearn.scripts.unlearn"]
    assert "hf_unlearn.methods.base" in GRAPH["hf_unlearn.methods.pgu"]


def test_no_import_cycle():
    cycle = _find_cycle()
    assert cycle is None, " -> ".join(cycle)


def test_a_cycle_would_be_found(monkeypatch):
    monkeypatch.setitem(GRAPH, "hf_unlearn.core.space", GRAPH["hf_unlearn.core.space"] | {"hf_unlearn.trainer"})
    assert _find_cycle() is not None


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("hf_unlearn.core", ("hf_unlearn.",)),  # plain torch: only itself
        (
            "hf_unlearn.methods",
            ("hf_unlearn.trainer", "hf_unlearn.arguments", "hf_unlearn.callbacks", "hf_unlearn.hub"),
        ),
        ("hf_unlearn.protection", ("hf_unlearn.trainer", "hf_unlearn.arguments", "hf_unlearn.methods")),
        ("hf_unlearn.hub", ("hf_unlearn.trainer", "hf_unlearn.arguments")),
        ("hf_unlearn.callbacks", ("hf_unlearn.trainer", "hf_unlearn.arguments")),
        ("hf_unlearn.evaluation", ("hf_unlearn.trainer", "hf_unlearn.arguments", "hf_unlearn.methods")),
        ("hf_unlearn.data", ("hf_unlearn.trainer", "hf_unlearn.arguments", "hf_unlearn.methods")),
    ],
)
def test_no_upward_import(layer, forbidden):
    for module, imported in GRAPH.items():
        if module == layer or module.startswith(layer + "."):
            bad = {i for i in imported if i.startswith(forbidden) and not i.startswith(layer)}
            assert not bad, f"{module} imports {sorted(bad)}"
