//! The bench every router unit test runs on: a [`Router`] over the in-memory
//! store, consumers whose sink records what they receive, and messages built
//! from the few properties dispatch cares about (priority, group,
//! persistence).
//!
//! Everything that depends on how a router, a message or a subscription is
//! built lives here, so that the tests read as the scenarios they check and
//! a change to those constructors is made once.

use crate::router::dead_letter::Errand;
use crate::router::{
    AckMode, Address, Body, Consumer, Delivery, DeliverySink, Destination, DestinationSnapshot,
    LinkFlow, Message, Router, RouterConfig, RouterError, SubscribeOptions, DEFAULT_PRIORITY,
};
use crate::selector::Selector;
use crate::store::memory::MemoryStore;
use ferromq_protocol::Headers;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedReceiver;

/// The connection every bench subscription belongs to.
const CONNECTION: u64 = 1;

/// A router over [`MemoryStore`], with the receiving end of its dead-letter
/// channel: no errand task runs, so a test sees each message a queue
/// gives up on as it was handed over, and returns delayed redeliveries
/// itself ([`Bench::return_delayed`]) when it chooses.
pub(super) struct Bench {
    pub router: Router,
    errands: UnboundedReceiver<Errand>,
    /// Redeliveries handed over for their delay and not returned yet:
    /// message and redelivery count.
    delayed: Vec<(Arc<Message>, u32)>,
    /// Given up, not yet read by [`Bench::dead`].
    dead: Vec<u64>,
}

/// What a test can say about a message.
#[derive(Debug, Clone, Default)]
pub(super) struct Msg {
    priority: Option<u8>,
    group: Option<String>,
    closes_group: bool,
    persistent: bool,
    property: Option<(String, String)>,
    /// Expiry time, ms since the epoch (0: never).
    expires: u64,
}

/// How a test subscribes.
#[derive(Debug, Clone)]
pub(super) struct Opts {
    ack: AckMode,
    prefetch: usize,
    exclusive: bool,
    selector: Option<String>,
    /// A credit-based link (native protocol): nothing until credit is granted.
    link: bool,
}

/// One delivery as a consumer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Got {
    pub seq: u64,
    pub redeliveries: u32,
}

/// A subscription and everything delivered to it.
pub(super) struct Sub {
    pub handle: Arc<Consumer>,
    sink: Arc<Recorder>,
    /// Links: the delivery count the router last reported, and how many
    /// deliveries had been recorded then (the receiver's side of AMQP's
    /// delivery count, which a drain moves without deliveries).
    link_count: Mutex<(u32, usize)>,
}

/// A [`DeliverySink`] that keeps deliveries for the test to read.
#[derive(Default)]
struct Recorder {
    deliveries: Mutex<Vec<Delivery>>,
    /// How many of `deliveries` [`Sub::take`] has returned.
    taken: Mutex<usize>,
}

impl DeliverySink for Recorder {
    fn deliver(&self, delivery: Delivery) {
        self.deliveries.lock().unwrap().push(delivery);
    }
}

impl Bench {
    /// A router with the default settings.
    pub fn new() -> Bench {
        Bench::with_config(RouterConfig::default())
    }

    /// A router with `config`.
    pub fn with_config(config: RouterConfig) -> Bench {
        let router = Router::new(config, Arc::new(MemoryStore));
        let errands = router
            .errand_rx
            .lock()
            .unwrap()
            .take()
            .expect("a new router still has its dead-letter receiver");
        Bench {
            router,
            errands,
            delayed: Vec::new(),
            dead: Vec::new(),
        }
    }

    /// A router that gives a message up after `max` redeliveries.
    pub fn with_max_redeliveries(max: u32) -> Bench {
        Bench::with_redelivery(max, 0)
    }

    /// A router that gives a message up after `max` redeliveries and holds
    /// each redelivery back for `delay_ms` first (0: none).
    pub fn with_redelivery(max: u32, delay_ms: u64) -> Bench {
        let mut config = RouterConfig::default();
        config.dead_letter.max_redeliveries = max;
        config.dead_letter.redelivery_delay = delay_ms;
        Bench::with_config(config)
    }

    /// The destination `name` (e.g. `/queue/orders`), created on first use.
    pub fn destination(&self, name: &str) -> Arc<Destination> {
        let address = Address::parse(name, CONNECTION).unwrap();
        self.router.destination(&address, CONNECTION).unwrap()
    }

    /// Publishes `msg` to `queue`; returns its sequence number.
    pub fn publish(&self, queue: &str, msg: Msg) -> u64 {
        let destination = self.destination(queue);
        let seq = self.router.next_seq();
        let mut headers = Headers::new();
        if let Some(group) = &msg.group {
            headers.push("JMSXGroupID", group);
            if msg.closes_group {
                headers.push("JMSXGroupSeq", "-1");
            }
        }
        if let Some((name, value)) = &msg.property {
            headers.push(name, value);
        }
        let message = Message {
            seq,
            destination: destination.address.name.clone(),
            persistent: msg.persistent,
            priority: msg.priority.unwrap_or(DEFAULT_PRIORITY),
            expires: msg.expires,
            timestamp: 0,
            headers,
            body: Body::new(bytes::Bytes::from(format!("message {seq}"))),
        };
        let commit = self.router.publish(&destination, message);
        assert!(!commit.is_failed(), "the memory store refuses nothing");
        seq
    }

    /// Publishes `n` default messages to `queue`; returns their sequence numbers.
    pub fn publish_n(&self, queue: &str, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.publish(queue, Msg::new())).collect()
    }

    /// Subscribes a recording consumer to `queue`.
    pub fn subscribe(&self, queue: &str, opts: Opts) -> Sub {
        let destination = self.destination(queue);
        let sink = Arc::new(Recorder::default());
        let selector = opts
            .selector
            .as_deref()
            .map(|text| Arc::new(Selector::parse(text).unwrap()));
        let options = SubscribeOptions {
            prefetch: Some(opts.prefetch),
            selector,
            exclusive: opts.exclusive,
        };
        let tag: Arc<str> = "sub".into();
        let handle = if opts.link {
            self.router.subscribe_link(
                destination,
                CONNECTION,
                tag,
                opts.ack,
                options,
                sink.clone(),
            )
        } else {
            self.router.subscribe(
                destination,
                CONNECTION,
                tag,
                opts.ack,
                options,
                sink.clone(),
            )
        };
        Sub {
            handle,
            sink,
            link_count: Mutex::new((0, 0)),
        }
    }

    /// Acknowledges `seq` on `sub` (cumulatively in client mode).
    pub fn ack(&self, sub: &Sub, seq: u64) -> Result<(), RouterError> {
        self.router.ack(&sub.handle, seq).map(drop)
    }

    /// Rejects `seq` on `sub` (cumulatively in client mode).
    pub fn nack(&self, sub: &Sub, seq: u64) -> Result<(), RouterError> {
        self.router.nack(&sub.handle, seq)
    }

    /// Ends `sub`; its unacknowledged messages go back to the queue.
    pub fn close(&self, sub: &Sub) {
        self.router.unsubscribe(&sub.handle);
    }

    /// Grants a link subscription credit for `credit` deliveries from now
    /// (`drain`: what cannot be delivered at once is used up).
    pub fn grant(&self, sub: &Sub, credit: u32, drain: bool) -> LinkFlow {
        let mut count = sub.link_count.lock().unwrap();
        let received = sub.all().len();
        let since = u32::try_from(received - count.1).unwrap();
        let flow = self
            .router
            .flow(&sub.handle, count.0.wrapping_add(since), credit, drain)
            .expect("the subscription exists");
        *count = (flow.delivery_count, sub.all().len());
        flow
    }

    /// A transactional ACK or NACK of `seq` on `sub` (cumulative in client
    /// mode): frees credit now. Returns the sequence numbers it holds, for
    /// [`Bench::commit_acks`], [`Bench::commit_nacks`] or [`Bench::abort`].
    pub fn stage(&self, sub: &Sub, seq: u64) -> Result<Vec<u64>, RouterError> {
        self.router.stage(&sub.handle, seq)
    }

    /// Commits staged acks: consumes exactly `seqs`.
    pub fn commit_acks(&self, sub: &Sub, seqs: &[u64]) {
        drop(self.router.ack_exact(&sub.handle, seqs));
    }

    /// Commits staged nacks: returns exactly `seqs`, one after the other.
    pub fn commit_nacks(&self, sub: &Sub, seqs: &[u64]) {
        self.router.nack_exact(&sub.handle, seqs);
    }

    /// Aborts: `seqs` count against credit again.
    pub fn abort(&self, sub: &Sub, seqs: &[u64]) {
        self.router.unstage(&sub.handle, seqs);
    }

    /// What waits on `queue`, in the order it would be delivered.
    pub fn waiting(&self, queue: &str) -> Vec<u64> {
        self.destination(queue)
            .browse(usize::MAX, None)
            .iter()
            .map(|m| m.seq)
            .collect()
    }

    /// `queue`'s counts.
    pub fn snapshot(&self, queue: &str) -> DestinationSnapshot {
        self.destination(queue).snapshot()
    }

    /// Sequence numbers of the messages given up (dead-lettered) since the
    /// last call, in the order they were given up.
    pub fn dead(&mut self) -> Vec<u64> {
        self.read_errands();
        std::mem::take(&mut self.dead)
    }

    /// Redeliveries waiting out their delay: `(seq, redeliveries)`.
    pub fn delayed(&mut self) -> Vec<(u64, u32)> {
        self.read_errands();
        self.delayed.iter().map(|(m, r)| (m.seq, *r)).collect()
    }

    /// Reads what the router handed its errand task.
    fn read_errands(&mut self) {
        while let Ok(errand) = self.errands.try_recv() {
            match errand {
                Errand::Dead(d) => self.dead.push(d.message.seq),
                Errand::Delayed {
                    message,
                    redeliveries,
                    wait,
                } => {
                    assert!(wait > 0, "a delayed redelivery waits");
                    self.delayed.push((message, redeliveries));
                }
                Errand::Wake(_) => panic!("no wildcard subscription on the bench"),
                Errand::ReadBacklog { .. } | Errand::DropBacklog { .. } => {
                    panic!("the in-memory store keeps no backlog")
                }
            }
        }
    }

    /// Ends the delay of redelivery `seq` (the router's scheduler does this
    /// when the delay is over): it goes back to its queue.
    pub fn return_delayed(&mut self, seq: u64) {
        self.read_errands();
        let at = self
            .delayed
            .iter()
            .position(|(m, _)| m.seq == seq)
            .expect("a delayed redelivery");
        let (message, redeliveries) = self.delayed.remove(at);
        self.destination(&message.destination)
            .return_delayed(message, redeliveries);
    }
}

impl Msg {
    /// A non-persistent message of default priority, no group.
    pub fn new() -> Msg {
        Msg::default()
    }

    /// With JMS priority `p` (0..=9).
    pub fn priority(mut self, p: u8) -> Msg {
        self.priority = Some(p);
        self
    }

    /// In message group `g`.
    pub fn group(mut self, g: &str) -> Msg {
        self.group = Some(g.into());
        self
    }

    /// The last message of group `g` (`JMSXGroupSeq: -1`).
    pub fn closing_group(mut self, g: &str) -> Msg {
        self.group = Some(g.into());
        self.closes_group = true;
        self
    }

    /// Persistent (appended to the store before it is dispatched).
    pub fn persistent(mut self, persistent: bool) -> Msg {
        self.persistent = persistent;
        self
    }

    /// Expired long ago (`expires` of 1 ms after the epoch).
    pub fn expired(mut self) -> Msg {
        self.expires = 1;
        self
    }

    /// With a user property a selector can see.
    pub fn property(mut self, name: &str, value: &str) -> Msg {
        self.property = Some((name.into(), value.into()));
        self
    }
}

impl Opts {
    /// Each message acknowledged on its own (`client-individual`).
    pub fn individual(prefetch: usize) -> Opts {
        Opts {
            ack: AckMode::ClientIndividual,
            prefetch,
            exclusive: false,
            selector: None,
            link: false,
        }
    }

    /// Cumulative acknowledgement (`client`).
    pub fn client(prefetch: usize) -> Opts {
        Opts {
            ack: AckMode::Client,
            ..Opts::individual(prefetch)
        }
    }

    /// ActiveMQ's exclusive consumer.
    pub fn exclusive(mut self) -> Opts {
        self.exclusive = true;
        self
    }

    /// Only messages matching the JMS selector `text`.
    pub fn selector(mut self, text: &str) -> Opts {
        self.selector = Some(text.into());
        self
    }

    /// A credit-based link: nothing is delivered before [`Bench::grant`].
    pub fn link(mut self) -> Opts {
        self.link = true;
        self
    }
}

impl Sub {
    /// Deliveries since the last `take`, in order.
    pub fn take(&self) -> Vec<Got> {
        let deliveries = self.sink.deliveries.lock().unwrap();
        let mut taken = self.sink.taken.lock().unwrap();
        let new = deliveries[*taken..].iter().map(|d| self.got(d)).collect();
        *taken = deliveries.len();
        new
    }

    /// Sequence numbers of every delivery so far, in order.
    pub fn all(&self) -> Vec<u64> {
        let deliveries = self.sink.deliveries.lock().unwrap();
        deliveries.iter().map(|d| d.message.seq).collect()
    }

    /// Sequence numbers of the deliveries since the last `take`.
    pub fn take_seqs(&self) -> Vec<u64> {
        self.take().into_iter().map(|g| g.seq).collect()
    }

    fn got(&self, d: &Delivery) -> Got {
        assert_eq!(
            d.consumer.id, self.handle.id,
            "a delivery names the subscription it went to"
        );
        Got {
            seq: d.message.seq,
            redeliveries: d.redeliveries,
        }
    }
}
