"""Architecture limits of kmtool, as tests.

The package graph has no cycle, counting every import (function-local ones too). A package is
`kmtool.<first component>`: kmtool/dump/source.py belongs to `kmtool.dump`, and a top-level module
such as kmtool/units.py is a package of its own. An edge A -> B means some module of A imports
something of B. Shared vocabulary lives in the leaves (kmtool.units, kmtool.schemas, kmtool.errors),
so a cycle means a name sits one layer too high: move it down rather than hide the import inside a
function.

Size: no module under kmtool/ has more than `MAX_MODULE_LINES` lines, and no function (method,
nested function) more than `MAX_FUNCTION_LINES`, counted from its `def` line to its last line,
decorators excluded, unless `FUNCTION_EXCEPTIONS` names it with the reason. kmtool/dump, which reads
untrusted dumps, has no `# type: ignore` comment at all.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import kmtool

PACKAGE_ROOT = Path(kmtool.__file__).resolve().parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# "kmtool/<path>.py:<qualified name>" -> why that function may be longer than MAX_FUNCTION_LINES.
FUNCTION_EXCEPTIONS: dict[str, str] = {}
NO_TYPE_IGNORE_UNDER = PACKAGE_ROOT / "dump"
TYPE_IGNORE = re.compile(r"type:\s*ignore")


def _package_of(module: str) -> str | None:
    """`kmtool.dump` for `kmtool.dump.source`; None outside kmtool or for `kmtool` itself."""
    parts = module.split(".")
    if parts[0] != "kmtool" or len(parts) < 2:
        return None
    return f"kmtool.{parts[1]}"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in its body, as absolute dotted names.

    `from kmtool import units` yields `kmtool.units` (the imported name may be a module);
    relative imports are resolved against the module's own package.
    """
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                prefix = ".".join(base[:keep])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    """Package -> the other kmtool packages its modules import."""
    modules = {path: _module_name(path) for path in sorted(PACKAGE_ROOT.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module in modules.values():
        package = _package_of(module)
        if package is not None:
            graph.setdefault(package, set())
    for path, module in modules.items():
        source = _package_of(module)
        if source is None:
            continue
        for target in _imported_modules(path):
            package = _package_of(target)
            if package in graph and package != source:  # `from kmtool import X`: X may be a name
                graph[source].add(package)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None when the graph is acyclic."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_stack:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def test_graph_sees_the_packages() -> None:
    graph = package_graph()
    assert {"kmtool.cli", "kmtool.dump", "kmtool.layout", "kmtool.schemas"} <= set(graph)
    assert "kmtool.layout" in graph["kmtool.cli"]  # a deferred import inside a command counts


def test_no_import_cycle_between_packages() -> None:
    cycle = find_cycle(package_graph())
    assert cycle is None, "kmtool's packages import each other in a cycle: " + " -> ".join(cycle)


def test_the_leaves_import_nothing_of_kmtool() -> None:
    graph = package_graph()
    assert graph["kmtool.schemas"] == set()
    assert graph["kmtool.units"] == set()
    assert graph["kmtool.errors"] == set()


def test_find_cycle_names_the_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# -- size limits -----------------------------------------------------------------------------------


def _sources() -> list[Path]:
    return sorted(PACKAGE_ROOT.rglob("*.py"))


def _relative(path: Path) -> str:
    """`kmtool/dump/pagetable.py` for a module of the package."""
    return path.relative_to(PACKAGE_ROOT.parent).as_posix()


def function_lengths(source: str) -> dict[str, int]:
    """Qualified name (`Class.method`, `outer.inner`) -> lines of every function in `source`,
    from its `def` line to its `end_lineno` (decorators are not counted)."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    lengths[name] = child.end_lineno - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def type_ignore_lines(source: str) -> list[int]:
    """Line numbers of the comments in `source` that say `type: ignore`, however spaced (a string
    that says it does not count)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [
        tok.start[0]
        for tok in tokens
        if tok.type == tokenize.COMMENT and TYPE_IGNORE.search(tok.string)
    ]


def test_no_module_is_over_the_limit() -> None:
    over = [
        f"{_relative(path)} has {lines} lines"
        for path in _sources()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not over, f"Modules over {MAX_MODULE_LINES} lines: " + "; ".join(over) + "."


def test_no_function_is_over_the_limit() -> None:
    over = []
    for path in _sources():
        for name, lines in function_lengths(path.read_text()).items():
            key = f"{_relative(path)}:{name}"
            if lines > MAX_FUNCTION_LINES and key not in FUNCTION_EXCEPTIONS:
                over.append(f"{key} has {lines} lines")
    assert not over, f"Functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(over) + "."


def test_every_function_exception_is_still_needed() -> None:
    lengths = {
        f"{_relative(path)}:{name}": lines
        for path in _sources()
        for name, lines in function_lengths(path.read_text()).items()
    }
    stale = [
        f"{key} ({'gone' if key not in lengths else f'{lengths[key]} lines'})"
        for key in FUNCTION_EXCEPTIONS
        if lengths.get(key, 0) <= MAX_FUNCTION_LINES
    ]
    assert not stale, "FUNCTION_EXCEPTIONS names functions within the limit: " + "; ".join(stale)


def test_no_type_ignore_in_the_dump_package() -> None:
    found = []
    for path in sorted(NO_TYPE_IGNORE_UNDER.rglob("*.py")):
        lines = type_ignore_lines(path.read_text())
        if lines:
            where = ", ".join(str(n) for n in lines)
            found.append(f"{_relative(path)} has {len(lines)} (line {where})")
    assert not found, "`# type: ignore` comments in kmtool/dump: " + "; ".join(found) + "."


def test_the_measures_count_what_they_say() -> None:
    source = (
        "@decorator\n"
        "def f():\n"
        "    def inner():\n"
        "        return 1\n"
        "    return inner\n"
        "class C:\n"
        "    async def m(self):  # type:ignore[no-untyped-def]\n"
        "        return 'type: ignore'\n"
    )
    assert function_lengths(source) == {"f": 4, "f.inner": 2, "C.m": 2}
    assert type_ignore_lines(source) == [7]
