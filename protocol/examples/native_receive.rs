//! Receives messages from a ferromq queue over the native protocol with a
//! credit window, acknowledging each one.
//!
//! ```text
//! cargo run -p ferromq-protocol --features client --example native_receive -- \
//!     ferromq://127.0.0.1:61620 /queue/demo 10
//! ```

#[cfg(feature = "client")]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use ferromq_protocol::client::{Connection, ReceiverOptions, SettleMode};

    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ferromq://127.0.0.1:61620".into());
    let address = args.next().unwrap_or_else(|| "/queue/demo".into());
    let count: u32 = args.next().map_or(Ok(10), |n| n.parse())?;

    let conn = Connection::connect(&url).await?;
    let options = ReceiverOptions {
        credit: 50,
        settle_mode: SettleMode::Unsettled,
        ..ReceiverOptions::default()
    };
    let mut receiver = conn.open_receiver(&address, options).await?;
    for _ in 0..count {
        let Some(delivery) = receiver.recv().await else {
            break;
        };
        println!(
            "{} {:?}",
            delivery.properties().message_id,
            String::from_utf8_lossy(delivery.body())
        );
        receiver.accept(&delivery).await?;
    }
    receiver.close().await?;
    conn.close().await?;
    Ok(())
}

#[cfg(not(feature = "client"))]
fn main() {
    eprintln!("build with --features client");
}
