#!/usr/bin/env bash
# Runs one benchmark of benchmarks/ as a module with the development host's Python, the test
# helpers (tests/) and scripts/ importable, after the idempotent set-up; e.g. scripts/bench.sh bench_precision --repeat 3
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
name="${1:?usage: scripts/bench.sh BENCHMARK [ARGS...] (a file name in benchmarks/, without .py)}"
shift
PYTHONPATH="$ROOT:$ROOT/tests:$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" exec "$ROOT/.dev/venv/bin/python" -m "benchmarks.${name%.py}" "$@"
