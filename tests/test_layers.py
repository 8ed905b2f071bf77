"""The architecture holds: lower layers never import higher ones, and there is no import circle
(lazy imports inside functions included; `if TYPE_CHECKING:` imports left out)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "protocols")
# lower number = lower layer; a module may import its own layer or lower ones
LAYERS = [
    ("bench", 0), ("bench.errors", 0), ("bench.metrics", 0),  # "bench": the empty package
    ("protocols", 1),
    ("bench.store", 2),
    ("bench.data", 3),
    ("methods", 4),
    ("bench.config", 5), ("bench.spec", 5),
    ("bench.engine", 6),
    ("bench.sweep", 7), ("bench.report", 7),
    ("bench.reproduce", 8),  # plans sweeps from the published numbers: sweep + report
    ("bench.commands", 9), ("bench.cli", 9),
]


def layer_of(module: str) -> tuple[str, int]:
    for prefix, rank in sorted(LAYERS, key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports, anywhere but under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for child in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found)) - {name} for name, path in found.items()}


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, imported in graph().items():
        own, rank = layer_of(module)
        for target in imported:
            other, other_rank = layer_of(target)
            if other_rank > rank or (other_rank == rank and other != own and rank == 7):
                upward.append(f"{module} ({own}) imports {target} ({other})")
    assert upward == []


def test_the_sweep_never_imports_the_cli():
    assert not [(m, t) for m, targets in graph().items() if m.startswith("bench.sweep")
                for t in targets if t.startswith("bench.commands") or t == "bench.cli"]


def test_there_is_no_import_circle():
    edges = graph()
    # package __init__ modules re-export their children; an edge parent -> child is not a
    # dependency of the child on the parent
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if target.startswith(module + "."):
                continue
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert cycles == []
