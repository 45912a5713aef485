"""Interop: the third-party Python client stomp.py against the real ferromq
broker. Queue, topic, each ack mode, NACK, transactions, receipts, STOMP
1.0/1.1/1.2 connections, heart-beats, and TLS 1.2/1.3."""

import datetime
import ipaddress
import ssl

import pytest
import stomp

from conftest import Broker, connect


def test_queue_round_trip_in_order(broker):
    consumer, rec = connect(broker.stomp)
    consumer.subscribe("/queue/py.q", id="s1", ack="auto", headers={"receipt": "sub"})
    rec.receipt("sub")
    producer, _ = connect(broker.stomp)
    for i in range(20):
        producer.send("/queue/py.q", "m%d" % i, headers={"color": "blue"})
    frames = [rec.message() for _ in range(20)]
    assert [f.body for f in frames] == ["m%d" % i for i in range(20)]
    assert frames[0].headers["color"] == "blue"
    assert frames[0].headers["destination"] == "/queue/py.q"
    assert frames[0].headers["subscription"] == "s1"
    rec.nothing_more()
    producer.disconnect()
    consumer.disconnect()


def test_queue_competing_consumers_each_message_once(broker):
    recs = []
    for i in range(2):
        c, rec = connect(broker.stomp)
        c.subscribe("/queue/py.compete", id="c%d" % i, ack="auto", headers={"receipt": "s"})
        rec.receipt("s")
        recs.append(rec)
    producer, _ = connect(broker.stomp)
    for i in range(40):
        producer.send("/queue/py.compete", "m%d" % i)
    shares = []
    for rec in recs:
        share = []
        while True:
            try:
                share.append(rec.message(timeout=0.5).body)
            except AssertionError:
                break
        shares.append(share)
    got = [body for share in shares for body in share]
    assert sorted(got) == sorted("m%d" % i for i in range(40))
    # Competing, not one consumer taking (nearly) everything: each gets a
    # share (round-robin dispatch gives 20 each).
    assert all(len(share) >= 40 // 4 for share in shares), [len(share) for share in shares]
    assert all(not rec.messages.qsize() for rec in recs)


def test_topic_every_subscriber_gets_every_message(broker):
    recs = []
    for i in range(3):
        c, rec = connect(broker.stomp)
        c.subscribe("/topic/py.t", id="t%d" % i, headers={"receipt": "s"})
        rec.receipt("s")
        recs.append(rec)
    producer, _ = connect(broker.stomp)
    for i in range(10):
        producer.send("/topic/py.t", "n%d" % i)
    for rec in recs:
        assert rec.bodies(10) == ["n%d" % i for i in range(10)]
        rec.nothing_more(0.1)
    late, late_rec = connect(broker.stomp)
    late.subscribe("/topic/py.t", id="late", headers={"receipt": "s"})
    late_rec.receipt("s")
    late_rec.nothing_more()


def fill(broker, destination, n):
    producer, prec = connect(broker.stomp)
    for i in range(n):
        producer.send(destination, "m%d" % i, headers={"receipt": "r%d" % i})
    prec.receipt("r%d" % (n - 1))
    producer.disconnect()


def drain_with_new_consumer(broker, destination):
    c, rec = connect(broker.stomp)
    # The RECEIPT first: an empty result must mean "nothing there", not "the
    # subscription was not in place yet".
    c.subscribe(destination, id="after", ack="auto", headers={"receipt": "after"})
    rec.receipt("after")
    bodies = []
    while True:
        try:
            bodies.append(rec.message(timeout=0.5))
        except AssertionError:
            return bodies


def test_ack_auto_is_not_redelivered(broker):
    fill(broker, "/queue/py.auto", 3)
    c, rec = connect(broker.stomp)
    c.subscribe("/queue/py.auto", id="s", ack="auto")
    assert rec.bodies(3) == ["m0", "m1", "m2"]
    c.disconnect()
    assert drain_with_new_consumer(broker, "/queue/py.auto") == []


def test_ack_client_is_cumulative(broker):
    fill(broker, "/queue/py.client", 4)
    c, rec = connect(broker.stomp)
    c.subscribe("/queue/py.client", id="s", ack="client")
    frames = [rec.message() for _ in range(4)]
    c.ack(frames[1].headers["ack"], receipt="ack")
    rec.receipt("ack")
    c.disconnect()
    again = drain_with_new_consumer(broker, "/queue/py.client")
    assert [f.body for f in again] == ["m2", "m3"]
    assert all(f.headers.get("redelivered") == "true" for f in again)


def test_ack_client_individual_and_nack(broker):
    fill(broker, "/queue/py.individual", 3)
    c, rec = connect(broker.stomp)
    c.subscribe("/queue/py.individual", id="s", ack="client-individual")
    frames = [rec.message() for _ in range(3)]
    c.ack(frames[1].headers["ack"])
    c.nack(frames[0].headers["ack"])
    back = rec.message()
    assert back.body == "m0"
    assert back.headers["redelivered"] == "true"
    c.ack(back.headers["ack"], receipt="done")
    rec.receipt("done")
    c.disconnect()
    again = drain_with_new_consumer(broker, "/queue/py.individual")
    assert [f.body for f in again] == ["m2"]


def test_stomp_1_1_ack_and_nack_by_message_id(broker):
    fill(broker, "/queue/py.v11", 2)
    c, rec = connect(broker.stomp, version="1.1")
    assert rec.connected.headers["version"] == "1.1"
    c.subscribe("/queue/py.v11", id="s", ack="client-individual")
    frames = [rec.message() for _ in range(2)]
    c.ack(frames[0].headers["message-id"], "s")
    c.nack(frames[1].headers["message-id"], "s")
    back = rec.message()
    assert back.body == "m1" and back.headers["redelivered"] == "true"


def test_transactions_commit_and_abort(broker):
    consumer, rec = connect(broker.stomp)
    consumer.subscribe("/queue/py.tx", id="s", headers={"receipt": "s"})
    rec.receipt("s")
    producer, prec = connect(broker.stomp)
    tx = producer.begin()
    producer.send("/queue/py.tx", "in-tx-1", transaction=tx)
    producer.send("/queue/py.tx", "in-tx-2", transaction=tx)
    rec.nothing_more()
    producer.commit(tx, receipt="commit")
    prec.receipt("commit")
    assert rec.bodies(2) == ["in-tx-1", "in-tx-2"]
    tx = producer.begin()
    producer.send("/queue/py.tx", "aborted", transaction=tx)
    producer.abort(tx, receipt="abort")
    prec.receipt("abort")
    rec.nothing_more()


def test_transactional_ack(broker):
    fill(broker, "/queue/py.txack", 2)
    c, rec = connect(broker.stomp)
    c.subscribe("/queue/py.txack", id="s", ack="client-individual")
    frames = [rec.message() for _ in range(2)]
    committed = c.begin()
    c.ack(frames[0].headers["ack"], transaction=committed)
    c.commit(committed)
    aborted = c.begin()
    c.ack(frames[1].headers["ack"], transaction=aborted)
    c.abort(aborted, receipt="abort")
    rec.receipt("abort")
    c.disconnect()
    again = drain_with_new_consumer(broker, "/queue/py.txack")
    assert [f.body for f in again] == ["m1"]


def test_unknown_transaction_is_an_error(broker):
    c, rec = connect(broker.stomp)
    c.commit("no-such-tx", receipt="r")
    rec.wait_for(lambda: rec.errors, "ERROR")
    assert "no-such-tx" in rec.errors[0].headers["message"]
    assert rec.errors[0].headers["receipt-id"] == "r"


def test_receipts_and_disconnect(broker):
    c, rec = connect(broker.stomp)
    c.subscribe("/queue/py.r", id="s", headers={"receipt": "sub"})
    c.send("/queue/py.r", "x", headers={"receipt": "send"})
    c.unsubscribe("s", headers={"receipt": "unsub"})
    for r in ("sub", "send", "unsub"):
        rec.receipt(r)
    c.disconnect(receipt="bye")
    assert "bye" in rec.receipts


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_each_protocol_version(broker, version):
    c, rec = connect(broker.stomp, version=version)
    assert rec.connected.headers.get("version", "1.0") == version
    if version == "1.0":
        c.subscribe("/queue/py.v", ack="auto", headers={"receipt": "s"})
    else:
        c.subscribe("/queue/py.v", id="s", ack="auto", headers={"receipt": "s"})
    rec.receipt("s")
    # A header value with characters 1.1+ must escape.
    c.send("/queue/py.v", "hello " + version, headers={"odd": "a:b"})
    m = rec.message()
    assert m.body == "hello " + version
    assert m.headers["odd"] == "a:b"
    c.disconnect()


def test_heartbeats_both_ways():
    b = Broker('[stomp]\nheartbeat_send_min = "200ms"\nheartbeat_receive_min = "200ms"\n')
    try:
        c, rec = connect(b.stomp, heartbeats=(200, 200))
        rec.wait_for(lambda: rec.heartbeats >= 3, "three heart-beats from the broker")
        # stomp.py keeps heart-beating, so the broker keeps it connected.
        c.send("/queue/py.hb", "alive", headers={"receipt": "alive"})
        rec.receipt("alive")
        assert c.is_connected()
    finally:
        b.stop()


def make_certificate(directory):
    """A self-signed certificate for localhost/127.0.0.1 (also its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "server.crt"
    key_path = directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


@pytest.fixture
def tls_broker(tmp_path):
    cert, key = make_certificate(tmp_path)
    b = Broker('[tls]\ncert = "%s"\nkey = "%s"\n' % (cert, key), stomp_tls="127.0.0.1:0")
    b.ca = str(cert)
    yield b
    b.stop()
    # Shown by pytest only when the test failed: the broker's side of it.
    print("".join(b.log))


@pytest.mark.parametrize("tls_version", ["TLSv1.2", "TLSv1.3"])
def test_tls_session(tls_broker, monkeypatch, tls_version):
    # stomp.py builds its own SSLContext from the `ssl` module it imported;
    # give it a stand-in module whose contexts negotiate only `tls_version`.
    wanted = getattr(ssl.TLSVersion, tls_version.replace(".", "_"))

    class PinnedSsl:
        def __getattr__(self, name):
            return getattr(ssl, name)

        @staticmethod
        def SSLContext(protocol=ssl.PROTOCOL_TLS_CLIENT):
            ctx = ssl.SSLContext(protocol)
            ctx.minimum_version = wanted
            ctx.maximum_version = wanted
            return ctx

    monkeypatch.setattr(stomp.transport, "ssl", PinnedSsl())
    address = ("localhost", tls_broker.stomp_tls[1])
    c, rec = connect(address, tls=tls_broker.ca)
    assert c.transport.socket.version() == tls_version
    c.subscribe("/queue/py.tls", id="s", ack="client-individual", headers={"receipt": "s"})
    rec.receipt("s")
    body = "x" * 100000  # spans several TLS records
    c.send("/queue/py.tls", body)
    m = rec.message()
    assert m.body == body
    c.ack(m.headers["ack"], receipt="ack")
    rec.receipt("ack")
    # The plain listener serves the same destinations.
    plain, _ = connect(tls_broker.stomp)
    plain.send("/queue/py.tls", "from plain")
    assert rec.message().body == "from plain"
    c.disconnect()
