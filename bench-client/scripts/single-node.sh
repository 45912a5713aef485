#!/usr/bin/env bash
# Sourced by the cluster comparison scripts (cluster-commit.sh,
# cluster-inflight.sh, cluster-extra.sh): one ferromq node without
# [cluster], the single-node side of each comparison, configured as every
# one of them measures it (STOMP, native and admin on the given loopback
# ports, no WebSocket, store.sync = always).
#
#   start_single_node DIR BIN STOMP_PORT NATIVE_PORT ADMIN_PORT
#       writes DIR/ferromq.toml (data in DIR/data), starts BIN in the
#       background (log in DIR/ferromq.log), sets single_pid, and waits
#       (bounded: 10 s) for /healthz; exits the script if it did not start.
#   stop_single_node
#       kills and reaps single_pid, if any (safe in an EXIT trap).

single_pid=""

start_single_node() {
  local dir="$1" bin="$2" stomp="$3" native="$4" admin="$5"
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/ferromq.toml" <<TOML
[broker]
data_dir = "$dir/data"

[stomp]
listen = "127.0.0.1:$stomp"

[websocket]
listen = ""
tls_listen = ""

[native]
listen = "127.0.0.1:$native"

[admin]
listen = "127.0.0.1:$admin"

[store]
sync = "always"
TOML
  "$bin" --config "$dir/ferromq.toml" >"$dir/ferromq.log" 2>&1 &
  single_pid=$!
  for _ in $(seq 100); do # bounded: 100 x 0.1 s
    [ "$(curl -s --max-time 1 "http://127.0.0.1:$admin/healthz")" != "" ] && break
    sleep 0.1
  done
  kill -0 "$single_pid" 2>/dev/null || {
    echo "single node did not start:" >&2
    cat "$dir/ferromq.log" >&2
    exit 1
  }
}

stop_single_node() {
  if [ -n "$single_pid" ]; then
    kill "$single_pid" 2>/dev/null || true
    wait "$single_pid" 2>/dev/null || true
    single_pid=""
  fi
}
