"""The architecture, held by reading the imports: layers depend only downward, and no module
depends on itself through others. A new import against these rules fails here, naming the file
and the import.

    console/jobs          the engine: imports nothing above it
    console/tokens (and token_rates), extensions, analytics, handlers    on the engine
    console/alerts        on analytics and handlers
    console/web, api      the two doors, on all of the above, never on each other
    console/__init__, cli, demo, migrating             the top: wiring
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = {"console.jobs", "console.defaults"}
BESIDE_THE_ENGINE = CORE | {"console.extensions", "console.tokens", "console.token_rates",
                            "console.analytics", "console.handlers"}
BELOW_THE_DOORS = BESIDE_THE_ENGINE | {"console.alerts"}
# What each layer may import from the product, besides its own package.
MAY_IMPORT = {
    "console.defaults": set(),
    "console.jobs": set(),
    "console.extensions": CORE,
    "console.tokens": CORE | {"console.token_rates"},
    "console.token_rates": CORE,
    "console.analytics": CORE,
    "console.handlers": CORE,
    "console.alerts": CORE | {"console.analytics", "console.handlers"},
    "console.web": BELOW_THE_DOORS,
    "console.api": BELOW_THE_DOORS,
    "console.migrations": set(),
}
TOP = {"console", "console.cli", "console.demo", "console.migrating"}   # may import anything
NEVER_IMPORTED = ("benchmarks", "tests")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for each import in the file, relative ones resolved;
    ``from package import name`` is ``package.name`` when that is a module of ours, else
    ``package``."""
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                module = f"{target}.{alias.name}"
                yield node.lineno, module if module in PRODUCT_MODULES else target


def layer_of(module: str) -> str | None:
    if module in TOP:
        return module
    for layer in sorted(MAY_IMPORT, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def product_files() -> list[Path]:
    return sorted((ROOT / "console").rglob("*.py"))


PRODUCT_MODULES = {module_name(path) for path in product_files()}


def violations(files: list[Path]) -> list[str]:
    """Each import of a product module against ``MAY_IMPORT``, as "file:line imports x (why)"."""
    found = []
    for path in files:
        here = module_name(path)
        layer = layer_of(here)
        for line, target in imports_of(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if target.split(".")[0] in NEVER_IMPORTED:
                found.append(f"{where}: the product never imports {target.split('.')[0]}/")
                continue
            if not target.startswith("console") or layer in TOP:
                continue
            other = layer_of(target)
            if other == layer:
                continue
            if layer is None:
                found.append(f"{where}: {here} belongs to no layer; add it to MAY_IMPORT")
            elif other in TOP or other not in MAY_IMPORT[layer]:
                found.append(f"{where}: {layer} may import only "
                             f"{', '.join(sorted(MAY_IMPORT[layer])) or 'itself'}")
    return found


def cycles(files: list[Path]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan)."""
    modules = {module_name(path): path for path in files}
    graph = {name: sorted({target for _, target in imports_of(path)
                           if target in modules and target != name})
             for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_every_import_points_down_the_layers():
    assert violations(product_files()) == []


def test_no_modules_import_each_other():
    assert cycles(product_files()) == []


def test_benchmarks_never_import_the_tests():
    assert [f"{path.relative_to(ROOT)}:{line} imports {target}"
            for path in sorted((ROOT / "benchmarks").rglob("*.py"))
            for line, target in imports_of(path) if target.split(".")[0] == "tests"] == []
