//! Links (`protocol/NATIVE.md` sections 3 and 5): a client's receiver link is
//! a router subscription whose credit is the link credit; a client's sender
//! link publishes through the router and gets credit from the broker only
//! while its destination is under its memory limit. Attach, Detach, Flow
//! and Disposition of [`Connection`] live here, Transfer in [`super::produce`].

use super::book::Unsettled;
use super::outgoing::{FrameOutbox, LinkSink, Outgoing};
use super::session::{no_session, router_failure, Connection, Step};
use super::Failure;
use crate::auth::Permission;
use crate::router::durable;
use crate::router::{
    AckMode, Address, Consumer, Destination, DestinationKind, RouterError, SubscribeOptions,
};
use crate::selector::Selector;
use crate::transaction::TxOp;
use ferromq_protocol::native::{
    Attach, DeliveryState, Detach, Disposition, ErrorCondition, ErrorInfo, Flow, Frame,
    Reassembler, Role, SettleMode,
};
use std::sync::Arc;

/// One attached link.
pub enum Link {
    /// The client consumes: the broker sends. With the share of the
    /// connection's unsettled budget its prefetch window holds.
    Consumer(Arc<Consumer>, usize),
    /// The client produces: the broker receives.
    Producer(Box<ProducerLink>),
}

/// The broker's receiving end of a client's sender link.
pub struct ProducerLink {
    pub(super) destination: Arc<Destination>,
    pub(super) settle_mode: SettleMode,
    /// Transfers received (the sender's delivery count as we know it).
    pub(super) delivery_count: u32,
    /// Transfers the client may still send.
    pub(super) credit: u32,
    /// Pieces of a split transfer.
    pub(super) reassembler: Reassembler,
    /// A task waits for the destination to have room before credit is granted.
    pub(super) waiting: bool,
}

impl Connection {
    pub(super) fn attach(&mut self, channel: u32, attach: Attach) -> Result<Step, Failure> {
        let handle = attach.handle;
        if self.session(channel, "attach")?.links.contains_key(&handle) {
            return Err(Failure::illegal_state(format!(
                "attach of '{}' on handle {handle}, which is already attached on channel {channel}",
                attach.name
            )));
        }
        let link = if self.link_count >= self.settings.max_links {
            Err(Failure::new(
                ErrorCondition::ResourceLimitExceeded,
                format!(
                    "link limit of {} per connection reached",
                    self.settings.max_links
                ),
            ))
        } else {
            match attach.role() {
                Role::Receiver => self.attach_consumer(channel, &attach),
                Role::Sender => self.attach_producer(channel, &attach),
            }
        };
        match link {
            Ok(link) => {
                self.link_count += 1;
                self.session(channel, "attach")?.links.insert(handle, link);
            }
            Err(refusal) => {
                // The answer to a refused Attach is Attach then Detach with
                // the error; the connection goes on.
                self.outbox.frame(Frame::new(channel, answer(&attach)));
                self.outbox.frame(Frame::new(
                    channel,
                    Detach {
                        handle,
                        closed: true,
                        error: Some(ErrorInfo::new(refusal.condition, refusal.description)),
                    },
                ));
            }
        }
        Ok(Step::Continue)
    }

    pub(super) fn destination_of(
        &self,
        name: &str,
        permission: Permission,
    ) -> Result<Arc<Destination>, Failure> {
        let address = Address::parse(name, self.id).map_err(router_failure)?;
        self.authorize(&address, permission)?;
        // Queue wildcards consume every matching queue, as on STOMP; never
        // over temporary queues (their owner's alone).
        if address.is_wildcard() && address.is_temporary() {
            return Err(Failure::new(
                ErrorCondition::NotAllowed,
                format!("wildcard links are not possible on temporary destinations: {name}"),
            ));
        }
        self.router
            .destination(&address, self.id)
            .map_err(router_failure)
    }

    fn attach_consumer(&mut self, channel: u32, attach: &Attach) -> Result<Link, Failure> {
        let selector = match attach.selector.as_deref().filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(text) => Some(Arc::new(Selector::parse(text).map_err(|e| {
                Failure::new(ErrorCondition::NotAllowed, format!("selector: {e}"))
            })?)),
        };
        let destination = self.destination_of(&attach.address, Permission::Read)?;
        // A durable subscription consumes its hidden queue, exactly as a
        // STOMP durable subscriber does; the container id plays client-id.
        let (destination, selector) = match attach
            .durable_subscription
            .as_deref()
            .filter(|n| !n.is_empty())
        {
            None => (destination, selector),
            Some(name) => {
                if destination.kind() != DestinationKind::Topic {
                    return Err(Failure::new(
                        ErrorCondition::NotAllowed,
                        format!(
                            "durable subscriptions follow topics, not {}",
                            attach.address
                        ),
                    ));
                }
                let queue = self
                    .router
                    .durable_subscribe(&self.peer_container, name, &destination.address, selector)
                    .map_err(router_failure)?;
                if queue.has_subscriber_other_than(self.id) {
                    return Err(Failure::new(
                        ErrorCondition::NotAllowed,
                        format!(
                            "durable subscription '{name}' is already in use by another connection"
                        ),
                    ));
                }
                (queue, None)
            }
        };
        let ack = match attach.settle_mode() {
            SettleMode::Settled => AckMode::Auto,
            SettleMode::Unsettled | SettleMode::Mixed => AckMode::ClientIndividual,
        };
        // Unsettled links hold a share of the connection's unsettled budget
        // as their prefetch window; pre-settled deliveries are settled once
        // written and take none.
        let share = if ack == AckMode::Auto {
            0
        } else {
            let defaults = self.router.config();
            let wanted = match destination.kind() {
                DestinationKind::Queue => defaults.queue_prefetch,
                DestinationKind::Topic => defaults.topic_prefetch,
            };
            let max = self.settings.max_unacked;
            let left = max.saturating_sub(self.unacked_budget);
            if left == 0 {
                return Err(Failure::new(
                    ErrorCondition::ResourceLimitExceeded,
                    format!(
                        "limit of {max} unsettled deliveries per connection reached \
                         (limits.max_unacked_per_connection): detach an unsettled link first"
                    ),
                ));
            }
            wanted.max(1).min(left)
        };
        // The answer goes first: no transfer can precede it (no credit yet).
        self.outbox.frame(Frame::new(channel, answer(attach)));
        let sink = Arc::new(LinkSink {
            outbox: self.outbox.clone(),
            channel,
            handle: attach.handle,
        });
        let options = SubscribeOptions {
            selector,
            prefetch: (share > 0).then_some(share),
            ..SubscribeOptions::default()
        };
        let consumer = self.router.subscribe_link(
            destination,
            self.id,
            attach.name.as_str().into(),
            ack,
            options,
            sink,
        );
        self.unacked_budget += share;
        Ok(Link::Consumer(consumer, share))
    }

    fn attach_producer(&mut self, channel: u32, attach: &Attach) -> Result<Link, Failure> {
        let destination = self.destination_of(&attach.address, Permission::Write)?;
        if destination.address.is_wildcard() {
            return Err(Failure::new(
                ErrorCondition::NotAllowed,
                format!("cannot send to the wildcard destination {}", attach.address),
            ));
        }
        self.outbox.frame(Frame::new(channel, answer(attach)));
        let mut link = ProducerLink {
            destination,
            settle_mode: attach.settle_mode(),
            delivery_count: attach.initial_delivery_count,
            credit: 0,
            reassembler: Reassembler::new(self.settings.max_message_size),
            waiting: false,
        };
        self.grant_producer(channel, attach.handle, &mut link);
        Ok(Link::Producer(Box::new(link)))
    }

    /// Refills a producer link's credit, or (destination over its memory
    /// limit) starts waiting for room: producer flow control.
    pub(super) fn grant_producer(&self, channel: u32, handle: u32, link: &mut ProducerLink) {
        if link.waiting {
            return;
        }
        if link.destination.is_over_limit() {
            link.waiting = true;
            let destination = link.destination.clone();
            let wake = self.wake.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = destination.wait_for_space() => { let _ = wake.send((channel, handle)); }
                    _ = wake.closed() => {}
                }
            });
            return;
        }
        link.credit = self.settings.producer_credit;
        self.outbox.frame(Frame::new(
            channel,
            Flow {
                handle,
                link_credit: link.credit,
                delivery_count: link.delivery_count,
                ..Flow::default()
            },
        ));
    }

    /// A waiting producer link's destination has room again.
    pub fn wake(&mut self, channel: u32, handle: u32) {
        let Some(session) = self.sessions.get_mut(&channel) else {
            return;
        };
        let Some(Link::Producer(mut link)) = session.links.remove(&handle) else {
            return;
        };
        link.waiting = false;
        self.grant_producer(channel, handle, &mut link);
        if let Some(session) = self.sessions.get_mut(&channel) {
            session.links.insert(handle, Link::Producer(link));
        }
    }

    pub(super) fn detach(&mut self, channel: u32, detach: Detach) -> Result<Step, Failure> {
        let handle = detach.handle;
        let link = self
            .session(channel, "detach")?
            .links
            .remove(&handle)
            .ok_or_else(|| no_link(channel, handle, "detach"))?;
        // Closing (not merely detaching) a durable link deletes the
        // subscription, as AMQP 1.0 has it.
        let durable_queue = match (&link, detach.closed) {
            (Link::Consumer(consumer, _), true)
                if durable::is_durable_queue(consumer.destination.name()) =>
            {
                Some(consumer.destination.name().to_string())
            }
            _ => None,
        };
        self.drop_link(link);
        if let Some(queue) = durable_queue {
            self.router.durable_unsubscribe_queue(&queue);
        }
        self.outbox.frame(Frame::new(
            channel,
            Detach {
                handle,
                closed: detach.closed,
                error: None,
            },
        ));
        Ok(Step::Continue)
    }

    /// Ends a link: a consumer's unsettled deliveries go back to their queue.
    pub(super) fn drop_link(&mut self, link: Link) {
        self.link_count = self.link_count.saturating_sub(1);
        if let Link::Consumer(consumer, share) = link {
            self.unacked_budget = self.unacked_budget.saturating_sub(share);
            for t in self.transactions.values_mut() {
                t.work.ops.retain(|op| match op {
                    TxOp::Ack { consumer: c, .. } | TxOp::Nack { consumer: c, .. } => {
                        c.subscription_id() != consumer.id
                    }
                    TxOp::Send { .. } => true,
                });
            }
            self.router.unsubscribe(&consumer);
            self.book.forget_consumer(consumer.id);
        }
    }

    pub(super) fn flow(&mut self, channel: u32, flow: Flow) -> Result<Step, Failure> {
        let handle = flow.handle;
        let link = self
            .sessions
            .get(&channel)
            .ok_or_else(|| no_session(channel, "flow"))?
            .links
            .get(&handle)
            .ok_or_else(|| no_link(channel, handle, "flow"))?;
        let reply = match link {
            Link::Consumer(consumer, _) => {
                let granted =
                    self.router
                        .flow(consumer, flow.delivery_count, flow.link_credit, flow.drain);
                match granted {
                    Some(state) if flow.drain || flow.echo => Some(Flow {
                        handle,
                        link_credit: state.link_credit,
                        delivery_count: state.delivery_count,
                        drain: flow.drain,
                        ..Flow::default()
                    }),
                    _ => None,
                }
            }
            Link::Producer(p) if flow.echo => Some(Flow {
                handle,
                link_credit: p.credit,
                delivery_count: p.delivery_count,
                ..Flow::default()
            }),
            Link::Producer(_) => None,
        };
        // After the transfers the credit allowed, which the router queued
        // before `flow` returned.
        if let Some(reply) = reply {
            self.outbox.frame(Frame::new(channel, reply));
        }
        Ok(Step::Continue)
    }

    pub(super) fn disposition(&mut self, channel: u32, d: Disposition) -> Result<Step, Failure> {
        self.session(channel, "disposition")?;
        if d.role() != Role::Receiver {
            // A producer settling its own transfers: the broker settles them
            // itself, so there is nothing to do.
            return Ok(Step::Continue);
        }
        let last = d.last.unwrap_or(d.first);
        if let Some(txn) = &d.txn_id {
            if !self.transactions.contains_key(txn) {
                return Err(Failure::not_found(format!(
                    "disposition in transaction '{txn}', which is not open"
                )));
            }
        }
        let settled = self.book.take_range(channel, d.first, last);
        let accepted = matches!(d.state, None | Some(DeliveryState::Accepted(_)));
        let mut commits = Vec::new();
        match &d.txn_id {
            None if accepted => {
                // One router call per run of a link's deliveries, not one
                // per delivery. Ones no longer delivered (link gone) are
                // ignored, as the spec says.
                let delivered: Vec<(Arc<Consumer>, u64)> =
                    settled.into_iter().map(|u| (u.consumer, u.seq)).collect();
                commits = self.router.ack_runs(&delivered);
            }
            None => {
                for Unsettled { consumer, seq } in settled {
                    let _: Result<(), RouterError> = self.router.nack(&consumer, seq);
                }
            }
            Some(txn) => {
                for Unsettled { consumer, seq } in settled {
                    let Ok(seqs) = self.router.stage(&consumer, seq) else {
                        continue;
                    };
                    if let Some(t) = self.transactions.get_mut(txn) {
                        t.work.ops.push(if accepted {
                            TxOp::Ack { consumer, seqs }
                        } else {
                            TxOp::Nack { consumer, seqs }
                        });
                    }
                }
            }
        }
        if !d.settled {
            // The client waits for the broker to settle: after the acks are durable.
            let reply = Frame::new(
                channel,
                Disposition {
                    role: Role::Sender.into(),
                    settled: true,
                    txn_id: None,
                    ..d
                },
            );
            self.outbox.push(Outgoing::AfterCommits {
                commits,
                ok: Box::new(reply.clone()),
                failed: Box::new(reply),
            });
        }
        Ok(Step::Continue)
    }
}

/// The broker's Attach answering `attach`: the opposite role, same name and handle.
fn answer(attach: &Attach) -> Attach {
    let role = match attach.role() {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    };
    Attach {
        role: role.into(),
        initial_delivery_count: 0,
        ..attach.clone()
    }
}

pub(super) fn no_link(channel: u32, handle: u32, what: &str) -> Failure {
    Failure::not_found(format!(
        "{what} for handle {handle} on channel {channel}, which has no attached link"
    ))
}
