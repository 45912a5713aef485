#!/usr/bin/env bash
# Installs what the interop tests need on a fresh Debian machine without a
# virtualenv: python3 with pip, then stomp.py (pinned: the tests exercise its
# exact behaviour), pytest and cryptography (to make a self-signed
# certificate for the TLS test) for tests/python; the npm packages of
# tests/js for the stomp.js test. Idempotent: when everything is already
# installed at the right version it returns at once.
set -euo pipefail

STOMP_PY_VERSION="8.2.0"

have_all() {
  python3 - "$STOMP_PY_VERSION" <<'PY' 2>/dev/null
import sys
import stomp, pytest, cryptography  # noqa: F401
from importlib.metadata import version
sys.exit(0 if version("stomp.py") == sys.argv[1] else 1)
PY
}

# More third-party clients for tests/python/test_other_clients.py: Perl's
# Net::Stomp, Ruby's stomp gem and PHP's stomp extension (PECL stomp 2.0.3,
# with the PHP command line), from Debian.
if ! perl -MNet::Stomp -e1 2>/dev/null || ! ruby -rstomp -e1 2>/dev/null ||
   ! php -r 'exit(extension_loaded("stomp") ? 0 : 1);' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then sudo_=(); else sudo_=(sudo); fi
  "${sudo_[@]}" apt-get update -qq
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnet-stomp-perl ruby-stomp php-cli php-stomp >/dev/null
fi

# @stomp/stompjs and ws for the stomp.js interop test (tests/tests/stomp_js.rs
# runs tests/js/stompjs_interop.mjs under Node 20), pinned by
# tests/js/package-lock.json. `npm ci` records the lock file it installed in
# node_modules/.package-lock.json: when that matches, nothing is fetched.
install_js_deps() {
  local dir=tests/js
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
     [ -d "$dir/node_modules/@stomp/stompjs" ] && [ -d "$dir/node_modules/ws" ] &&
     [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "test-deps: npm (Node 20) is needed for the stomp.js interop test" >&2
    exit 1
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
install_js_deps

if command -v python3 >/dev/null && have_all; then
  exit 0
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
fi

# Debian's own python3 refuses pip installs outside a venv (PEP 668) unless
# told otherwise; these are test-only packages, so say so.
pip_flags=(--quiet --disable-pip-version-check --no-warn-script-location)
if python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  pip_flags+=(--break-system-packages)
fi
PIP_ROOT_USER_ACTION=ignore python3 -m pip install "${pip_flags[@]}" "stomp.py==${STOMP_PY_VERSION}" pytest cryptography
have_all || { echo "test-deps: stomp.py ${STOMP_PY_VERSION}, pytest or cryptography still missing" >&2; exit 1; }
