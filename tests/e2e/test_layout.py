"""The architecture the tree shows (docs/ARCHITECTURE.md): lediff_core is domain packages only, each
saying what it owns and may import; imports run one way (nodes -> core, runner -> nodes only
through ComfyUI, the training recipe -> core and never ComfyUI); importing all of lediff_core loads
no ComfyUI module, even with ComfyUI importable; the old flat module names say where they went.

The tests mirror the tree (docs/development.md): tests/core/<domain> for each core package, the host
tests in tests/nodes, tests/train, tests/runner, tests/e2e, helpers in tests/support; tests/core
imports nothing of ComfyUI, the nodes, the runner or the support modules that drive a host, and is
collected in a process where none of them can be imported."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lediff_core.model.backbones import BACKBONES
from support.comfy_harness import COMFY_ROOT
from support.common import REPO, imports

COMFY_MODULES = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "execution",
                 "server", "model_management", "node_helpers")

# What each core package may import of lediff_core (its __init__ docstring says the same in words).
CORE_DEPENDENCIES = {
    "color": set(),
    "io": {"color"},
    "model": {"color", "io"},
    "qa": {"color"},
    "panorama": {"color"},
    "video": {"color", "qa", "io"},
    "lens": {"color"},
}
ROOT = Path(REPO)

PROBE = """
import importlib, json, pkgutil, sys
import lediff_core
names = ["lediff_core"] + [m.name for m in pkgutil.walk_packages(lediff_core.__path__, "lediff_core.")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {modules!r})
print(json.dumps({{"imported": names, "comfy": loaded}}))
"""


def test_importing_lediff_core_loads_no_comfyui_module():
    # ComfyUI's root on the path too: a stray import would succeed silently, and is caught here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, COMFY_ROOT])}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(modules=COMFY_MODULES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {"lediff_core.model.hdr_vae", "lediff_core.model.vae", "lediff_core.model.weights",
                "lediff_core.io.exr", "lediff_core.io.display.avif", "lediff_core.panorama.equirect"}
    assert expected <= set(result["imported"])
    assert result["comfy"] == []


def test_lediff_core_is_domain_packages_that_say_what_they_own():
    entries = {p.name for p in (ROOT / "lediff_core").iterdir() if p.name != "__pycache__"}
    assert entries == {"__init__.py", *CORE_DEPENDENCIES}, "lediff_core/ holds only domain packages"
    for package in CORE_DEPENDENCIES:
        doc = ast.get_docstring(ast.parse((ROOT / "lediff_core" / package / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 30, f"lediff_core/{package}/__init__.py needs a paragraph"
        assert "import" in doc.lower(), f"lediff_core/{package}'s docstring must say what it may import"
        for other in CORE_DEPENDENCIES[package]:
            assert f"lediff_core.{other}" in doc or f"``{other}``" in doc, (package, other)


def test_nodes_mirror_the_core_packages():
    packages = {p.name for p in (ROOT / "nodes").iterdir() if (p / "__init__.py").is_file()}
    loose = {p.name for p in (ROOT / "nodes").glob("*.py")} - {"__init__.py"}
    assert packages <= set(CORE_DEPENDENCIES) and not loose, (packages, loose)


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(CORE_DEPENDENCIES))
def test_core_packages_import_only_what_they_declare(package):
    allowed = {package, *CORE_DEPENDENCIES[package]}
    for path in files(f"lediff_core/{package}"):
        for name in imports(path):
            parts = name.split(".")
            if parts[0] in ("nodes", "lediff_runner", "lediff_train") or parts[0] in COMFY_MODULES:
                pytest.fail(f"{path.relative_to(ROOT)} imports {name}: lediff_core never imports ComfyUI, "
                            "nodes or the runner")
            if parts[0] == "lediff_core" and len(parts) > 1 and parts[1] in CORE_DEPENDENCIES:
                assert parts[1] in allowed, f"{path.relative_to(ROOT)} imports {name}; {package} may import {allowed}"


def test_imports_run_one_way():
    for path in files("lediff_core"):
        assert not {n for n in imports(path) if n.split(".")[0] in ("nodes", "lediff_runner")}, path
    for path in files("lediff_runner"):
        # the runner drives ComfyUI, which loads the pack's nodes; it never imports them itself
        # (its ``import nodes`` is ComfyUI's top-level module)
        ours = {n for n in imports(path) if n.startswith("nodes.") and n.split(".")[1] in CORE_DEPENDENCIES}
        assert not ours, (path, ours)
    for path in files("nodes"):
        assert not {n for n in imports(path) if n.split(".")[0] in ("lediff_runner", "lediff_train")}, path
    # the training recipe builds on the core, never on ComfyUI, the nodes or the runner
    for path in files("lediff_train"):
        names = {n.split(".")[0] for n in imports(path)}
        assert not names & {"nodes", "lediff_runner", *COMFY_MODULES}, (path, names)
    assert "lediff_core" in {n.split(".")[0] for p in files("lediff_train") for n in imports(p)}


TESTS = ROOT / "tests"
# the support modules that start or drive ComfyUI (or import one that does): host tests only
HOST_SUPPORT = {"comfy_harness", "comfy_server", "frontends", "graphs", "workflows", "sequences", "big_photo"}
NOT_IN_CORE_TESTS = {"nodes", "lediff_runner", *COMFY_MODULES}


def test_tests_mirror_the_tree():
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {"core", "nodes", "train", "runner", "e2e", "support", "data"}, folders
    assert not [p.name for p in TESTS.glob("test_*.py")], "test files live in the folder of what they test"
    core = {p.name for p in (TESTS / "core").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert core == set(CORE_DEPENDENCIES), "tests/core has one folder per lediff_core package"
    nodes = {p.name for p in (TESTS / "nodes").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert nodes <= {p.name for p in (ROOT / "nodes").iterdir() if (p / "__init__.py").is_file()}, \
        "tests/nodes mirrors nodes/"
    helpers = {p.name for p in TESTS.rglob("*.py")
               if not p.name.startswith("test_") and p.name not in ("conftest.py", "__init__.py")}
    assert helpers == {p.name for p in (TESTS / "support").glob("*.py")} - {"__init__.py"}, \
        "helpers live in tests/support (fixtures in a conftest.py)"


def module_level_imports(path: Path) -> set[str]:
    """What importing the module itself imports (not what its functions import when called)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def host_imports(names) -> set[str]:
    return {n for n in names if n.split(".")[0] in NOT_IN_CORE_TESTS
            or (n.startswith("support.") and n.split(".")[1] in HOST_SUPPORT)}


def test_core_tests_need_no_comfyui():
    used = set()
    for path in files("tests/core"):
        names = imports(path)  # at any depth: a test's lazy import runs when the test does
        assert not host_imports(names), f"{path.relative_to(ROOT)} imports {sorted(host_imports(names))}: " \
            "tests/core imports nothing of ComfyUI, the nodes, the runner or the host helpers; " \
            "a test that needs them belongs in tests/nodes (or train, runner, e2e)"
        text = path.read_text()  # child processes' scripts too
        for word in ("comfy_harness", "ComfyHost", "folder_paths", "lediff_runner"):
            assert word not in text, f"{path.relative_to(ROOT)} mentions {word}"
        used |= {n.split(".")[1] for n in names if n.startswith("support.")}
    # what those support modules and the shared conftest import when loaded, transitively
    todo, seen = [TESTS / "conftest.py", *(TESTS / "support" / f"{m}.py" for m in used)], set()
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        names = module_level_imports(path)
        assert not host_imports(names), f"{path.relative_to(ROOT)} imports {sorted(host_imports(names))} when loaded"
        todo += [TESTS / "support" / f"{n.split('.')[1]}.py" for n in names if n.startswith("support.")]


BLOCKED_COLLECTION = """
import importlib.abc, sys
blocked = {blocked!r}
class NotHere(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked or name in blocked:
            raise ModuleNotFoundError(f"{{name}} cannot be imported here", name=name)
sys.meta_path.insert(0, NotHere())
import pytest
sys.exit(pytest.main(["tests/core", "--collect-only", "-q", "-p", "no:cacheprovider"]))
"""


def test_core_tests_are_collected_where_comfyui_cannot_be_imported():
    blocked = sorted(NOT_IN_CORE_TESTS | {f"support.{m}" for m in HOST_SUPPORT})
    proc = subprocess.run([sys.executable, "-c", BLOCKED_COLLECTION.format(blocked=blocked)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert int(re.search(r"(\d+) tests? collected", proc.stdout).group(1)) > 300, proc.stdout[-500:]


def test_old_module_names_say_where_they_moved():
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-m", "lediff_core.convert", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "lediff_core.convert moved to lediff_core.model.convert" in proc.stderr
    assert "python -m lediff_core.model.convert" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "lediff_core.model.convert", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: python -m lediff_core.model.convert" in proc.stdout, proc.stderr
    import lediff_core

    with pytest.raises(ImportError, match=r"lediff_core\.exr moved to lediff_core\.io\.exr"):
        import lediff_core.exr  # noqa: F401
    assert set(lediff_core.MOVED.values()) <= {
        f"{p}.{m.stem}" for p in CORE_DEPENDENCIES for m in (ROOT / "lediff_core" / p).iterdir()
        if m.suffix == ".py" or (m / "__init__.py").is_file()}


# ------------------------------------------------------------------ one record per backbone
BACKBONE_PRODUCT = ("lediff_core", "nodes", "lediff_train", "lediff_runner")


def product_files() -> list[Path]:
    return [ROOT / "__init__.py", *(p for d in BACKBONE_PRODUCT for p in files(d))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("backbone", BACKBONES, ids=lambda b: b.name)
def test_each_scaling_factor_is_written_in_one_product_module(backbone):
    literal = repr(backbone.scaling_factor)
    holders = [rel(p) for p in product_files() if literal in p.read_text()]
    assert holders == ["lediff_core/model/backbones.py"], holders


def test_one_function_per_side_answers_which_backbone():
    """The only product functions that return a Backbone are the two detectors; ComfyUI's model
    tables are imported by the ComfyUI half alone."""
    detectors, comfy_tables = [], set()
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
                if "Backbone" in ast.unparse(node.returns).replace("ComfyBackbone", ""):
                    detectors.append((rel(path), node.name))
            if isinstance(node, ast.Import):
                if any(a.name in ("comfy.latent_formats", "comfy.model_base", "comfy.supported_models")
                       for a in node.names):
                    comfy_tables.add(rel(path))
    assert sorted(detectors) == [("lediff_core/model/backbones.py", "identify"),
                                 ("nodes/model/backbones.py", "model_backbone")]
    assert comfy_tables == {"nodes/model/backbones.py"}
