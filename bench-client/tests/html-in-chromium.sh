#!/usr/bin/env bash
# Checks ferromq-bench's HTML report in a real browser: installs Debian's
# `chromium` if it is missing (apt-get; root), then runs the `browser-tests`
# test target (tests/html_in_browser.rs), which renders a report headless and
# fails on a script error, a console error or missing charts.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package)…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
cd "$repo"
cargo test -p ferromq-bench --features browser-tests --test html_in_browser
