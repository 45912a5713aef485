#!/usr/bin/env bash
# The project's test command (README "Test"; .ci/run calls exactly this).
# Installs what the tests need on a fresh Debian machine, then runs every
# check: formatting, lints, unit and end-to-end tests, third-party client
# interop. Idempotent: a second run skips installs that are already done.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Runs a step's script. A script that is missing or not executable fails the
# run: a skipped step would pass with nothing tested.
run() {
  if [ ! -x "$1" ]; then
    printf 'scripts/test.sh: step script %s is missing or not executable\n' "$1" >&2
    exit 1
  fi
  "$@"
}

step "dependencies"
run scripts/test-deps.sh

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked

step "build (the e2e tests run the real binaries)"
cargo build --workspace --bins --locked

step "unit and end-to-end tests (stomp.js under Node included: tests/tests/stomp_js.rs)"
cargo test --workspace --locked

step "interop: stomp.py against the real broker"
FERROMQ_BIN="$PWD/target/debug/ferromq" python3 -m pytest -q tests/python

step "ferromq-bench against ActiveMQ 5.17"
run bench-client/tests/peer-activemq.sh

step "ferromq-bench HTML report in headless Chromium"
run bench-client/tests/html-in-chromium.sh

step "web console in headless Chromium"
run tests/console/console-in-chromium.sh

step "every benchmark table and report regenerates from its committed raw data"
run scripts/bench-tables-check.sh

step "systemd unit verifies"
run config/tests/systemd-verify.sh

step "fuzz targets build"
cargo build --quiet --manifest-path protocol/fuzz/Cargo.toml --locked
