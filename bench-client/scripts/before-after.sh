#!/usr/bin/env bash
# Two ferromq builds side by side (before/after a change), same client, same
# scenarios, alternating builds within each round (ABBA order across rounds)
# so that ratios come from neighbouring runs on a noisy machine. Each build
# gets a fresh broker (and data directory) per round; both protocols are
# measured. Writes OUTDIR/<label>-<proto>-r<round>.json and prints a table
# of medians and per-round ratios (`scripts/bench-table.py before-after
# OUTDIR`, also written to OUTDIR/summary.md with its Table: line).
#
#   bench-client/scripts/before-after.sh BEFORE_BIN AFTER_BIN [OUTDIR]
#   BEFORE_BIN/AFTER_BIN: directories holding a release `ferromq` each;
#   the client is BEFORE_BIN/ferromq-bench for both.
#   env: ROUNDS=3 SAMPLES=3 WARMUP=1 PROTOS="stomp native"
#        SCENARIOS="p-1p1c ..." (a subset of the names below)
#        STOMP_PORT=62933 NATIVE_PORT=62940 ADMIN_PORT=62950 (must be free)
#        POLL_ADMIN=1: both builds serve the admin HTTP endpoint, and while
#        the "after" build runs, one long-lived HTTP client (python3's
#        http.client on one keep-alive connection, started once per run)
#        scrapes /metrics and GETs /api/destinations once a second (what a
#        monitoring setup does), writing its counts to
#        OUTDIR/poll-r<round>.txt; run with the same build as BEFORE_BIN and
#        AFTER_BIN to measure the cost of being watched (issue 17).
set -euo pipefail
cd "$(dirname "$0")/../.."
before="$1"; after="$2"
out="${3:-bench-results/before-after-$(date +%Y%m%d-%H%M)}"
rounds="${ROUNDS:-3}"; samples="${SAMPLES:-3}"; warmup="${WARMUP:-1}"
protos="${PROTOS:-stomp native}"
mkdir -p "$out"
bench="$before/ferromq-bench"

# name | ferromq-bench ad-hoc flags
all=(
  "p-1p1c|--mode queue --persistent --producers 1 --consumers 1 --destinations 1 --size 1024"
  "p-10p10c10d|--mode queue --persistent --producers 10 --consumers 10 --destinations 10 --size 1024"
  "p-10p0c10d|--mode queue --persistent --producers 10 --consumers 0 --destinations 10 --size 1024"
  "np-1p1c|--mode queue --producers 1 --consumers 1 --destinations 1 --size 1024"
  "np-10p10c10d|--mode queue --producers 10 --consumers 10 --destinations 10 --size 1024"
)
wanted="${SCENARIOS:-}"
stomp_port="${STOMP_PORT:-62933}"
native_port="${NATIVE_PORT:-62940}"
admin_port="${ADMIN_PORT:-62950}"
poll_admin="${POLL_ADMIN:-}"
for port in "$stomp_port" "$native_port" "$admin_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: set STOMP_PORT/NATIVE_PORT" >&2; exit 1
  fi
done
data="$(mktemp -d /tmp/bench-before-after.XXXXXX)"
pid=""
poller=""
stop() {
  if [ -n "$poller" ]; then kill "$poller" 2>/dev/null || true; wait "$poller" 2>/dev/null || true; poller=""; fi
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
}
admin_flag=""
if [ -n "$poll_admin" ]; then admin_flag="127.0.0.1:$admin_port"; fi
trap 'stop; rm -rf "$data"' EXIT

url_of() {
  case "$1" in
    stomp) echo "stomp://127.0.0.1:$stomp_port" ;;
    native) echo "ferromq://127.0.0.1:$native_port" ;;
  esac
}

echo "before: $before ($(cat "$before/../COMMIT" 2>/dev/null || echo ?)), after: $after ($(cat "$after/../COMMIT" 2>/dev/null || echo ?))" | tee "$out/load.txt"
echo "load before: $(uptime)" | tee -a "$out/load.txt"
for round in $(seq "$rounds"); do
  order="before after"
  if [ $((round % 2)) = 0 ]; then order="after before"; fi
  for label in $order; do
    if [ "$label" = before ]; then bin="$before"; else bin="$after"; fi
    rm -rf "$data/data"
    "$bin/ferromq" --stomp "127.0.0.1:$stomp_port" --stomp-tls "" --native "127.0.0.1:$native_port" \
      --native-tls "" --websocket "" --websocket-tls "" --admin "$admin_flag" --data-dir "$data/data" > "$data/log-$label-$round" 2>&1 &
    pid=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$native_port") 2>/dev/null && break; sleep 0.1; done
    kill -0 "$pid" || { echo "ferromq ($label) did not start:" >&2; cat "$data/log-$label-$round" >&2; exit 1; }
    if [ -n "$poll_admin" ] && [ "$label" = after ]; then
      # One process and one keep-alive connection for the whole run (a
      # process per request costs more than the requests). Ended by stop()
      # with the broker, and by its own limit of an hour in any case.
      python3 - "$admin_port" 3600 "$out/poll-r$round.txt" <<'PY' &
import http.client, signal, sys, time

port, limit, report = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
counts = {"requests": 0, "failed": 0, "connections": 0, "seconds_in_requests": 0.0}

def finish(*_):
    with open(report, "w") as f:
        f.write(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in counts.items()) + "\n")
    sys.exit(0)

signal.signal(signal.SIGTERM, finish)
conn = None
start = time.monotonic()
tick = start
while time.monotonic() - start < limit:
    tick += 1.0
    for path in ("/metrics", "/api/destinations"):
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                counts["connections"] += 1
            conn.request("GET", path)
            answer = conn.getresponse()
            answer.read()
            ok = answer.status == 200
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn, ok = None, False
        counts["requests"] += 1
        counts["failed"] += 0 if ok else 1
        counts["seconds_in_requests"] += time.monotonic() - t0
    time.sleep(max(0.0, tick - time.monotonic()))
finish()
PY
      poller=$!
    fi
    for s in "${all[@]}"; do
      name="${s%%|*}"; flags="${s#*|}"
      if [ -n "$wanted" ] && [[ " $wanted " != *" $name "* ]]; then continue; fi
      for proto in $protos; do
        # shellcheck disable=SC2086
        timeout 120 "$bench" run --url "$(url_of "$proto")" $flags --broker-name "$label-$proto" \
          --warm-up-count "$warmup" --sample-count "$samples" --drain-timeout 1000 \
          -o "$out/$label-$proto-r$round.json" | grep -E '^custom/' | sed "s/^/$label $proto r$round /" \
          || echo "$label $proto $name r$round: failed" >&2
      done
    done
    stop
  done
  echo "load after round $round: $(uptime)" | tee -a "$out/load.txt"
done
{
  echo "Table: \`scripts/bench-table.py before-after $out\`"
  echo
  python3 scripts/bench-table.py before-after "$out"
} | tee "$out/summary.md"
