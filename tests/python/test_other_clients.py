"""Interop smoke tests with more third-party STOMP clients, each a script in
tests/clients run against the real broker: Perl Net::Stomp, Ruby stomp and
PHP's stomp extension (all from Debian, installed by scripts/test-deps.sh).
The PHP client needs every frame to end with NUL and LF, and waits for a
SEND's RECEIPT with a MESSAGE arriving first."""

import subprocess
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


@pytest.mark.parametrize("command", [
    ["perl", str(CLIENTS / "net_stomp.pl")],
    ["ruby", str(CLIENTS / "ruby_stomp.rb")],
    ["php", str(CLIENTS / "php_stomp.php")],
], ids=["perl-net-stomp", "ruby-stomp", "php-stomp"])
def test_client_round_trip(broker, command):
    host, port = broker.stomp
    done = subprocess.run(command + [host, str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok "), done.stdout
