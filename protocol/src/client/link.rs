//! The two ends of a link: [`Sender`] (transfers, credit, outcomes) and
//! [`Receiver`] (deliveries with a credit window, settlement).

use super::connection::{Connection, Shared, CHANNEL, MAX_WINDOW};
use super::error::ClientError;
use super::transaction::Transaction;
use crate::native::{
    Accepted, DeliveryState, Disposition, ErrorInfo, Flow, Frame, Message, Modified, Properties,
    Rejected, Released, Role, SettleMode, Transfer,
};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// What the broker did with a sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken (and stored, if persistent).
    Accepted,
    /// Refused, with the reason.
    Rejected(Option<ErrorInfo>),
    /// Not taken; may be sent again.
    Released,
    /// Not taken as it was.
    Modified,
}

/// A message to send: body, properties and application headers.
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    /// The native message.
    pub message: Message,
}

impl OutgoingMessage {
    /// A message with `body`.
    pub fn new(body: impl Into<Bytes>) -> OutgoingMessage {
        OutgoingMessage {
            message: Message {
                properties: Some(Properties::default()),
                body: body.into(),
                ..Message::default()
            },
        }
    }

    /// A message with a UTF-8 body.
    pub fn text(body: &str) -> OutgoingMessage {
        OutgoingMessage::new(Bytes::copy_from_slice(body.as_bytes()))
    }

    fn properties(&mut self) -> &mut Properties {
        self.message
            .properties
            .get_or_insert_with(Properties::default)
    }

    /// Survives a broker restart (on a queue).
    pub fn persistent(mut self, persistent: bool) -> OutgoingMessage {
        self.properties().persistent = persistent;
        self
    }

    /// Priority 0 (lowest) to 9.
    pub fn priority(mut self, priority: u32) -> OutgoingMessage {
        self.properties().priority = Some(priority);
        self
    }

    /// Sets an application header.
    pub fn header(mut self, name: &str, value: &str) -> OutgoingMessage {
        self.message
            .application_headers
            .insert(name.to_string(), value.to_string());
        self
    }

    /// Sets the content type.
    pub fn content_type(mut self, value: &str) -> OutgoingMessage {
        self.properties().content_type = Some(value.to_string());
        self
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, value: &str) -> OutgoingMessage {
        self.properties().correlation_id = Some(value.to_string());
        self
    }

    /// Sets the reply-to destination.
    pub fn reply_to(mut self, value: &str) -> OutgoingMessage {
        self.properties().reply_to = Some(value.to_string());
        self
    }
}

/// The outcome of an unsettled transfer, once the broker settles it.
pub struct PendingOutcome {
    rx: oneshot::Receiver<Outcome>,
    shared: Arc<Shared>,
}

impl PendingOutcome {
    /// Waits for the broker's Disposition.
    pub async fn wait(self) -> Result<Outcome, ClientError> {
        self.rx.await.map_err(|_| self.shared.closed_error())
    }
}

/// A sender link.
pub struct Sender {
    shared: Arc<Shared>,
    handle: u32,
    mode: SettleMode,
}

impl Sender {
    pub(super) fn new(shared: Arc<Shared>, handle: u32, mode: SettleMode) -> Sender {
        Sender {
            shared,
            handle,
            mode,
        }
    }

    /// Sends without waiting for settlement (pre-settled on a `Settled` link:
    /// at-most-once). Waits only for credit.
    pub async fn send(&self, message: OutgoingMessage) -> Result<(), ClientError> {
        self.transfer(message, None, self.mode == SettleMode::Settled, false)
            .await
            .map(|_| ())
    }

    /// Sends unsettled and returns a handle on the outcome, so many transfers
    /// can be in flight.
    pub async fn send_unsettled(
        &self,
        message: OutgoingMessage,
    ) -> Result<PendingOutcome, ClientError> {
        let rx = self.transfer(message, None, false, true).await?;
        rx.map(|rx| PendingOutcome {
            rx,
            shared: self.shared.clone(),
        })
        .ok_or_else(|| ClientError::Unexpected("no outcome to wait for".into()))
    }

    /// Sends unsettled and waits until the broker has taken the message (a
    /// persistent one: stored); a refusal is an error.
    pub async fn send_and_wait(&self, message: OutgoingMessage) -> Result<(), ClientError> {
        match self.send_unsettled(message).await?.wait().await? {
            Outcome::Accepted => Ok(()),
            Outcome::Rejected(Some(e)) => Err(ClientError::Refused(e)),
            other => Err(ClientError::Unexpected(format!(
                "message not accepted: {other:?}"
            ))),
        }
    }

    /// Sends inside `txn`: published when it commits.
    pub async fn send_in(
        &self,
        txn: &Transaction,
        message: OutgoingMessage,
    ) -> Result<(), ClientError> {
        self.transfer(
            message,
            Some(txn.id().to_string()),
            self.mode == SettleMode::Settled,
            false,
        )
        .await
        .map(|_| ())
    }

    async fn transfer(
        &self,
        message: OutgoingMessage,
        txn_id: Option<String>,
        settled: bool,
        want_outcome: bool,
    ) -> Result<Option<oneshot::Receiver<Outcome>>, ClientError> {
        // Wait for credit, then take one.
        let (delivery_id, outcome) = loop {
            let notified = {
                let mut st = self.shared.lock();
                if let Some(e) = &st.closed {
                    return Err(e.clone());
                }
                let Some(flow) = st.senders.get_mut(&self.handle) else {
                    return Err(ClientError::Unexpected(format!(
                        "sender link {} was detached by the broker",
                        self.handle
                    )));
                };
                if flow.credit > 0 {
                    flow.credit -= 1;
                    flow.delivery_count = flow.delivery_count.wrapping_add(1);
                    let id = st.next_delivery_id;
                    st.next_delivery_id += 1;
                    let outcome = want_outcome.then(|| {
                        let (tx, rx) = oneshot::channel();
                        st.outcomes.insert(id, tx);
                        rx
                    });
                    break (id, outcome);
                }
                flow.notify.clone().notified_owned()
            };
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            // Credit may have arrived between the check and `enable`.
            let ready = self
                .shared
                .lock()
                .senders
                .get(&self.handle)
                .is_none_or(|f| f.credit > 0);
            if !ready {
                notified.await;
            }
        };
        let transfer = Transfer {
            handle: self.handle,
            delivery_id,
            delivery_tag: Bytes::copy_from_slice(&delivery_id.to_be_bytes()),
            settled,
            more: false,
            message: Some(message.message),
            txn_id,
        };
        self.shared.send(Frame::new(CHANNEL, transfer)).await?;
        Ok(outcome)
    }

    /// Detaches the link.
    pub async fn close(self) -> Result<(), ClientError> {
        Connection::detach(&self.shared, self.handle).await
    }
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Delivery {
    handle: u32,
    /// The delivery id, for [`Receiver::accept`] and friends.
    pub delivery_id: u64,
    /// Pre-settled by the broker (nothing to acknowledge).
    pub settled: bool,
    /// The message.
    pub message: Message,
}

impl Delivery {
    pub(super) fn new(handle: u32, t: Transfer) -> Delivery {
        Delivery {
            handle,
            delivery_id: t.delivery_id,
            settled: t.settled,
            message: t.message.unwrap_or_default(),
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.message.body
    }

    /// The properties (defaults when absent).
    pub fn properties(&self) -> Properties {
        self.message.properties.clone().unwrap_or_default()
    }

    /// An application header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.message
            .application_headers
            .get(name)
            .map(String::as_str)
    }
}

/// How to open a [`Receiver`].
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// Credit window: at most this many transfers not yet taken by `recv`
    /// (1 to [`MAX_WINDOW`]).
    pub credit: u32,
    /// `Settled`: at-most-once (auto-acknowledged once written);
    /// `Unsettled`: at-least-once, settle each with accept/release.
    pub settle_mode: SettleMode,
    /// JMS selector.
    pub selector: Option<String>,
    /// Link name (default: generated).
    pub name: Option<String>,
    /// Durable subscription name (topics): messages published while the
    /// receiver is away are kept for it. Named per connection container id.
    pub durable_subscription: Option<String>,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions {
            credit: 100,
            settle_mode: SettleMode::Unsettled,
            selector: None,
            name: None,
            durable_subscription: None,
        }
    }
}

/// A receiver link.
pub struct Receiver {
    shared: Arc<Shared>,
    handle: u32,
    rx: mpsc::Receiver<Delivery>,
    window: u32,
    /// Transfers taken by `recv` (our delivery count).
    consumed: u32,
    /// `consumed` when credit was last granted.
    granted_at: u32,
    /// After a drain: no automatic credit until [`Receiver::grant`].
    stopped: bool,
    /// Broker's delivery count minus ours: a drain advances the broker's
    /// count by the credit it used up without sending.
    count_offset: u32,
    mode: SettleMode,
}

impl Receiver {
    pub(super) fn new(
        shared: Arc<Shared>,
        handle: u32,
        rx: mpsc::Receiver<Delivery>,
        window: u32,
        mode: SettleMode,
    ) -> Receiver {
        Receiver {
            shared,
            handle,
            rx,
            window,
            consumed: 0,
            granted_at: 0,
            stopped: false,
            count_offset: 0,
            mode,
        }
    }

    /// The next message; `None` once the link or connection is gone.
    /// Refills the broker's credit once half the window is consumed.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let d = self.rx.recv().await?;
        self.consumed = self.consumed.wrapping_add(1);
        if !self.stopped && self.consumed.wrapping_sub(self.granted_at) >= (self.window / 2).max(1)
        {
            let _ = self.grant(self.window).await;
        }
        Some(d)
    }

    /// A message if one is already here.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        let d = self.rx.try_recv().ok()?;
        self.consumed = self.consumed.wrapping_add(1);
        Some(d)
    }

    /// Sets the credit window to `credit` (at most [`MAX_WINDOW`]) beyond
    /// what `recv` has taken (0 stops the flow) and resumes automatic refills.
    pub async fn grant(&mut self, credit: u32) -> Result<(), ClientError> {
        let credit = credit.min(MAX_WINDOW);
        self.window = credit.max(1);
        self.stopped = credit == 0;
        self.granted_at = self.consumed;
        self.flow(credit, false).await
    }

    async fn flow(&self, credit: u32, drain: bool) -> Result<(), ClientError> {
        let flow = Flow {
            handle: self.handle,
            // The broker allows consumed + credit deliveries in total, so
            // transfers still on their way count against the window.
            delivery_count: self.consumed.wrapping_add(self.count_offset),
            link_credit: credit,
            drain,
            ..Flow::default()
        };
        self.shared.send(Frame::new(CHANNEL, flow)).await
    }

    /// Asks the broker to use up the credit now: it sends what it has and
    /// answers when done. Returns the link's delivery count at that point;
    /// the messages sent are already queued for `recv`. Credit stays at
    /// zero until [`Receiver::grant`].
    pub async fn drain(&mut self) -> Result<u32, ClientError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            let route = st
                .receivers
                .get_mut(&self.handle)
                .ok_or_else(|| ClientError::Unexpected("receiver link is gone".into()))?;
            route.drained = Some(tx);
        }
        let credit = self
            .window
            .saturating_sub(self.consumed.wrapping_sub(self.granted_at));
        self.flow(credit, true).await?;
        self.stopped = true;
        let count = rx.await.map_err(|_| self.shared.closed_error())?;
        // Transfers sent before the answer are queued here already.
        let queued = u32::try_from(self.rx.len()).unwrap_or(u32::MAX);
        self.count_offset = count.wrapping_sub(self.consumed).wrapping_sub(queued);
        Ok(count)
    }

    /// Acknowledges `delivery`: consumed.
    pub async fn accept(&self, delivery: &Delivery) -> Result<(), ClientError> {
        self.settle(
            delivery.delivery_id,
            delivery.delivery_id,
            DeliveryState::Accepted(Accepted {}),
            None,
        )
        .await
    }

    /// Acknowledges every delivery from `first` to `last` in one frame.
    pub async fn accept_range(&self, first: u64, last: u64) -> Result<(), ClientError> {
        self.settle(first, last, DeliveryState::Accepted(Accepted {}), None)
            .await
    }

    /// Gives `delivery` back for redelivery.
    pub async fn release(&self, delivery: &Delivery) -> Result<(), ClientError> {
        self.settle(
            delivery.delivery_id,
            delivery.delivery_id,
            DeliveryState::Released(Released {}),
            None,
        )
        .await
    }

    /// Gives `delivery` back as failed (counts a delivery attempt).
    pub async fn modify(&self, delivery: &Delivery) -> Result<(), ClientError> {
        let state = DeliveryState::Modified(Modified {
            delivery_failed: true,
            undeliverable_here: false,
        });
        self.settle(delivery.delivery_id, delivery.delivery_id, state, None)
            .await
    }

    /// Rejects `delivery` as invalid.
    pub async fn reject(&self, delivery: &Delivery) -> Result<(), ClientError> {
        let state = DeliveryState::Rejected(Rejected { error: None });
        self.settle(delivery.delivery_id, delivery.delivery_id, state, None)
            .await
    }

    /// Acknowledges `delivery` inside `txn`: takes effect at commit.
    pub async fn accept_in(
        &self,
        txn: &Transaction,
        delivery: &Delivery,
    ) -> Result<(), ClientError> {
        let id = delivery.delivery_id;
        self.settle(
            id,
            id,
            DeliveryState::Accepted(Accepted {}),
            Some(txn.id().to_string()),
        )
        .await
    }

    async fn settle(
        &self,
        first: u64,
        last: u64,
        state: DeliveryState,
        txn_id: Option<String>,
    ) -> Result<(), ClientError> {
        if self.mode == SettleMode::Settled {
            return Ok(());
        }
        let d = Disposition {
            role: Role::Receiver.into(),
            first,
            last: (last != first).then_some(last),
            settled: true,
            txn_id,
            state: Some(state),
        };
        self.shared.send(Frame::new(CHANNEL, d)).await
    }

    /// Detaches the link; unsettled deliveries go back to the queue.
    pub async fn close(self) -> Result<(), ClientError> {
        Connection::detach(&self.shared, self.handle).await
    }

    /// The link's handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }
}

impl Delivery {
    /// The handle of the link it arrived on.
    pub fn handle(&self) -> u32 {
        self.handle
    }
}
