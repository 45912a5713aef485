//! Durable topic subscriptions over the native protocol: the same hidden
//! queue a STOMP durable subscriber uses, named by the Open container id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{ConnectOptions, Connection, ReceiverOptions, SettleMode};
use native_common::{broker, url};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn connect_as(broker: &ferromq_tests::Broker, container: &str) -> Connection {
    let options = ConnectOptions {
        container_id: container.to_string(),
        ..ConnectOptions::default()
    };
    Connection::connect_with(&url(broker), options)
        .await
        .unwrap()
}

fn durable(name: &str) -> ReceiverOptions {
    ReceiverOptions {
        credit: 10,
        settle_mode: SettleMode::Unsettled,
        durable_subscription: Some(name.to_string()),
        ..ReceiverOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_durable_subscriber_gets_what_was_published_while_away() {
    let b = broker();
    let conn = connect_as(&b, "native-app").await;
    let receiver = conn
        .open_receiver("/topic/nd", durable("sub"))
        .await
        .unwrap();
    drop(receiver);
    conn.close().await.unwrap();

    // Published over STOMP while the native subscriber is away.
    let mut stomp = b.client();
    stomp.send_message("/topic/nd", "kept for you", &[]);

    let conn = connect_as(&b, "native-app").await;
    let mut receiver = conn
        .open_receiver("/topic/nd", durable("sub"))
        .await
        .unwrap();
    let d = timeout(WAIT, receiver.recv()).await.unwrap().unwrap();
    assert_eq!(&d.body()[..], b"kept for you");
    receiver.accept(&d).await.unwrap();
}
