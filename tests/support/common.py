"""Paths and small helpers every kind of test uses (a plain module: pytest's conftest is not importable
by name)."""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(REPO, "tests", "data")
HDRI_DIR = os.path.join(DATA, "hdri")
HDRIS = sorted(f for f in os.listdir(HDRI_DIR) if f.endswith(".exr"))


def require_tool(name: str) -> str:
    """Path of a command-line tool the tests rely on; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run scripts/setup.sh (installs Debian's openexr tools)")
    return path


def real_time_threads() -> list[tuple[int, str]]:
    """This process's threads under a real-time policy (SCHED_FIFO or SCHED_RR), as (id, name)."""
    found = []
    for tid in os.listdir("/proc/self/task"):
        try:
            if os.sched_getscheduler(int(tid)) in (os.SCHED_FIFO, os.SCHED_RR):
                with open(f"/proc/self/task/{tid}/comm") as f:
                    found.append((int(tid), f.read().strip()))
        except OSError:
            pass  # a thread that has just ended
    return found


@contextlib.contextmanager
def small_disk(path, size_kb):
    """``path`` as an empty file system of ``size_kb`` (tmpfs); skips where mounting is not allowed."""
    os.makedirs(path)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", path],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)


def imports(path, root: str = REPO) -> set[str]:
    """Absolute names of the modules a file imports, at any depth (function-local imports too;
    relative imports resolved against ``root``, the repository by default)."""
    package = list(Path(path).relative_to(root).parts[:-1])  # of a module and of a package's __init__ alike
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names
