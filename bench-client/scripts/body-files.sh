#!/usr/bin/env bash
# Body files (issue 19 item 4), measured with the real broker: two ferromq
# builds (BASE: bodies inside sled's records; NEW: bodies in body files)
# alternated within each round (ABBA order across rounds), a fresh broker and
# data directory per run. Every run records the load average (the machine is
# shared): in bytes.jsonl, large.jsonl and small.jsonl, and loads.jsonl for
# the ActiveMQ runs.
#
#   bench-client/scripts/body-files.sh BASE_BIN NEW_BIN OUTDIR [bytes|large|small|all]
#   BASE_BIN/NEW_BIN: directories holding a release `ferromq` each; the
#   client is NEW_BIN/ferromq-bench for every run. BASE_BIN `-`: NEW (and
#   ActiveMQ in phase `large`) only, alternated as before.
#   env: ROUNDS=3  PORT=62973 ADMIN_PORT=62983 (must be free)
#        INLINE_MAX=4KiB: phase `bytes` also runs NEW_BIN with
#        store.body_inline_max set to it (build label `inline`), after `new`
#        ACTIVEMQ_URL=stomp://127.0.0.1:61713 (phase `large`: ActiveMQ 5.17
#        started by the caller with /work/shared/peers/activemq-start.sh)
#
# Phase `bytes`: persistent 1 KiB messages with a receipt per SEND and no
# consumer, 1 producer / 1 queue and 10 producers / 10 queues. The broker
# process's write_bytes (/proc/PID/io) and its count of messages written
# (ferromq_store_messages_written_total on /metrics; without a consumer every
# accepted message is written) are read 4 s after the client starts (after
# its 3 s warm-up) and again 10 s later; bytes per message = the difference
# of the first over the difference of the second. One JSON line per run in
# OUTDIR/bytes.jsonl.
#
# Phase `large`: persistent 10 MB bodies (10,000,000 bytes), 10 producers,
# 10 consumers, 10 queues (the matrix's queue-p-10p10d10c-10mb), 1 warm-up
# and 5 one-second samples, BASE, NEW and ActiveMQ in each round; the
# client's results file per run (OUTDIR/large-<build>-r<round>.json) and a
# JSON line per ferromq run in OUTDIR/large.jsonl with its write_bytes per
# message consumed and the size of its data directory at the end.
#
# Phase `small`: persistent 1 KiB bodies, 10 producers, 10 consumers, 10
# queues, receipt per SEND, 2 warm-up and 8 one-second samples, BASE and NEW
# in each round (inline bodies must cost nothing extra): the client's
# results file per run (OUTDIR/small-<build>-r<round>.json) and a line per
# run in OUTDIR/small.jsonl with the load average.
set -euo pipefail
cd "$(dirname "$0")/../.."
base="$1"; new="$2"; out="$3"; phase="${4:-all}"
rounds="${ROUNDS:-3}"
port="${PORT:-62973}"; admin_port="${ADMIN_PORT:-62983}"
amq="${ACTIVEMQ_URL:-stomp://127.0.0.1:61713}"
bench="$new/ferromq-bench"
mkdir -p "$out"
data="$(mktemp -d /tmp/body-files-bench.XXXXXX)"
pid=""; client=""
stop() {
  if [ -n "$client" ]; then kill "$client" 2>/dev/null || true; wait "$client" 2>/dev/null || true; client=""; fi
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
}
trap 'stop; rm -rf "$data"' EXIT
for p in "$port" "$admin_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "port $p is in use" >&2; exit 1; fi
done

commit_of() { cat "$1/COMMIT" 2>/dev/null || echo "?"; }
# The build labels of a round in the given order, without base when BASE_BIN is -.
labels() { if [ "$base" = - ]; then echo "${*//base/}"; else echo "$*"; fi; }
{
  echo "{\"base\": \"$(commit_of "$base")\", \"new\": \"$(commit_of "$new")\", \"client\": \"$bench\", \"rounds\": $rounds, \"inline_max\": \"${INLINE_MAX:-}\", \"started\": \"$(date -u +%FT%TZ)\"}"
} > "$out/run-$phase.json"

inline_max="${INLINE_MAX:-}"
if [ -n "$inline_max" ]; then printf '[store]\nbody_inline_max = "%s"\n' "$inline_max" > "$data/inline.toml"; fi
start_broker() { # bin label [config]
  rm -rf "$data/data"
  local config=()
  if [ -n "${3:-}" ]; then config=(--config "$3"); fi
  "$1/ferromq" "${config[@]}" --stomp "127.0.0.1:$port" --stomp-tls "" --native "" --native-tls "" \
    --websocket "" --websocket-tls "" --admin "127.0.0.1:$admin_port" \
    --data-dir "$data/data" > "$data/log-$2" 2>&1 &
  pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  kill -0 "$pid" || { echo "ferromq ($2) did not start:" >&2; cat "$data/log-$2" >&2; exit 1; }
}
write_bytes() { awk '/^write_bytes:/ {print $2}' "/proc/$pid/io"; }
written() {
  curl -sf "http://127.0.0.1:$admin_port/metrics" | awk '/^ferromq_store_messages_written_total / {print $2}'
}
dir_bytes() { du -sb "$1" 2>/dev/null | cut -f1 || echo 0; }

if [ "$phase" = bytes ] || [ "$phase" = all ]; then
  for round in $(seq "$rounds"); do
    order="base new"; if [ $((round % 2)) = 0 ]; then order="new base"; fi
    if [ -n "$inline_max" ]; then
      order="base new inline"; if [ $((round % 2)) = 0 ]; then order="inline new base"; fi
    fi
    for scenario in "1p|1" "10p|10"; do
      name="${scenario%%|*}"; n="${scenario#*|}"
      for label in $order; do
        config=""
        case "$label" in
          base) bin="$base" ;;
          new) bin="$new" ;;
          inline) bin="$new"; config="$data/inline.toml" ;;
        esac
        start_broker "$bin" "$label-$name-$round" "$config"
        timeout 60 "$bench" run --url "stomp://127.0.0.1:$port" --mode queue --persistent \
          --producers "$n" --consumers 0 --destinations "$n" --size 1024 \
          --warm-up-count 3 --sample-count 12 --drain-timeout 0 \
          -o "$data/bytes-$label-$name-$round.json" > /dev/null 2>&1 &
        client=$!
        sleep 4
        w0=$(write_bytes); m0=$(written); t0=$(date +%s.%N)
        sleep 10
        w1=$(write_bytes); m1=$(written); t1=$(date +%s.%N)
        wait "$client" || true; client=""
        store=$(dir_bytes "$data/data/store"); bodies=$(dir_bytes "$data/data/bodies")
        stop
        python3 - "$label" "$name" "$round" "$w0" "$w1" "$m0" "$m1" "$t0" "$t1" "$store" "$bodies" "$(cat /proc/loadavg)" >> "$out/bytes.jsonl" <<'EOF'
import json, sys
label, name, rnd, w0, w1, m0, m1, t0, t1, store, bodies, load = sys.argv[1:]
w = int(w1) - int(w0); m = float(m1) - float(m0); s = float(t1) - float(t0)
print(json.dumps({"build": label, "scenario": name, "round": int(rnd), "window_s": round(s, 2),
                  "write_bytes": w, "messages": int(m),
                  "kb_per_message": round(w / m / 1000, 2) if m else None,
                  "msg_per_s": round(m / s, 1), "store_dir_bytes": int(store),
                  "bodies_dir_bytes": int(bodies), "loadavg": load}))
EOF
        tail -1 "$out/bytes.jsonl"
      done
    done
  done
fi

if [ "$phase" = large ] || [ "$phase" = all ]; then
  flags=(--mode queue --persistent --producers 10 --consumers 10 --destinations 10 --size 10000000
         --warm-up-count 1 --sample-count 5 --drain-timeout 2000)
  for round in $(seq "$rounds"); do
    order="base new activemq"; if [ $((round % 2)) = 0 ]; then order="activemq new base"; fi
    for label in $(labels $order); do
      if [ "$label" = activemq ]; then
        load="$(cat /proc/loadavg)"
        timeout 120 "$bench" run --url "$amq" "${flags[@]}" --broker-name activemq \
          -o "$out/large-activemq-r$round.json" > /dev/null 2>&1 || echo "activemq r$round failed" >&2
        printf '{"build": "activemq", "round": %s, "loadavg": "%s"}\n' "$round" "$load" >> "$out/loads.jsonl"
        continue
      fi
      if [ "$label" = base ]; then bin="$base"; else bin="$new"; fi
      start_broker "$bin" "large-$label-$round"
      w0=$(write_bytes)
      timeout 120 "$bench" run --url "stomp://127.0.0.1:$port" "${flags[@]}" --broker-name "$label" \
        -o "$out/large-$label-r$round.json" > /dev/null 2>&1 || echo "$label r$round failed" >&2
      w1=$(write_bytes); m=$(written)
      store=$(dir_bytes "$data/data/store"); bodies=$(dir_bytes "$data/data/bodies")
      stop
      python3 - "$label" "$round" "$w0" "$w1" "$m" "$store" "$bodies" "$out/large-$label-r$round.json" "$(cat /proc/loadavg)" >> "$out/large.jsonl" <<'EOF'
import json, sys
label, rnd, w0, w1, m, store, bodies, results, load = sys.argv[1:]
consumed = 0
try:
    for s in json.load(open(results))["scenarios"]:
        consumed += sum(s.get("consumer tp", []))
except (OSError, ValueError, KeyError):
    pass
w = int(w1) - int(w0)
print(json.dumps({"build": label, "round": int(rnd), "write_bytes": w,
                  "messages_written": int(float(m or 0)), "consumed_in_samples": consumed,
                  "store_dir_bytes_after": int(store), "bodies_dir_bytes_after": int(bodies),
                  "loadavg": load}))
EOF
      tail -1 "$out/large.jsonl"
    done
  done
fi

if [ "$phase" = small ] || [ "$phase" = all ]; then
  flags=(--mode queue --persistent --producers 10 --consumers 10 --destinations 10 --size 1024
         --warm-up-count 2 --sample-count 8 --drain-timeout 2000)
  for round in $(seq "$rounds"); do
    order="base new"; if [ $((round % 2)) = 0 ]; then order="new base"; fi
    for label in $order; do
      if [ "$label" = base ]; then bin="$base"; else bin="$new"; fi
      start_broker "$bin" "small-$label-$round"
      load="$(cat /proc/loadavg)"
      timeout 120 "$bench" run --url "stomp://127.0.0.1:$port" "${flags[@]}" --broker-name "$label" \
        -o "$out/small-$label-r$round.json" > /dev/null 2>&1 || echo "$label r$round failed" >&2
      stop
      printf '{"build": "%s", "round": %s, "loadavg": "%s", "loadavg_after": "%s"}\n' \
        "$label" "$round" "$load" "$(cat /proc/loadavg)" >> "$out/small.jsonl"
      tail -1 "$out/small.jsonl"
    done
  done
fi
