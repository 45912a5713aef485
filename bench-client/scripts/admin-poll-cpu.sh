#!/usr/bin/env bash
# The admin poll's cost in the broker's own CPU time (issue 17), the second
# line of evidence beside before-after.sh POLL_ADMIN=1's throughput ratios:
#
# 1. per poll: a release broker whose 10 queues hold persistent messages,
#    otherwise idle; its CPU time (utime+stime from /proc/PID/stat) over
#    POLLS polls (one GET /metrics and one GET /api/destinations each, on
#    one keep-alive connection, back to back), minus its CPU time over the
#    same wall time without requests;
# 2. the load: the same broker under persistent 10/10/10 (1 KiB, STOMP),
#    polled once a second as before-after.sh does; its CPU seconds per
#    second over the bench's run;
# 3. a perf profile of (2) for PERF_SECONDS: the share of the broker's
#    samples whose leaf symbol is admin-side code (ferromq's admin module,
#    axum, hyper, serde_json, the Prometheus text) .
#
# Writes OUTDIR/cpu.txt (the figures), poll.txt, bench.json, perf-flat.txt
# (perf report, leaf symbols), perf-admin.txt (the admin-side rows), and
# run.json's load average lines to OUTDIR/load.txt.
#
#   bench-client/scripts/admin-poll-cpu.sh BIN_DIR OUTDIR
#   env: POLLS=5000 PERF_SECONDS=12 (the CPU times are in clock ticks of
#   10 ms: a few thousand polls are needed to measure one) STOMP_PORT=62833 ADMIN_PORT=62834
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$1"; out="$2"; mkdir -p "$out"
polls="${POLLS:-5000}"; perf_seconds="${PERF_SECONDS:-12}"
stomp_port="${STOMP_PORT:-62833}"; admin_port="${ADMIN_PORT:-62834}"
for port in "$stomp_port" "$admin_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: set STOMP_PORT/ADMIN_PORT" >&2; exit 1
  fi
done
d="$(mktemp -d /tmp/admin-poll-cpu.XXXXXX)"
pid=""; poller=""
stop() {
  if [ -n "$poller" ]; then kill "$poller" 2>/dev/null || true; wait "$poller" 2>/dev/null || true; poller=""; fi
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
}
trap 'stop; rm -rf "$d"' EXIT
echo "load before: $(uptime)" | tee "$out/load.txt"
"$bin/ferromq" --stomp "127.0.0.1:$stomp_port" --stomp-tls "" --native "" --native-tls "" \
  --websocket "" --websocket-tls "" --admin "127.0.0.1:$admin_port" --data-dir "$d/data" > "$d/log" 2>&1 &
pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$stomp_port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$pid"
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz="$(getconf CLK_TCK)"
# 1. Fill the 10 queues (no consumer, nothing drained), then poll while idle.
timeout 120 "$bin/ferromq-bench" run --url "stomp://127.0.0.1:$stomp_port" --mode queue --persistent \
  --producers 10 --consumers 0 --destinations 10 --size 1024 --warm-up-count 0 --sample-count 2 \
  --no-drain -o "$d/fill.json" > "$d/fill.out" 2>&1
sleep 2
python3 - "$admin_port" "$polls" "$pid" "$hz" > "$d/per-poll.txt" <<'PY'
import http.client, sys, time
port, polls, pid, hz = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
t0, c0 = time.monotonic(), ticks()
for _ in range(polls):
    for path in ("/metrics", "/api/destinations"):
        conn.request("GET", path)
        r = conn.getresponse(); r.read()
        assert r.status == 200, (path, r.status)
wall, busy = time.monotonic() - t0, ticks() - c0
c1 = ticks(); time.sleep(wall); idle = ticks() - c1
per = (busy - idle) * 1000.0 / hz / polls
print(f"polls {polls} wall_s {wall:.3f} cpu_ms_polled {busy * 1000 / hz:.0f} "
      f"cpu_ms_idle_same_time {idle * 1000 / hz:.0f} cpu_ms_per_poll {per:.3f}")
PY
cat "$d/per-poll.txt"
stop
rm -rf "$d/data"
# 2 and 3. Polled persistent 10/10/10: the broker's CPU over the run, and perf.
"$bin/ferromq" --stomp "127.0.0.1:$stomp_port" --stomp-tls "" --native "" --native-tls "" \
  --websocket "" --websocket-tls "" --admin "127.0.0.1:$admin_port" --data-dir "$d/data" > "$d/log2" 2>&1 &
pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$stomp_port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$pid"
sed -n '/python3 - "\$admin_port"/,/^PY$/p' bench-client/scripts/before-after.sh | sed '1d;$d' > "$d/poll.py"
python3 "$d/poll.py" "$admin_port" 600 "$out/poll.txt" & poller=$!
c0="$(ticks)"; t0="$(date +%s.%N)"
timeout 120 "$bin/ferromq-bench" run --url "stomp://127.0.0.1:$stomp_port" --mode queue --persistent \
  --producers 10 --consumers 10 --destinations 10 --size 1024 --warm-up-count 2 --sample-count 15 \
  --drain-timeout 1000 -o "$out/bench.json" > "$d/bench.out" 2>&1 &
bench=$!
sleep 4
perf record -F 499 -p "$pid" -o "$d/perf.data" -- sleep "$perf_seconds" 2> "$d/perf.err" || true
wait "$bench" || true
c1="$(ticks)"; t1="$(date +%s.%N)"
stop
perf report -i "$d/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null > "$out/perf-flat.txt" || true
grep -E 'ferromq_broker::admin|axum|hyper|serde_json|matchit|prometheus' "$out/perf-flat.txt" > "$out/perf-admin.txt" || true
# No admin-side row at all is a result too (0.00%), not a failure.
admin_share="$({ grep -E '^ +[0-9.]+%' "$out/perf-admin.txt" || true; } | awk '{ gsub("%", "", $1); s += $1 } END { printf "%.2f", s }')"
samples="$(grep -m1 -E '^# Samples' "$out/perf-flat.txt" || echo '# Samples: ?')"
python3 - "$d/per-poll.txt" "$c0" "$c1" "$t0" "$t1" "$hz" "$admin_share" "$samples" > "$out/cpu.txt" <<'PY'
import sys
fields = open(sys.argv[1]).read().split()
per_poll_ms = float(fields[fields.index("cpu_ms_per_poll") + 1])
c0, c1, t0, t1, hz = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
load_cpu_s_per_s = (c1 - c0) / hz / (t1 - t0)
print(open(sys.argv[1]).read().strip())
print(f"loaded broker: {load_cpu_s_per_s:.3f} CPU seconds per second over {t1 - t0:.1f} s of persistent 10/10/10, polled")
print(f"one poll a second = {per_poll_ms:.3f} ms CPU per second = "
      f"{100 * per_poll_ms / 1000 / load_cpu_s_per_s:.3f}% of the loaded broker's CPU time")
print(f"perf: admin-side leaf symbols {sys.argv[7]}% of the broker's samples ({sys.argv[8].lstrip('# ')}; perf-admin.txt)")
PY
grep -E "custom/" "$d/bench.out" | tail -2 >> "$out/cpu.txt" || true
echo "load after: $(uptime)" | tee -a "$out/load.txt"
cat "$out/cpu.txt"
