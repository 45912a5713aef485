# Sourced by deep-queue.sh and cluster-deep-queue.sh: drains a deep
# backlog with 10 consumers (one per queue) and checks it, per producer,
# against the fill's manifest.
#
# One bench run drains until its consumers sit idle for --drain-timeout,
# which a slow read-back (a checkpoint's pause, a leader change) can end
# early, so runs are repeated until the queues are empty or DRAIN_IDLE_ROUNDS
# runs in a row drain nothing (at most DRAIN_ROUNDS runs): a deep queue's
# read-back after a restart was seen to deliver nothing for a whole run
# (25 s) and then go on. The order check's state carries from
# run to run (--order-state), so the last run's `order` is the verdict on
# the whole drain.
#
# The sourcing script defines `data_mb` (its data directories' MB) and sets
# BIN and OUT; the fill ran ferromq-bench with --manifest "$OUT/manifest.jsonl".
# Knobs: DRAIN_SAMPLES (one-second samples per run, default 20), DRAIN_ROUNDS
# (default 50), DRAIN_IDLE_ROUNDS (default 3), DRAIN_TIMEOUT_MS (how long a
# run's consumers may sit idle before it ends, default 30000: a deep store's
# delivery cycle (the log writer's commit of the delivery records, then the
# acks) took 3-11 s for 10,000 messages at 1.5M under load, and a run ended by
# a 5 s timeout returns its consumers' 10,000 prefetched messages to be
# delivered again, BENCHMARKS.md "Where the deep-queue drain stalls").
# Writes OUT/drain-N.json, appends (time, messages left, data MB) to
# OUT/depth.tsv, and OUT/order.txt (the verdict).

# drain_backlog URL FILLED QUEUED_COMMAND: sets DRAIN_LEFT to what is left.
drain_backlog() {
  local url=$1 before=$2 queued_cmd=$3 round left idle=0
  left=$before
  for round in $(seq "${DRAIN_ROUNDS:-50}"); do
    "$BIN/ferromq-bench" run --url "$url" --mode queue \
      --producers 0 --consumers 10 --destinations 10 --size 1024 \
      --samples "${DRAIN_SAMPLES:-20}" --warmup 0 --drain-timeout "${DRAIN_TIMEOUT_MS:-30000}" \
      --expect "$OUT/manifest.jsonl" --order-state "$OUT/order-state.json" \
      --out "$OUT/drain-$round.json" > /dev/null 2>> "$OUT/drain-stderr.txt" || true
    before=$left
    left=$($queued_cmd) || left=$before
    printf '%s\t%s\t%s\n' "$(date +%s.%N)" "$left" "$(data_mb)" >> "$OUT/depth.tsv"
    echo "drain round $round: $left messages left, load $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$left" -ge "$before" ]; then idle=$((idle + 1)); else idle=0; fi
    if [ "$left" -eq 0 ] || [ "$idle" -ge "${DRAIN_IDLE_ROUNDS:-3}" ]; then break; fi
  done
  DRAIN_LEFT=$left
  order_verdict "$OUT/drain-$round.json" > "$OUT/order.txt"
}

# order_verdict RESULTS_FILE: the order check's verdict in a drain's results.
order_verdict() {
  python3 - "$1" << 'PY'
import json, sys
try:
    o = json.load(open(sys.argv[1]))["scenarios"][-1]["order"]
except (OSError, ValueError, KeyError, IndexError) as e:
    sys.exit(f"no order verdict in {sys.argv[1]}: {e!r}")
print("order check (per producer, against the fill's manifest): "
      f"lost {o.get('lost')}, duplicated {o['duplicates']}, out of order {o['out_of_order']}, "
      f"redelivered {o['redelivered']} (flagged, allowed), received {o['received']}, "
      f"unconfirmed sends missing {o.get('unconfirmed_missing')} of {o.get('unconfirmed_sent')}, "
      f"producers {o['producers_seen']} seen of {o.get('producers_expected')}, "
      f"unknown producers {o.get('unknown_producers')}, unstamped {o['unstamped']}, "
      f"{'exact' if o['exact'] else 'NOT exact'}")
PY
}
