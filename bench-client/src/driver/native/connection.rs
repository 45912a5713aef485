//! One native-protocol connection: socket, read and write buffers, the
//! codec, the preamble/Open/Begin exchange, cancel-safe flushing (large
//! bodies spliced in from the shared payload, optionally only up to a given
//! offset so a producer never writes past its credit), heart-beats, the
//! broker's control frames and Close.

use super::NativeOptions;
use crate::driver::transport::{self, ByteStream};
use crate::driver::DriverError;
use bytes::{Buf, BytesMut};
use ferromq_protocol::native::view::complete_frame_len;
use ferromq_protocol::native::{
    Begin, Close, ErrorInfo, Frame, Heartbeat, NativeCodec, NativeError, Open, Performative,
    PlainCredentials, Preamble, PreambleCheck,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The session channel every link of the driver uses.
pub(super) const CHANNEL: u32 = 1;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// Write buffers larger than this are released after a flush.
const KEEP_WRITE_CAPACITY: usize = 4 * 1024 * 1024;
/// The largest frame the driver accepts: room for the matrix's 10 MB bodies
/// in one piece, so the broker needs to split only above its own limit.
const MAX_INBOUND_FRAME: u32 = 32 * 1024 * 1024;

/// One native connection with one session on [`CHANNEL`].
pub(super) struct Connection {
    stream: Box<dyn ByteStream>,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    /// Bodies written from the shared payload instead of being copied into
    /// `wbuf`: `(offset in wbuf, body)`, in order.
    splices: Vec<(usize, Arc<[u8]>)>,
    /// Flush progress, kept across cancelled flushes: bytes of `wbuf`
    /// written, splices written, bytes of the current splice written.
    wpos: usize,
    splice_next: usize,
    splice_pos: usize,
    pub(super) codec: NativeCodec,
    pub(super) endpoint: String,
    /// Half the broker's idle timeout, if it has one.
    pub(super) heartbeat: Option<Duration>,
}

impl Connection {
    /// Connects, exchanges preambles and Opens, and begins the session.
    pub(super) async fn open(
        options: &NativeOptions,
        endpoint: usize,
        container_id: Option<&str>,
    ) -> Result<Connection, DriverError> {
        let ep = transport::endpoint_for(&options.url, endpoint)?;
        let stream = transport::connect(ep, options.tls.as_ref(), options.connect_timeout).await?;
        let mut conn = Connection {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            splices: Vec::new(),
            wpos: 0,
            splice_next: 0,
            splice_pos: 0,
            codec: NativeCodec::default(),
            endpoint: ep.to_string(),
            heartbeat: None,
        };
        conn.wbuf.extend_from_slice(&Preamble::CURRENT.to_bytes());
        let open = Open {
            container_id: container_id.unwrap_or_default().to_string(),
            max_frame_size: MAX_INBOUND_FRAME,
            credentials: options.login.as_ref().map(|user| PlainCredentials {
                username: user.clone(),
                password: options.passcode.clone().unwrap_or_default(),
            }),
            ..Open::default()
        };
        conn.push_frame(&Frame::new(0, open))?;
        conn.push_frame(&Frame::new(CHANNEL, Begin::default()))?;
        conn.flush().await?;
        let timeout = options.connect_timeout;
        tokio::time::timeout(timeout, conn.handshake())
            .await
            .map_err(|_| DriverError::Timeout {
                endpoint: conn.endpoint.clone(),
                what: "the broker's Open and Begin",
            })??;
        Ok(conn)
    }

    async fn handshake(&mut self) -> Result<(), DriverError> {
        while self.rbuf.len() < Preamble::LEN {
            self.read_more().await?;
        }
        match Preamble::parse(&self.rbuf) {
            PreambleCheck::Ok(_) => self.rbuf.advance(Preamble::LEN),
            other => {
                return Err(DriverError::Broker {
                    endpoint: self.endpoint.clone(),
                    message: format!(
                        "not a ferromq native endpoint (its first bytes: {:?}, {other:?})",
                        &self.rbuf[..Preamble::LEN]
                    ),
                })
            }
        }
        let (mut opened, mut begun) = (false, false);
        while !opened || !begun {
            let frame = self.read_frame().await?;
            match frame.performative {
                Some(Performative::Open(o)) => {
                    opened = true;
                    self.codec.set_max_inbound_frame_size(MAX_INBOUND_FRAME);
                    self.codec
                        .set_max_outbound_frame_size(o.effective_max_frame_size());
                    self.heartbeat = (o.idle_timeout_ms > 0)
                        .then(|| Duration::from_millis(u64::from(o.idle_timeout_ms) / 2));
                }
                Some(Performative::Begin(_)) => begun = true,
                Some(p) => self.control(p)?,
                None => {}
            }
        }
        Ok(())
    }

    /// One read from the socket into the read buffer. Cancel-safe.
    pub(super) async fn read_more(&mut self) -> Result<(), DriverError> {
        // Room for a whole chunk every time (reclaimed in place once the
        // frames before it are consumed), so a read takes all that waits.
        self.rbuf.reserve(READ_CHUNK);
        transport::read_some(&mut self.stream, &mut self.rbuf, &self.endpoint).await
    }

    /// Reads what the socket already holds, without waiting.
    pub(super) async fn read_ready(&mut self) -> Result<(), DriverError> {
        tokio::select! {
            biased;
            r = self.read_more() => r,
            _ = std::future::ready(()) => Ok(()),
        }
    }

    pub(super) fn protocol_error(&self, source: NativeError) -> DriverError {
        DriverError::NativeProtocol {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    /// The size of the whole frame at the front of the read buffer, if it is there.
    pub(super) fn front_frame_len(&self) -> Result<Option<usize>, DriverError> {
        complete_frame_len(&self.rbuf, self.codec.max_inbound_frame_size())
            .map_err(|e| self.protocol_error(e))
    }

    /// Decodes the frame at the front of the read buffer, if whole.
    pub(super) fn decode(&mut self) -> Result<Option<Frame>, DriverError> {
        self.codec
            .decode(&mut self.rbuf)
            .map_err(|e| self.protocol_error(e))
    }

    pub(super) async fn read_frame(&mut self) -> Result<Frame, DriverError> {
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(frame);
            }
            self.read_more().await?;
        }
    }

    /// What every link does with a frame it has no use for: an error from
    /// the broker (Close, End, Detach, a failed Declare/Discharge) fails the
    /// link; the rest is passed over.
    pub(super) fn control(&mut self, p: Performative) -> Result<(), DriverError> {
        let what = p.name();
        let error = match p {
            Performative::Close(c) => Some(c.error.unwrap_or_else(|| {
                ErrorInfo::new(
                    ferromq_protocol::native::ErrorCondition::InternalError,
                    "the broker closed the connection",
                )
            })),
            Performative::End(e) => e.error,
            Performative::Detach(d) => d.error,
            Performative::Declare(d) => d.error,
            Performative::Discharge(d) => d.error,
            _ => None,
        };
        match error {
            Some(e) => Err(self.broker_error(what, &e)),
            None => Ok(()),
        }
    }

    /// An error from the broker as a [`DriverError`]: a cluster follower's
    /// Close `not-leader` is [`DriverError::NotLeader`] with the leader
    /// its description names (`not the leader; leader=HOST:PORT`,
    /// NATIVE.md), anything else [`DriverError::Broker`].
    pub(super) fn broker_error(&self, what: &str, e: &ErrorInfo) -> DriverError {
        if e.condition() == ferromq_protocol::native::ErrorCondition::NotLeader {
            return DriverError::NotLeader {
                endpoint: self.endpoint.clone(),
                leader: leader_named(&e.description).map(str::to_string),
            };
        }
        DriverError::Broker {
            endpoint: self.endpoint.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Appends `frame` to the write buffer.
    pub(super) fn push_frame(&mut self, frame: &Frame) -> Result<(), DriverError> {
        self.codec
            .encode(frame, &mut self.wbuf)
            .map_err(|e| self.protocol_error(e))
    }

    /// Appends a heart-beat if nothing else is waiting to be written.
    pub(super) fn push_heartbeat(&mut self) {
        if self.wbuf.is_empty() {
            let _ = self.push_frame(&Frame::new(0, Heartbeat {}));
        }
    }

    /// Marks `body` to be written at the current end of the write buffer.
    pub(super) fn splice(&mut self, body: Arc<[u8]>) {
        self.splices.push((self.wbuf.len(), body));
    }

    /// Writes everything buffered. Cancel-safe: a cancelled flush resumes
    /// where it stopped.
    pub(super) async fn flush(&mut self) -> Result<(), DriverError> {
        self.write_until(self.wbuf.len()).await?;
        // TLS may hold the last records until flushed.
        self.stream
            .flush()
            .await
            .map_err(|source| DriverError::Io {
                endpoint: self.endpoint.clone(),
                what: "flush",
                source,
            })?;
        self.wbuf.clear();
        self.splices.clear();
        (self.wpos, self.splice_next, self.splice_pos) = (0, 0, 0);
        if self.wbuf.capacity() > KEEP_WRITE_CAPACITY {
            self.wbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        Ok(())
    }

    /// Writes the buffer up to offset `limit` (and a spliced body sitting
    /// exactly there, which belongs to the frame before it).
    pub(super) async fn write_until(&mut self, limit: usize) -> Result<(), DriverError> {
        let limit = limit.min(self.wbuf.len());
        loop {
            let splice_at = self.splices.get(self.splice_next).map(|s| s.0);
            if splice_at == Some(self.wpos) {
                let body = self.splices[self.splice_next].1.clone();
                while self.splice_pos < body.len() {
                    let n = self.write_some(&body[self.splice_pos..]).await?;
                    self.splice_pos += n;
                }
                self.splice_next += 1;
                self.splice_pos = 0;
                continue;
            }
            if self.wpos >= limit {
                return Ok(());
            }
            let end = splice_at.map_or(limit, |at| at.min(limit));
            let n = {
                let (stream, buf) = (&mut self.stream, &self.wbuf[self.wpos..end]);
                write_some(stream, buf, &self.endpoint).await?
            };
            self.wpos += n;
        }
    }

    async fn write_some(&mut self, bytes: &[u8]) -> Result<usize, DriverError> {
        write_some(&mut self.stream, bytes, &self.endpoint).await
    }

    /// Bytes buffered and not yet written.
    pub(super) fn buffered(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Sends Close, waits briefly for the broker's answer, shuts the socket.
    pub(super) async fn close(mut self) {
        let bye = async {
            self.push_frame(&Frame::new(0, Close::default()))?;
            self.flush().await?;
            loop {
                if let Some(Performative::Close(_)) = self.read_frame().await?.performative {
                    return Ok::<(), DriverError>(());
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
        let _ = tokio::time::timeout(Duration::from_millis(200), self.stream.shutdown()).await;
    }
}

/// One `write` call: it either writes some bytes or (cancelled) none, which
/// is what makes [`Connection::flush`] resumable.
async fn write_some(
    stream: &mut Box<dyn ByteStream>,
    bytes: &[u8],
    endpoint: &str,
) -> Result<usize, DriverError> {
    let io = |source| DriverError::Io {
        endpoint: endpoint.to_string(),
        what: "write",
        source,
    };
    let n = stream.write(bytes).await.map_err(io)?;
    if n == 0 {
        return Err(io(std::io::ErrorKind::WriteZero.into()));
    }
    Ok(n)
}

/// The leader address in a `not-leader` description, if it names one.
fn leader_named(description: &str) -> Option<&str> {
    let (_, rest) = description.split_once("leader=")?;
    let address = rest.split([';', ' ']).next()?.trim();
    (!address.is_empty()).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_leader_description_names_the_leader_or_none() {
        assert_eq!(
            leader_named("not the leader; leader=127.0.0.1:61620"),
            Some("127.0.0.1:61620")
        );
        assert_eq!(leader_named("not the leader; no leader elected yet"), None);
        assert_eq!(leader_named("leader="), None);
    }
}
