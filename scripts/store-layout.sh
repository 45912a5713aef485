#!/usr/bin/env bash
# Runs the store layout measurements of docs/store-layout.md and appends one
# JSON line per run to docs/store-layout/<set>.jsonl. Usage:
#   scripts/store-layout.sh [set...]   (sets: layouts config large wal; default all)
# Each configuration runs twice. The working directory is under target/ and
# is removed after every run (DIR= sets another, to run two sets at once).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ferromq-broker --example store_layout
bin=target/release/examples/store_layout
out=docs/store-layout
runs=${RUNS:-2}
n1=${N1:-20000}     # one message per flush: one fsync per message
n10=${N10:-100000}  # ten and a hundred per flush
nbig=${NBIG:-200}   # 10 MB bodies
dir=${DIR:-target/store-layout-data}

run() { # set, then store_layout options
    local set=$1; shift
    for r in $(seq 1 "$runs"); do
        "$bin" --dir "$dir" --out "$out/$set.jsonl" --label "run$r" "$@"
    done
}

layouts() {
    for layout in current log log-ref files; do
        run layouts --layout "$layout" --per-flush 1 --messages "$n1"
        run layouts --layout "$layout" --per-flush 10 --messages "$n10"
        run layouts --layout "$layout" --per-flush 100 --messages "$n10"
    done
    run layouts --layout files --inline-max 4096 --per-flush 1 --messages "$n1"
    run layouts --layout files --inline-max 4096 --per-flush 10 --messages "$n10"
}

config() {
    for layout in current log-ref; do
        run config --layout "$layout" --per-flush 10 --messages "$n10" --mode high-throughput
        run config --layout "$layout" --per-flush 10 --messages "$n10" --segment-size 65536
        run config --layout "$layout" --per-flush 10 --messages "$n10" --segment-size 8388608
        run config --layout "$layout" --per-flush 10 --messages "$n10" --cache 16777216
        run config --layout "$layout" --per-flush 10 --messages "$n10" --cache 1073741824
        run config --layout "$layout" --per-flush 10 --messages "$n10" --flush-every-ms 500
    done
    run config --layout current --per-flush 1 --messages "$n1" --segment-size 65536
    run config --layout current --per-flush 1 --messages "$n1" --mode high-throughput
}

large() {
    for layout in current log-ref files; do
        run large --layout "$layout" --per-flush 10 --messages "$nbig" --body 10000000
    done
}

wal() {
    run wal --layout wal --per-flush 1 --messages "$n1"
    run wal --layout wal --per-flush 10 --messages "$n10"
    run wal --layout wal --per-flush 100 --messages "$n10"
    run wal --layout wal --per-flush 10 --messages "$n10" --index-flush-every 10
    run wal --layout wal --per-flush 10 --messages "$n10" --index-flush-every 1000
    run wal --layout wal --per-flush 10 --messages "$nbig" --body 10000000
}

sets=("$@")
[ ${#sets[@]} -eq 0 ] && sets=(layouts config large wal)
for s in "${sets[@]}"; do "$s"; done
