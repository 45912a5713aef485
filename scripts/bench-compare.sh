#!/usr/bin/env bash
# Side-by-side benchmark on this machine: ferromq vs ActiveMQ 5.17 vs
# RabbitMQ 3.10, same client (ferromq-bench), same scenarios, one broker at a
# time. Writes OUTDIR/<broker>.json and OUTDIR/report.html; the numbers in
# BENCHMARKS.md come from it.
#
#   scripts/bench-compare.sh [OUTDIR]
#   env: BROKERS="ferromq activemq rabbitmq"  SAMPLES=10  WARMUP=3
#        PEERS=../shared/peers (start/stop scripts of the reference brokers)
#        SUITE=jms-benchmark (or stomp-benchmark): run that whole suite per
#          broker instead of the ad-hoc scenarios below (resumable: rerun
#          with the same OUTDIR to finish an interrupted run); DRAIN_MS=3000,
#          RESTARTS=4 (restarts of a broker that stopped answering),
#          FILTER=queue-p- (only the suite's scenarios whose name contains it)
#
# Loopback only. Each scenario runs WARMUP+SAMPLES seconds plus a drain.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results/$(date +%Y%m%d-%H%M)}"
brokers="${BROKERS:-ferromq activemq rabbitmq}"
samples="${SAMPLES:-10}"
warmup="${WARMUP:-3}"
peers="${PEERS:-../shared/peers}"
mkdir -p "$out"
# Which ferromq this run measures ("-dirty": with uncommitted changes), so
# that every published number names its commit (BENCHMARKS.md, issue 20).
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- . 2>/dev/null || echo -dirty)"
printf '{\n  "run": "%s",\n  "started_utc": "%s",\n  "ferromq_commit": "%s",\n  "command": "%s"\n}\n' \
  "$(basename "$out")" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" \
  "BROKERS=\\\"$brokers\\\" SAMPLES=$samples WARMUP=$warmup SUITE=${SUITE:-} FILTER=${FILTER:-} scripts/bench-compare.sh OUTDIR" \
  > "$out/run.json"

cargo build --release --locked -p ferromq-broker -p ferromq-bench
bench=target/release/ferromq-bench

# name | ferromq-bench ad-hoc flags
scenarios=(
  "np-1p1c|--mode queue --producers 1 --consumers 1 --destinations 1 --size 1024"
  "np-10p10c10d|--mode queue --producers 10 --consumers 10 --destinations 10 --size 1024"
  "np-5k-rate|--mode queue --producers 5 --consumers 5 --destinations 5 --size 1024 --rate 5000"
  "np-100k-body|--mode queue --producers 1 --consumers 1 --destinations 1 --size 102400"
  "np-topic-1p10c|--mode topic --producers 1 --consumers 10 --destinations 1 --size 1024"
  "p-1p1c|--mode queue --persistent --producers 1 --consumers 1 --destinations 1 --size 1024"
  "p-1p0c|--mode queue --persistent --producers 1 --consumers 0 --destinations 1 --size 1024"
  "p-10p10c10d|--mode queue --persistent --producers 10 --consumers 10 --destinations 10 --size 1024"
  "p-10p0c10d|--mode queue --persistent --producers 10 --consumers 0 --destinations 10 --size 1024"
)

start_broker() {
  case "$1" in
    ferromq)
      rm -rf /tmp/bench-ferromq && mkdir -p /tmp/bench-ferromq
      target/release/ferromq --stomp 127.0.0.1:61913 --stomp-tls "" --native "" --native-tls "" \
        --websocket "" --websocket-tls "" --admin "" --data-dir /tmp/bench-ferromq/data > /tmp/bench-ferromq/log 2>&1 &
      echo $! > /tmp/bench-ferromq/pid
      for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/61913) 2>/dev/null && return 0; sleep 0.1; done
      echo "ferromq did not start" >&2; return 1 ;;
    activemq) "$peers/activemq-start.sh" >/dev/null ;;
    rabbitmq) "$peers/rabbitmq-start.sh" >/dev/null ;;
  esac
}

stop_broker() {
  case "$1" in
    ferromq) kill "$(cat /tmp/bench-ferromq/pid)" 2>/dev/null || true; sleep 1 ;;
    activemq) "$peers/activemq-stop.sh" >/dev/null 2>&1 || true ;;
    rabbitmq) "$peers/rabbitmq-stop.sh" >/dev/null 2>&1 || true ;;
  esac
}

url_of() {
  case "$1" in
    ferromq) echo "--url stomp://127.0.0.1:61913" ;;
    activemq) echo "--url stomp://127.0.0.1:61713" ;;
    rabbitmq) echo "--url stomp://127.0.0.1:61723 --login guest --passcode guest" ;;
  esac
}

for broker in $brokers; do
  echo "== $broker"
  start_broker "$broker"
  trap 'stop_broker '"$broker" EXIT
  if [ -n "${SUITE:-}" ]; then
    # A broker that stops accepting connections (ActiveMQ and RabbitMQ do
    # after the 100x100 10 MB scenarios) ends the run; restart it and resume,
    # RESTARTS times at most. Each restart is logged in OUTDIR/restarts.log.
    for attempt in $(seq 0 "${RESTARTS:-4}"); do
      if [ "$attempt" -gt 0 ]; then
        echo "$broker: restarted after a failed run (attempt $attempt)" | tee -a "$out/restarts.log" >&2
        stop_broker "$broker"
        start_broker "$broker"
      fi
      # shellcheck disable=SC2046
      if timeout 7200 "$bench" run $(url_of "$broker") --suite "$SUITE" --broker-name "$broker" \
        ${FILTER:+--filter "$FILTER"} \
        --warm-up-count "$warmup" --sample-count "$samples" --drain-timeout "${DRAIN_MS:-3000}" \
        -o "$out/$broker.json"; then
        break
      fi
      echo "$broker: suite $SUITE failed" >&2
    done
    stop_broker "$broker"
    trap - EXIT
    continue
  fi
  for s in "${scenarios[@]}"; do
    name="${s%%|*}"; flags="${s#*|}"
    # shellcheck disable=SC2046,SC2086
    timeout 300 "$bench" run $(url_of "$broker") $flags --broker-name "$broker" \
      --warm-up-count "$warmup" --sample-count "$samples" -o "$out/$broker.json" \
      | grep -E '^custom/' || echo "$broker $name: failed" >&2
  done
  stop_broker "$broker"
  trap - EXIT
done

files=()
for broker in $brokers; do [ -f "$out/$broker.json" ] && files+=("$out/$broker.json"); done
"$bench" report "${files[@]}" -o "$out/report.html"
echo "results: $out (report.html)"
