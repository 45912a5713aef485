//! The writer task of a native connection: drains the [`Outbox`], encodes
//! frames into one buffer per batch (message bodies spliced in by reference,
//! [`SplicedBuffer`]) and writes it with as few system calls as it can,
//! splits transfers larger than the peer's frame limit, numbers deliveries
//! per session, sends heart-beats when idle, merges consecutive producer
//! acceptances into one Disposition range, and settles pre-settled
//! deliveries once written (as STOMP's auto-ack: a connection that dies
//! before the write loses nothing).

use super::book::{DeliveryBook, Unsettled};
use super::convert;
use super::outgoing::{Outbox, Outgoing};
use super::ChannelMap;
use crate::outbox::ItemEncoder;
use crate::registry::ConnectionInfo;
use crate::router::{AckMode, Consumer, Delivery, Router};
use crate::spliced::{SplicedBuffer, SPLICE_MIN};
use crate::store::{Commit, StoreError};
use ferromq_protocol::native::lean::{encode_transfer, encode_transfer_head, TransferParts};
use ferromq_protocol::native::{
    split_transfer, Accepted, DeliveryState, Disposition, ErrorCondition, ErrorInfo, Frame,
    NativeCodec, Rejected, Role, Transfer,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;
use tracing::debug;

/// Writes everything the outbox yields to `socket` until the outbox closes
/// or the socket fails, counting the delivered messages on `info`.
pub async fn run<W: AsyncWrite + Unpin>(
    socket: W,
    outbox: Arc<Outbox>,
    router: Arc<Router>,
    book: Arc<DeliveryBook>,
    info: Arc<ConnectionInfo>,
    peer: String,
) {
    let mut w = Writer {
        router,
        info,
        book,
        codec: NativeCodec::default(),
        heartbeat: None,
        out: SplicedBuffer::with_capacity(64 * 1024),
        vectored: socket.is_write_vectored(),
        written: Vec::new(),
        next_delivery: ChannelMap::default(),
        accepts: None,
        scratch: String::with_capacity(64),
        id_prefix_len: 0,
    };
    // The prefix of message ids stays in `scratch` between deliveries.
    w.scratch = w.router.message_id_prefix();
    w.id_prefix_len = w.scratch.len();
    crate::outbox::write_from_outbox(socket, &outbox, &mut w, &peer).await;
}

impl ItemEncoder<Outgoing> for Writer {
    fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat
    }

    fn encode_heartbeat(&mut self) {
        self.encode_frame(&Frame::heartbeat());
    }

    fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Everything that needs no waiting: deliveries, frames, and
    /// acceptances whose messages are stored already.
    fn encode_now(&mut self, item: Outgoing, closed: bool) -> std::io::Result<Option<Outgoing>> {
        match item {
            Outgoing::Delivery {
                channel,
                handle,
                delivery,
            } => {
                self.end_accepts();
                if !closed {
                    self.encode_delivery(channel, handle, &delivery)?;
                    self.info.count_message_out();
                }
            }
            Outgoing::Frame(frame) => {
                self.end_accepts();
                self.encode_frame(&frame);
            }
            Outgoing::Accept {
                channel,
                delivery_id,
                commit,
            } => {
                let result = match commit {
                    Commit::Done => Ok(()),
                    Commit::Failed(e) => Err(e),
                    Commit::Pending(mut rx) => match rx.try_recv() {
                        // Already durable (the usual case after the first
                        // wait of a group commit): the range grows.
                        Ok(result) => result,
                        Err(oneshot::error::TryRecvError::Closed) => Err(StoreError::Closed),
                        Err(oneshot::error::TryRecvError::Empty) => {
                            return Ok(Some(Outgoing::Accept {
                                channel,
                                delivery_id,
                                commit: Commit::Pending(rx),
                            }))
                        }
                    },
                };
                self.settle_accept(channel, delivery_id, result);
            }
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    /// The rest of `encode_now`: what waits for the store.
    async fn encode<W: AsyncWrite + Unpin>(
        &mut self,
        item: Outgoing,
        closed: bool,
        socket: &mut W,
    ) -> std::io::Result<()> {
        let item = match self.encode_now(item, closed)? {
            Some(item) => item,
            None => return Ok(()),
        };
        if let Outgoing::Accept {
            channel,
            delivery_id,
            commit,
        } = item
        {
            // Durability ordering: `accepted` only once stored. Let the
            // earlier output go while waiting.
            self.end_accepts();
            self.flush(socket).await?;
            let result = commit.wait().await;
            self.settle_accept(channel, delivery_id, result);
            return Ok(());
        }
        self.end_accepts();
        match item {
            Outgoing::Open {
                frame,
                peer_max_frame_size,
                heartbeat,
            } => {
                self.encode_frame(&frame);
                self.codec.set_max_outbound_frame_size(peer_max_frame_size);
                self.heartbeat = heartbeat;
            }
            Outgoing::AfterCommits {
                commits,
                ok,
                failed,
            } => {
                let mut good = true;
                if !commits.is_empty() {
                    self.flush(socket).await?;
                    for c in commits {
                        good &= c.wait().await.is_ok();
                    }
                }
                self.encode_frame(if good { &ok } else { &failed });
            }
            // Taken by `encode_now`.
            Outgoing::Frame(_) | Outgoing::Delivery { .. } | Outgoing::Accept { .. } => {}
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
    book: Arc<DeliveryBook>,
    codec: NativeCodec,
    heartbeat: Option<Duration>,
    out: SplicedBuffer,
    /// Whether the socket takes vectored writes (then bodies are spliced).
    vectored: bool,
    /// Pre-settled deliveries in `out`, settled once it is written.
    written: Vec<(Arc<Consumer>, u64)>,
    /// Next delivery id per session channel.
    next_delivery: ChannelMap<u64>,
    /// Accepted producer transfers not yet encoded: (channel, first, last).
    accepts: Option<(u32, u64, u64)>,
    /// Reused for message ids: `ID:<node>-` then the sequence number.
    scratch: String,
    /// The length of the `ID:<node>-` prefix in `scratch`.
    id_prefix_len: usize,
}

impl Writer {
    /// Accepts a producer's delivery once its message is stored, or rejects
    /// it when the store refused it.
    fn settle_accept(&mut self, channel: u32, delivery_id: u64, stored: Result<(), StoreError>) {
        match stored {
            Ok(()) => self.accept(channel, delivery_id),
            Err(e) => {
                self.end_accepts();
                let state = DeliveryState::Rejected(Rejected {
                    error: Some(ErrorInfo::new(
                        ErrorCondition::InternalError,
                        format!("message was not stored: {e}"),
                    )),
                });
                self.encode_frame(&settled(channel, delivery_id, delivery_id, state));
            }
        }
    }

    /// Adds a producer's delivery to the pending acceptance range.
    fn accept(&mut self, channel: u32, id: u64) {
        match &mut self.accepts {
            Some((c, _, last)) if *c == channel && last.checked_add(1) == Some(id) => *last = id,
            _ => {
                self.end_accepts();
                self.accepts = Some((channel, id, id));
            }
        }
    }

    fn end_accepts(&mut self) {
        if let Some((channel, first, last)) = self.accepts.take() {
            let frame = settled(channel, first, last, DeliveryState::Accepted(Accepted {}));
            self.encode_frame(&frame);
        }
    }

    /// Fails only when a paged-out body cannot be read back: the connection
    /// then closes and the message returns to its queue, unsettled.
    fn encode_delivery(&mut self, channel: u32, handle: u32, d: &Delivery) -> std::io::Result<()> {
        let body = d.message.body.get().map_err(|e| {
            tracing::error!(error = %e, "closing a native connection: a message body is unreadable");
            std::io::Error::other(e)
        })?;
        let next = self.next_delivery.entry(channel).or_insert(0);
        let delivery_id = *next;
        *next += 1;
        let presettled = d.consumer.ack == AckMode::Auto;
        // The usual case: the whole message fits one frame and is encoded
        // from the router's message in place, without building (and
        // allocating) a native Message on the way.
        self.scratch.truncate(self.id_prefix_len);
        self.scratch
            .push_str(itoa::Buffer::new().format(d.message.seq));
        let tag = d.message.seq.to_be_bytes();
        let parts = TransferParts {
            channel,
            handle,
            delivery_id,
            delivery_tag: &tag,
            settled: presettled,
            txn_id: None,
            properties: Some(convert::properties_ref(d, &self.scratch)),
            headers: || convert::application_headers(&d.message),
        };
        let limit = self.codec.max_outbound_frame_size();
        let whole = if self.vectored && body.len() >= SPLICE_MIN {
            let head = encode_transfer_head(&parts, body.len(), limit, self.out.encoder());
            if head.is_ok() {
                self.out.splice(body.clone());
            }
            head.is_ok()
        } else {
            encode_transfer(&parts, &body, limit, self.out.encoder()).is_ok()
        };
        if whole {
            self.delivered(channel, delivery_id, presettled, d);
            return Ok(());
        }
        let transfer = Transfer {
            handle,
            delivery_id,
            delivery_tag: convert::delivery_tag(d.message.seq),
            settled: presettled,
            more: false,
            message: Some(convert::to_native(d, &self.router, body)),
            txn_id: None,
        };
        let frames = match split_transfer(channel, transfer, self.codec.max_outbound_frame_size()) {
            Ok(frames) => frames,
            Err(e) => {
                // Properties too large for the peer's frames: it can never
                // receive this message. Drop it (settled) rather than loop.
                debug!(error = %e, "native delivery does not fit the peer's frame size");
                self.written.push((d.consumer.clone(), d.message.seq));
                return Ok(());
            }
        };
        for frame in frames {
            self.encode_frame(&frame);
        }
        self.delivered(channel, delivery_id, presettled, d);
        Ok(())
    }

    /// After encoding a delivery: settled once written, or kept for the
    /// client's Disposition.
    fn delivered(&mut self, channel: u32, delivery_id: u64, presettled: bool, d: &Delivery) {
        if presettled {
            self.written.push((d.consumer.clone(), d.message.seq));
        } else {
            self.book.record(
                channel,
                delivery_id,
                Unsettled {
                    consumer: d.consumer.clone(),
                    seq: d.message.seq,
                },
            );
        }
    }

    fn encode_frame(&mut self, frame: &Frame) {
        if let Err(e) = self.codec.encode(frame, self.out.encoder()) {
            // Only a broker bug or a performative over the peer's limit (a
            // description too long for a 512-byte frame) gets here.
            debug!(error = %e, frame = frame.performative_name(), "native frame not encodable");
        }
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> std::io::Result<()> {
        self.end_accepts();
        if !self.out.is_empty() {
            self.out.write_to(socket).await?;
            tokio::io::AsyncWriteExt::flush(socket).await?;
        }
        self.settle();
        Ok(())
    }

    /// Pre-settled deliveries count as consumed once written.
    fn settle(&mut self) {
        self.router.settle_all_written(&mut self.written);
    }
}

/// A settled Disposition from the broker as receiver of `first..=last`.
fn settled(channel: u32, first: u64, last: u64, state: DeliveryState) -> Frame {
    Frame::new(
        channel,
        Disposition {
            role: Role::Receiver.into(),
            first,
            last: (last != first).then_some(last),
            settled: true,
            txn_id: None,
            state: Some(state),
        },
    )
}
