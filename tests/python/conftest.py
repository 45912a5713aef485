"""Fixtures for the stomp.py interop tests: a real ferromq process per test
on ephemeral loopback ports, and a recording listener for stomp.py."""

import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import stomp

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0  # seconds: how long to wait for something that should be prompt

LISTENER_READY = re.compile(r'listener ready.*listener="([^"]+)".*addr=(\S+)')


def ferromq_bin():
    return os.environ.get("FERROMQ_BIN", str(REPO / "target" / "debug" / "ferromq"))


class Broker:
    """A running ferromq process and the addresses it logged."""

    def __init__(self, config_text=None, stomp_tls=""):
        self.tmp = tempfile.TemporaryDirectory(prefix="ferromq-py-")
        args = [
            ferromq_bin(),
            "--stomp", "127.0.0.1:0",
            "--stomp-tls", stomp_tls,
            "--native", "",
            "--native-tls", "",
            "--websocket", "", "--websocket-tls", "",
            "--admin", "",
            "--data-dir", os.path.join(self.tmp.name, "data"),
        ]
        if config_text is not None:
            path = os.path.join(self.tmp.name, "ferromq.toml")
            with open(path, "w") as f:
                f.write(config_text)
            args += ["--config", path]
        env = dict(os.environ, RUST_LOG="info")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env,
        )
        self.log = []
        self.listeners = {}
        started = threading.Event()

        def read_log():
            for line in self.proc.stderr:
                self.log.append(line)
                m = LISTENER_READY.search(line)
                if m:
                    host, port = m.group(2).rsplit(":", 1)
                    self.listeners[m.group(1)] = (host, int(port))
                if "ferromq started" in line:
                    started.set()
            started.set()  # the process ended: stop waiting

        threading.Thread(target=read_log, daemon=True).start()
        if not started.wait(WAIT) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("ferromq did not start:\n" + "".join(self.log))

    @property
    def stomp(self):
        return self.listeners["stomp"]

    @property
    def stomp_tls(self):
        return self.listeners["stomp+tls"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()


class Recorder(stomp.ConnectionListener):
    """Collects what stomp.py hands its listeners, with waits that fail the
    test instead of hanging it."""

    def __init__(self):
        self.messages = queue.Queue()
        self.receipts = set()
        self.errors = []
        self.heartbeats = 0
        self.connected = None
        self.cond = threading.Condition()

    def on_connected(self, frame):
        with self.cond:
            self.connected = frame
            self.cond.notify_all()

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.add(frame.headers["receipt-id"])
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame)
            self.cond.notify_all()

    def on_heartbeat(self):
        with self.cond:
            self.heartbeats += 1
            self.cond.notify_all()

    def message(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no MESSAGE within %.1fs" % timeout) from None

    def bodies(self, n):
        return [self.message().body for _ in range(n)]

    def nothing_more(self, seconds=0.3):
        try:
            frame = self.messages.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError("unexpected MESSAGE %r %r" % (frame.headers, frame.body))

    def wait_for(self, predicate, what):
        deadline = time.monotonic() + WAIT
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for " + what)
                self.cond.wait(left)

    def receipt(self, receipt_id):
        self.wait_for(lambda: receipt_id in self.receipts, "RECEIPT " + receipt_id)


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.stop()


def connect(address, version="1.2", heartbeats=(0, 0), tls=None):
    """Connects with stomp.py's class for `version`; returns (conn, recorder)."""
    cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11,
           "1.2": stomp.Connection12}[version]
    kwargs = {} if version == "1.0" else {"heartbeats": heartbeats}
    conn = cls([address], **kwargs)
    if tls is not None:
        conn.set_ssl(for_hosts=[address], ca_certs=tls)
    rec = Recorder()
    conn.set_listener("rec", rec)
    conn.connect(wait=True)
    rec.wait_for(lambda: rec.connected is not None, "CONNECTED")
    return conn, rec
