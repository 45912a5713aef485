//! Transfers from a client's sender link (`protocol/NATIVE.md` sections 3
//! and 5): credit, reassembly of split messages, the in-place fast path for
//! whole ones ([`Connection::inbound_transfer`]), and publishing (or holding
//! in a transaction) with the `accepted` Disposition a persistent message
//! gets once stored.

use super::convert;
use super::link::{no_link, Link, ProducerLink};
use super::outgoing::Outgoing;
use super::session::{Connection, Step};
use super::Failure;
use crate::auth::Permission;
use crate::router::scheduler::Schedule;
use crate::router::Destination;
use crate::store::Commit;
use crate::transaction::TxOp;
use bytes::Bytes;
use ferromq_protocol::native::inbound::InboundTransfer;
use ferromq_protocol::native::lean::PropertiesRef;
use ferromq_protocol::native::{ErrorCondition, SettleMode, Transfer};
use std::sync::Arc;

impl ProducerLink {
    /// Takes one credit for a new message, or fails: a transfer without
    /// credit is `illegal-state`.
    fn take_credit(&mut self, handle: u32) -> Result<(), Failure> {
        if self.credit == 0 {
            return Err(Failure::illegal_state(format!(
                "transfer without credit on handle {handle}: wait for a Flow granting credit"
            )));
        }
        self.credit -= 1;
        self.delivery_count = self.delivery_count.wrapping_add(1);
        Ok(())
    }

    /// After a whole message arrived (`settled`: its own flag) on a link
    /// granting `credit` at a time.
    fn taken(&self, settled: bool, credit: u32) -> Taken {
        Taken {
            presettled: match self.settle_mode {
                SettleMode::Settled => true,
                SettleMode::Unsettled => false,
                SettleMode::Mixed => settled,
            },
            low: self.credit <= credit / 2,
            destination: self.destination.clone(),
        }
    }
}

/// What a producer link says about a message it has taken credit for.
struct Taken {
    /// No acceptance to send.
    presettled: bool,
    /// Credit is at half or below: grant more.
    low: bool,
    /// The link's destination.
    destination: Arc<Destination>,
}

/// A whole message received on a producer link, however it was read.
struct Received<'a> {
    delivery_id: u64,
    txn_id: Option<&'a str>,
    properties: Option<PropertiesRef<'a>>,
    body: Bytes,
}

impl Connection {
    /// The producer link `handle` on `channel`, for a transfer.
    fn producer_link(&mut self, channel: u32, handle: u32) -> Result<&mut ProducerLink, Failure> {
        let link = self
            .session(channel, "transfer")?
            .links
            .get_mut(&handle)
            .ok_or_else(|| no_link(channel, handle, "transfer"))?;
        match link {
            Link::Producer(p) => Ok(p),
            Link::Consumer(..) => Err(Failure::illegal_state(format!(
                "transfer on handle {handle}, a link on which the broker is the sender"
            ))),
        }
    }

    pub(super) fn transfer(&mut self, channel: u32, transfer: Transfer) -> Result<Step, Failure> {
        let handle = transfer.handle;
        let credit = self.settings.producer_credit;
        let p = self.producer_link(channel, handle)?;
        if p.reassembler.is_idle() {
            // A split message uses one credit, on its first piece.
            p.take_credit(handle)?;
        }
        let Some(whole) = p.reassembler.push(transfer)? else {
            return Ok(Step::Continue);
        };
        let link = p.taken(whole.settled, credit);
        let message = whole.message.unwrap_or_default();
        let received = Received {
            delivery_id: whole.delivery_id,
            txn_id: whole.txn_id.as_deref(),
            properties: message.properties.as_ref().map(convert::borrow_properties),
            body: message.body.clone(),
        };
        let headers = message
            .application_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        self.publish_transfer(channel, handle, link, received, headers)
    }

    /// The fast path for a whole transfer read in place from `frame`
    /// (`protocol::native::inbound`): the same as decoding it and calling
    /// `Connection::transfer`, without the copies. `None` when the link is
    /// in the middle of a split message: decode the frame normally then.
    pub fn inbound_transfer(
        &mut self,
        t: &InboundTransfer<'_>,
        frame: &Bytes,
    ) -> Option<Result<Step, Failure>> {
        let handle = t.handle;
        let credit = self.settings.producer_credit;
        let p = match self.producer_link(t.channel, handle) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if !p.reassembler.is_idle() {
            return None;
        }
        if let Err(e) = p.take_credit(handle) {
            return Some(Err(e));
        }
        let link = p.taken(t.settled, credit);
        let received = Received {
            delivery_id: t.delivery_id,
            txn_id: t.txn_id,
            properties: t.properties,
            body: frame.slice_ref(t.body),
        };
        Some(self.publish_transfer(t.channel, handle, link, received, t.headers()))
    }

    /// Routes a whole received message (or holds it in its transaction),
    /// queues its acceptance unless pre-settled, and refills credit.
    fn publish_transfer<'h>(
        &mut self,
        channel: u32,
        handle: u32,
        link: Taken,
        received: Received<'_>,
        headers: impl Iterator<Item = (&'h str, &'h str)>,
    ) -> Result<Step, Failure> {
        self.info.count_message_in();
        let Taken {
            presettled,
            low,
            destination: link_destination,
        } = link;
        let named = received
            .properties
            .as_ref()
            .map(|p| p.destination)
            .filter(|d| !d.is_empty() && *d != link_destination.name());
        let destination = match named {
            Some(name) => self.destination_of(name, Permission::Write)?,
            // Deleted by an administrator since the link attached: the link
            // follows the destination re-created by this send, so its flow
            // control watches the live one.
            None if link_destination.is_deleted() => {
                let fresh = self.destination_of(link_destination.name(), Permission::Write)?;
                self.producer_link(channel, handle)?.destination = fresh.clone();
                fresh
            }
            None => link_destination,
        };
        let message = convert::from_parts(
            received.properties,
            headers,
            received.body,
            &destination,
            self.id,
            &self.router,
            self.read_at_ms,
        )?;
        // Bad scheduling headers are refused at the transfer, even in a
        // transaction, as a STOMP SEND's are.
        Schedule::of(&message).map_err(|e| Failure::new(ErrorCondition::NotAllowed, e))?;
        let commit = match received.txn_id {
            Some(txn) => {
                let max = self.settings.max_transaction_bytes;
                let t = self.transactions.get_mut(txn).ok_or_else(|| {
                    Failure::not_found(format!(
                        "transfer in transaction '{txn}', which is not open"
                    ))
                })?;
                t.work.bytes += message.footprint();
                if t.work.bytes > max {
                    return Err(Failure::new(
                        ErrorCondition::ResourceLimitExceeded,
                        format!("transaction '{txn}' holds more than {max} bytes of messages"),
                    ));
                }
                t.work.ops.push(TxOp::Send {
                    destination: destination.clone(),
                    message,
                });
                Commit::Done
            }
            // The producers' one entry point, as for STOMP: scheduling,
            // expiry and priority behave the same whichever protocol sent it.
            None => self
                .router
                .send(&destination, message)
                .map_err(|e| Failure::new(ErrorCondition::ResourceLimitExceeded, e.to_string()))?,
        };
        if !presettled {
            self.outbox.push(Outgoing::Accept {
                channel,
                delivery_id: received.delivery_id,
                commit,
            });
        }
        if low {
            if let Some(Link::Producer(mut p)) = self
                .sessions
                .get_mut(&channel)
                .and_then(|s| s.links.remove(&handle))
            {
                self.grant_producer(channel, handle, &mut p);
                if let Some(s) = self.sessions.get_mut(&channel) {
                    s.links.insert(handle, Link::Producer(p));
                }
            }
        }
        Ok(Step::Continue)
    }
}
