"""The product has no import circle: lediff_core, nodes, lediff_train and lediff_runner, read
statically, function-local imports included (a circle that only closes inside a function still
breaks when that function runs first in a fresh process, or when the code is moved up to the top).

An edge A -> B means module A names module B in an import: ``import B``, ``from B import x``, or
``from P import B`` for a submodule B of P; ``from . import x`` inside a package's module depends on
the package's ``__init__`` (which is the usual half of a circle: the ``__init__`` imports the
module, the module imports names from the half-initialised package)."""

from __future__ import annotations

from pathlib import Path

from support.common import REPO, imports

PACKAGES = ("lediff_core", "nodes", "lediff_train", "lediff_runner")


def modules_of(root: Path, packages) -> dict[str, Path]:
    """{dotted module name: file} of every .py file under the packages (a package is its __init__)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """{module: the product modules it imports}, from every import statement anywhere in the file."""
    modules = modules_of(root, packages)
    graph = {}
    for name, path in modules.items():
        named = imports(path, root)
        graph[name] = {m for m in named if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

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
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_product_has_no_import_circle():
    graph = import_graph(Path(REPO))
    assert {name.split(".")[0] for name in graph} == set(PACKAGES) and len(graph) > 50
    assert "lediff_core.io.display.registry" in graph["lediff_core.io.display.avif"]
    found = circles(graph)
    assert not found, "import circles (move what both sides need into a module of its own): " + "; ".join(
        " <-> ".join(group) for group in found)


def test_the_graph_sees_circles_through_packages_and_function_local_imports(tmp_path):
    # the shapes this repository had: a package whose __init__ imports modules that import from it,
    # and three modules whose circle closes through an import inside a function
    files = {
        "pkg/__init__.py": "from . import fmt\n",
        "pkg/fmt.py": "from . import register\n",
        "pkg/train/__init__.py": "",
        "pkg/train/data.py": "from .prepare import FORMAT\n",
        "pkg/train/prepare.py": "def run():\n    from . import engine\n",
        "pkg/train/engine.py": "from pkg.train import data\n",
        "pkg/train/free.py": "import pkg.train.data\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = circles(import_graph(tmp_path, ("pkg",)))
    assert sorted(found) == [["pkg", "pkg.fmt"], ["pkg.train.data", "pkg.train.engine", "pkg.train.prepare"]]
