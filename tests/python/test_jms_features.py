"""ActiveMQ/JMS features through stomp.py (issue 6): selectors, durable
topic subscriptions and the dead-letter queue, against the real broker."""

from conftest import Broker, connect


def test_selector_through_stomp_py(broker):
    conn, rec = connect(broker.stomp)
    conn.subscribe("/queue/py.sel", id="s", ack="auto",
                   headers={"selector": "region = 'eu' AND amount > 100"})
    producer, prec = connect(broker.stomp)
    producer.send("/queue/py.sel", "us-big", headers={"region": "us", "amount": "500"})
    producer.send("/queue/py.sel", "eu-small", headers={"region": "eu", "amount": "5"})
    producer.send("/queue/py.sel", "eu-big", headers={"region": "eu", "amount": "500"})
    assert rec.message().body == "eu-big"
    rec.nothing_more()
    conn.disconnect()
    producer.disconnect()


def test_durable_subscription_through_stomp_py(broker):
    conn, rec = connect(broker.stomp)
    conn.disconnect()
    conn = type(conn)([broker.stomp])
    conn.set_listener("rec", rec)
    conn.connect(wait=True, headers={"client-id": "py-app"})
    conn.subscribe("/topic/py.news", id="d", ack="client-individual",
                   headers={"activemq.subscriptionName": "py-sub", "receipt": "sub1"})
    rec.receipt("sub1")
    conn.disconnect()

    producer, _ = connect(broker.stomp)
    producer.send("/topic/py.news", "published while away")
    producer.disconnect()

    conn = type(conn)([broker.stomp])
    conn.set_listener("rec", rec)
    conn.connect(wait=True, headers={"client-id": "py-app"})
    conn.subscribe("/topic/py.news", id="d", ack="client-individual",
                   headers={"activemq.subscriptionName": "py-sub"})
    m = rec.message()
    assert m.body == "published while away"
    assert m.headers["destination"] == "/topic/py.news"
    conn.ack(m.headers["ack"])
    conn.disconnect()


def test_dead_letter_queue_through_stomp_py():
    b = Broker("[destinations]\nmax_redeliveries = 1\n")
    try:
        producer, _ = connect(b.stomp)
        producer.send("/queue/py.work", "poison", headers={"persistent": "true"})
        conn, rec = connect(b.stomp)
        conn.subscribe("/queue/py.work", id="w", ack="client-individual")
        first = rec.message()
        conn.nack(first.headers["ack"])
        second = rec.message()
        assert second.headers.get("redelivered") == "true"
        conn.nack(second.headers["ack"])
        rec.nothing_more()
        conn.subscribe("/queue/ActiveMQ.DLQ", id="dlq", ack="auto")
        dead = rec.message()
        assert dead.body == "poison"
        assert dead.headers["original-destination"] == "/queue/py.work"
        assert "dlq-reason" in dead.headers
        conn.disconnect()
        producer.disconnect()
    finally:
        b.stop()
