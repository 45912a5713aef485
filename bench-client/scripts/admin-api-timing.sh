#!/usr/bin/env bash
# How long the management API takes to answer with 10,000 destinations
# (issue 17's target: GET /api/destinations under 50 ms). Starts one ferromq
# on loopback with a fresh data directory, creates 10,000 queues with one
# message each over one STOMP connection (the default
# limits.max_destinations is 10,000), then asks each query REPEAT times
# with curl, time to the last byte (`%{time_total}`), one after another.
# Writes OUTDIR/timings.jsonl (one line per query: every time, the HTTP
# status, the body size), OUTDIR/run.json (the commit the binary was built
# from, the build profile, the load average before and after) and prints
# the table (`scripts/bench-table.py admin-timing OUTDIR`).
#
#   bench-client/scripts/admin-api-timing.sh BIN_DIR PROFILE OUTDIR
#   BIN_DIR: a directory holding `ferromq` built from this checkout's HEAD;
#   PROFILE: what to record as the build (debug, release).
#   env: REPEAT=20 STOMP_PORT=62953 ADMIN_PORT=62954 (must be free)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$1"; profile="$2"; out="$3"
repeat="${REPEAT:-20}"
stomp_port="${STOMP_PORT:-62953}"
admin_port="${ADMIN_PORT:-62954}"
for port in "$stomp_port" "$admin_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: set STOMP_PORT/ADMIN_PORT" >&2; exit 1
  fi
done
mkdir -p "$out"
data="$(mktemp -d /tmp/admin-api-timing.XXXXXX)"
pid=""
stop() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
}
trap 'stop; rm -rf "$data"' EXIT

load_before="$(cat /proc/loadavg)"
"$bin/ferromq" --stomp "127.0.0.1:$stomp_port" --stomp-tls "" --native "" --native-tls "" \
  --websocket "" --websocket-tls "" --admin "127.0.0.1:$admin_port" --data-dir "$data/data" \
  > "$data/log" 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$admin_port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$pid" || { echo "ferromq did not start:" >&2; cat "$data/log" >&2; exit 1; }

# 10,000 SENDs on one connection, the last with a receipt: when the receipt
# arrives every queue exists.
python3 - "$stomp_port" <<'EOF'
import socket
import sys

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")


def frame():
    buf = b""
    while b"\0" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(f"connection closed: {buf!r}")
        buf += chunk
    return buf


if not frame().startswith(b"CONNECTED"):
    sys.exit("no CONNECTED")
frames = []
for i in range(10_000):
    receipt = "receipt:last\n" if i == 9_999 else ""
    frames.append(f"SEND\ndestination:/queue/bench.q{i:05d}\n{receipt}\nx\0".encode())
s.sendall(b"".join(frames))
reply = frame()
if not reply.startswith(b"RECEIPT"):
    sys.exit(f"expected RECEIPT, got {reply[:200]!r}")
s.sendall(b"DISCONNECT\n\n\0")
s.close()
EOF

queries=(
  "/api/destinations?page_size=100"
  "/api/destinations?sort=messages&order=desc&page_size=50"
  "/api/destinations?name=/queue/bench.q09*&page=2&page_size=50"
  "/api/destinations?kind=queue&page=200&page_size=50"
  "/metrics"
)
: > "$out/timings.jsonl"
for q in "${queries[@]}"; do
  times=()
  code=""; size=""
  for _ in $(seq "$repeat"); do
    read -r t code size < <(curl -s -o /dev/null -w '%{time_total} %{http_code} %{size_download}\n' \
      --max-time 10 "http://127.0.0.1:$admin_port$q")
    times+=("$t")
  done
  python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1], "http_status": int(sys.argv[2]), "body_bytes": int(sys.argv[3]), "time_total_s": [float(t) for t in sys.argv[4:]]}))' \
    "$q" "$code" "$size" "${times[@]}" >> "$out/timings.jsonl"
done
stop
load_after="$(cat /proc/loadavg)"
python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2])), indent=2))' \
  run "$(basename "$out")" \
  ferromq_commit "$(git rev-parse HEAD)" \
  worktree_clean "$([ -z "$(git status --porcelain -- broker protocol config Cargo.lock)" ] && echo yes || echo no)" \
  build "$profile" \
  date_utc "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  loadavg_before "$load_before" \
  loadavg_after "$load_after" \
  destinations 10000 \
  repeat "$repeat" \
  command "bench-client/scripts/admin-api-timing.sh BIN_DIR $profile OUTDIR" > "$out/run.json"
python3 scripts/bench-table.py admin-timing "$out"
