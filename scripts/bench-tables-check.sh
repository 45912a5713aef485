#!/usr/bin/env bash
# Every benchmark table in BENCHMARKS.md, README.md, docs/ and
# bench-client/results/ is the output of the scripts/bench-table.py command
# named on the `Table:` line above it. This regenerates each from the
# committed JSON and fails, printing a diff, if any differs by a byte.
# (`scripts/bench-table.py check --write` rewrites them instead.)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/bench-table.py check
