//! One STOMP connection: socket, read and write buffers, the shared decoder,
//! CONNECT with version negotiation, flushing (with large bodies spliced in
//! from the shared payload), in-place RECEIPT handling and DISCONNECT.

use super::scan;
use super::{StompOptions, READ_CHUNK};
use crate::driver::transport::{self, ByteStream};
use crate::driver::DriverError;
use bytes::{Buf, BytesMut};
use ferromq_protocol::stomp::{Command, Decoder, Frame, FrameWriter, Limits, Version};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The `message` of a cluster follower's refusal (README "Cluster").
const NOT_LEADER: &str = "not the leader";

/// Write buffers larger than this are released after a flush.
const KEEP_WRITE_CAPACITY: usize = 4 * 1024 * 1024;

/// One STOMP connection: socket, read and write buffers, decoder.
pub(super) struct Connection {
    pub(super) stream: Box<dyn ByteStream>,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    /// Large bodies written from the shared payload instead of being copied
    /// into `wbuf`: `(offset in wbuf, body)`, in order.
    pub(super) splices: Vec<(usize, Arc<[u8]>)>,
    pub(super) decoder: Decoder,
    pub(super) version: Version,
    pub(super) endpoint: String,
}

impl Connection {
    pub(super) async fn open(
        options: &StompOptions,
        endpoint: usize,
        client_id: Option<&str>,
    ) -> Result<Connection, DriverError> {
        let ep = transport::endpoint_for(&options.url, endpoint)?;
        let stream = transport::connect(ep, options.tls.as_ref(), options.connect_timeout).await?;
        let limits = Limits {
            // Room for the matrix's 10 MB bodies plus headers.
            max_frame_size: 32 * 1024 * 1024,
            ..Limits::default()
        };
        let mut conn = Connection {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            splices: Vec::new(),
            decoder: Decoder::new(limits),
            version: Version::V1_0,
            endpoint: ep.to_string(),
        };
        {
            let mut w = FrameWriter::begin(&mut conn.wbuf, Command::Connect, Version::V1_0);
            w.header("accept-version", "1.0,1.1,1.2")
                .header("host", &options.vhost)
                .header("heart-beat", "0,0");
            if let Some(login) = &options.login {
                w.header("login", login);
            }
            if let Some(passcode) = &options.passcode {
                w.header("passcode", passcode);
            }
            if let Some(id) = client_id {
                w.header("client-id", id);
            }
            w.finish(&[]);
        }
        conn.flush().await?;
        let connected = tokio::time::timeout(options.connect_timeout, conn.read_frame())
            .await
            .map_err(|_| DriverError::Timeout {
                endpoint: conn.endpoint.clone(),
                what: "CONNECTED",
            })??;
        match connected.command {
            Command::Connected => {
                conn.version = connected
                    .get("version")
                    .and_then(Version::parse)
                    .unwrap_or(Version::V1_0);
                conn.decoder.set_version(conn.version);
                Ok(conn)
            }
            _ => Err(broker_error(&conn.endpoint, &connected)),
        }
    }

    /// One read from the socket into the read buffer. Cancel-safe.
    pub(super) async fn read_more(&mut self) -> Result<(), DriverError> {
        self.rbuf.reserve(READ_CHUNK);
        transport::read_some(&mut self.stream, &mut self.rbuf, &self.endpoint).await
    }

    pub(super) fn decode(&mut self) -> Result<Option<Frame>, DriverError> {
        self.decoder
            .decode(&mut self.rbuf)
            .map_err(|source| DriverError::Protocol {
                endpoint: self.endpoint.clone(),
                source,
            })
    }

    pub(super) async fn read_frame(&mut self) -> Result<Frame, DriverError> {
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(frame);
            }
            self.read_more().await?;
        }
    }

    pub(super) async fn wait_receipt_named(&mut self, id: &str) -> Result<(), DriverError> {
        loop {
            let frame = self.read_frame().await?;
            match frame.command {
                Command::Receipt if frame.get("receipt-id") == Some(id) => return Ok(()),
                Command::Error => return Err(broker_error(&self.endpoint, &frame)),
                _ => {}
            }
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), DriverError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let mut written = 0;
        for (at, body) in std::mem::take(&mut self.splices) {
            write_all(&mut self.stream, &self.wbuf[written..at], &self.endpoint).await?;
            write_all(&mut self.stream, &body, &self.endpoint).await?;
            written = at;
        }
        write_all(&mut self.stream, &self.wbuf[written..], &self.endpoint).await?;
        self.wbuf.clear();
        if self.wbuf.capacity() > KEEP_WRITE_CAPACITY {
            self.wbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        Ok(())
    }

    /// Consumes the frames at the front of the read buffer until RECEIPT
    /// `want` (then `true`) or until the buffered bytes run out (`false`).
    /// RECEIPTs are read in place; an ERROR frame fails.
    pub(super) fn take_receipts(&mut self, want: Option<u64>) -> Result<bool, DriverError> {
        let max_frame = self.decoder.limits().max_frame_size;
        loop {
            let beats = scan::heartbeat_len(&self.rbuf);
            self.rbuf.advance(beats);
            if self.rbuf.is_empty() {
                return Ok(false);
            }
            let scan = scan::scan_receipt(&self.rbuf, max_frame).map_err(|source| {
                DriverError::Protocol {
                    endpoint: self.endpoint.clone(),
                    source,
                }
            })?;
            match scan {
                scan::ReceiptScan::Receipt { len, id } => {
                    self.rbuf.advance(len);
                    if want.is_some() && id == want {
                        return Ok(true);
                    }
                }
                scan::ReceiptScan::Incomplete => return Ok(false),
                scan::ReceiptScan::Other => match self.decode()? {
                    Some(frame) if frame.command == Command::Error => {
                        return Err(broker_error(&self.endpoint, &frame));
                    }
                    Some(_) => {}
                    None => return Ok(false),
                },
            }
        }
    }

    /// Reads what the socket already holds, without waiting.
    pub(super) async fn read_ready(&mut self) -> Result<(), DriverError> {
        tokio::select! {
            biased;
            r = self.read_more() => r,
            _ = std::future::ready(()) => Ok(()),
        }
    }

    pub(super) fn push_tx(&mut self, command: Command, tx: u64, receipt: Option<u64>) {
        let mut w = FrameWriter::begin(&mut self.wbuf, command, self.version);
        w.header_u64("transaction", tx);
        if let Some(r) = receipt {
            w.header_u64("receipt", r);
        }
        w.finish(&[]);
    }

    pub(super) async fn disconnect(mut self) {
        FrameWriter::begin(&mut self.wbuf, Command::Disconnect, self.version).finish(&[]);
        let bye = async {
            let _ = self.flush().await;
            let _ = self.stream.shutdown().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    }
}

async fn write_all(
    stream: &mut Box<dyn ByteStream>,
    bytes: &[u8],
    endpoint: &str,
) -> Result<(), DriverError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|source| DriverError::Io {
            endpoint: endpoint.to_string(),
            what: "write",
            source,
        })
}

/// An ERROR (or unexpected) frame as a [`DriverError`]: a cluster
/// follower's `not the leader` (with its `leader` header) is
/// [`DriverError::NotLeader`], anything else [`DriverError::Broker`].
pub(super) fn broker_error(endpoint: &str, frame: &Frame) -> DriverError {
    if frame.command == Command::Error && frame.get("message") == Some(NOT_LEADER) {
        return DriverError::NotLeader {
            endpoint: endpoint.to_string(),
            leader: frame.get("leader").map(str::to_string),
        };
    }
    let mut message = format!("{:?}", frame.command);
    if let Some(m) = frame.get("message") {
        message = format!("{message}: {m}");
    }
    let body = String::from_utf8_lossy(&frame.body);
    let body = body.trim();
    if !body.is_empty() {
        let short: String = body.chars().take(200).collect();
        message = format!("{message} ({short})");
    }
    DriverError::Broker {
        endpoint: endpoint.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_refusal_is_not_leader_and_other_errors_are_broker_errors() {
        let refusal = Frame::new(Command::Error)
            .header("message", NOT_LEADER)
            .header("leader", "127.0.0.1:61613");
        let e = broker_error("stomp://b:1", &refusal);
        assert!(matches!(e, DriverError::NotLeader { .. }), "{e:?}");
        assert_eq!(e.leader(), Some("127.0.0.1:61613"));
        let electing = Frame::new(Command::Error).header("message", NOT_LEADER);
        let e = broker_error("stomp://b:1", &electing);
        assert!(matches!(e, DriverError::NotLeader { leader: None, .. }));
        let other = Frame::new(Command::Error).header("message", "bad credentials");
        assert!(matches!(
            broker_error("stomp://b:1", &other),
            DriverError::Broker { .. }
        ));
    }
}
