//! The driver for ferromq's native protocol (`protocol/NATIVE.md`),
//! `ferromq://` and `ferromq+tls://`. Same scenario semantics as the STOMP
//! driver, in native terms:
//!
//! - a SEND is a Transfer carrying the send stamp as the application header
//!   [`STAMP_HEADER`] (the STOMP driver's header, so a message stamped by
//!   either driver reads the same);
//! - a SEND with a RECEIPT is an unsettled Transfer, the receipt its
//!   `accepted` Disposition (the broker's rule is the same: persistent means
//!   stored); a SEND without one is pre-settled (at-most-once, no answer);
//! - BEGIN/COMMIT are Declare/Discharge (a COMMIT's receipt is the
//!   Discharge answer);
//! - a consumer is a receiver link with a credit window of the prefetch,
//!   refilled at half; `ack:auto` is a pre-settled link, `client` and
//!   `client-individual` an unsettled one acknowledged with `accepted`
//!   Dispositions, consecutive deliveries merged into one range;
//! - a durable subscriber attaches with `durable_subscription` and the
//!   durable name as container id; unsubscribing closes the link.
//!
//! The protocol crate's client (`ferromq_protocol::client`) is a general API:
//! a writer and a reader task per connection, a channel hop, a mutex and a
//! prost `Message` with an owned header map per transfer. That would charge
//! the native numbers with costs the STOMP driver does not have, so this
//! driver is written on the codec like the STOMP one is on its frame writer:
//! transfers are encoded from borrowed parts straight into a reused buffer
//! and received ones read in place (`ferromq_protocol::native::lean` and `view`), so
//! neither sending nor receiving a message allocates.

mod connection;
mod consumer;
mod producer;

pub use consumer::NativeConsumer;
pub use producer::NativeProducer;

use super::{ConsumerSpec, Driver, DriverError, ProducerSpec};
use crate::url::BrokerUrl;
use rustls::ClientConfig;
use std::sync::Arc;
use std::time::Duration;

/// Application header carrying the producer's send time (ns on the run's
/// clock), as the STOMP driver's header of the same name.
pub const STAMP_HEADER: &str = super::stomp::STAMP_HEADER;

/// Connection settings shared by every link of a run.
#[derive(Debug, Clone)]
pub struct NativeOptions {
    /// Where to connect.
    pub url: BrokerUrl,
    /// Open's credentials: user.
    pub login: Option<String>,
    /// Open's credentials: password.
    pub passcode: Option<String>,
    /// Limit for TCP connect, TLS handshake, Open and Attach.
    pub connect_timeout: Duration,
    /// TLS settings, when any endpoint uses TLS.
    pub tls: Option<Arc<ClientConfig>>,
}

/// Opens native-protocol links.
#[derive(Debug, Clone)]
pub struct NativeDriver {
    options: Arc<NativeOptions>,
}

impl NativeDriver {
    /// A driver for `options`.
    pub fn new(options: NativeOptions) -> NativeDriver {
        NativeDriver {
            options: Arc::new(options),
        }
    }
}

impl Driver for NativeDriver {
    type Producer = NativeProducer;
    type Consumer = NativeConsumer;

    async fn connect_producer(
        &self,
        endpoint: usize,
        spec: &ProducerSpec,
    ) -> Result<NativeProducer, DriverError> {
        NativeProducer::connect(&self.options, endpoint, spec).await
    }

    async fn connect_consumer(
        &self,
        endpoint: usize,
        spec: &ConsumerSpec,
    ) -> Result<NativeConsumer, DriverError> {
        NativeConsumer::connect(&self.options, endpoint, spec).await
    }

    fn endpoint_count(&self) -> usize {
        self.options.url.endpoints.len()
    }

    fn endpoint_at(&self, address: &str) -> Option<usize> {
        self.options.url.position_of(address)
    }
}

/// A `u64` in decimal, formatted on the stack.
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    /// `value` in decimal.
    pub(crate) fn new(mut value: u64) -> Decimal {
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    /// The digits.
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::Decimal;

    #[test]
    fn decimal_formats_like_display() {
        for v in [0, 7, 10, 99, 12_345, u64::MAX] {
            assert_eq!(Decimal::new(v).as_str(), v.to_string());
        }
    }
}
