"""DESIGN's layering as code: the import arrows, the foreign-library homes and no cycles.

Every module under ``src/abflow`` is parsed (``ast``, nothing is imported), and every import
statement counts: top-level, inside functions and under ``TYPE_CHECKING``, plus the lazy
re-exports a package ``__init__`` names as strings (``"abflow.serving.app"``). Importing
``a.b.c`` from outside ``a.b`` runs ``a/b/__init__.py`` too, so that is an arrow to the
package as well. docs/architecture.md explains the layers for contributors.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("settings", "targeting"),
    ("spec",),
    ("routing", "stats", "drift", "security", "features"),
    ("store",),
    ("events", "registry", "analysis", "monitoring"),
    ("rollout",),
    ("dashboard",),
    ("serving",),
    ("deploy",),
    ("demo",),
    ("cli",),
)
"""Bottom first: a part imports only parts in lower layers (and itself). ``abflow/__init__``
(the public facade, lazy) stands outside the layers."""

HOMES: Mapping[str, tuple[str, ...]] = {
    "sqlalchemy": ("store",),
    "alembic": ("store",),
    "fastapi": ("serving", "dashboard"),
    "starlette": ("serving", "dashboard"),
    "mlflow": ("registry",),
}
"""The only parts that may import a foreign library (the dashboard is served by the gateway)."""

PURE = ("targeting", "routing", "stats", "drift")
IO_MODULES = frozenset(
    {
        "os",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "socket",
        "subprocess",
        "sqlite3",
        "asyncio",
        "urllib",
        "http",
        "httpx",
        "requests",
        "uvicorn",
        "logging",
        *HOMES,
    }
)
"""What a pure part may not import: files, processes, network, databases, web, logging."""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def part(self) -> str:
        """The top-level part (``store`` for ``abflow.store.writer``); ``""`` for the root."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else ""


def find_modules(src: Path, root: str = "abflow") -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = Module(name, path, is_package)
    return modules


def imported_names(module: Module) -> list[str]:
    """Every dotted name ``module`` imports, anywhere in its body (absolute form)."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        elif (
            module.is_package
            and isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("abflow.")
        ):
            names.append(node.value)  # a lazy re-export: importlib.import_module(that)
    return names


def _nearest(name: str, modules: Mapping[str, Module]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    """Module -> the modules its import statements run (within the package)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, module in modules.items():
        for imported in imported_names(module):
            target = _nearest(imported, modules)
            if target is None or target == name:
                continue
            graph[name].add(target)
            ancestor = target.rpartition(".")[0]
            while ancestor:  # importing a.b.c runs a/b/__init__ unless we are inside a.b
                if ancestor in modules and not name.startswith(ancestor + "."):
                    graph[name].add(ancestor)
                ancestor = ancestor.rpartition(".")[0]
    return graph


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        cycles.append(sorted(group))
    return cycles


def upward_imports(modules: Mapping[str, Module], graph: Mapping[str, Iterable[str]]) -> list[str]:
    rank = {part: level for level, parts in enumerate(LAYERS) for part in parts}
    found = []
    for name, targets in graph.items():
        source = modules[name].part
        for target in sorted(targets):
            part = modules[target].part
            if source and part != source and rank.get(part, -1) >= rank[source]:
                found.append(f"{name} -> {target}")
    return found


def misplaced_libraries(modules: Mapping[str, Module]) -> list[str]:
    found = []
    for name, module in modules.items():
        for imported in imported_names(module):
            top = imported.split(".")[0]
            if top in HOMES and module.part not in HOMES[top]:
                found.append(f"{name} imports {imported}")
    return found


def impure_modules(modules: Mapping[str, Module]) -> list[str]:
    found = []
    for name, module in modules.items():
        if module.part not in PURE:
            continue
        for imported in imported_names(module):
            if imported.split(".")[0] in IO_MODULES:
                found.append(f"{name} imports {imported}")
        tree = ast.parse(module.path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("open", "print", "input")
            ):
                found.append(f"{name}:{node.lineno} calls {node.func.id}()")
    return found


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    found = find_modules(SRC)
    assert len(found) > 150  # the probe sees the whole package
    return found


@pytest.fixture(scope="module")
def graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    return import_graph(modules)


def test_every_part_has_a_layer(modules: dict[str, Module]) -> None:
    placed = {part for parts in LAYERS for part in parts}
    parts = {module.part for module in modules.values()} - {""}
    assert sorted(parts - placed) == []
    assert len(parts) == 20


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert import_cycles(graph) == []


def test_nothing_imports_upward(modules: dict[str, Module], graph: dict[str, set[str]]) -> None:
    assert upward_imports(modules, graph) == []


def test_foreign_libraries_stay_in_their_homes(modules: dict[str, Module]) -> None:
    assert misplaced_libraries(modules) == []


def test_pure_parts_do_no_io(modules: dict[str, Module]) -> None:
    assert impure_modules(modules) == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """A made-up package with one of each fault: every check reports exactly it."""
    files = {
        "__init__.py": "",
        "errors.py": "",
        "spec.py": "from abflow.routing import assign\n",  # upward, and a cycle via __init__
        "routing/__init__.py": "from abflow.routing.experiment import assign\n",
        "routing/experiment.py": "import os\nfrom abflow.spec import x\n",
        "store/__init__.py": "from abflow.store.writer import write\n",
        "store/writer.py": "def write():\n    from abflow.store import engine\n",
        "store/engine.py": "import sqlalchemy\n",
        "serving/__init__.py": '_LAZY = {"create_app": "abflow.serving.app"}\n',
        "serving/app.py": "from abflow.serving import Thing\nimport mlflow.pyfunc\n",
    }
    for relative, text in files.items():
        path = tmp_path / "abflow" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found = find_modules(tmp_path)
    graph = import_graph(found)
    assert import_cycles(graph) == [
        ["abflow.routing", "abflow.routing.experiment", "abflow.spec"],
        ["abflow.serving", "abflow.serving.app"],
    ]
    assert upward_imports(found, graph) == ["abflow.spec -> abflow.routing"]
    assert misplaced_libraries(found) == ["abflow.serving.app imports mlflow.pyfunc"]
    assert impure_modules(found) == ["abflow.routing.experiment imports os"]


DOC = SRC.parent / "docs" / "architecture.md"


def test_the_doc_places_every_part_and_its_example_prints_what_it_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| (.+?) \|", text, flags=re.MULTILINE)
    documented = {int(level): sorted(re.findall(r"`(\w+)`", parts)) for level, parts in rows}
    assert documented == {level: sorted(parts) for level, parts in enumerate(LAYERS)}
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    shown = re.findall(r"prints\n\n```text\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == len(shown) == 1
    exec(compile(blocks[0], DOC.name, "exec"), {})
    assert capsys.readouterr().out == shown[0]
    assert shown[0].splitlines()[0] == "29 list"
