"""Interop smoke tests with more third-party STOMP clients, each a script in
tests/clients run against the real broker: Perl Net::Stomp and Ruby stomp
(both from Debian, installed by scripts/test-deps.sh)."""

import subprocess
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


@pytest.mark.parametrize("command", [
    ["perl", str(CLIENTS / "net_stomp.pl")],
    ["ruby", str(CLIENTS / "ruby_stomp.rb")],
], ids=["perl-net-stomp", "ruby-stomp"])
def test_client_round_trip(broker, command):
    host, port = broker.stomp
    done = subprocess.run(command + [host, str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok "), done.stdout
