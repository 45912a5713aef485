#!/usr/bin/env bash
# ferromq's native protocol against ferromq's own STOMP (and, with
# ACTIVEMQ=1, ActiveMQ 5.17's STOMP), same client (ferromq-bench), same
# scenarios, run back to back per scenario and repeated ROUNDS times so that
# ratios come from neighbouring runs on a noisy machine. One ferromq process
# serves both protocols. Writes OUTDIR/<proto>-r<round>.json and prints a
# table of medians and ratios (scripts/bench-table.py rounds OUTDIR) to
# OUTDIR/summary.md, and the commit measured to OUTDIR/run.json.
#
#   bench-client/scripts/native-vs-stomp.sh [OUTDIR]
#   env: ROUNDS=3 SAMPLES=3 WARMUP=1 ACTIVEMQ=0 PEERS=../shared/peers
#        SCENARIOS="np-1p1c np-10p10c10d ..." (a subset of the names below)
#        BIN=dir with ferromq and ferromq-bench (default: build target/release)
#        STOMP_PORT=62913 NATIVE_PORT=62920 (must be free: the script refuses
#        to measure someone else's broker)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-bench-results/native-$(date +%Y%m%d-%H%M)}"
rounds="${ROUNDS:-3}"
samples="${SAMPLES:-3}"
warmup="${WARMUP:-1}"
peers="${PEERS:-../shared/peers}"
mkdir -p "$out"
# Which ferromq this run measures ("-dirty": with uncommitted changes).
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- . 2>/dev/null || echo -dirty)"
printf '{\n  "run": "%s",\n  "started_utc": "%s",\n  "ferromq_commit": "%s",\n  "command": "%s"\n}\n' \
  "$(basename "$out")" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" \
  "ROUNDS=$rounds SAMPLES=$samples WARMUP=$warmup ACTIVEMQ=${ACTIVEMQ:-0} SCENARIOS=${SCENARIOS:-} bench-client/scripts/native-vs-stomp.sh OUTDIR" \
  > "$out/run.json"

bin="${BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p ferromq-broker -p ferromq-bench
  bin=target/release
fi
bench="$bin/ferromq-bench"

# name | ferromq-bench ad-hoc flags
all=(
  "np-1p1c|--mode queue --producers 1 --consumers 1 --destinations 1 --size 1024"
  "np-10p10c10d|--mode queue --producers 10 --consumers 10 --destinations 10 --size 1024"
  "p-10p10c10d|--mode queue --persistent --producers 10 --consumers 10 --destinations 10 --size 1024"
  "np-100k-body|--mode queue --producers 1 --consumers 1 --destinations 1 --size 102400"
  "np-5k-rate|--mode queue --producers 5 --consumers 5 --destinations 5 --size 1024 --rate 5000"
  "np-10p10c10d-auto|--mode queue --producers 10 --consumers 10 --destinations 10 --size 1024 --ack auto"
)
wanted="${SCENARIOS:-}"

stomp_port="${STOMP_PORT:-62913}"
native_port="${NATIVE_PORT:-62920}"
for port in "$stomp_port" "$native_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: set STOMP_PORT/NATIVE_PORT" >&2; exit 1
  fi
done
data="$(mktemp -d /tmp/bench-native-vs-stomp.XXXXXX)"
"$bin/ferromq" --stomp "127.0.0.1:$stomp_port" --stomp-tls "" --native "127.0.0.1:$native_port" \
  --native-tls "" --admin "" --data-dir "$data/data" > "$data/log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  rm -rf "$data"
  if [ "${ACTIVEMQ:-0}" = 1 ]; then "$peers/activemq-stop.sh" >/dev/null 2>&1 || true; fi
}
trap stop EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$native_port") 2>/dev/null && break; sleep 0.1; done
kill -0 "$pid" || { echo "ferromq did not start:" >&2; cat "$data/log" >&2; exit 1; }

protos="stomp native"
if [ "${ACTIVEMQ:-0}" = 1 ]; then
  "$peers/activemq-start.sh" >/dev/null
  protos="stomp native activemq"
fi

url_of() {
  case "$1" in
    stomp) echo "stomp://127.0.0.1:$stomp_port" ;;
    native) echo "ferromq://127.0.0.1:$native_port" ;;
    activemq) echo "stomp://127.0.0.1:61713" ;;
  esac
}

echo "load before: $(uptime)" | tee "$out/load.txt"
for round in $(seq "$rounds"); do
  for s in "${all[@]}"; do
    name="${s%%|*}"; flags="${s#*|}"
    if [ -n "$wanted" ] && [[ " $wanted " != *" $name "* ]]; then continue; fi
    for proto in $protos; do
      # shellcheck disable=SC2086
      timeout 120 "$bench" run --url "$(url_of "$proto")" $flags --broker-name "$proto" \
        --warm-up-count "$warmup" --sample-count "$samples" --drain-timeout 1000 \
        -o "$out/$proto-r$round.json" | grep -E '^custom/' | sed "s/^/$proto r$round /" \
        || echo "$proto $name r$round: failed" >&2
    done
  done
  echo "load after round $round: $(uptime)" | tee -a "$out/load.txt"
done
{
  echo "Table: \`scripts/bench-table.py rounds $out\`"
  echo
  scripts/bench-table.py rounds "$out"
} | tee "$out/summary.md"
