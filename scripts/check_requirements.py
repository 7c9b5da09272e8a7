"""Checks that the pack's requirements install into an existing ComfyUI without replacing what the
host owns: asks pip's resolver (``pip install --dry-run --report``) what it would install for
``requirements.txt``, for ``requirements-metrics.txt`` (with ``--no-deps``, the documented way) and for
``requirements-train.txt`` (the training recipe)
and fails if that would install or change torch, torchvision, torchaudio, numpy or any package
ComfyUI's own requirements pin with ``==``.

Usage: python scripts/check_requirements.py [--comfyui DIR] [extra pip arguments, e.g. --no-index]
Runs with the Python of the ComfyUI it checks. Exit status 1 and a message naming the packages
when something would be replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTECTED = {"torch", "torchvision", "torchaudio", "numpy"}
# (requirements file, extra pip options): the way docs/nodes.md (HDR Metrics) tells users to install each
FILES = (("requirements.txt", []), ("requirements-metrics.txt", ["--no-deps"]), ("requirements-train.txt", []))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def host_pins(comfyui: str | None) -> set[str]:
    """Names ComfyUI's requirements.txt pins with == (plus the torch stack and numpy)."""
    names = {canonical(n) for n in PROTECTED}
    path = os.path.join(comfyui, "requirements.txt") if comfyui else None
    if path and os.path.isfile(path):
        for line in open(path, encoding="utf-8"):
            m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==", line)
            if m:
                names.add(canonical(m.group(1)))
    return names


def would_install(req_file: str, options: list[str], pip_args: list[str]) -> list[tuple[str, str]]:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--disable-pip-version-check",
        "--report",
        "-",
        *options,
        *pip_args,
        "-r",
        req_file,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"pip could not resolve {req_file}:\n{out.stderr.strip()}")
    report = json.loads(out.stdout)
    return [(item["metadata"]["name"], item["metadata"]["version"]) for item in report.get("install", [])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comfyui", help="ComfyUI folder whose requirements.txt pins are protected")
    args, pip_args = ap.parse_known_args(argv)
    protected = host_pins(args.comfyui)
    failures = []
    for name, options in FILES:
        path = os.path.join(ROOT, name)
        changes = would_install(path, options, pip_args)
        hit = [f"{n}=={v}" for n, v in changes if canonical(n) in protected]
        summary = ", ".join(f"{n}=={v}" for n, v in changes) or "nothing"
        print(f"[check_requirements] {name} {' '.join(options)}: would install {summary}")
        if hit:
            failures.append(f"{name} would replace {', '.join(hit)}")
    if failures:
        print("[check_requirements] REFUSED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
