#!/usr/bin/env bash
# The project's test command (README "Test"; .ci/run calls exactly this).
# Installs what the tests need on a fresh Debian machine, then runs every
# check: formatting, lints, unit and end-to-end tests, third-party client
# interop. Idempotent: a second run skips installs that are already done.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
if [ -x scripts/test-deps.sh ]; then
  scripts/test-deps.sh
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (the e2e tests run the real binaries)"
cargo build --workspace --bins --locked

step "unit and end-to-end tests (stomp.js under Node included: tests/tests/stomp_js.rs)"
cargo test --workspace --locked

if [ -d tests/python ]; then
  step "interop: stomp.py against the real broker"
  FERROMQ_BIN="$PWD/target/debug/ferromq" python3 -m pytest -q tests/python
fi

if [ -x bench-client/tests/peer-activemq.sh ]; then
  step "ferromq-bench against ActiveMQ 5.17"
  bench-client/tests/peer-activemq.sh
fi

if [ -x bench-client/tests/html-in-chromium.sh ]; then
  step "ferromq-bench HTML report in headless Chromium"
  bench-client/tests/html-in-chromium.sh
fi

step "systemd unit verifies"
config/tests/systemd-verify.sh

step "fuzz targets build"
cargo build --quiet --manifest-path protocol/fuzz/Cargo.toml --locked
