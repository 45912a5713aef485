#!/usr/bin/env bash
# perf profiles of two release brokers (the code before the cluster work and
# this one) under the same persistent 10/10/10 STOMP load, one after the
# other: perf record -F 499 of the broker for 10 s of a 15-sample run; flat
# leaf-symbol reports per build (perf-<label>.txt) and the bench's figures.
#   profile.sh BEFORE_BIN AFTER_BIN OUTDIR
set -euo pipefail
out="$3"; mkdir -p "$out"
for pair in "before:$1" "after:$2"; do
  label="${pair%%:*}"; bin="${pair#*:}"
  d=$(mktemp -d /tmp/mgmt8-prof.XXXXXX)
  "$bin/ferromq" --stomp 127.0.0.1:62833 --stomp-tls "" --native "" --native-tls "" --websocket "" \
    --websocket-tls "" --admin "" --data-dir "$d/data" > "$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/62833) 2>/dev/null && break; sleep 0.1; done
  timeout 120 "$1/ferromq-bench" run --url stomp://127.0.0.1:62833 --mode queue --persistent --producers 10 \
    --consumers 10 --destinations 10 --size 1024 --warm-up-count 2 --sample-count 15 --drain-timeout 1000 \
    -o "$d/bench.json" > "$d/bench.out" 2>&1 &
  bench=$!
  sleep 4
  perf record -F 499 -p "$pid" -o "$d/perf.data" -- sleep 10 2> "$d/perf.err" || true
  wait $bench || true
  kill $pid; wait $pid || true
  perf report -i "$d/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | cut -c1-160 > "$out/perf-$label.txt" || true
  perf report -i "$d/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' > "$out/perf-$label-dso.txt" || true
  { echo "$label: $(uptime)"; grep -E "custom/" "$d/bench.out" | tail -1; } >> "$out/bench.txt"
  rm -rf "$d"
done
cat "$out/bench.txt"
