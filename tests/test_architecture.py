"""The package's structure: an acyclic import graph, and foreign calls only in the syscall layer.

Read from the source with ``ast``, so the checks hold for every module whether or not a test
imports it. Function-local imports count as edges: importing inside a function to dodge a cycle
still leaves the cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.no_kernel

PACKAGES = {"ebpfmaps": ROOT / "ebpfmaps", "ebpfmaps_shim": ROOT / "shim"}
# Front ends may import lazily to start fast (the CLI runs one command per process); so may the package
# itself (its PEP 562 __getattr__ loads subpackages on first use) and the feature probes (the assembler only
# for program probes). ``importlib.import_module("ebpfmaps...")`` counts as an import like any other.
LAZY_IMPORTS_ALLOWED = frozenset({"ebpfmaps", "ebpfmaps.cli_operator", "ebpfmaps.demo", "ebpfmaps.features"})
LAZY_PACKAGES_ALLOWED = ("ebpfmaps.cli",)
SYSCALL_LAYER = "ebpfmaps._libbpf"
# The per-element hot paths call the argtypes-free entry points of ebpfmaps._libbpf.fast directly.
FAST_PATH_USERS = frozenset({"ebpfmaps.map"})


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg, base in PACKAGES.items():
        for f in sorted(base.rglob("*.py")):
            parts = [pkg, *f.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


MODULES = _modules()


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the project module imported
    line: int
    local: bool  # inside a function or class body


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """Nodes that never run at import time: ``if TYPE_CHECKING:`` and ``if __name__ == "__main__":`` blocks
    (their ``else`` branch runs, and counts)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ("TYPE_CHECKING" in ast.unparse(node.test)
                                         or ast.unparse(node.test) == "__name__ == '__main__'"):
            skip.add(id(node))
            skip.add(id(node.test))
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in MODULES:
                yield alias.name
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    for alias in node.names:
        sub = f"{prefix}.{alias.name}"
        # ``from pkg import submodule`` depends on the submodule; ``from pkg import name`` on pkg.
        target = sub if sub in MODULES else prefix
        if target in MODULES:
            yield target


def _dynamic_target(node: ast.AST) -> str | None:
    """The project module of ``importlib.import_module("ebpfmaps.x")`` or ``lazy_module("ebpfmaps.x")`` with a
    literal name."""
    if not (isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("import_module", "lazy_module"))
            and node.args):
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value if arg.value in MODULES else None
    return None


def _imports() -> list[Import]:
    out: list[Import] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_nodes(tree)
        top = {id(n) for n in tree.body}
        # ``x = lazy_module("ebpfmaps.y")`` at module level (also in the ``else`` of ``if TYPE_CHECKING``) declares
        # a dependency like an import statement: the module is imported on first use, not to dodge a cycle.
        declared = {id(stmt.value) for node in tree.body for stmt in [node, *getattr(node, "orelse", [])]
                    if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)
                    and ast.unparse(stmt.value.func).endswith("lazy_module")}
        for node in ast.walk(tree):
            dynamic = _dynamic_target(node)
            if dynamic is not None and id(node) not in skip and dynamic != module:
                out.append(Import(module, dynamic, getattr(node, "lineno", 0), id(node) not in declared))
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
                for target in _targets(module, node, path.name == "__init__.py"):
                    if target != module:
                        out.append(Import(module, target, node.lineno, id(node) not in top))
    return out


IMPORTS = _imports()


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        graph[imp.module].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    cycles = _cycles()
    detail = []
    for component in cycles:
        members = set(component)
        edges = [f"{i.module}:{i.line} -> {i.target}{' (local)' if i.local else ''}"
                 for i in IMPORTS if i.module in members and i.target in members]
        detail.append(" | ".join(edges))
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_no_function_local_imports_of_project_modules() -> None:
    local = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
             if i.local and i.module not in LAZY_IMPORTS_ALLOWED
             and not any(i.module == p or i.module.startswith(p + ".") for p in LAZY_PACKAGES_ALLOWED)]
    assert not local, "function-local imports of project modules:\n" + "\n".join(local)


def test_the_core_never_imports_the_shim() -> None:
    assert not [i for i in IMPORTS if i.module.startswith("ebpfmaps.") and i.target.startswith("ebpfmaps_shim")]


def _names_from_syscall_layer(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in (SYSCALL_LAYER, "ebpfmaps") and not node.level:
            for alias in node.names:
                if node.module == SYSCALL_LAYER or alias.name == "_libbpf":
                    names.add(alias.asname or alias.name)
    return names


def test_foreign_functions_are_called_only_in_the_syscall_layer() -> None:
    offenders: list[str] = []
    for module, path in MODULES.items():
        if module == SYSCALL_LAYER or module.startswith(SYSCALL_LAYER + "."):
            continue
        tree = ast.parse(path.read_text(), str(path))
        imported = _names_from_syscall_layer(tree)
        for node in ast.walk(tree):
            # ``lib.fn(...)`` or ``_libbpf.lib.fn(...)``: a declared libbpf function, called outside the layer.
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "lib" and "lib" in imported:
                    offenders.append(f"{module}:{node.lineno} uses lib.{node.attr}")
                if node.value.id == "_libbpf" and node.attr in ("lib", "fast"):
                    offenders.append(f"{module}:{node.lineno} uses _libbpf.{node.attr}")
                if node.value.id == "fast" and "fast" in imported and module not in FAST_PATH_USERS:
                    offenders.append(f"{module}:{node.lineno} uses fast.{node.attr}")
                if node.value.id == "ctypes" and node.attr in ("CDLL", "cdll", "PyDLL", "pydll", "CFUNCTYPE",
                                                                "pythonapi", "get_errno", "set_errno"):
                    offenders.append(f"{module}:{node.lineno} uses ctypes.{node.attr}")
    assert not offenders, "foreign calls outside ebpfmaps._libbpf:\n" + "\n".join(offenders)


def test_no_module_reaches_into_a_maps_private_state() -> None:
    # Layers over a map (resize, factory, the shim, programs) use its public and documented API.
    private = ("_h", "_users", "_box", "_fd", "_spec", "_kcodec", "_vcodec", "_pin_path", "_init_from_fd",
               "_swap_fd", "_finalizer", "_iter_raw", "_writable", "_btf", "_batch_ok")
    offenders: list[str] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        # Attributes the module's own classes set on ``self`` are that module's business.
        own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
               and isinstance(n.value, ast.Name) and n.value.id == "self"}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in private and node.attr not in own
                    and isinstance(node.value, ast.Name) and node.value.id not in ("self", "cls")):
                offenders.append(f"{module}:{node.lineno} {node.value.id}.{node.attr}")
    assert not offenders, "\n".join(offenders)
