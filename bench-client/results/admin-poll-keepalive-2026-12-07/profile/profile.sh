#!/usr/bin/env bash
# Note: the call-chain count at the end is not usable (no frame pointers in the
# release build: most chains are garbage); perf-flat.txt was made from the same
# perf.data with perf report --no-children --sort dso,symbol --stdio -g none.
# perf profile of a release broker during persistent 10/10/10 STOMP while
# polled once a second by one keep-alive client; prints the share of broker
# samples in admin-side code.
set -euo pipefail
bin="$1"; out="$2"; mkdir -p "$out"
d=$(mktemp -d /tmp/mgmt-prof.XXXXXX)
"$bin/ferromq" --stomp 127.0.0.1:62833 --stomp-tls "" --native "" --native-tls "" --websocket "" --websocket-tls "" --admin 127.0.0.1:62834 --data-dir "$d/data" > "$d/log" 2>&1 &
pid=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/62833) 2>/dev/null && break; sleep 0.1; done
sed -n '/python3 - "\$admin_port"/,/^PY$/p' /work/wt-mgmt/bench-client/scripts/before-after.sh | sed '1d;$d' > "$d/poll.py"
python3 "$d/poll.py" 62834 600 "$out/poll.txt" & poller=$!
timeout 120 "$bin/ferromq-bench" run --url stomp://127.0.0.1:62833 --mode queue --persistent --producers 10 --consumers 10 --destinations 10 --size 1024 --warm-up-count 2 --sample-count 15 --drain-timeout 1000 -o "$d/bench.json" > "$d/bench.out" 2>&1 &
bench=$!
sleep 4
perf record -F 499 -g -p "$pid" -o "$d/perf.data" -- sleep 12 2> "$d/perf.err" || true
wait $bench || true
kill $poller; wait $poller || true
kill $pid; wait $pid || true
perf report -i "$d/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | head -80 > "$out/perf-top.txt"
perf report -i "$d/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null > "$d/flat.txt"
echo "total samples: $(perf report -i "$d/perf.data" --stdio --sort pid 2>/dev/null | grep -m1 'Samples' )" > "$out/perf-admin-share.txt"
# Samples whose call chain passes through the admin module or the HTTP stack.
perf script -i "$d/perf.data" 2>/dev/null | awk '
  /^[^ \t]/ { if (n) { total++; if (admin) hits++ } n=1; admin=0; next }
  /ferromq_broker::admin|axum::|hyper::|serde_json::ser/ { admin=1 }
  END { if (n) { total++; if (admin) hits++ } printf "stacks %d, through admin/axum/hyper/serde_json: %d (%.2f%%)\n", total, hits, 100*hits/total }' >> "$out/perf-admin-share.txt"
grep -E "msg/s|custom/" "$d/bench.out" | tail -5 >> "$out/perf-admin-share.txt" || true
cat "$out/perf-admin-share.txt"
rm -rf "$d"
