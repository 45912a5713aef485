//! A quick native-protocol load: one producer and one consumer on a queue,
//! non-persistent messages, for a few seconds; prints the rate the consumer
//! received at after a one-second warm-up.
//!
//! ```text
//! cargo run --release -p ferromq-protocol --features client --example native_throughput -- \
//!     ferromq://127.0.0.1:61620 5 1024 settled
//! ```
//! A fifth argument `persistent` sends persistent messages (use it with
//! `unsettled`: each transfer is then accepted once stored).
//! The last argument is `settled` (pre-settled both ways: at-most-once) or
//! `unsettled` (every transfer accepted by the broker, every delivery
//! accepted by the consumer in ranges: at-least-once).

#[cfg(feature = "client")]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use ferromq_protocol::client::{Connection, OutgoingMessage, ReceiverOptions, SettleMode};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ferromq://127.0.0.1:61620".into());
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let size: usize = args.next().map_or(Ok(1024), |s| s.parse())?;
    let mode = match args.next().as_deref() {
        Some("unsettled") => SettleMode::Unsettled,
        _ => SettleMode::Settled,
    };
    let persistent = args.next().as_deref() == Some("persistent");
    let address = format!("/queue/throughput-{}", std::process::id());

    let consumer_conn = Connection::connect(&url).await?;
    let options = ReceiverOptions {
        credit: 1000,
        settle_mode: mode,
        ..ReceiverOptions::default()
    };
    let mut receiver = consumer_conn.open_receiver(&address, options).await?;
    let sent = Arc::new(AtomicU64::new(0));

    let producer_conn = Connection::connect(&url).await?;
    let sender = producer_conn.open_sender(&address, mode).await?;
    let body = bytes::Bytes::from(vec![b'x'; size]);
    let producer_sent = sent.clone();
    // Runs until aborted: at the end it may be waiting for credit (producer
    // flow control) that only a consumer would free.
    let producer = tokio::spawn(async move {
        let mut outcomes = std::collections::VecDeque::new();
        loop {
            let message = OutgoingMessage::new(body.clone()).persistent(persistent);
            if mode == SettleMode::Settled {
                sender.send(message).await?;
            } else {
                // Up to 1000 unsettled transfers in flight.
                outcomes.push_back(sender.send_unsettled(message).await?);
                if outcomes.len() > 1000 {
                    if let Some(o) = outcomes.pop_front() {
                        o.wait().await?;
                    }
                }
            }
            producer_sent.fetch_add(1, Ordering::Relaxed);
        }
        #[allow(unreachable_code)] // gives the block its error type
        Ok::<(), ferromq_protocol::client::ClientError>(())
    });

    let warm_up = Duration::from_secs(1);
    let started = Instant::now();
    let mut measured = 0u64;
    let mut total = 0u64;
    let mut window_start = None;
    let end = warm_up + Duration::from_secs(seconds);
    let mut unsettled_first = None;
    while started.elapsed() < end {
        let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await
        else {
            break;
        };
        total += 1;
        if mode == SettleMode::Unsettled {
            let first = *unsettled_first.get_or_insert(d.delivery_id);
            if d.delivery_id - first >= 100 {
                receiver.accept_range(first, d.delivery_id).await?;
                unsettled_first = None;
            }
        }
        if started.elapsed() >= warm_up {
            window_start.get_or_insert_with(Instant::now);
            measured += 1;
        }
    }
    let elapsed = window_start.map_or(Duration::ZERO, |s| s.elapsed());
    producer.abort();
    // Finished early only if sending failed.
    if let Ok(Err(e)) = producer.await {
        return Err(e.into());
    }
    let sent = sent.load(Ordering::Relaxed);
    println!(
        "native {:?}{} queue 1/1 {} B: received {:.0} msg/s over {:.1} s (sent {sent}, received {total})",
        mode,
        if persistent { " persistent" } else { "" },
        size,
        measured as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed.as_secs_f64()
    );
    Ok(())
}

#[cfg(not(feature = "client"))]
fn main() {
    eprintln!("build with --features client");
}
