//! The writer task of a STOMP connection: drains the [`Outbox`], encodes
//! frames into one buffer per batch and writes them with one system call,
//! sends heart-beats when idle, and settles auto-ack deliveries once written.
//! Large bodies ([`SPLICE_LARGE`] bytes or more) are not copied into that
//! buffer: they are spliced in by reference and go out in a `writev`
//! ([`SplicedBuffer`]).

use super::outgoing::{Outbox, Outgoing};
use crate::outbox::ItemEncoder;
use crate::registry::ConnectionInfo;
use crate::router::{AckMode, Consumer, Delivery, Message, Router, SubscriptionId};
use crate::spliced::SplicedBuffer;
use ferromq_protocol::stomp::{encode_frame, Command, Frame, FrameWriter, Version, FRAME_END};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bodies of this many bytes or more are spliced into the output (with a
/// socket that takes vectored writes) rather than copied. Copying a 10 MB
/// body cost a memcpy per delivery and kept a 10 MB buffer per connection;
/// small bodies are copied (one `write` of a batch of 1 KiB messages beats
/// a `writev` of hundreds of slices).
pub const SPLICE_LARGE: usize = 64 * 1024;

/// Writes everything the outbox yields to `socket` until the outbox closes or
/// the socket fails, counting the MESSAGE frames on `info`.
pub async fn run<W: AsyncWrite + Unpin>(
    socket: W,
    outbox: Arc<Outbox>,
    router: Arc<Router>,
    info: Arc<ConnectionInfo>,
    peer: String,
) {
    let mut w = Writer {
        id_prefix: router.message_id_prefix(),
        router,
        info,
        version: Version::V1_0,
        heartbeat: None,
        vectored: socket.is_write_vectored(),
        out: SplicedBuffer::with_capacity(64 * 1024),
        scratch: String::with_capacity(64),
        written: Vec::new(),
    };
    crate::outbox::write_from_outbox(socket, &outbox, &mut w, &peer).await;
}

impl ItemEncoder<Outgoing> for Writer {
    fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat
    }

    fn encode_heartbeat(&mut self) {
        self.out.encoder().extend_from_slice(b"\n");
    }

    fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Everything but a RECEIPT that waits for store commits.
    fn encode_now(&mut self, item: Outgoing, closed: bool) -> std::io::Result<Option<Outgoing>> {
        match item {
            Outgoing::Receipt { after, id } if !after.is_empty() => {
                return Ok(Some(Outgoing::Receipt { after, id }))
            }
            Outgoing::Receipt { id, .. } => {
                let frame = Frame::new(Command::Receipt).header("receipt-id", &id);
                encode_frame(&frame, self.version, self.out.encoder());
            }
            Outgoing::Connected {
                frame,
                version,
                heartbeat,
            } => {
                encode_frame(&frame, Version::V1_0, self.out.encoder());
                self.version = version;
                self.heartbeat = heartbeat;
            }
            Outgoing::Frame(frame) => encode_frame(&frame, self.version, self.out.encoder()),
            Outgoing::Delivery(d) => {
                if !closed {
                    self.encode_message(&d)?;
                }
            }
            Outgoing::Browsed { tag, message } => {
                let destination = message.destination.clone();
                self.encode_message_frame(&tag, &destination, None, false, true, &message)?;
            }
        }
        Ok(None)
    }

    /// The rest of `encode_now`: a RECEIPT after store commits.
    async fn encode<W: AsyncWrite + Unpin>(
        &mut self,
        item: Outgoing,
        closed: bool,
        socket: &mut W,
    ) -> std::io::Result<()> {
        let Some(item) = self.encode_now(item, closed)? else {
            return Ok(());
        };
        if let Outgoing::Receipt { id, after } = item {
            // Durability ordering: the RECEIPT is encoded only after every
            // store commit it depends on has completed. Let earlier output
            // go while we wait.
            self.flush(socket).await?;
            let mut failure = None;
            for c in after {
                if let Err(e) = c.wait().await {
                    failure = Some(e);
                }
            }
            let frame = match failure {
                None => Frame::new(Command::Receipt).header("receipt-id", &id),
                Some(e) => Frame::new(Command::Error)
                    .header("receipt-id", &id)
                    .header("message", "message was not stored")
                    .body(e.to_string()),
            };
            encode_frame(&frame, self.version, self.out.encoder());
        }
        Ok(())
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> std::io::Result<()> {
        Writer::flush(self, socket).await
    }
}

struct Writer {
    router: Arc<Router>,
    /// The connection's registry entry: its messages-out counter.
    info: Arc<ConnectionInfo>,
    version: Version,
    heartbeat: Option<Duration>,
    /// Whether the socket takes vectored writes (then large bodies are
    /// spliced; over WebSocket they are copied into its message).
    vectored: bool,
    out: SplicedBuffer,
    /// Reused for message ids and ack ids: no allocation per message.
    scratch: String,
    /// What this node's message ids start with (`Router::message_id_prefix`).
    id_prefix: String,
    /// Auto-ack deliveries in `out`, settled once it is written.
    written: Vec<(Arc<Consumer>, u64)>,
}

impl Writer {
    /// Fails only when a paged-out body cannot be read back: the connection
    /// then closes and the message returns to its queue, unacknowledged.
    fn encode_message(&mut self, d: &Delivery) -> std::io::Result<()> {
        let m = &d.message;
        let c = &d.consumer;
        let dest = &c.destination.address;
        // The destination the message was sent to (a wildcard or durable
        // subscription receives from several); a temporary destination shows
        // its owner the name it used.
        let shown = match (&dest.owner_name, dest.temp_owner) {
            (Some(own), Some(owner)) if owner == c.connection && *m.destination == *dest.name => {
                own
            }
            // A durable subscription's queue shows the topic it follows.
            (Some(topic), None) if *m.destination == *dest.name => topic,
            _ => &m.destination,
        };
        let ack = (c.ack != AckMode::Auto).then_some(c.id);
        let shown = shown.clone();
        self.encode_message_frame(&c.tag, &shown, ack, d.redeliveries > 0, false, m)?;
        if c.ack == AckMode::Auto {
            self.written.push((c.clone(), m.seq));
        }
        Ok(())
    }

    /// Writes one MESSAGE frame: the broker's headers, then the producer's.
    fn encode_message_frame(
        &mut self,
        tag: &str,
        destination: &str,
        ack_subscription: Option<SubscriptionId>,
        redelivered: bool,
        browsed: bool,
        m: &Message,
    ) -> std::io::Result<()> {
        // Read first: a paged body that cannot be read leaves no half frame.
        let body = m.body.get().map_err(std::io::Error::other)?;
        let splice = self.vectored && body.len() >= SPLICE_LARGE;
        let encoder = self.out.encoder();
        encoder.reserve(256 + if splice { 0 } else { body.len() });
        let mut f = FrameWriter::begin(encoder, Command::Message, self.version);
        f.header("subscription", tag);
        let mut seq = itoa::Buffer::new();
        let seq = seq.format(m.seq);
        self.scratch.clear();
        self.scratch.push_str(&self.id_prefix);
        self.scratch.push_str(seq);
        f.header("message-id", &self.scratch);
        f.header("destination", destination);
        if let Some(sub) = ack_subscription.filter(|_| self.version >= Version::V1_2) {
            self.scratch.clear();
            self.scratch.push_str(itoa::Buffer::new().format(sub));
            self.scratch.push('-');
            self.scratch.push_str(seq);
            f.header("ack", &self.scratch);
        }
        if redelivered {
            f.header("redelivered", "true");
        }
        if browsed {
            f.header("browser", "true");
        }
        f.header_u64("timestamp", m.timestamp);
        f.header_u64("expires", m.expires);
        f.header_u64("priority", u64::from(m.priority));
        if m.persistent {
            f.header("persistent", "true");
        }
        for (name, value) in m.headers.iter() {
            f.header(name, value);
        }
        if splice {
            // The head, the body by reference, then the terminator: the
            // same bytes as `finish` writes.
            f.finish_head(body.len());
            self.out.splice(body);
            self.out.encoder().extend_from_slice(FRAME_END);
        } else {
            f.finish(&body);
        }
        self.info.count_message_out();
        Ok(())
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.out.write_to(socket).await?;
            socket.flush().await?;
        }
        self.settle();
        Ok(())
    }

    /// Auto-ack messages count as consumed once written (not at dispatch,
    /// so a connection that dies before the write loses nothing).
    fn settle(&mut self) {
        self.router.settle_all_written(&mut self.written);
    }
}
