#!/usr/bin/env bash
# Deep persistent queues (issue 19): 10 producers fill 10 queues with
# persistent 1 KiB messages, nobody consuming, until the queues hold COUNT
# messages (or the data directory reaches MAX_DATA_MB); the broker's VmRSS is
# sampled every second throughout. Then kill -9, restart, and the time from
# the restart to the first delivery of a queued message; then 10 consumers
# drain everything (drain-backlog.sh), checking per producer that nothing
# receipted is lost, nothing duplicated and nothing out of order against the
# fill's manifest (the fill's producers stamp their messages).
#
#   COUNT=1000000 bench-client/scripts/deep-queue.sh OUT_DIR
#
# Knobs: COUNT (messages, default 1000000), MAX_DATA_MB (default 2800: the
# disk budget), BIN (directory of release binaries, default target/release),
# DATA (data directory, default /tmp/ferromq-deep-queue, deleted at the end),
# CONFIG (a configuration file for the broker; default none: the embedded
# defaults), STOMP and ADMIN (the broker's listen addresses, default
# 127.0.0.1:61953 and 127.0.0.1:18193: two runs at once need their own).
# Writes into OUT_DIR: rss.tsv (unix time, phase, VmRSS KiB, 1-minute load
# average), fill-N.json and drain-N.json (ferromq-bench; the drain is
# repeated until the queues are empty or a round drains nothing), depth.tsv
# (time, messages queued, data directory MB), manifest.jsonl (what each fill
# producer sent and had receipted), order-state.json and order.txt (the
# order check), restart.txt, broker-*.log, summary.txt.
set -euo pipefail
. "$(dirname "$0")/drain-backlog.sh"
OUT=${1:?usage: deep-queue.sh OUT_DIR}
COUNT=${COUNT:-1000000}
MAX_DATA_MB=${MAX_DATA_MB:-2800}
BIN=${BIN:-target/release}
DATA=${DATA:-/tmp/ferromq-deep-queue}
STOMP=${STOMP:-127.0.0.1:61953}
ADMIN=${ADMIN:-127.0.0.1:18193}
mkdir -p "$OUT"
rm -rf "$DATA"
rm -f "$OUT/manifest.jsonl" "$OUT/order-state.json"
PHASE_FILE=$(mktemp)
PID_FILE=$(mktemp)
echo fill > "$PHASE_FILE"

start_broker() {
  # Only the listeners it uses: the others default to fixed ports that
  # another broker on this machine may hold.
  "$BIN/ferromq" ${CONFIG:+-c "$CONFIG"} --stomp "$STOMP" --admin "$ADMIN" --data-dir "$DATA" \
    --native "" --websocket "" \
    > "$OUT/broker-$1.log" 2>&1 &
  BROKER=$!
  echo "$BROKER" > "$PID_FILE"
  # Up to 30 s: a deep store's open takes a while on a loaded machine.
  for _ in $(seq 600); do
    curl -sf "http://$ADMIN/healthz" > /dev/null && return 0
    sleep 0.05
  done
  echo "broker did not start" >&2
  exit 1
}

sample_rss() {
  while true; do
    pid=$(cat "$PID_FILE")
    if [ -r "/proc/$pid/status" ]; then
      kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2> /dev/null || true)
      [ -n "$kib" ] && printf '%s\t%s\t%s\t%s\n' "$(date +%s.%N)" "$(cat "$PHASE_FILE")" "$kib" \
        "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/rss.tsv"
    fi
    sleep 1
  done
}

queued() {
  curl -sf "http://$ADMIN/api/destinations" | python3 -c '
import json, sys
v = json.load(sys.stdin)
items = v if isinstance(v, list) else v.get("destinations", v.get("items", []))
print(sum(d.get("messages", 0) for d in items if str(d.get("name", "")).startswith("/queue/")))'
}

data_mb() { du -sm "$DATA" | cut -f1; }

start_broker 1
sample_rss &
SAMPLER=$!
trap 'kill $SAMPLER 2> /dev/null || true; kill -9 $BROKER 2> /dev/null || true; rm -rf "$DATA" "$PHASE_FILE" "$PID_FILE"' EXIT

# Fill, ten seconds at a time, until COUNT or the disk budget.
fill_started=$(date +%s.%N)
round=0
while true; do
  round=$((round + 1))
  "$BIN/ferromq-bench" run --url "stomp://$STOMP" --mode queue --persistent --async-send \
    --producers 10 --consumers 0 --destinations 10 --size 1024 --samples 10 --warmup 0 \
    --no-drain --manifest "$OUT/manifest.jsonl" --out "$OUT/fill-$round.json" > /dev/null
  n=$(queued)
  mb=$(data_mb)
  printf '%s\t%s\t%s\n' "$(date +%s.%N)" "$n" "$mb" >> "$OUT/depth.tsv"
  echo "fill round $round: $n messages queued, data directory $mb MB"
  fill_mb=$mb
  if [ "$n" -ge "$COUNT" ] || [ "$mb" -ge "$MAX_DATA_MB" ]; then break; fi
done
fill_ended=$(date +%s.%N)
filled=$(queued)
curl -sf "http://$ADMIN/metrics" | grep -E '^ferromq_store_' > "$OUT/store-metrics-after-fill.txt" || true

# kill -9, restart, first delivery.
echo restart > "$PHASE_FILE"
kill -9 "$BROKER"
wait "$BROKER" 2> /dev/null || true
restart_began=$(date +%s.%N)
# The probe starts with the broker and connects as soon as the STOMP port
# answers (retrying every 10 ms), so the figure is the broker's, not this
# script's health polling. It takes the first message without acking it
# (prefetch 1): the message goes back to its queue when the probe leaves.
python3 - "$STOMP" "$restart_began" > "$OUT/restart.txt" << 'EOF' &
import socket, sys, time
host, port = sys.argv[1].split(":")
began = float(sys.argv[2])
deadline = time.time() + 120
while True:
    try:
        s = socket.create_connection((host, int(port)))
        break
    except OSError:
        if time.time() > deadline:
            raise SystemExit("the broker did not listen within 120 s")
        time.sleep(0.01)
s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
buf = b""
while b"\0" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        raise SystemExit("connection closed before CONNECTED")
    buf += chunk
# The bench's queues: any of them; the first one it names.
s.sendall(b"SUBSCRIBE\nid:0\ndestination:/queue/loadq-0\nack:client-individual\nactivemq.prefetchSize:1\n\n\0")
buf = b""
while b"MESSAGE" not in buf:
    chunk = s.recv(65536)
    if not chunk:
        raise SystemExit("connection closed before a MESSAGE")
    buf += chunk
print(f"first delivery {time.time() - began:.3f} s after the restart began (process start included)")
EOF
PROBE=$!
start_broker 2
wait "$PROBE"
# What the store recovered (its log line).
recovered=$(grep -m1 'store opened' "$OUT/broker-2.log" | grep -o ' messages=[0-9]*' | cut -d= -f2)
echo "recovered after the restart: $recovered messages (async sends still in the writer's queue at the kill may be lost)" >> "$OUT/restart.txt"
# Full recovery: the store open (its log line's elapsed_ms) and the broker
# ready (its 'ferromq started' line), from the restart.
python3 - "$OUT/broker-2.log" "$restart_began" >> "$OUT/restart.txt" << 'EOF'
import datetime, re, sys
began = float(sys.argv[2])
opened = started = None
for line in open(sys.argv[1], errors="replace"):
    if opened is None and "store opened" in line:
        m = re.search(r"elapsed_ms=(\d+)", line)
        opened = int(m.group(1)) if m else None
    if "ferromq started" in line:
        t = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
        started = t.timestamp() - began
        break
if started is None:
    print(f"full recovery: store opened in {opened} ms; no 'ferromq started' line")
else:
    print(f"full recovery: store opened in {opened} ms (its log line), broker started "
          f"{started:.3f} s after the restart began")
EOF
sleep 5
echo "RSS 5 s after the restart: $(awk '/^VmRSS:/ {print $2}' "/proc/$BROKER/status") KiB" >> "$OUT/restart.txt"
cat "$OUT/restart.txt"

# Drain everything, with the order check (drain-backlog.sh).
echo drain > "$PHASE_FILE"
drain_started=$(date +%s.%N)
drain_backlog "stomp://$STOMP" "${recovered:-$filled}" queued
drain_ended=$(date +%s.%N)
left=$DRAIN_LEFT
{
  echo "count knob: $COUNT, disk budget: $MAX_DATA_MB MB"
  echo "filled: $filled messages in $(python3 -c "print(round($fill_ended - $fill_started, 1))") s"
  echo "data directory after the fill: $fill_mb MB"
  cat "$OUT/restart.txt"
  echo "drained: $((${recovered:-$filled} - left)) messages in $(python3 -c "print(round($drain_ended - $drain_started, 1))") s (left: $left)"
  cat "$OUT/order.txt"
  echo "peak RSS KiB by phase:"
  awk -F'\t' '{ if ($3 > peak[$2]) peak[$2] = $3 } END { for (p in peak) print "  " p ": " peak[p] }' "$OUT/rss.tsv"
} | tee "$OUT/summary.txt"
