#!/usr/bin/env bash
# Published benchmark results reproduce from the committed raw data:
#
# 0. scripts/bench-table-test.py: the counting rules (a scenario ferromq
#    moved nothing in is a loss, another broker's failures stay out of the
#    ratios) and the check itself, on made-up data;
# 1. every table in BENCHMARKS.md, README.md, docs/ and bench-client/results/
#    is the output of the scripts/bench-table.py command named on the
#    `Table:` line above it: each is regenerated from the committed JSON and
#    any difference fails, with a diff (`scripts/bench-table.py check --write`
#    rewrites them instead);
# 2. every docs/bench/<run>/report.html is what `ferromq-bench report` makes
#    today from the JSON beside it (ferromq.json, activemq.json,
#    rabbitmq.json, in that order, those present), so the published report
#    shows the current viewer. To refresh one after a viewer change:
#      ferromq-bench report docs/bench/RUN/{ferromq,activemq,rabbitmq}.json -o docs/bench/RUN/report.html
#
#   scripts/bench-tables-check.sh [--tables-only]
set -euo pipefail
cd "$(dirname "$0")/.."
# The counting rules themselves first (small made-up results files).
if ! rules="$(python3 scripts/bench-table-test.py 2>&1)"; then
  echo "$rules" >&2
  exit 1
fi
echo "bench-table.py rules: ${rules##*$'\n'}" >&2
python3 scripts/bench-table.py check
[ "${1:-}" = "--tables-only" ] && exit 0

cargo build -q --locked -p ferromq-bench
bench="${CARGO_TARGET_DIR:-target}/debug/ferromq-bench"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
stale=0
checked=0
for page in docs/bench/*/report.html; do
  dir="$(dirname "$page")"
  inputs=()
  for broker in ferromq activemq rabbitmq; do
    if [ -f "$dir/$broker.json" ]; then inputs+=("$dir/$broker.json"); fi
  done
  if ! "$bench" report "${inputs[@]}" -o "$tmp/report.html" >"$tmp/log" 2>&1; then
    cat "$tmp/log" >&2
    exit 1
  fi
  checked=$((checked + 1))
  if ! cmp -s "$tmp/report.html" "$page"; then
    echo "$page differs from: ferromq-bench report ${inputs[*]}" >&2
    stale=$((stale + 1))
  fi
done
echo "$checked reports checked, $stale differ" >&2
[ "$stale" -eq 0 ]
