//! The client's read side: decodes the broker's frames and routes them —
//! transfers to their [`super::Receiver`], credit to [`super::Sender`]s,
//! answers to whoever waits for them — and fails everything waiting when
//! the connection ends.

use super::connection::{OutcomeWaiters, Shared, TxnWaiters, CHANNEL};
use super::error::ClientError;
use super::link::{Delivery, Outcome};
use crate::native::{
    Close, DeliveryState, Frame, NativeCodec, Performative, Reassembler, Role, Transfer,
};
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot, Notify};

/// A sender link's credit as the broker granted it.
pub(super) struct SenderFlow {
    /// Transfers sent on the link.
    pub delivery_count: u32,
    /// Transfers the broker still allows.
    pub credit: u32,
    /// Wakes senders waiting for credit.
    pub notify: Arc<Notify>,
}

/// Where a receiver link's transfers go.
pub(super) struct ReceiverRoute {
    /// To the [`super::Receiver`].
    pub deliveries: mpsc::Sender<Delivery>,
    /// Joins split transfers.
    pub reassembler: Reassembler,
    /// Waiting for the answer to a drain: gets the broker's delivery count.
    pub drained: Option<oneshot::Sender<u32>>,
}

/// Connection state shared by the handles and the tasks.
#[derive(Default)]
pub(super) struct State {
    /// Set once the connection is gone, with the reason.
    pub closed: Option<ClientError>,
    next_handle: u32,
    /// Next delivery id of our transfers.
    pub next_delivery_id: u64,
    /// Next transaction number.
    pub next_txn: u64,
    pub attaching: HashMap<u32, oneshot::Sender<Result<(), ClientError>>>,
    /// Attaches answered in the bytes being handled, resolved after them.
    answered: HashMap<u32, oneshot::Sender<Result<(), ClientError>>>,
    pub detaching: HashMap<u32, oneshot::Sender<()>>,
    pub senders: HashMap<u32, SenderFlow>,
    pub receivers: HashMap<u32, ReceiverRoute>,
    pub outcomes: OutcomeWaiters,
    pub txns: TxnWaiters,
    pub close_ack: Option<oneshot::Sender<()>>,
}

impl State {
    /// A fresh link handle.
    pub fn next_handle(&mut self) -> u32 {
        self.next_handle += 1;
        self.next_handle
    }
}

/// Records why the connection ended and wakes everyone waiting.
pub(super) fn fail(shared: &Shared, why: ClientError) {
    let mut st = shared.lock();
    if st.closed.is_none() {
        st.closed = Some(why);
    }
    for (_, s) in st.senders.drain() {
        s.notify.notify_waiters();
    }
    st.receivers.clear();
    st.attaching.clear();
    st.answered.clear();
    st.detaching.clear();
    st.outcomes.clear();
    st.txns.clear();
    if let Some(ack) = st.close_ack.take() {
        let _ = ack.send(());
    }
}

/// Reads until the connection ends.
pub(super) async fn run<R: AsyncRead + Unpin>(
    mut socket: R,
    mut buf: BytesMut,
    codec: NativeCodec,
    idle_timeout: Option<Duration>,
    shared: Arc<Shared>,
) {
    let why = loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                if let Err(e) = handle(&shared, frame) {
                    break e;
                }
                continue;
            }
            Ok(None) => {
                for (_, w) in shared.lock().answered.drain() {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => break ClientError::Protocol(e),
        }
        let read = match idle_timeout {
            Some(t) => match tokio::time::timeout(t, socket.read_buf(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    break ClientError::Unexpected(
                        "the broker was silent past the idle timeout".into(),
                    )
                }
            },
            None => socket.read_buf(&mut buf).await,
        };
        match read {
            Ok(0) => break ClientError::Closed(None),
            Ok(_) => {}
            Err(e) => {
                break ClientError::Io {
                    peer: shared.peer.clone(),
                    reason: e.to_string(),
                }
            }
        }
    };
    fail(&shared, why);
}

fn handle(shared: &Shared, frame: Frame) -> Result<(), ClientError> {
    let Some(performative) = frame.performative else {
        return Ok(());
    };
    let mut st = shared.lock();
    match performative {
        Performative::Attach(a) => {
            // Resolved once the bytes read so far are handled: a refusal is
            // Attach then Detach with the error, written together.
            if let Some(w) = st.attaching.remove(&a.handle) {
                st.answered.insert(a.handle, w);
            }
        }
        Performative::Detach(d) => {
            if let Some(w) = st.detaching.remove(&d.handle) {
                let _ = w.send(());
            }
            st.senders
                .remove(&d.handle)
                .inspect(|s| s.notify.notify_waiters());
            st.receivers.remove(&d.handle);
            if let Some(error) = d.error {
                let waiter = st.answered.remove(&d.handle);
                if let Some(w) = waiter.or_else(|| st.attaching.remove(&d.handle)) {
                    let _ = w.send(Err(ClientError::Refused(error)));
                }
            }
        }
        Performative::Flow(f) => {
            if let Some(s) = st.senders.get_mut(&f.handle) {
                // Credit: the broker allows delivery_count + link_credit in total.
                let allowed = f.delivery_count.wrapping_add(f.link_credit);
                let left = allowed.wrapping_sub(s.delivery_count);
                s.credit = if (left as i32) < 0 { 0 } else { left };
                s.notify.notify_waiters();
            } else if let Some(r) = st.receivers.get_mut(&f.handle) {
                if let Some(w) = r.drained.take() {
                    let _ = w.send(f.delivery_count);
                }
            }
        }
        Performative::Transfer(t) => transfer(&mut st, t)?,
        Performative::Disposition(d) => {
            let from_receiver = d.role() == Role::Receiver;
            let outcome = match d.state {
                Some(DeliveryState::Rejected(r)) => Outcome::Rejected(r.error),
                Some(DeliveryState::Released(_)) => Outcome::Released,
                Some(DeliveryState::Modified(_)) => Outcome::Modified,
                _ => Outcome::Accepted,
            };
            if from_receiver {
                let last = d.last.unwrap_or(d.first);
                let ids: Vec<u64> = st.outcomes.range(d.first..=last).map(|(k, _)| *k).collect();
                for id in ids {
                    if let Some(w) = st.outcomes.remove(&id) {
                        let _ = w.send(outcome.clone());
                    }
                }
            }
        }
        Performative::Declare(d) => {
            if let Some(w) = st.txns.remove(&d.txn_id) {
                let _ = w.send(d.error.map_or(Ok(()), |e| Err(ClientError::Refused(e))));
            }
        }
        Performative::Discharge(d) => {
            if let Some(w) = st.txns.remove(&d.txn_id) {
                let _ = w.send(d.error.map_or(Ok(()), |e| Err(ClientError::Refused(e))));
            }
        }
        Performative::Close(c) => {
            let answered = st.close_ack.is_some();
            drop(st);
            if !answered {
                // The broker closes: answer, as the protocol asks.
                let _ = shared.out.try_send(Frame::new(0, Close::default()));
            }
            return Err(ClientError::Closed(c.error));
        }
        Performative::End(e) if frame.channel == CHANNEL => {
            return Err(ClientError::Closed(e.error));
        }
        Performative::Open(_)
        | Performative::Begin(_)
        | Performative::End(_)
        | Performative::Heartbeat(_) => {}
    }
    Ok(())
}

fn transfer(st: &mut State, t: Transfer) -> Result<(), ClientError> {
    let handle = t.handle;
    let Some(route) = st.receivers.get_mut(&handle) else {
        // A link we detached: the broker returns its deliveries to the queue.
        return Ok(());
    };
    let Some(whole) = route.reassembler.push(t)? else {
        return Ok(());
    };
    let delivery = Delivery::new(handle, whole);
    match route.deliveries.try_send(delivery) {
        // Closed: the Receiver is gone, nobody will read the rest.
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(ClientError::Unexpected(format!(
            "the broker sent past the credit of link {handle}"
        ))),
    }
}
