#!/usr/bin/env bash
# Runs the whole test suite with the development host's Python, building the host first
# (scripts/setup.sh is idempotent: seconds when everything is already there).
# Extra arguments go to pytest, e.g. scripts/test.sh -k exr
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.dev/venv/bin/python" -m pytest "$@"
