#!/usr/bin/env bash
# perf profile of one broker build under persistent 10/10/10 (STOMP, 1 KiB).
set -eu
BIN=$1; OUT=$2; D=$(mktemp -d /tmp/prof.XXXX)
$BIN/ferromq --stomp 127.0.0.1:62833 --native "" --websocket "" --websocket-tls "" --stomp-tls "" --native-tls "" --admin "" --data-dir $D/data > $D/log 2>&1 &
pid=$!
sleep 1
/work/bins/base/ferromq-bench run --url stomp://127.0.0.1:62833 --broker-name x --size 1024 --persistent --producers 10 --consumers 10 --destinations 10 --warmup 2 --samples 10 -o $D/run.json > /dev/null 2>&1 &
bp=$!
sleep 4
perf record -F 499 -p $pid -o $D/perf.data -- sleep 8 > /dev/null 2>&1
wait $bp || true
kill $pid; wait $pid 2>/dev/null || true
perf report -i $D/perf.data --no-children --sort dso --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -12 > $OUT-dso.txt
perf report -i $D/perf.data --no-children --sort symbol --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -40 > $OUT-sym.txt
python3 -c "import json;j=json.load(open('$D/run.json'));s=j['scenarios'][0];print(s['consumer tp'])" > $OUT-rate.txt 2>/dev/null || true
rm -rf $D
