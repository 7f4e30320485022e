"""The shim's module graph: every import at module top, no cycles (not even behind TYPE_CHECKING), and the
core never imports the shim."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIM = ROOT / "shim"
PACKAGE = "ebpfmaps_shim"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SHIM).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The shim modules an ``from ... import ...`` statement names."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith(PACKAGE):
        return []
    # ``from . import registry`` names a submodule; ``from .provider import MapProvider`` names a module.
    return [f"{target}.{a.name}" if node.module is None else target for a in node.names]


def _shim_modules() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(SHIM.rglob("*.py"))}


def test_no_function_local_imports_in_the_shim() -> None:
    local: list[str] = []
    for name, (_, tree) in _shim_modules().items():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local += [f"{name}:{n.lineno}" for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not local, f"imports inside functions: {local}"


def test_the_shim_import_graph_is_acyclic() -> None:
    modules = _shim_modules()
    graph: dict[str, set[str]] = {}
    for name, (path, tree) in modules.items():
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                deps.update(d for d in _resolve(name, path.name == "__init__.py", node) if d in modules)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
        # A package's __init__ runs before its submodules; importing the package itself is not an edge back.
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    assert graph[f"{PACKAGE}.provider"] <= set(), graph[f"{PACKAGE}.provider"]
    assert f"{PACKAGE}.extmap" not in set().union(*(graph[m] for m in modules if ".example_providers" in m))
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(dep):], dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_core_never_imports_the_shim() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "ebpfmaps").rglob("*.py"))
                 if any(isinstance(n, (ast.Import, ast.ImportFrom))
                        and any((getattr(n, "module", None) or a.name).startswith(PACKAGE) for a in n.names)
                        for n in ast.walk(ast.parse(p.read_text())))]
    assert not offenders
