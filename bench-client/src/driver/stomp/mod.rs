//! The STOMP driver: CONNECT with version negotiation, SEND with a send-time
//! stamp header, RECEIPT waits, BEGIN/COMMIT, SUBSCRIBE (durable on ActiveMQ
//! and RabbitMQ alike) and ACK in the negotiated version's form.
//!
//! Frames are written with [`FrameWriter`] straight into a per-connection
//! buffer that is reused, so sending a message allocates nothing; received
//! MESSAGE and RECEIPT frames are read in place ([`scan`]), so neither
//! receiving a message nor waiting for a receipt allocates either.

mod connection;
pub mod scan;

use super::{
    ConsumerLink, ConsumerSpec, Delivery, Driver, DriverError, ProducerLink, ProducerSpec,
};
use crate::order::{Origin, PRODUCER_HEADER, SEQ_HEADER};
use crate::scenario::AckMode;
use crate::url::BrokerUrl;
use bytes::Buf;
use connection::{broker_error, Connection};
use ferromq_protocol::stomp::{Command, FrameWriter, Version, FRAME_END};
use rustls::ClientConfig;
use std::sync::Arc;
use std::time::Duration;

/// Header carrying the producer's send time (ns on the run's clock).
pub const STAMP_HEADER: &str = "bench-ts";
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// Most messages handed out by one `receive` call (bounds the stamp vector).
const MAX_BATCH: usize = 4096;
/// Bodies larger than this are written from the shared payload, not copied.
const SPLICE_BODY: usize = 64 * 1024;

/// Connection settings shared by every link of a run.
#[derive(Debug, Clone)]
pub struct StompOptions {
    /// Where to connect.
    pub url: BrokerUrl,
    /// `login` header.
    pub login: Option<String>,
    /// `passcode` header.
    pub passcode: Option<String>,
    /// `host` header (RabbitMQ's virtual host).
    pub vhost: String,
    /// Limit for TCP connect, TLS handshake and CONNECTED.
    pub connect_timeout: Duration,
    /// TLS settings, when any endpoint uses TLS.
    pub tls: Option<Arc<ClientConfig>>,
}

/// Opens STOMP links.
#[derive(Debug, Clone)]
pub struct StompDriver {
    options: Arc<StompOptions>,
}

impl StompDriver {
    /// A driver for `options`.
    pub fn new(options: StompOptions) -> StompDriver {
        StompDriver {
            options: Arc::new(options),
        }
    }
}

impl Driver for StompDriver {
    type Producer = StompProducer;
    type Consumer = StompConsumer;

    async fn connect_producer(
        &self,
        endpoint: usize,
        spec: &ProducerSpec,
    ) -> Result<StompProducer, DriverError> {
        let conn = Connection::open(&self.options, endpoint, None).await?;
        Ok(StompProducer {
            conn,
            spec: spec.clone(),
        })
    }

    async fn connect_consumer(
        &self,
        endpoint: usize,
        spec: &ConsumerSpec,
    ) -> Result<StompConsumer, DriverError> {
        let mut conn =
            Connection::open(&self.options, endpoint, spec.durable_name.as_deref()).await?;
        let sub_id = spec
            .durable_name
            .clone()
            .unwrap_or_else(|| "bench-0".into());
        {
            let mut w = FrameWriter::begin(&mut conn.wbuf, Command::Subscribe, conn.version);
            w.header("destination", &spec.destination)
                .header("id", &sub_id)
                .header("ack", spec.ack.as_str())
                .header_u64("activemq.prefetchSize", u64::from(spec.prefetch))
                .header_u64("prefetch-count", u64::from(spec.prefetch))
                .header("receipt", "subscribed");
            if let Some(name) = &spec.durable_name {
                w.header("activemq.subscriptionName", name)
                    .header("durable", "true")
                    .header("auto-delete", "false");
            }
            w.finish(&[]);
        }
        conn.flush().await?;
        // Wait for the subscription to exist before producers start: on a
        // topic, anything sent earlier would be lost to this consumer.
        let timeout = self.options.connect_timeout;
        tokio::time::timeout(timeout, conn.wait_receipt_named("subscribed"))
            .await
            .map_err(|_| DriverError::Timeout {
                endpoint: conn.endpoint.clone(),
                what: "RECEIPT for SUBSCRIBE",
            })??;
        Ok(StompConsumer {
            conn,
            ack: spec.ack,
            sub_id,
            durable: spec.durable_name.is_some(),
            ack_ids: String::new(),
            ack_ranges: Vec::new(),
        })
    }

    fn endpoint_count(&self) -> usize {
        self.options.url.endpoints.len()
    }

    fn endpoint_at(&self, address: &str) -> Option<usize> {
        self.options.url.position_of(address)
    }
}

/// A producer link.
pub struct StompProducer {
    conn: Connection,
    spec: ProducerSpec,
}

impl ProducerLink for StompProducer {
    fn push_send(
        &mut self,
        stamp_ns: u64,
        origin: Option<Origin>,
        tx: Option<u64>,
        receipt: Option<u64>,
    ) {
        let conn = &mut self.conn;
        let body = &self.spec.body;
        let splice = body.len() > SPLICE_BODY;
        if !splice {
            conn.wbuf.reserve(body.len() + 128);
        }
        let mut w = FrameWriter::begin(&mut conn.wbuf, Command::Send, conn.version);
        w.header("destination", &self.spec.destination);
        // No header at all for non-persistent: RabbitMQ reads an explicit
        // `persistent:false` as a request for an exclusive queue.
        if self.spec.persistent {
            w.header("persistent", "true");
        }
        w.header_u64(STAMP_HEADER, stamp_ns);
        if let Some(o) = origin {
            w.header_u64(PRODUCER_HEADER, o.producer)
                .header_u64(SEQ_HEADER, o.seq);
        }
        if let Some(tx) = tx {
            w.header_u64("transaction", tx);
        }
        if let Some(r) = receipt {
            w.header_u64("receipt", r);
        }
        if splice {
            // Head only: `finish(&[])` ends with the blank line and the
            // frame end (NUL, LF); the body goes between them at flush time,
            // written from the shared payload (100 producers of 10 MB would
            // otherwise hold 1 GB).
            w.header_u64("content-length", body.len() as u64);
            w.finish(&[]);
            let nul_at = conn.wbuf.len() - FRAME_END.len();
            conn.splices.push((nul_at, body.clone()));
        } else {
            w.finish(body);
        }
    }

    fn push_begin(&mut self, tx: u64) {
        self.conn.push_tx(Command::Begin, tx, None);
    }

    fn push_commit(&mut self, tx: u64, receipt: Option<u64>) {
        self.conn.push_tx(Command::Commit, tx, receipt);
    }

    fn buffered(&self) -> usize {
        self.conn.wbuf.len()
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        self.conn.flush().await
    }

    async fn wait_receipt(&mut self, id: u64) -> Result<(), DriverError> {
        loop {
            if self.conn.take_receipts(Some(id))? {
                return Ok(());
            }
            self.conn.read_more().await?;
        }
    }

    async fn check_incoming(&mut self) -> Result<(), DriverError> {
        self.conn.read_ready().await?;
        self.conn.take_receipts(None)?;
        Ok(())
    }

    async fn close(self) {
        self.conn.disconnect().await;
    }
}

/// A subscribed consumer link.
pub struct StompConsumer {
    conn: Connection,
    ack: AckMode,
    sub_id: String,
    durable: bool,
    /// Ack ids of the last `receive`, concatenated (reused between calls).
    ack_ids: String,
    /// `(start, end)` of each message's id in `ack_ids`.
    ack_ranges: Vec<(usize, usize)>,
}

impl StompConsumer {
    /// Takes the MESSAGE frames (and any other frame) at the front of the
    /// read buffer, up to `room` messages. Returns how many were taken.
    fn take_buffered(
        &mut self,
        out: &mut Vec<Delivery>,
        room: usize,
    ) -> Result<usize, DriverError> {
        let ack_key = if self.conn.version >= Version::V1_2 {
            "ack"
        } else {
            "message-id"
        };
        let max_frame = self.conn.decoder.limits().max_frame_size;
        let mut taken = 0;
        while taken < room {
            let beats = scan::heartbeat_len(&self.conn.rbuf);
            self.conn.rbuf.advance(beats);
            if self.conn.rbuf.is_empty() {
                break;
            }
            let start = self.ack_ids.len();
            let ack_out = (self.ack != AckMode::Auto).then_some(&mut self.ack_ids);
            let scan = scan::scan_message(
                &self.conn.rbuf,
                self.conn.version,
                STAMP_HEADER,
                ack_key,
                ack_out,
                max_frame,
            )
            .map_err(|source| DriverError::Protocol {
                endpoint: self.conn.endpoint.clone(),
                source,
            })?;
            match scan {
                scan::Scan::Message {
                    len,
                    stamp,
                    origin,
                    redelivered,
                } => {
                    self.conn.rbuf.advance(len);
                    out.push(Delivery {
                        stamp,
                        origin,
                        redelivered,
                    });
                    if self.ack != AckMode::Auto {
                        self.ack_ranges.push((start, self.ack_ids.len()));
                    }
                    taken += 1;
                }
                scan::Scan::Incomplete => break,
                // RECEIPT, ERROR, …: rare, so the shared decoder handles them.
                scan::Scan::Other => match self.conn.decode()? {
                    Some(frame) if frame.command == Command::Error => {
                        return Err(broker_error(&self.conn.endpoint, &frame));
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
        Ok(taken)
    }
}

impl ConsumerLink for StompConsumer {
    async fn receive(&mut self, out: &mut Vec<Delivery>) -> Result<usize, DriverError> {
        self.ack_ids.clear();
        self.ack_ranges.clear();
        loop {
            let got = self.take_buffered(out, MAX_BATCH)?;
            if got > 0 {
                return Ok(got);
            }
            // Nothing decoded yet, so cancelling this read loses nothing.
            self.conn.read_more().await?;
        }
    }

    fn push_ack(&mut self, index: usize, tx: Option<u64>) {
        if self.ack == AckMode::Auto {
            return;
        }
        let Some(&(start, end)) = self.ack_ranges.get(index) else {
            return;
        };
        let id = &self.ack_ids[start..end];
        let conn = &mut self.conn;
        let mut w = FrameWriter::begin(&mut conn.wbuf, Command::Ack, conn.version);
        if conn.version >= Version::V1_2 {
            w.header("id", id);
        } else {
            w.header("message-id", id)
                .header("subscription", &self.sub_id);
        }
        if let Some(tx) = tx {
            w.header_u64("transaction", tx);
        }
        w.finish(&[]);
    }

    fn push_begin(&mut self, tx: u64) {
        self.conn.push_tx(Command::Begin, tx, None);
    }

    fn push_commit(&mut self, tx: u64) {
        self.conn.push_tx(Command::Commit, tx, None);
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        self.conn.flush().await
    }

    async fn unsubscribe_and_close(mut self) {
        let conn = &mut self.conn;
        {
            let mut w = FrameWriter::begin(&mut conn.wbuf, Command::Unsubscribe, conn.version);
            w.header("id", &self.sub_id);
            if self.durable {
                w.header("activemq.subscriptionName", &self.sub_id)
                    .header("durable", "true");
            }
            w.header("receipt", "unsubscribed");
            w.finish(&[]);
        }
        let unsubscribe = async {
            conn.flush().await?;
            conn.wait_receipt_named("unsubscribed").await
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), unsubscribe).await;
        self.conn.disconnect().await;
    }

    async fn close(self) {
        self.conn.disconnect().await;
    }
}
