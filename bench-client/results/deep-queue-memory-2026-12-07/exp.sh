#!/usr/bin/env bash
# exp.sh NAME ROUNDS [toml-extra-file] : fill ROUNDS x 10 s, sample RSS+smaps, restart, report
set -uo pipefail
NAME=$1; ROUNDS=$2; EXTRA=${3:-}
BIN=${BIN:-/work/wt-deepmem/target/release}
OUT=/tmp/deepmem/out-$NAME; DATA=/tmp/deepmem/data-$NAME
rm -rf "$OUT" "$DATA"; mkdir -p "$OUT"
STOMP=127.0.0.1:61963; ADMIN=127.0.0.1:18203
CONF=""
if [ -n "$EXTRA" ]; then CONF="-c $EXTRA"; fi
start() { $BIN/ferromq $CONF --stomp $STOMP --admin $ADMIN --data-dir $DATA > $OUT/broker-$1.log 2>&1 & B=$!;
  for _ in $(seq 200); do curl -sf http://$ADMIN/healthz >/dev/null && return 0; sleep 0.05; done; echo nostart; }
sampler() { while kill -0 $1 2>/dev/null; do
  printf '%s\t%s\t%s\n' "$(date +%s)" "$(awk '/^VmRSS/{print $2}' /proc/$1/status)" "$(awk '/^Anonymous/{print $2}' /proc/$1/smaps_rollup)" >> $OUT/rss-$2.tsv; sleep 1; done; }
start 1; sampler $B 1 & S=$!
echo "load $(cat /proc/loadavg)" > $OUT/load.txt
for r in $(seq $ROUNDS); do
  $BIN/ferromq-bench run --url stomp://$STOMP --mode queue --persistent --async-send --producers 10 --consumers 0 \
   --destinations 10 --size 1024 --samples 10 --warmup 0 --no-drain --out $OUT/fill-$r.json >/dev/null 2>&1
  echo "round $r rss $(awk '/^VmRSS/{print $2}' /proc/$B/status) du $(du -sm $DATA|cut -f1)" | tee -a $OUT/rounds.txt
done
curl -sf http://$ADMIN/metrics | grep -E '^ferromq_store_' > $OUT/metrics.txt
cp /proc/$B/smaps_rollup $OUT/smaps_rollup.txt
echo "peak $(sort -t$'\t' -k2 -n $OUT/rss-1.tsv | tail -1)" | tee -a $OUT/rounds.txt
echo "load $(cat /proc/loadavg)" >> $OUT/load.txt
kill -9 $B; wait $B 2>/dev/null
t0=$(date +%s.%N); start 2
python3 - $STOMP $t0 << 'PY' | tee -a $OUT/rounds.txt
import socket, sys, time
h,p=sys.argv[1].split(":"); t0=float(sys.argv[2])
s=socket.create_connection((h,int(p))); s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
b=b""
while b"\0" not in b: b+=s.recv(4096)
s.sendall(b"SUBSCRIBE\nid:0\ndestination:/queue/loadq-0\nack:client-individual\n\n\0")
b=b""
while b"MESSAGE" not in b: b+=s.recv(65536)
print(f"first delivery {time.time()-t0:.3f}")
PY
grep "store opened" $OUT/broker-2.log | grep -o 'elapsed_ms=[0-9]*' | tee -a $OUT/rounds.txt
sleep 3; echo "rss after restart $(awk '/^VmRSS/{print $2}' /proc/$B/status)" | tee -a $OUT/rounds.txt
kill -9 $B; wait $B 2>/dev/null; kill $S 2>/dev/null
if [ -z "${KEEP:-}" ]; then rm -rf $DATA; fi
