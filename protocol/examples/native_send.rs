//! Sends messages to a ferromq queue over the native protocol and waits
//! until the broker has taken each one.
//!
//! ```text
//! cargo run -p ferromq-protocol --features client --example native_send -- \
//!     ferromq://127.0.0.1:61620 /queue/demo 10
//! ```

#[cfg(feature = "client")]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use ferromq_protocol::client::{Connection, OutgoingMessage, SettleMode};

    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ferromq://127.0.0.1:61620".into());
    let address = args.next().unwrap_or_else(|| "/queue/demo".into());
    let count: u32 = args.next().map_or(Ok(10), |n| n.parse())?;

    let conn = Connection::connect(&url).await?;
    let sender = conn.open_sender(&address, SettleMode::Unsettled).await?;
    for i in 0..count {
        let message = OutgoingMessage::text(&format!("message {i}"))
            .persistent(true)
            .header("index", &i.to_string());
        // Returns once the broker has stored the persistent message.
        sender.send_and_wait(message).await?;
    }
    println!("sent {count} messages to {address}");
    sender.close().await?;
    conn.close().await?;
    Ok(())
}

#[cfg(not(feature = "client"))]
fn main() {
    eprintln!("build with --features client");
}
