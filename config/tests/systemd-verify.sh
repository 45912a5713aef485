#!/usr/bin/env bash
# Checks config/systemd/ferromq.service with `systemd-analyze verify`
# (installing Debian's systemd package if the tool is missing). verify wants
# the ExecStart binary to exist, so it runs against a scratch root holding a
# stub /usr/local/bin/ferromq and the system's unit directory.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
printf '#!/bin/sh\nexit 0\n' > "$root/usr/local/bin/ferromq"
chmod +x "$root/usr/local/bin/ferromq"
cp /bin/kill "$root/bin/kill"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/" 2>/dev/null || true
cp "$repo/config/systemd/ferromq.service" "$root/etc/systemd/system/"
out="$(systemd-analyze verify --root="$root" ferromq.service 2>&1)" || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "$out"; exit 1; fi
echo "systemd-analyze verify: ferromq.service ok"
