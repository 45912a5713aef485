//! [`Outbox`]: everything one client connection will write, in order —
//! replies from its protocol state machine and deliveries from the router —
//! drained by the connection's single writer task. Shared by the STOMP and
//! native front ends, each with its own item type.
//!
//! Bounds: deliveries are bounded by subscription credit (the router never
//! delivers past a subscription's prefetch or link credit); replies are
//! bounded by `reply_limit`, past which the connection stops reading from
//! its client until the writer catches up, so a client that floods requests
//! without reading the answers throttles only itself.
//!
//! Answer ordering: a frame's answer (a STOMP RECEIPT, a native settling
//! Disposition or Discharge) is written before any delivery the frame
//! caused (a NACK's redelivery, the next message an ACK's freed credit lets
//! through, ...). The router queues those deliveries synchronously while
//! the frame is handled, before the answer exists (an ACK's RECEIPT needs
//! the ack's store commit first), so the front end takes a
//! [`AnswerFence`] around handling such a frame: deliveries pushed
//! meanwhile wait beside the queue and join it behind the answer. Nothing
//! waits on anything new: the answer's own store commits are awaited by the
//! writer as before, and the deliveries queued behind it were always
//! written after it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tracing::debug;

/// Flush the batch buffer once it grows past this, even mid-batch.
const WRITE_CHUNK: usize = 256 * 1024;

/// An item an outbox holds.
pub trait OutboxItem {
    /// Replies count against the reply limit; deliveries (bounded by credit
    /// instead) do not.
    fn is_reply(&self) -> bool;
}

struct State<T> {
    items: VecDeque<T>,
    replies: usize,
    closed: bool,
    /// Live [`AnswerFence`]s.
    fences: usize,
    /// Deliveries pushed while fenced, in order. Bounded by credit like any
    /// delivery; they join `items` when the last fence ends.
    fenced: VecDeque<T>,
}

/// The queue between a connection's producers of output and its writer.
pub struct Outbox<T> {
    state: Mutex<State<T>>,
    /// Wakes the writer.
    ready: Notify,
    /// Wakes a reader waiting for reply room.
    room: Notify,
    reply_limit: usize,
}

impl<T: OutboxItem> Outbox<T> {
    /// An empty outbox allowing `reply_limit` queued replies.
    pub fn new(reply_limit: usize) -> Outbox<T> {
        Outbox {
            state: Mutex::new(State {
                items: VecDeque::new(),
                replies: 0,
                closed: false,
                fences: 0,
                fenced: VecDeque::new(),
            }),
            ready: Notify::new(),
            room: Notify::new(),
            reply_limit: reply_limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Only queue operations run under this lock; a panic there would be
        // a bug, and the queue is still consistent, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item. Ignored once closed.
    pub fn push(&self, item: T) {
        let was_empty = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            if item.is_reply() {
                st.replies += 1;
            } else if st.fences > 0 {
                st.fenced.push_back(item);
                return;
            }
            st.items.push_back(item);
            st.items.len() == 1
        };
        // The writer takes everything queued at once, so only the first item
        // after a take needs to wake it; the ones behind it ride along.
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Fences deliveries off until the returned guard drops; replies still
    /// queue at once. A front end takes it around handling a frame whose
    /// answer must precede the deliveries the frame causes, and queues the
    /// answer before dropping it (see the module comment). Fences nest.
    pub fn fence_deliveries(self: &Arc<Self>) -> AnswerFence<T> {
        self.lock().fences += 1;
        AnswerFence {
            outbox: Arc::clone(self),
        }
    }

    /// Ends one fence: when it was the last, the fenced deliveries join the
    /// queue behind everything queued meanwhile.
    fn release(&self) {
        let was_empty = {
            let mut st = self.lock();
            st.fences = st.fences.saturating_sub(1);
            if st.fences > 0 || st.fenced.is_empty() {
                return;
            }
            let st = &mut *st;
            if st.closed {
                // Never written once closed (see `is_closed`).
                st.fenced.clear();
                return;
            }
            let was_empty = st.items.is_empty();
            st.items.append(&mut st.fenced);
            was_empty
        };
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Whether the writer has room for more replies now.
    pub fn has_room(&self) -> bool {
        self.lock().replies < self.reply_limit
    }

    /// Waits until the writer has room for more replies.
    pub async fn wait_for_room(&self) {
        if self.has_room() {
            return;
        }
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().replies < self.reply_limit {
                return;
            }
            notified.await;
        }
    }

    /// Takes everything queued. `None` once closed and empty: the writer ends.
    pub fn take(&self, into: &mut VecDeque<T>) -> Option<()> {
        let mut st = self.lock();
        if st.items.is_empty() && st.closed {
            return None;
        }
        std::mem::swap(&mut st.items, into);
        st.replies = 0;
        drop(st);
        self.room.notify_waiters();
        Some(())
    }

    /// Waits for something to write.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Queues `last` (if any) and accepts nothing more; the writer finishes
    /// the replies queued and ends. Deliveries still queued are not written
    /// (see [`Outbox::is_closed`]).
    pub fn close_with(&self, last: Option<T>) {
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            if let Some(item) = last {
                st.items.push_back(item);
            }
            st.closed = true;
        }
        self.ready.notify_one();
    }

    /// After [`Outbox::close_with`]: waits for the writer task to finish
    /// what it is writing (and so to settle the auto-acknowledged deliveries
    /// that reached the socket), at most `limit`, then stops it. A
    /// connection returns its unacknowledged messages only after this, so a
    /// message written before the close is not redelivered as if it had never
    /// been sent; a client that stopped reading cannot hold the cleanup up.
    pub async fn finish_writer(writer: tokio::task::JoinHandle<()>, limit: std::time::Duration) {
        let abort = writer.abort_handle();
        if tokio::time::timeout(limit, writer).await.is_err() {
            abort.abort();
        }
    }

    /// Once closed, queued deliveries are not written: the connection has
    /// already returned them (and every unacknowledged message) to their
    /// queues.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Deliveries wait beside the outbox while this lives
/// ([`Outbox::fence_deliveries`]). Dropping it takes only the outbox lock.
#[must_use = "deliveries are fenced only while the guard lives"]
pub struct AnswerFence<T: OutboxItem> {
    outbox: Arc<Outbox<T>>,
}

impl<T: OutboxItem> Drop for AnswerFence<T> {
    fn drop(&mut self) {
        self.outbox.release();
    }
}

/// A protocol's encoder for what its outbox holds, driven by
/// [`write_from_outbox`]: it encodes into its own buffer and writes that
/// buffer on `flush`.
pub(crate) trait ItemEncoder<T> {
    /// How long the connection may be silent before a heart-beat.
    fn heartbeat_interval(&self) -> Option<Duration>;
    /// Adds a heart-beat to the buffer.
    fn encode_heartbeat(&mut self);
    /// Bytes encoded and not yet written.
    fn buffered(&self) -> usize;
    /// Encodes `item` if that needs no waiting, or hands it back for
    /// [`ItemEncoder::encode`]. Most items take this path, which spares the
    /// writer loop building (and moving) an async call's state per item.
    fn encode_now(&mut self, item: T, closed: bool) -> std::io::Result<Option<T>>;
    /// Encodes one item (`closed`: deliveries are dropped, see
    /// [`Outbox::is_closed`]); may flush first if it must wait on the store.
    async fn encode<W: AsyncWrite + Unpin>(
        &mut self,
        item: T,
        closed: bool,
        socket: &mut W,
    ) -> std::io::Result<()>;
    /// Writes the buffer out and settles what it carried.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> std::io::Result<()>;
}

/// The writer task of a connection: drains `outbox` in batches, encodes each
/// batch into one buffer written with as few system calls as possible,
/// heart-beats when idle, and ends when the outbox closes or the socket fails.
pub(crate) async fn write_from_outbox<T, E, W>(
    mut socket: W,
    outbox: &Outbox<T>,
    encoder: &mut E,
    peer: &str,
) where
    T: OutboxItem,
    E: ItemEncoder<T>,
    W: AsyncWrite + Unpin,
{
    let mut batch = VecDeque::new();
    while outbox.take(&mut batch).is_some() {
        if batch.is_empty() {
            let interval = encoder.heartbeat_interval();
            let idle = async {
                match interval {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = outbox.ready() => {}
                _ = idle => encoder.encode_heartbeat(),
            }
        }
        let closed = outbox.is_closed();
        for item in batch.drain(..) {
            let mut written = match encoder.encode_now(item, closed) {
                Ok(None) => Ok(()),
                Ok(Some(item)) => encoder.encode(item, closed, &mut socket).await,
                Err(e) => Err(e),
            };
            if written.is_ok() && encoder.buffered() >= WRITE_CHUNK {
                written = encoder.flush(&mut socket).await;
            }
            if let Err(e) = written {
                debug!(%peer, error = %e, "write failed");
                return;
            }
        }
        if let Err(e) = encoder.flush(&mut socket).await {
            debug!(%peer, error = %e, "write failed");
            return;
        }
    }
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Item {
        Reply(&'static str),
        Delivery(&'static str),
    }

    impl OutboxItem for Item {
        fn is_reply(&self) -> bool {
            matches!(self, Item::Reply(_))
        }
    }

    fn drain(outbox: &Outbox<Item>) -> Vec<Item> {
        let mut out = VecDeque::new();
        outbox.take(&mut out);
        out.into_iter().collect()
    }

    #[test]
    fn fenced_deliveries_follow_the_answer_queued_after_them() {
        let outbox = Arc::new(Outbox::new(8));
        outbox.push(Item::Delivery("before"));
        let fence = outbox.fence_deliveries();
        outbox.push(Item::Delivery("caused"));
        outbox.push(Item::Reply("receipt"));
        assert_eq!(
            drain(&outbox),
            [Item::Delivery("before"), Item::Reply("receipt")],
            "a fenced delivery is not handed to the writer"
        );
        drop(fence);
        assert_eq!(drain(&outbox), [Item::Delivery("caused")]);
        // Released: deliveries queue at once again.
        outbox.push(Item::Delivery("later"));
        assert_eq!(drain(&outbox), [Item::Delivery("later")]);
    }

    #[test]
    fn nested_fences_release_with_the_last_in_push_order() {
        let outbox = Arc::new(Outbox::new(8));
        let outer = outbox.fence_deliveries();
        outbox.push(Item::Delivery("a"));
        let inner = outbox.fence_deliveries();
        outbox.push(Item::Delivery("b"));
        drop(inner);
        outbox.push(Item::Reply("receipt"));
        assert_eq!(drain(&outbox), [Item::Reply("receipt")]);
        drop(outer);
        assert_eq!(drain(&outbox), [Item::Delivery("a"), Item::Delivery("b")]);
    }

    #[test]
    fn fenced_deliveries_of_a_closed_outbox_are_dropped() {
        let outbox = Arc::new(Outbox::new(8));
        let fence = outbox.fence_deliveries();
        outbox.push(Item::Delivery("caused"));
        outbox.close_with(Some(Item::Reply("error")));
        drop(fence);
        assert_eq!(drain(&outbox), [Item::Reply("error")]);
        assert!(
            outbox.take(&mut VecDeque::new()).is_none(),
            "closed and empty"
        );
    }
}
