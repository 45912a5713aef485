//! [`Session`]: the STOMP state machine of one connection. It turns frames
//! into router requests and replies through the connection's [`Outbox`]. It
//! owns connection state: the negotiated version, subscriptions by STOMP id,
//! open transactions.

use super::outgoing::{Outbox, Outgoing};
use crate::message::BROKER_HEADERS;
use crate::router::scheduler::Schedule;
use crate::router::{
    now_ms, AckMode, Address, ConnectionId, Consumer, Destination, Message, Router, RouterError,
    SubscriptionId, DEFAULT_PRIORITY,
};
use crate::router::{DestinationKind, SubscribeOptions};
use crate::selector::Selector;
use crate::store::Commit;
use crate::transaction::{Transaction, TxOp};
use ferromq_protocol::stomp::{Command, Frame, Version};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

mod access;
use crate::auth::Permission;

/// Session settings from the `[stomp]` and `[limits]` config.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Fastest the server offers to send heart-beats.
    pub heartbeat_send_min: Duration,
    /// Fastest the server wants to receive them.
    pub heartbeat_receive_min: Duration,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most bytes buffered by one transaction's SENDs.
    pub max_transaction_bytes: usize,
    /// Most open transactions per connection.
    pub max_transactions: usize,
    /// Server name for CONNECTED.
    pub server: String,
    /// Authentication and ACLs (`[auth]`, `[[acl]]`).
    pub auth: Arc<crate::auth::Authenticator>,
    /// Most prefetch summed over the connection's client-ack subscriptions
    /// (`limits.max_unacked_per_connection`).
    pub max_unacked: usize,
    /// Whether this node serves clients (always, unless it is a cluster
    /// follower).
    pub leadership: Arc<crate::leadership::Leadership>,
}

/// A protocol error: answered with one ERROR frame, then the connection closes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct StompError {
    /// The ERROR frame's `message` header.
    pub message: String,
    /// Longer explanation for the body.
    pub detail: String,
    /// The offending frame's `receipt`, echoed as `receipt-id`.
    pub receipt: Option<String>,
    /// More headers for the ERROR frame (e.g. `version` when negotiation
    /// fails, as the spec asks).
    pub headers: Vec<(&'static str, String)>,
}

impl StompError {
    /// An error with a short message.
    pub fn new(message: impl Into<String>) -> StompError {
        StompError {
            message: message.into(),
            detail: String::new(),
            receipt: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header to the ERROR frame.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> StompError {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a body explaining more.
    pub fn detail(mut self, detail: impl Into<String>) -> StompError {
        self.detail = detail.into();
        self
    }

    /// The ERROR frame for `version`.
    pub fn to_frame(&self) -> Frame {
        let mut f = Frame::new(Command::Error).header("message", &self.message);
        if let Some(r) = &self.receipt {
            f = f.header("receipt-id", r);
        }
        for (name, value) in &self.headers {
            f = f.header(name, value);
        }
        let body = if self.detail.is_empty() {
            &self.message
        } else {
            &self.detail
        };
        f.header("content-type", "text/plain").body(body.clone())
    }
}

impl From<RouterError> for StompError {
    fn from(e: RouterError) -> Self {
        StompError::new(e.to_string())
    }
}

/// What the connection does after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The client said DISCONNECT: close once replies are written.
    Disconnect,
}

/// Negotiated heart-beat intervals (None = off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartBeat {
    /// How often we must send.
    pub send: Option<Duration>,
    /// How often the client promised to send.
    pub receive: Option<Duration>,
}

struct Subscription {
    consumer: Arc<Consumer>,
    /// Share of `max_unacked` this subscription holds (its prefetch, for
    /// client-ack subscriptions; 0 for auto).
    budget: usize,
}

/// State of one STOMP connection.
pub struct Session {
    id: ConnectionId,
    peer: String,
    config: Arc<SessionConfig>,
    router: Arc<Router>,
    outbox: Arc<Outbox>,
    version: Option<Version>,
    /// CONNECT's `client-id`: names this client's durable subscriptions.
    client_id: Option<String>,
    heartbeat: HeartBeat,
    subscriptions: HashMap<String, Subscription>,
    /// Ids of finished queue browsers (UNSUBSCRIBE of them is accepted).
    browsers: std::collections::HashSet<String>,
    transactions: HashMap<String, Transaction>,
    /// Set by the authenticated CONNECT.
    principal: Option<crate::auth::Principal>,
    /// Common name of the verified TLS client certificate, if any.
    certificate_user: Option<Arc<str>>,
    /// The listener the client came in on: a follower's refusal names the
    /// leader's listener of the same kind.
    listener: crate::server::ListenerKind,
    /// Sum of the subscriptions' `budget`.
    unacked_budget: usize,
}

/// Most messages one queue browse returns.
const MAX_BROWSE: usize = 10_000;

impl Session {
    /// A session awaiting CONNECT.
    pub fn new(
        id: ConnectionId,
        peer: String,
        config: Arc<SessionConfig>,
        router: Arc<Router>,
        outbox: Arc<Outbox>,
    ) -> Session {
        Session {
            id,
            peer,
            config,
            router,
            outbox,
            version: None,
            client_id: None,
            heartbeat: HeartBeat::default(),
            subscriptions: HashMap::new(),
            browsers: Default::default(),
            transactions: HashMap::new(),
            principal: None,
            certificate_user: None,
            listener: crate::server::ListenerKind::Stomp,
            unacked_budget: 0,
        }
    }

    /// Records the listener the client came in on (STOMP, STOMP+TLS,
    /// WebSocket, WebSocket+TLS); a new session says plain STOMP.
    pub fn set_listener(&mut self, listener: crate::server::ListenerKind) {
        self.listener = listener;
    }

    /// The negotiated version, once connected.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The negotiated heart-beats.
    pub fn heartbeat(&self) -> HeartBeat {
        self.heartbeat
    }

    /// Handles one frame. An error means: send it as ERROR and close.
    ///
    /// Receipt ordering: a frame's RECEIPT is written before any MESSAGE the
    /// frame caused (a SUBSCRIBE's first messages, a NACK's redelivery, the
    /// message an ACK's freed prefetch lets through, those of a COMMIT or
    /// ABORT, the unacknowledged ones an UNSUBSCRIBE hands to another
    /// subscription of this connection). The router queues such deliveries
    /// while the frame is handled, and the handler queues the RECEIPT last,
    /// so the outbox fences deliveries off until then (see `crate::outbox`).
    /// Only frames with a `receipt` pay for the fence, and a SEND never takes
    /// it: its RECEIPT waits for the store, and a subscriber on the same
    /// connection may have the message before that (as with ActiveMQ).
    pub async fn handle(&mut self, frame: Frame) -> Result<Flow, StompError> {
        let receipt = frame.get("receipt").map(str::to_string);
        let _receipt_first = (receipt.is_some() && frame.command != Command::Send)
            .then(|| self.outbox.fence_deliveries());
        let result = self.dispatch(frame).await;
        result.map_err(|mut e| {
            if e.receipt.is_none() {
                e.receipt = receipt;
            }
            e
        })
    }

    async fn dispatch(&mut self, frame: Frame) -> Result<Flow, StompError> {
        if self.version.is_none() {
            return match frame.command {
                Command::Connect | Command::Stomp => self.connect(&frame).await,
                other => Err(StompError::new(format!(
                    "{other} before CONNECT: the first frame must be CONNECT or STOMP"
                ))),
            };
        }
        match frame.command {
            Command::Send => self.send(frame).await,
            Command::Subscribe => self.subscribe(&frame).await,
            Command::Unsubscribe => self.unsubscribe(&frame),
            Command::Ack => self.ack(&frame, true),
            Command::Nack => self.ack(&frame, false),
            Command::Begin => self.begin(&frame),
            Command::Commit => self.commit(&frame),
            Command::Abort => self.abort(&frame),
            Command::Disconnect => {
                // Everything ends before the receipt: once the client has it,
                // no message is consumed on its behalf any more (auto-ack
                // deliveries still queued go back to their queues).
                self.close();
                self.receipt(&frame, Vec::new());
                Ok(Flow::Disconnect)
            }
            Command::Connect | Command::Stomp => {
                Err(StompError::new("already connected: CONNECT sent twice"))
            }
            other => Err(StompError::new(format!(
                "{other} is a server frame; a client may not send it"
            ))),
        }
    }

    async fn connect(&mut self, frame: &Frame) -> Result<Flow, StompError> {
        // Cluster mode: only the leader serves; say where it is.
        if let Some(refusal) = self.config.leadership.refusal(self.listener) {
            let mut error = StompError::new("not the leader").detail(refusal.description());
            if let Some(leader) = refusal.leader {
                error = error.with_header("leader", leader);
            }
            return Err(error);
        }
        let version = Version::negotiate(frame.get("accept-version")).ok_or_else(|| {
            StompError::new("Supported protocol versions are 1.0,1.1,1.2")
                .with_header("version", "1.0,1.1,1.2")
                .detail(format!(
                    "accept-version '{}' names no version this broker speaks (1.0, 1.1, 1.2)",
                    frame.get("accept-version").unwrap_or_default()
                ))
        })?;
        if version >= Version::V1_1 {
            if let Some(hb) = frame.get("heart-beat") {
                let (cx, cy) = parse_heartbeat(hb).ok_or_else(|| {
                    StompError::new(format!(
                        "invalid heart-beat header '{hb}': expected two integers 'cx,cy'"
                    ))
                })?;
                let sx = self.config.heartbeat_send_min;
                let sy = self.config.heartbeat_receive_min;
                self.heartbeat = HeartBeat {
                    send: (cy > 0).then(|| sx.max(Duration::from_millis(cy))),
                    receive: (cx > 0).then(|| sy.max(Duration::from_millis(cx))),
                };
            }
        }
        let principal = self.authenticate(frame).await?;
        self.version = Some(version);
        self.client_id = frame
            .get("client-id")
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let mut reply = Frame::new(Command::Connected)
            .header("version", version.as_str())
            .header("server", &self.config.server)
            .header("session", &format!("ferromq-{}", self.id));
        if version >= Version::V1_1 {
            reply = reply.header(
                "heart-beat",
                &format!(
                    "{},{}",
                    self.config.heartbeat_send_min.as_millis(),
                    self.config.heartbeat_receive_min.as_millis()
                ),
            );
        }
        if let Some(rid) = frame.get("request-id") {
            reply = reply.header("response-id", rid);
        }
        tracing::info!(conn = self.id, peer = %self.peer, version = %version, user = %principal.name, "stomp session opened");
        self.principal = Some(principal);
        self.outbox.push(Outgoing::Connected {
            frame: reply,
            version,
            heartbeat: self.heartbeat.send,
        });
        Ok(Flow::Continue)
    }

    async fn send(&mut self, frame: Frame) -> Result<Flow, StompError> {
        let raw = required(&frame, "destination")?;
        // A composite destination (`/queue/a,/topic/b`) gets a copy each.
        let mut destinations = Vec::with_capacity(1);
        for name in raw.split(',').map(str::trim) {
            let address = Address::parse(name, self.id)?;
            if address.is_wildcard() {
                return Err(StompError::new(format!(
                    "cannot send to the wildcard destination {name}: wildcards are for SUBSCRIBE"
                )));
            }
            self.authorize(&address, Permission::Write)?;
            destinations.push(self.router.destination(&address, self.id)?);
        }
        if let Some(tx) = frame.get("transaction") {
            let max = self.config.max_transaction_bytes;
            for destination in destinations {
                let message = self.message_from(&frame, &destination)?;
                let t = self.transaction(tx)?;
                t.bytes += message.footprint();
                if t.bytes > max {
                    return Err(StompError::new(format!(
                        "transaction {tx} holds more than {max} bytes of messages; commit smaller transactions"
                    )));
                }
                t.ops.push(TxOp::Send {
                    destination,
                    message,
                });
            }
            self.receipt(&frame, Vec::new());
            return Ok(Flow::Continue);
        }
        let mut commits = Vec::with_capacity(destinations.len());
        for destination in &destinations {
            let message = self.message_from(&frame, destination)?;
            commits.push(self.router.send(destination, message)?);
        }
        // A SEND the store refused (disk limit) without a receipt to carry
        // the ERROR must not vanish silently.
        if frame.get("receipt").is_none() {
            if let Some(e) = commits.iter().find_map(Commit::failure) {
                return Err(StompError::new(format!("message was not stored: {e}")));
            }
        }
        self.receipt(&frame, commits);
        // Producer flow control: stop reading this producer until the
        // destination is back under its memory limit.
        for destination in &destinations {
            self.router.wait_for_space(destination).await;
        }
        Ok(Flow::Continue)
    }

    /// Builds the router's message from a SEND frame.
    fn message_from(
        &self,
        frame: &Frame,
        destination: &Destination,
    ) -> Result<Message, StompError> {
        let persistent = match frame.get("persistent") {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| bad_header("persistent", v, "true or false"))?,
        };
        let priority = match frame.get("priority") {
            None => DEFAULT_PRIORITY,
            Some(v) => v
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 9)
                .ok_or_else(|| bad_header("priority", v, "an integer from 0 to 9"))?,
        };
        let expires = match frame.get("expires") {
            None => 0,
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                bad_header(
                    "expires",
                    v,
                    "a time in milliseconds since the epoch (0 = never)",
                )
            })?,
        };
        let mut headers = frame.headers.without(BROKER_HEADERS);
        if let Some(reply_to) = frame.get("reply-to") {
            // A private temp name means nothing to the receiver: give it the
            // form other connections can send to.
            if reply_to.starts_with("/temp-queue/") || reply_to.starts_with("/temp-topic/") {
                let addr = Address::parse(reply_to, self.id)?;
                headers = headers.without(&["reply-to"]);
                headers.push("reply-to", &addr.name);
            }
        }
        let message = Message {
            seq: self.router.next_seq(),
            destination: destination.address.name.clone(),
            persistent,
            priority,
            expires,
            timestamp: now_ms(),
            headers,
            body: frame.body.clone().into(),
        };
        // Bad scheduling headers are refused at SEND, even in a transaction.
        Schedule::of(&message).map_err(StompError::new)?;
        Ok(message)
    }

    async fn subscribe(&mut self, frame: &Frame) -> Result<Flow, StompError> {
        let version = self.version.unwrap_or(Version::V1_0);
        let raw = required(frame, "destination")?;
        let id = match frame.get("id") {
            Some(id) => id.to_string(),
            None if version == Version::V1_0 => raw.to_string(),
            None => {
                return Err(StompError::new(
                    "SUBSCRIBE requires an 'id' header in STOMP 1.1 and 1.2",
                ))
            }
        };
        if self.subscriptions.contains_key(&id) || self.browsers.contains(&id) {
            return Err(StompError::new(format!(
                "subscription id '{id}' is already in use on this connection"
            )));
        }
        if self.subscriptions.len() >= self.config.max_subscriptions {
            return Err(StompError::new(format!(
                "subscription limit of {} per connection reached",
                self.config.max_subscriptions
            )));
        }
        let ack = match frame.get("ack") {
            None => AckMode::Auto,
            Some(v) => AckMode::parse(v)
                .ok_or_else(|| bad_header("ack", v, "auto, client or client-individual"))?,
        };
        let durable_name = durable_name(frame, &id);
        let prefetch = match frame
            .get("activemq.prefetchSize")
            .or_else(|| frame.get("prefetch-count"))
        {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| bad_header("activemq.prefetchSize", v, "a number of messages"))?
                    .max(1),
            ),
        };
        let selector = match frame.get("selector").filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(text) => Some(Arc::new(Selector::parse(text).map_err(|e| {
                StompError::new(e.to_string()).detail(format!("selector: {text}\n{e}"))
            })?)),
        };
        let exclusive = match frame.get("activemq.exclusive") {
            None => false,
            Some(v) => {
                parse_bool(v).ok_or_else(|| bad_header("activemq.exclusive", v, "true or false"))?
            }
        };
        let browser = match frame.get("browser") {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| bad_header("browser", v, "true or false"))?,
        };
        let address = Address::parse(raw, self.id)?;
        // Wildcards on queues consume every matching queue (see
        // `router::queue_wildcard`). Temporary queues are their owner's
        // alone, so a wildcard over them is refused outright rather than
        // matched against "own ones only": nothing a pattern could add to
        // naming one's own temporary queue is worth the risk.
        if address.is_wildcard() && address.is_temporary() {
            return Err(StompError::new(format!(
                "wildcard subscriptions are not possible on temporary destinations: {raw}"
            )));
        }
        self.authorize(&address, Permission::Read)?;
        let destination = self.router.destination(&address, self.id)?;
        if browser {
            return self.browse(frame, id, &destination, selector).await;
        }
        // A durable subscription consumes its hidden queue; the selector
        // was applied when messages were copied into it.
        let (destination, selector) = match &durable_name {
            None => (destination, selector),
            Some(name) => (self.durable_queue(frame, name, &address, selector)?, None),
        };
        let (prefetch, budget) = self.unacked_share(ack, prefetch, address.kind)?;
        let options = SubscribeOptions {
            prefetch,
            selector,
            exclusive,
        };
        let consumer = self.router.subscribe(
            destination,
            self.id,
            id.as_str().into(),
            ack,
            options,
            self.outbox.clone(),
        );
        self.unacked_budget += budget;
        self.subscriptions
            .insert(id, Subscription { consumer, budget });
        // Written before the subscription's first MESSAGE (see `handle`).
        self.receipt(frame, Vec::new());
        Ok(Flow::Continue)
    }

    /// The queue of durable subscription `name` on topic `address`, created
    /// on first use.
    fn durable_queue(
        &self,
        frame: &Frame,
        name: &str,
        address: &Address,
        selector: Option<Arc<Selector>>,
    ) -> Result<Arc<Destination>, StompError> {
        if address.kind != DestinationKind::Topic {
            return Err(StompError::new(
                "Invalid Subscription: cannot durably subscribe to a Queue destination",
            ));
        }
        // RabbitMQ's form (`durable:true`) names the subscription by its id
        // and needs no client-id; ActiveMQ's and Artemis's need one.
        let client_id = match (&self.client_id, frame.headers.contains("durable")) {
            (Some(c), _) => c.clone(),
            (None, true) => String::new(),
            (None, false) => {
                return Err(StompError::new(format!(
                    "durable subscription '{name}' needs a client-id header on CONNECT"
                )))
            }
        };
        let queue = self
            .router
            .durable_subscribe(&client_id, name, address, selector)?;
        if queue.has_subscriber_other_than(self.id) {
            return Err(StompError::new(format!(
                "durable subscription '{name}' of client-id '{client_id}' is already in use by another connection"
            )));
        }
        Ok(queue)
    }

    /// `browser:true`: the queue's waiting messages, not consumed, then a
    /// MESSAGE with `browser:end` (ActiveMQ's queue browsing).
    async fn browse(
        &mut self,
        frame: &Frame,
        id: String,
        destination: &Arc<Destination>,
        selector: Option<Arc<Selector>>,
    ) -> Result<Flow, StompError> {
        if destination.kind() != DestinationKind::Queue {
            return Err(StompError::new("browser:true is only possible on a queue"));
        }
        self.receipt(frame, Vec::new());
        let tag: Arc<str> = id.as_str().into();
        // A wildcard browses every queue it matches, one after the other.
        let queues = if destination.address.is_wildcard() {
            self.router.queues_matching(&destination.address)
        } else {
            vec![destination.clone()]
        };
        let mut left = MAX_BROWSE;
        for queue in queues {
            // Past the window this reads the store (bounded: see
            // `Router::browse_deep`): on the blocking pool, not this task's
            // runtime worker.
            let router = self.router.clone();
            let filter = selector.clone();
            let found = tokio::task::spawn_blocking(move || {
                router.browse_deep(&queue, left, filter.as_deref())
            })
            .await
            .map_err(|e| StompError::new(format!("browsing failed: {e}")))?;
            for message in found {
                left -= 1;
                self.outbox.push(Outgoing::Browsed {
                    tag: tag.clone(),
                    message,
                });
            }
        }
        let end = Frame::new(Command::Message)
            .header("subscription", &id)
            .header("message-id", "BrowseDone")
            .header("destination", frame.get("destination").unwrap_or_default())
            .header("browser", "end");
        self.outbox.push(Outgoing::Frame(end));
        self.browsers.insert(id);
        Ok(Flow::Continue)
    }

    fn unsubscribe(&mut self, frame: &Frame) -> Result<Flow, StompError> {
        let id = frame
            .get("id")
            .or_else(|| {
                frame
                    .get("destination")
                    .filter(|_| self.version == Some(Version::V1_0))
            })
            .ok_or_else(|| StompError::new("UNSUBSCRIBE requires an 'id' header"))?;
        if self.browsers.remove(id) {
            self.receipt(frame, Vec::new());
            return Ok(Flow::Continue);
        }
        // Naming a durable subscription deletes it, connected or not.
        if let Some(name) = durable_name(frame, id) {
            let client_id = self.client_id.clone().unwrap_or_default();
            let local = self.subscriptions.remove(id);
            if let Some(sub) = &local {
                self.release_transactions_of(sub.consumer.id);
                self.unacked_budget -= sub.budget;
                self.router.unsubscribe(&sub.consumer);
            }
            if !self.router.durable_unsubscribe(&client_id, &name) && local.is_none() {
                return Err(StompError::new(format!(
                    "no durable subscription '{name}' for client-id '{client_id}'"
                )));
            }
            self.receipt(frame, Vec::new());
            return Ok(Flow::Continue);
        }
        let sub = self.subscriptions.remove(id).ok_or_else(|| {
            StompError::new(format!("no subscription with id '{id}' on this connection"))
        })?;
        self.release_transactions_of(sub.consumer.id);
        self.unacked_budget -= sub.budget;
        self.router.unsubscribe(&sub.consumer);
        self.receipt(frame, Vec::new());
        Ok(Flow::Continue)
    }

    fn ack(&mut self, frame: &Frame, positive: bool) -> Result<Flow, StompError> {
        let (consumer, seq) = self.acked_message(frame)?;
        if consumer.ack == AckMode::Auto {
            return Err(StompError::new(format!(
                "subscription '{}' uses ack:auto; there is nothing to {}",
                consumer.tag,
                if positive { "ACK" } else { "NACK" }
            )));
        }
        let mut durable = Vec::new();
        if let Some(tx) = frame.get("transaction") {
            self.transaction(tx)?;
            let seqs = self.router.stage(&consumer, seq)?;
            if let Some(t) = self.transactions.get_mut(tx) {
                t.ops.push(if positive {
                    TxOp::Ack { consumer, seqs }
                } else {
                    TxOp::Nack { consumer, seqs }
                });
            }
        } else if positive {
            // Durability ordering: the ACK's receipt waits for the ack to be
            // on disk, so an acknowledged message never comes back.
            durable.push(self.router.ack(&consumer, seq)?);
        } else {
            self.router.nack(&consumer, seq)?;
        }
        self.receipt(frame, durable);
        Ok(Flow::Continue)
    }

    /// Finds the subscription and message an ACK/NACK names: the 1.2 `id`
    /// (our `ack` header), else `message-id` with `subscription` (1.1), else
    /// `message-id` alone (1.0; searched across subscriptions).
    fn acked_message(&self, frame: &Frame) -> Result<(Arc<Consumer>, u64), StompError> {
        if let Some(ack_id) = frame.get("id") {
            if let Some((sub, seq)) = parse_ack_id(ack_id) {
                if let Some(s) = self.subscriptions.values().find(|s| s.consumer.id == sub) {
                    return Ok((s.consumer.clone(), seq));
                }
                // A wildcard subscription's MESSAGE names the member (one
                // per queue) it came through.
                let member = self
                    .subscriptions
                    .values()
                    .find_map(|s| s.consumer.kind.wildcard().and_then(|w| w.member(sub)));
                if let Some(member) = member {
                    return Ok((member, seq));
                }
            }
            if frame.get("message-id").is_none() {
                return Err(StompError::new(format!(
                    "unexpected ACK/NACK id [{ack_id}]: use the 'ack' header value of the MESSAGE"
                )));
            }
        }
        let message_id = frame.get("message-id").ok_or_else(|| {
            StompError::new("ACK/NACK requires 'id' (STOMP 1.2) or 'message-id' (STOMP 1.0/1.1)")
        })?;
        let seq = Router::seq_of_message_id(message_id).ok_or_else(|| {
            StompError::new(format!("unexpected ACK/NACK for message-id [{message_id}]"))
        })?;
        if let Some(sub_id) = frame.get("subscription") {
            let sub = self.subscriptions.get(sub_id).ok_or_else(|| {
                StompError::new(format!(
                    "no subscription with id '{sub_id}' on this connection"
                ))
            })?;
            return Ok((sub.consumer.clone(), seq));
        }
        self.subscriptions
            .values()
            .find(|s| self.router.has_unacked(&s.consumer, seq))
            .map(|s| (s.consumer.clone(), seq))
            .ok_or_else(|| {
                StompError::new(format!(
                    "unexpected ACK/NACK for message-id [{message_id}]: not awaiting acknowledgement on this connection"
                ))
            })
    }

    fn begin(&mut self, frame: &Frame) -> Result<Flow, StompError> {
        let tx = required(frame, "transaction")?;
        if self.transactions.contains_key(tx) {
            return Err(StompError::new(format!(
                "transaction '{tx}' is already open"
            )));
        }
        if self.transactions.len() >= self.config.max_transactions {
            return Err(StompError::new(format!(
                "limit of {} open transactions per connection reached",
                self.config.max_transactions
            )));
        }
        self.transactions
            .insert(tx.to_string(), Transaction::default());
        self.receipt(frame, Vec::new());
        Ok(Flow::Continue)
    }

    fn commit(&mut self, frame: &Frame) -> Result<Flow, StompError> {
        let tx = required(frame, "transaction")?;
        let t = self
            .transactions
            .remove(tx)
            .ok_or_else(|| StompError::new(format!("no open transaction '{tx}'")))?;
        // One atomic log batch: see `Transaction::commit`.
        let commits = t.commit(&self.router, self.id);
        // Durability ordering: the COMMIT's receipt waits for every persistent
        // SEND and every ACK of the transaction to be durable.
        self.receipt(frame, commits);
        Ok(Flow::Continue)
    }

    fn abort(&mut self, frame: &Frame) -> Result<Flow, StompError> {
        let tx = required(frame, "transaction")?;
        let t = self
            .transactions
            .remove(tx)
            .ok_or_else(|| StompError::new(format!("no open transaction '{tx}'")))?;
        self.rollback(t);
        self.receipt(frame, Vec::new());
        Ok(Flow::Continue)
    }

    /// Undoes a transaction: its SENDs vanish, its ACK/NACKs are undone and
    /// the messages are unacknowledged again.
    fn rollback(&self, t: Transaction) {
        t.rollback(&self.router);
    }

    /// Drops transactional acks of a subscription that is going away.
    fn release_transactions_of(&mut self, sub: SubscriptionId) {
        for t in self.transactions.values_mut() {
            t.ops.retain(|op| match op {
                TxOp::Ack { consumer, .. } | TxOp::Nack { consumer, .. } => {
                    consumer.subscription_id() != sub
                }
                TxOp::Send { .. } => true,
            });
        }
    }

    fn transaction(&mut self, tx: &str) -> Result<&mut Transaction, StompError> {
        self.transactions
            .get_mut(tx)
            .ok_or_else(|| StompError::new(format!("no open transaction '{tx}': BEGIN it first")))
    }

    fn receipt(&self, frame: &Frame, after: Vec<Commit>) {
        if let Some(id) = frame.get("receipt") {
            self.outbox.push(Outgoing::Receipt {
                id: id.to_string(),
                after,
            });
        }
    }

    /// Ends the session: aborts open transactions, returns unacknowledged
    /// messages to their queues, removes temporary destinations.
    pub fn close(&mut self) {
        for (_, t) in std::mem::take(&mut self.transactions) {
            self.rollback(t);
        }
        for (_, sub) in self.subscriptions.drain() {
            self.router.unsubscribe(&sub.consumer);
        }
        self.router.drop_temporaries(self.id);
    }
}

/// The durable subscription a SUBSCRIBE/UNSUBSCRIBE names, in any of the
/// three dialects: ActiveMQ `activemq.subscriptionName`, Artemis
/// `durable-subscription-name` (or `durable-subscriber-name`), RabbitMQ
/// `durable:true` (named by the subscription id).
fn durable_name(frame: &Frame, id: &str) -> Option<String> {
    frame
        .get("activemq.subscriptionName")
        .or_else(|| frame.get("durable-subscription-name"))
        .or_else(|| frame.get("durable-subscriber-name"))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| {
            (frame.get("durable").and_then(parse_bool) == Some(true)).then(|| id.to_string())
        })
}

fn required<'a>(frame: &'a Frame, name: &str) -> Result<&'a str, StompError> {
    frame.get(name).ok_or_else(|| {
        StompError::new(format!(
            "{} frame is missing the required '{name}' header",
            frame.command
        ))
    })
}

fn bad_header(name: &str, value: &str, expected: &str) -> StompError {
    StompError::new(format!(
        "invalid '{name}' header '{value}': expected {expected}"
    ))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "true" | "TRUE" | "True" => Some(true),
        "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn parse_heartbeat(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Our `ack` header values are `<subscription>-<seq>` (no `:`, which STOMP
/// 1.1+ would have to escape).
fn parse_ack_id(v: &str) -> Option<(SubscriptionId, u64)> {
    let (a, b) = v.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}
