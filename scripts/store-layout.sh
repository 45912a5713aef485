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
    # On today's layout, where the settings matter most; N=50,000 to keep
    # the shared disk's time reasonable.
    local n=${NCONF:-50000}
    for opt in "--mode high-throughput" "--segment-size 65536" "--segment-size 8388608" \
        "--cache 16777216" "--cache 1073741824" "--flush-every-ms 500"; do
        # shellcheck disable=SC2086
        run config --layout current --per-flush 10 --messages "$n" $opt
    done
    run config --layout current --per-flush 1 --messages "$n1" --segment-size 65536
    run config --layout current --per-flush 1 --messages "$n1" --mode high-throughput
}

large() {
    # Not log-ref: with 10 MB bodies its sled files passed 26 GB before 200
    # messages were written (batch records of 100 MB rewritten as blobs);
    # the run was stopped to protect the shared disk.
    for layout in current files; do
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
    run wal --layout wal --index-per-commit --per-flush 1 --messages "$n1"
    run wal --layout wal --index-per-commit --per-flush 10 --messages "$n10"
}

sets=("$@")
[ ${#sets[@]} -eq 0 ] && sets=(layouts config large wal)
for s in "${sets[@]}"; do "$s"; done
