"""The house's shape, read from the import graph of every .py under proxy_addons/ and agent/.

The rules (docs/architecture.md):
  (a) layers, lowest first: core < store < pages < record < alerts < workflow < devices < checks
      < web < ops < gateway < cli; a module imports only its own package and lower layers.
      agent/ sits below core: what the gateway and the device agent share lives there, and any
      layer may import it;
  (b) core is pure (no mitmproxy, Flask, Werkzeug, Jinja2, SQLAlchemy, Alembic, Prometheus:
      jinja2 belongs to pages, which renders the templates), and mitmproxy is imported only
      under gateway/ and by ops/school_ca.py (mitmproxy's certificate code);
  (c) agent/ imports nothing from proxy_addons/;
  (d) no import statement inside a function, except for the optional dependencies in OPTIONAL;
  (e) no module over 400 lines unless its docstring has a line starting "Over 400 lines:"
      that says why;
  (f) no import cycle between modules.

What counts as an import: every `import` and `from ... import` statement, at any depth
(inside functions too), with relative imports resolved. `from a.b import c` is an import of
a.b.c when that is a module, else of a.b; an edge goes to the module named, not to the packages
above it. `importlib.import_module` (the CLI's dispatch) is not an import statement.

Imports under `if TYPE_CHECKING:` count for (a), (b) and (c): a lower layer that names a
higher layer's type in its signatures knows about it, which is what the layers forbid. They do
not count for (f): they never run, so they can't make an import cycle.

A test fails naming each violation (module, line, the rule broken);
`python tests/test_architecture.py` prints every violation found.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("proxy_addons", "agent")
LAYERS = (
    "core",
    "store",
    "pages",
    "record",
    "alerts",
    "workflow",
    "devices",
    "checks",
    "web",
    "ops",
    "gateway",
    "cli",
)
NOT_IN_CORE = (
    "mitmproxy",
    "flask",
    "flask_wtf",
    "werkzeug",
    "jinja2",
    "itsdangerous",
    "sqlalchemy",
    "alembic",
    "prometheus_client",
)
MITMPROXY_IMPORTERS = ("proxy_addons.gateway", "proxy_addons.ops.school_ca")
# Packages a module may import inside a function, and why: an optional dependency, so that a
# machine without it (or a command that does not need it) still loads the module.
OPTIONAL = {
    "brotli": "a content encoding the content filter reads; comes with mitmproxy, not the core",
    "backports.zstd": "a content encoding the content filter reads; as brotli",
}
MAX_LINES = 400
LONG_MARKER = "Over 400 lines:"
# Directories of .py files that are not packages.
NOT_PACKAGES = {
    "proxy_addons/store/migrations": "Alembic's script directory, loaded by path",
    "proxy_addons/store/migrations/versions": "Alembic's revisions, loaded by path",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    path: str  # its file, from the repository's top
    line: int
    target: str  # the module imported
    in_function: bool
    type_checking: bool

    @property
    def key(self) -> str:
        return f"{self.module} -> {self.target}"

    def where(self, rule: str) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.target}: {rule}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_in(
    source: str, module: str, path: str, known: Container[str], is_package: bool
) -> list[Import]:
    """Every import statement in `source`, with where it stands (function, TYPE_CHECKING)."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(
                    Import(module, path, node.lineno, alias.name, in_function, type_checking)
                )
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                target = candidate if candidate in known else base
                found.append(Import(module, path, node.lineno, target, in_function, type_checking))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, in_function, True)
            for child in node.orelse:
                visit(child, in_function, type_checking)
            return
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_checking)

    visit(ast.parse(source), False, False)
    # One entry per importer, target and line (`from a import b, c` of one module is one).
    return list(dict.fromkeys(found))


@functools.cache
def all_imports() -> tuple[Import, ...]:
    known = modules()
    out: list[Import] = []
    for name, path in known.items():
        rel = str(path.relative_to(ROOT))
        out += imports_in(path.read_text(), name, rel, known, path.name == "__init__.py")
    return tuple(out)


def layer(module: str) -> int | None:
    """-1 for agent/ (below core), the index in LAYERS for a proxy_addons package, else None."""
    parts = module.split(".")
    if parts[0] == "agent":
        return -1
    if parts[0] == "proxy_addons" and len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _top(module: str) -> str:
    return module.split(".")[0]


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# -- the rules: each returns {key: message} ----------------------------------------------------


def layer_violations() -> dict[str, str]:
    out = {}
    for imp in all_imports():
        if not imp.module.startswith("proxy_addons."):
            continue
        mine, theirs = layer(imp.module), layer(imp.target)
        if mine is None or theirs is None or _package(imp.module) == _package(imp.target):
            continue
        if theirs > mine:
            rule = (
                f"layer {LAYERS[mine]} may not import the higher layer {LAYERS[theirs]} "
                f"(order: {' < '.join(LAYERS)})"
            )
            out.setdefault(imp.key, imp.where(rule))
    return out


def purity_violations() -> dict[str, str]:
    out = {}
    for imp in all_imports():
        top = _top(imp.target)
        if _under(imp.module, ("proxy_addons.core",)) and top in NOT_IN_CORE:
            out.setdefault(imp.key, imp.where(f"core is pure: no {top}"))
        elif top == "mitmproxy" and not _under(imp.module, MITMPROXY_IMPORTERS):
            out.setdefault(
                imp.key, imp.where("mitmproxy only under gateway/ and in ops/school_ca.py")
            )
    return out


def agent_violations() -> dict[str, str]:
    return {
        imp.key: imp.where(
            "agent/ imports nothing from proxy_addons/ (shared code lives in agent/)"
        )
        for imp in all_imports()
        if _top(imp.module) == "agent" and _top(imp.target) == "proxy_addons"
    }


def in_function_violations() -> dict[str, str]:
    out = {}
    for imp in all_imports():
        if imp.in_function and not _under(imp.target, tuple(OPTIONAL)):
            out.setdefault(
                imp.key,
                imp.where("an import inside a function (only optional dependencies: OPTIONAL)"),
            )
    return out


def long_modules() -> dict[str, str]:
    out = {}
    for name, path in modules().items():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if any(line.strip().startswith(LONG_MARKER) for line in doc.splitlines()):
            continue
        out[name] = (
            f"{path.relative_to(ROOT)}:1: {name} has {lines} lines (over {MAX_LINES}): split it, "
            f"or say why in its docstring on a line starting '{LONG_MARKER}'"
        )
    return out


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is a few hundred modules deep at most)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
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
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _path(graph: dict[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    """A shortest import path from start to goal inside one cycle."""
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if node == goal:
            break
        for child in sorted(graph[node] & within):
            if child not in previous and child != start:
                previous[child] = node
                queue.append(child)
    path = [goal]
    while path[-1] != start:
        path.append(previous[path[-1]])
    return path[::-1]


def cycle_violations() -> dict[str, str]:
    """Each import that closes a cycle, keyed by its edge: a fix that shrinks a cycle leaves
    a subset of the edges, and a new edge into a cycle is a new violation."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    first: dict[tuple[str, str], Import] = {}
    for imp in all_imports():
        if imp.type_checking or imp.target not in known or imp.target == imp.module:
            continue
        graph[imp.module].add(imp.target)
        first.setdefault((imp.module, imp.target), imp)
    out = {}
    for group in _strongly_connected(graph):
        if len(group) < 2:
            continue
        for (source, target), imp in first.items():
            if source in group and target in group:
                loop = " -> ".join([source, *_path(graph, target, source, group)])
                out[imp.key] = imp.where(f"an import cycle: {loop}")
    return out


def package_violations() -> dict[str, str]:
    out = {}
    for source in SOURCES:
        for directory in sorted({p.parent for p in (ROOT / source).rglob("*.py")}):
            rel = str(directory.relative_to(ROOT))
            if "__pycache__" in directory.parts or rel in NOT_PACKAGES:
                continue
            init = directory / "__init__.py"
            if not init.exists():
                out[rel] = f"{rel}: a package without an __init__.py"
                continue
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            if not doc.strip():
                out[rel] = f"{rel}/__init__.py:1: no docstring saying in a line what it is for"
    return out


# -- the tests ---------------------------------------------------------------------------------


def _none(name: str, found: dict[str, str]) -> None:
    assert not found, f"{name}: {len(found)} violation(s):\n" + "\n".join(
        found[k] for k in sorted(found)
    )


def test_layers() -> None:
    _none("layers (a)", layer_violations())


def test_core_is_pure_and_mitmproxy_stays_in_the_gateway() -> None:
    _none("purity (b)", purity_violations())


def test_the_agent_imports_nothing_from_the_gateway() -> None:
    _none("agent (c)", agent_violations())


def test_no_imports_inside_functions_but_optional_dependencies() -> None:
    _none("imports in functions (d)", in_function_violations())


def test_no_module_over_400_lines_without_a_reason() -> None:
    _none("long modules (e)", long_modules())


def test_no_import_cycles() -> None:
    _none("cycles (f)", cycle_violations())


def test_every_package_says_what_it_is_for() -> None:
    _none("packages", package_violations())


def test_the_graph_is_read_whole() -> None:
    """The checks see what they must: the packages, the agent, and imports at every depth."""
    names = modules()
    assert {f"proxy_addons.{p}" for p in LAYERS} <= set(names)
    assert "agent.check_suite" in names
    targets = {imp.target for imp in all_imports()}
    assert "agent.check_suite" in targets and "proxy_addons.core.policy.model" in targets


def test_the_reader_sees_functions_type_checking_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "if TYPE_CHECKING:\n"
        "    from proxy_addons.cli.main import main\n"
        "def load():\n"
        "    import brotli\n"
        "    from proxy_addons.gateway import chain\n"
    )
    known = frozenset({"proxy_addons.core.sibling", "proxy_addons.gateway.chain"})
    found = imports_in(source, "proxy_addons.core.here", "here.py", known, is_package=False)
    seen = {(i.target, i.line, i.in_function, i.type_checking) for i in found}
    assert seen == {
        ("typing", 1, False, False),
        ("proxy_addons.core.sibling", 2, False, False),
        ("proxy_addons.other", 3, False, False),
        ("proxy_addons.cli.main", 5, False, True),
        ("brotli", 7, True, False),
        ("proxy_addons.gateway.chain", 8, True, False),
    }


def test_a_cycle_is_found_by_its_edges() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    groups = _strongly_connected(graph)
    assert {"a", "b", "c"} in groups and {"d"} in groups
    assert _path(graph, "b", "a", {"a", "b", "c"}) == ["b", "c", "a"]


RULES = {
    "layers (a)": layer_violations,
    "purity (b)": purity_violations,
    "agent (c)": agent_violations,
    "imports in functions (d)": in_function_violations,
    "long modules (e)": long_modules,
    "cycles (f)": cycle_violations,
    "packages": package_violations,
}

if __name__ == "__main__":
    # Every violation found, rule by rule, each with where it is.
    for rule_name, rule in RULES.items():
        found = rule()
        print(f"{rule_name}: {len(found)}")
        for key in sorted(found):
            print(f"  {found[key]}")
    sys.exit(0)
