"""The shape of the package: imports flow one way (DESIGN.md), checked on the source.

Every ``import`` counts, function-local ones too: a lazy import hides a cycle from Python at
start-up, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import txmailhost

ROOT = Path(txmailhost.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` names in an import statement, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {
        name: {
            dep
            for dep in _imports(path, name)
            if dep in modules and dep != name and not name.startswith(dep + ".")
        }
        for name, path in modules.items()
    }


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_itself_through_others() -> None:
    cycle = _find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_config_only_parses_never_reaches_into_the_server() -> None:
    """config.py reads and validates; creating files and loading TLS, accounts or DNS code
    belong to the modules that do that work."""
    reached = import_graph()["txmailhost.config"]
    for forbidden in (
        "txmailhost.relay",
        "txmailhost.accounts",
        "txmailhost.tls",
        "txmailhost.datadir",
    ):
        assert not any(dep == forbidden or dep.startswith(forbidden + ".") for dep in reached), (
            forbidden
        )
