#!/usr/bin/env bash
# One cluster run with openraft=debug, to find where a commit stalls.
set -euo pipefail
cd /work/wt-deepfunc
D=/tmp/stallcap; rm -rf $D; mkdir -p $D
export BASE_PORT=62500
RUST_LOG=info,openraft=debug FERROMQ_BIN=/work/bins/s2/ferromq scripts/cluster-local.sh start $D/c
leader=""
for _ in $(seq 300); do
  for id in 1 2 3; do
    [ "$(curl -s --max-time 1 http://127.0.0.1:$((BASE_PORT+10*id+2))/healthz)" = "ok leader" ] && leader=$id
  done
  [ -n "$leader" ] && break; sleep 0.1
done
echo leader=$leader
/work/bins/s2/ferromq-bench run --url "failover:(stomp://127.0.0.1:62510,stomp://127.0.0.1:62520,stomp://127.0.0.1:62530)" --broker-name c --size 1024 --persistent --producers 10 --consumers 0 --destinations 10 --warmup 2 --samples 8 -o $D/run.json 2>&1 | tail -1
for id in 1 2 3; do curl -s --max-time 5 http://127.0.0.1:$((BASE_PORT+10*id+2))/metrics > $D/m$id.prom || echo "node $id no metrics"; done
FERROMQ_BIN=/work/bins/s2/ferromq scripts/cluster-local.sh stop $D/c
ls $D/c/*
