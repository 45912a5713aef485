#!/usr/bin/env bash
# The web console in headless Chromium: installs Debian's `chromium` if it
# is missing (apt-get; root) and playwright-core (pinned by
# package-lock.json, npm ci), builds and starts a broker on ephemeral
# loopback ports, runs console.mjs against it, and stops the broker.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package)…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
if [ ! -d "$here/node_modules/playwright-core" ] ||
   [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
cd "$repo"
cargo build --quiet -p ferromq-broker --bin ferromq
work="$(mktemp -d)"
log="$work/broker.log"
target/debug/ferromq --stomp 127.0.0.1:0 --admin 127.0.0.1:0 --native "" --native-tls "" \
  --stomp-tls "" --websocket "" --websocket-tls "" --data-dir "$work/data" 2>"$log" &
broker=$!
trap 'kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; rm -rf "$work"' EXIT
addr() { grep -o "listener=\"$1\" addr=[0-9.:]*" "$log" | head -1 | sed 's/.*addr=//'; }
for _ in $(seq 1 100); do
  if [ -n "$(addr admin)" ] && [ -n "$(addr stomp)" ]; then break; fi
  sleep 0.1
done
if [ -z "$(addr admin)" ]; then
  echo "the broker did not start:" >&2
  cat "$log" >&2
  exit 1
fi
FERROMQ_ADMIN_URL="http://$(addr admin)" FERROMQ_STOMP="$(addr stomp)" \
  timeout 120 node "$here/console.mjs"
