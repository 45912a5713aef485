set -e
B=/tmp/bigbody-bins/NEW
$B/ferromq --stomp 127.0.0.1:62973 --stomp-tls "" --native "" --native-tls "" --websocket "" --websocket-tls "" --admin 127.0.0.1:62983 --data-dir /tmp/bigbody-perf/data > log 2>&1 &
pid=$!
sleep 1
cat /proc/loadavg > load-before
perf record -g -o perf.data -p $pid -- sleep 12 > perf-record.log 2>&1 &
perfpid=$!
timeout 60 $B/ferromq-bench run --url stomp://127.0.0.1:62973 --mode queue --persistent --producers 10 --consumers 10 --destinations 10 --size 10000000 --warm-up-count 1 --sample-count 10 --drain-timeout 2000 -o bench.json > bench.log 2>&1 || true
wait $perfpid || true
cat /proc/loadavg > load-after
curl -s http://127.0.0.1:62983/metrics | grep -E "^ferromq_store_messages_(written|elided)_total" > metrics.txt
kill $pid; wait $pid || true
grep "store closed" log | tail -1 > store-closed.txt
