#!/usr/bin/env bash
# Failover time of a three-node ferromq cluster under persistent load
# (issue 16, BENCHMARKS.md "Cluster failover time"): from kill -9 of the
# leader to the first RECEIPT from the new leader, KILLS times.
#
#   bench-client/scripts/failover-time.sh OUT_DIR
#
#   env: KILLS=20         leader kills
#        CALM=30          seconds of load before the first kill, in which no
#                         election may happen (the check for spurious
#                         elections under load; the run fails if one does)
#        INTERVAL=8       seconds from one kill to the next (the killed node
#                         is restarted as soon as a new leader serves)
#        LOAD="--producers 5 --consumers 5 --destinations 5 --size 1024"
#        FERROMQ_BIN=target/release/ferromq  BENCH_BIN=target/release/ferromq-bench
#        BASE_PORT=62400  (scripts/cluster-local.sh's port layout)
#        CLUSTER_EXTRA='election_timeout_min = "1s"'  [cluster] keys other
#                         than the defaults (scripts/cluster-local.sh)
#
# The nodes run from the release binary with scripts/cluster-local.sh (its
# config: the [cluster] defaults, which this script prints). ferromq-bench
# runs persistent sends with a RECEIPT each against failover:(all three),
# so it follows the new leader, and records every interval without a
# receipt (its `failover.gaps`, wall-clock ends). A kill's failover time is
# the end of the gap it falls in minus the kill time.
#
# Writes to OUT_DIR: run.json (commit, command), settings.txt, kills.csv (kill number, node, kill time), bench.json
# (the bench's results), failover.csv (one row per kill: the raw data),
# summary.txt (median and max, and where the time went: medians of the
# first election, the vote won and the new leader serving, from the nodes'
# logs; failover.csv has them per kill), and the nodes' logs. Data dirs are under
# OUT_DIR/cluster and removed at the end (logs are kept).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
out="$1"
kills="${KILLS:-20}"
calm="${CALM:-30}"
interval="${INTERVAL:-8}"
load="${LOAD:---producers 5 --consumers 5 --destinations 5 --size 1024}"
bin="${FERROMQ_BIN:-target/release/ferromq}"
bench="${BENCH_BIN:-target/release/ferromq-bench}"
export BASE_PORT="${BASE_PORT:-62400}"
export FERROMQ_BIN="$bin"
for b in "$bin" "$bench"; do
  [ -x "$b" ] || { echo "$b not found: cargo build --release -p ferromq-broker -p ferromq-bench" >&2; exit 1; }
done
mkdir -p "$out"
cluster="$out/cluster"
rm -rf "$cluster"
port() { echo $((BASE_PORT + 10 * $1 + $2)); }
now_ms() { date +%s%3N; }
health() { curl -s --max-time 1 "http://127.0.0.1:$(port "$1" 2)/healthz" || true; }
leader() {
  local id
  for id in 1 2 3; do
    if [ "$(health "$id")" = "ok leader" ]; then echo "$id"; return 0; fi
  done
  return 1
}
# Waits (bounded: 60 s) for a serving leader other than $1; prints its id.
wait_leader() {
  local id
  for _ in $(seq 600); do
    if id="$(leader)" && [ "$id" != "${1:-}" ]; then echo "$id"; return 0; fi
    sleep 0.1
  done
  echo "no leader within 60 s" >&2
  return 1
}
role_changes() { cat "$cluster"/node*/ferromq.log 2>/dev/null | grep -c "role changed" || true; }
cleanup() {
  [ -n "${bench_pid:-}" ] && kill "$bench_pid" 2>/dev/null || true
  scripts/cluster-local.sh stop "$cluster" >/dev/null 2>&1 || true
  for id in 1 2 3; do
    [ -f "$cluster/node$id/ferromq.log" ] && cp "$cluster/node$id/ferromq.log" "$out/node$id.log"
  done
  rm -rf "$cluster"
}
trap cleanup EXIT

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD)"
  echo "kills=$kills calm=${calm}s interval=${interval}s load: --persistent $load"
  echo "cluster settings (defaults, config/src/cluster.rs):"
  "$bin" --print-default-config 2>/dev/null | grep -E '^#? *(heartbeat|election_timeout_(min|max)) *=' | grep -v stomp || true
  echo "overridden by CLUSTER_EXTRA: ${CLUSTER_EXTRA:-(none)}"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/settings.txt"

command="CLUSTER_EXTRA='${CLUSTER_EXTRA:-}' KILLS=$kills CALM=$calm INTERVAL=$interval LOAD='$load' bench-client/scripts/failover-time.sh $out"
clean=$([ -z "$(git status --porcelain -- broker config protocol bench-client/src)" ] && echo 1 || echo 0)
RUN="$(basename "$out")" COMMIT="$(git rev-parse HEAD)" CLEAN="$clean" COMMAND="$command" \
  python3 -c 'import json, os, sys, time
json.dump({"run": os.environ["RUN"], "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "ferromq_commit": os.environ["COMMIT"], "sources_clean": os.environ["CLEAN"] == "1",
           "command": os.environ["COMMAND"]}, open(sys.argv[1], "w"), indent=2)' "$out/run.json"
scripts/cluster-local.sh start "$cluster"
first="$(wait_leader)"
echo "leader: node $first"
url="failover:(stomp://127.0.0.1:$(port 1 0),stomp://127.0.0.1:$(port 2 0),stomp://127.0.0.1:$(port 3 0))"
samples=$((calm + kills * interval + 10))
# shellcheck disable=SC2086 # $load is a list of options
"$bench" run --url "$url" --persistent $load --warmup 0 --samples "$samples" \
  --sample-interval 1000 --broker-name "ferromq 3-node cluster" \
  -o "$out/bench.json" >"$out/bench.log" 2>&1 &
bench_pid=$!

sleep 5
before="$(role_changes)"
sleep "$calm"
after="$(role_changes)"
if [ "$before" != "$after" ]; then
  echo "FAIL: $((after - before)) role change(s) during ${calm} s of load with no kill" >&2
  exit 1
fi
echo "calm: no role change in ${calm} s under load"

echo "kill,node,kill_unix_ms" >"$out/kills.csv"
for k in $(seq "$kills"); do
  start="$(date +%s)"
  victim="$(wait_leader)"
  pid="$(cat "$cluster/node$victim/pid")"
  at="$(now_ms)"
  kill -9 "$pid"
  echo "$k,$victim,$at" >>"$out/kills.csv"
  next="$(wait_leader "$victim")"
  # cluster-local.sh start skips a node whose pid answers kill -0: a
  # process still tearing down, or a zombie nobody has reaped yet, would
  # not be restarted (a run livelocked on it once elections took 1.3 s).
  # Wait (bounded: 5 s) until it is gone or a zombie, then forget its pid.
  for _ in $(seq 50); do
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo gone)"
    [ "$state" = gone ] || [ "$state" = Z ] && break
    sleep 0.1
  done
  rm -f "$cluster/node$victim/pid"
  echo "kill $k: node $victim (pid $pid) killed; node $next leads (load average $(cut -d' ' -f1 /proc/loadavg))"
  scripts/cluster-local.sh start "$cluster" >/dev/null
  left=$((interval - ($(date +%s) - start)))
  [ "$left" -gt 0 ] && sleep "$left"
done

wait "$bench_pid"
bench_pid=""
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/settings.txt"
[ "$kills" -gt 0 ] || exit 0
python3 - "$out" "$cluster" <<'PY'
import csv, glob, json, statistics, sys
from datetime import datetime, timezone
out, cluster = sys.argv[1], sys.argv[2]
report = json.load(open(f"{out}/bench.json"))
scenario = report["scenarios"][-1]
f = scenario.get("failover") or {}
gaps = f.get("gaps", [])

# Where the time goes, from the nodes' logs (openraft's and ours, UTC
# timestamps): (unix ms, event) for the events that mark an election.
# Since the pre-vote (broker/src/cluster/election.rs) our timer starts
# elections; openraft's own timer ("do trigger election") is off, and is
# kept here for runs of older commits.
EVENTS = {
    "do trigger election": "election",          # openraft's timer fired
    "pre-vote won; campaigning": "election",    # ours, after a quorum's yes
    "pre-vote refused": "pre-vote-refused",     # ours, first of a streak
    "a quorum granted my vote": "elected",
    "reject vote-request: by last_log_id": "refused-shorter-log",
    "serving clients": "serving",               # router restored
}
events = []
for log in glob.glob(f"{cluster}/node*/ferromq.log"):
    for line in open(log, errors="replace"):
        for needle, name in EVENTS.items():
            if needle in line:
                stamp = line.split(" ", 1)[0].rstrip("Z")
                try:
                    t = datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc)
                except ValueError:
                    continue
                events.append((int(t.timestamp() * 1000), name))
events.sort()

rows = []
for kill in csv.DictReader(open(f"{out}/kills.csv")):
    at = int(kill["kill_unix_ms"])
    # The gap the kill falls in: the last receipt before it came at or
    # before the kill (receipts already on the wire may land a few ms
    # after it), the first one after it from the new leader.
    gap = next((g for g in gaps if g["start_unix_ms"] <= at + 100 and g["end_unix_ms"] > at), None)
    end = gap["end_unix_ms"] if gap and not gap["open"] else None
    window = [(t - at, e) for t, e in events if at < t <= (end or at + 30000)]
    first = lambda name: next((str(t) for t, e in window if e == name), "")
    rows.append({
        "kill": kill["kill"], "node": kill["node"], "kill_unix_ms": at,
        "last_receipt_before_unix_ms": gap["start_unix_ms"] if gap else "",
        "first_receipt_after_unix_ms": end or "",
        "failover_ms": end - at if end else "",
        "first_election_ms": first("election"),
        "elections": sum(1 for _, e in window if e == "election"),
        "shorter_log_refusals": sum(1 for _, e in window if e == "refused-shorter-log"),
        "pre_vote_refusals": sum(1 for _, e in window if e == "pre-vote-refused"),
        "elected_ms": first("elected"),
        "serving_ms": first("serving"),
    })
with open(f"{out}/failover.csv", "w", newline="") as w:
    writer = csv.DictWriter(w, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
values = [r["failover_ms"] for r in rows if r["failover_ms"] != ""]
missing = len(rows) - len(values)
def med(key):
    v = [int(r[key]) for r in rows if r[key] != ""]
    return f"{statistics.median(v):.0f}" if v else "-"
lines = [
    f"kills: {len(rows)}, measured: {len(values)}, without a matching gap: {missing}",
    f"failover ms (kill -9 to first receipt): median {statistics.median(values):.0f}, max {max(values)}, min {min(values)}" if values else "no failover measured",
    f"all (ms, in kill order): {values}",
    f"median ms after the kill: first election {med('first_election_ms')}, elected {med('elected_ms')}, serving {med('serving_ms')}, first receipt {med('failover_ms')}",
    f"kills needing more than one election: {sum(1 for r in rows if r['elections'] > 1)}; with a vote refused for a shorter log: {sum(1 for r in rows if r['shorter_log_refusals'] > 0)}; with a pre-vote refused: {sum(1 for r in rows if r['pre_vote_refusals'] > 0)}",
    f"bench: receipted {f.get('receipted')}, longest gap {f.get('longest_gap_ms')} ms, redirects {f.get('redirects')}, resent {f.get('resent')}, errors {sum(scenario.get('errors', [])) + (scenario.get('errors_outside_samples') or 0)}, drained {scenario.get('drained')}",
]
open(f"{out}/summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if missing else 0)
PY
