"""The shape of the code, checked with ``ast`` over src/edgezo (no import of edgezo needed).

* No import cycle between edgezo modules: the modules form layers, so any one can
  be read, tested and replaced from the ones below it. Every ``import`` counts,
  including those deferred into functions (a lazy import is still a dependency);
  those under ``if TYPE_CHECKING:`` do not (they never run).
* No private name (one leading underscore) imported from another module: a name
  another module needs is part of its interface, so it gets a public name.
* No function over 60 lines, except data tables listed in :data:`LONG_ALLOWED`
  with the reason: a long function does several jobs; split it into named steps.

Each test prints every violation with its file and line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "edgezo"
MAX_LINES = 60

#: Functions allowed over MAX_LINES: qualified name -> why. Only data tables belong here
#: (a function whose length is its literal table, not its logic).
LONG_ALLOWED: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    """One ``import``/``from ... import`` of an edgezo module: who, what, which names, where."""

    importer: str
    target: str
    names: tuple[str, ...]
    line: int


def module_files(root: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root/edgezo``."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from`` import names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]  # a module's package
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The edgezo modules that ``module`` imports (a ``from pkg import sub`` targets ``pkg.sub``)."""
    found = []
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.append(Import(module, alias.name, (), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, path, node)
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    found.append(Import(module, sub, (), node.lineno))
                elif target in modules:
                    found.append(Import(module, target, (alias.name,), node.lineno))
    return found


def all_imports(root: Path = SRC) -> list[Import]:
    modules = module_files(root)
    return [i for m, path in modules.items() for i in imports_of(m, path, modules)]


# -- cycles ---------------------------------------------------------------------------------------
def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def one_cycle(component: list[str], edges: dict[tuple[str, str], int]) -> list[str]:
    """A shortest cycle through the component's first module, as ``a -> b (line n)`` steps."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first, back to start
        following = []
        for node in frontier:
            for a, b in sorted(edges):
                if a != node or b not in members:
                    continue
                if b == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    path.reverse()
                    path.append(start)
                    return [
                        f"{x} -> {y} (line {edges[x, y]})"
                        for x, y in zip(path, path[1:], strict=False)
                    ]
                if b not in previous:
                    previous[b] = node
                    following.append(b)
        frontier = following
    return []


def import_cycles(root: Path = SRC) -> list[str]:
    """One readable line per cycle: the modules involved and one closed path through them."""
    edges: dict[tuple[str, str], int] = {}
    graph: dict[str, set[str]] = {m: set() for m in module_files(root)}
    for i in all_imports(root):
        if i.target != i.importer:
            graph[i.importer].add(i.target)
            edges.setdefault((i.importer, i.target), i.line)
    return [
        f"{', '.join(component)}\n      " + "\n      ".join(one_cycle(component, edges))
        for component in strongly_connected(graph)
    ]


# -- private names --------------------------------------------------------------------------------
def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(root: Path = SRC) -> list[str]:
    """``importer:line imports _name from target`` for every private name crossing modules."""
    modules = module_files(root)
    out = []
    for i in all_imports(root):
        leaf = i.target.rsplit(".", 1)[-1]
        names = list(i.names) or ([leaf] if is_private(leaf) and not i.names else [])
        for name in names:
            if is_private(name) and i.importer != i.target:
                where = modules[i.importer].relative_to(root)
                out.append(f"{where}:{i.line}: {i.importer} imports {name} from {i.target}")
    return out


# -- long functions -------------------------------------------------------------------------------
def functions(tree: ast.AST, prefix: str):
    """``(qualified name, node)`` of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}.{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from functions(node, name)
        else:
            yield from functions(node, prefix)


def long_functions(root: Path = SRC, limit: int = MAX_LINES) -> dict[str, str]:
    """Qualified name -> ``file:line, N lines`` for every function longer than ``limit``."""
    out = {}
    for module, path in module_files(root).items():
        for name, node in functions(ast.parse(path.read_text()), module):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                out[name] = f"{path.relative_to(root)}:{node.lineno}, {length} lines"
    return out


# -- the tests ------------------------------------------------------------------------------------
def report(found: list[str], what: str) -> None:
    """Fail with one violation per line (no repr of the list after it)."""
    if found:
        pytest.fail(f"{len(found)} {what}:\n  " + "\n  ".join(found), pytrace=False)


def test_no_import_cycles():
    report(import_cycles(), "import cycle(s) (modules, then one closed path through them)")


def test_no_private_name_is_imported_from_another_module():
    report(private_imports(), "private name(s) imported across modules (give them public names)")


def test_no_function_over_60_lines_outside_data_tables():
    found = {k: v for k, v in long_functions().items() if k not in LONG_ALLOWED}
    report(
        [f"{name} ({where})" for name, where in sorted(found.items())],
        f"function(s) over {MAX_LINES} lines (split them, or list a data table in LONG_ALLOWED)",
    )


def test_every_allowed_long_function_exists_and_is_long():
    long = long_functions()
    stale = [name for name in LONG_ALLOWED if name not in long]
    assert not stale, f"LONG_ALLOWED lists functions that are gone or short now: {stale}"


# -- the checks catch what they claim to ---------------------------------------------------------
def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_see_cycles_private_imports_and_long_functions(tmp_path):
    root = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import f\n_hidden = 1\n",
            "b.py": "def f():\n    from . import a\n",  # a lazy import still closes the cycle
            "c.py": "from .a import _hidden\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .d import D\n",
            "d.py": "from .c import x\n",  # only a TYPE_CHECKING import back: no cycle
            "sub/__init__.py": "",
            "sub/e.py": "from .. import a\nfrom ..a import f as _f\n",
            "long.py": "def g():\n" + "    x = 1\n" * 60 + "\ndef h():\n    pass\n",
        },
    )
    cycles = import_cycles(root)
    assert len(cycles) == 1 and cycles[0].startswith("edgezo.a, edgezo.b")
    assert (
        "edgezo.a -> edgezo.b (line 1)" in cycles[0]
        and "edgezo.b -> edgezo.a (line 2)" in cycles[0]
    )
    assert private_imports(root) == ["edgezo/c.py:1: edgezo.c imports _hidden from edgezo.a"]
    assert list(long_functions(root)) == ["edgezo.long.g"]
