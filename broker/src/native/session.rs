//! [`Connection`]: the native state machine of one connection
//! (`protocol/NATIVE.md` section 4). It checks each frame against the
//! connection, session and link states, turns it into router requests (links
//! in [`super::link`]), and replies through the [`Outbox`]. Transactions have
//! STOMP's semantics and share its buffered operations and its commit
//! ([`crate::transaction::Transaction::commit`]).

use super::book::DeliveryBook;
use super::link::Link;
use super::outgoing::{FrameOutbox, Outbox, Outgoing};
use super::{ChannelMap, Failure, NativeSettings};
use crate::auth::{Credentials, Permission, Principal};
use crate::registry::ConnectionInfo;
use crate::router::{Address, ConnectionId, Router, RouterError};
use crate::transaction::Transaction;
use ferromq_protocol::native::{
    Begin, Close, Declare, Discharge, End, ErrorCondition, ErrorInfo, Frame, Open, Performative,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A producer link waiting for its destination to drop below its memory
/// limit: (channel, handle).
pub type LinkKey = (u32, u32);

/// What the connection does after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    Continue,
    /// The client closed the connection; our Close is queued.
    Closed,
}

/// One session (channel) and its links by handle.
#[derive(Default)]
pub struct Session {
    /// Links attached on the session.
    pub links: ChannelMap<Link>,
}

/// A transaction and the channel that declared it.
pub struct OpenTransaction {
    /// The declaring session.
    pub channel: u32,
    /// Its buffered work.
    pub work: Transaction,
}

/// The state of one native connection.
pub struct Connection {
    pub(super) id: ConnectionId,
    pub(super) peer: String,
    pub(super) settings: Arc<NativeSettings>,
    pub(super) router: Arc<Router>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) book: Arc<DeliveryBook>,
    /// The connection's registry entry: its messages-in counter.
    pub(super) info: Arc<ConnectionInfo>,
    /// Where waiting producer links report that their destination has room.
    pub(super) wake: mpsc::UnboundedSender<LinkKey>,
    opened: bool,
    /// The authenticated user, once open.
    principal: Option<Principal>,
    /// The peer's Open container id: names its durable subscriptions,
    /// as STOMP's `client-id` does.
    pub(super) peer_container: String,
    /// Common name of a verified TLS client certificate.
    certificate_user: Option<Arc<str>>,
    /// The listener the client came in on: a follower's `not-leader`
    /// names the leader's listener of the same kind.
    listener: crate::server::ListenerKind,
    /// The peer's idle timeout (it closes if we are silent this long).
    peer_idle_timeout: Option<Duration>,
    pub(super) sessions: ChannelMap<Session>,
    pub(super) link_count: usize,
    /// Prefetch windows held by unsettled consumer links (bounded by
    /// `max_unacked`).
    pub(super) unacked_budget: usize,
    pub(super) transactions: HashMap<String, OpenTransaction>,
    /// When the last read arrived, in ms since the epoch: the timestamp of
    /// the messages it carried (one clock read per read, not per message;
    /// timestamps have ms resolution anyway).
    pub(super) read_at_ms: u64,
}

impl Connection {
    /// Notes that bytes just arrived (see `read_at_ms`).
    pub fn mark_read(&mut self) {
        self.read_at_ms = crate::router::now_ms();
    }

    /// A connection awaiting Open, registered as `info`.
    pub fn new(
        info: Arc<ConnectionInfo>,
        settings: Arc<NativeSettings>,
        router: Arc<Router>,
        outbox: Arc<Outbox>,
        book: Arc<DeliveryBook>,
        wake: mpsc::UnboundedSender<LinkKey>,
    ) -> Connection {
        Connection {
            id: info.id,
            peer: info.peer.clone(),
            settings,
            router,
            outbox,
            book,
            info,
            wake,
            opened: false,
            principal: None,
            peer_container: String::new(),
            certificate_user: None,
            listener: crate::server::ListenerKind::Native,
            peer_idle_timeout: None,
            sessions: ChannelMap::default(),
            link_count: 0,
            unacked_budget: 0,
            transactions: HashMap::new(),
            read_at_ms: crate::router::now_ms(),
        }
    }

    /// Records the verified TLS client certificate's common name: an Open
    /// without credentials then authenticates as that user.
    pub fn set_certificate_user(&mut self, common_name: Option<Arc<str>>) {
        self.certificate_user = common_name;
    }

    /// Records the listener the client came in on (native or native+TLS);
    /// a new connection says plain native.
    pub fn set_listener(&mut self, listener: crate::server::ListenerKind) {
        self.listener = listener;
    }

    /// The authenticated user, once the Open was accepted.
    pub fn user(&self) -> Option<&str> {
        self.principal.as_ref().map(|p| &*p.name)
    }

    /// Whether the Opens have been exchanged.
    pub fn is_open(&self) -> bool {
        self.opened
    }

    /// Handles one frame. An error means: send Close with it and close.
    pub async fn handle(&mut self, frame: Frame) -> Result<Step, Failure> {
        let channel = frame.channel;
        let Some(performative) = frame.performative else {
            return Err(Failure::new(
                ErrorCondition::DecodeError,
                format!("frame on channel {channel} has no performative"),
            ));
        };
        if !self.opened {
            return match performative {
                Performative::Open(open) => self.open(open).await,
                other => Err(Failure::illegal_state(format!(
                    "{} before open: the first frame after the preamble must be an Open",
                    other.name()
                ))),
            };
        }
        let _answer_first =
            answer_precedes_deliveries(&performative).then(|| self.outbox.fence_deliveries());
        match performative {
            Performative::Open(_) => Err(Failure::illegal_state(
                "second open: the connection is already open",
            )),
            Performative::Begin(begin) => self.begin(channel, begin),
            Performative::End(_) => self.end(channel),
            Performative::Attach(attach) => self.attach(channel, attach),
            Performative::Detach(detach) => self.detach(channel, detach),
            Performative::Flow(flow) => self.flow(channel, flow),
            Performative::Transfer(transfer) => self.transfer(channel, transfer),
            Performative::Disposition(d) => self.disposition(channel, d),
            Performative::Declare(declare) => self.declare(channel, declare),
            Performative::Discharge(discharge) => self.discharge(channel, discharge),
            Performative::Close(_) => {
                self.outbox
                    .close_with(Some(Outgoing::Frame(Frame::new(0, Close::default()))));
                Ok(Step::Closed)
            }
            Performative::Heartbeat(_) => Ok(Step::Continue),
        }
    }

    async fn open(&mut self, open: Open) -> Result<Step, Failure> {
        // Cluster mode: only the leader serves (NATIVE.md, `not-leader`).
        if let Some(refusal) = self.settings.leadership.refusal(self.listener) {
            return Err(Failure::new(
                ErrorCondition::NotLeader,
                refusal.description(),
            ));
        }
        let credentials = Credentials {
            login: open.credentials.as_ref().map(|c| c.username.as_str()),
            passcode: open.credentials.as_ref().map(|c| c.password.as_str()),
            certificate: self.certificate_user.as_deref(),
        };
        // Every failure reads the same to the client, so it cannot probe
        // for user names; the log says why (never the password).
        let principal = self
            .settings
            .auth
            .authenticate(credentials)
            .await
            .map_err(|why| {
                tracing::warn!(
                    conn = self.id,
                    peer = %self.peer,
                    login = credentials.login.unwrap_or("-"),
                    reason = %why,
                    "authentication failed"
                );
                Failure::new(ErrorCondition::UnauthorizedAccess, "authentication failed")
            })?;
        let user = principal.name.clone();
        self.principal = Some(principal);
        self.peer_container = open.container_id.clone();
        self.opened = true;
        self.peer_idle_timeout = (open.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(u64::from(open.idle_timeout_ms)));
        let reply = Open {
            container_id: self.settings.container_id.clone(),
            max_frame_size: self.settings.max_frame_size,
            idle_timeout_ms: u32::try_from(self.settings.idle_timeout.as_millis())
                .unwrap_or(u32::MAX),
            ..Open::default()
        };
        tracing::info!(conn = self.id, peer = %self.peer, container = %open.container_id, %user, "native connection opened");
        self.outbox.push(Outgoing::Open {
            frame: Frame::new(0, reply),
            peer_max_frame_size: open.effective_max_frame_size(),
            // Half the peer's timeout, so one lost beat does not close it.
            heartbeat: self.peer_idle_timeout.map(|t| t / 2),
        });
        Ok(Step::Continue)
    }

    fn begin(&mut self, channel: u32, _begin: Begin) -> Result<Step, Failure> {
        if self.sessions.contains_key(&channel) {
            return Err(Failure::illegal_state(format!(
                "begin on channel {channel}, which already has a session"
            )));
        }
        if self.sessions.len() >= self.settings.max_sessions {
            return Err(Failure::new(
                ErrorCondition::ResourceLimitExceeded,
                format!(
                    "session limit of {} per connection reached",
                    self.settings.max_sessions
                ),
            ));
        }
        self.sessions.insert(channel, Session::default());
        let reply = Begin {
            remote_channel: Some(channel),
            handle_max: u32::try_from(self.settings.max_links).unwrap_or(u32::MAX),
        };
        self.outbox.frame(Frame::new(channel, reply));
        Ok(Step::Continue)
    }

    fn end(&mut self, channel: u32) -> Result<Step, Failure> {
        let session = self
            .sessions
            .remove(&channel)
            .ok_or_else(|| no_session(channel, "end"))?;
        for (_, link) in session.links {
            self.drop_link(link);
        }
        let ended: Vec<String> = self
            .transactions
            .iter()
            .filter(|(_, t)| t.channel == channel)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Some(t) = self.transactions.remove(&id) {
                self.rollback(t.work);
            }
        }
        self.outbox.frame(Frame::new(channel, End::default()));
        Ok(Step::Continue)
    }

    /// Checks `permission` on `address` (and `admin` when it would create
    /// the destination), as STOMP does.
    pub(super) fn authorize(
        &self,
        address: &Address,
        permission: Permission,
    ) -> Result<(), Failure> {
        let Some(principal) = &self.principal else {
            return Err(Failure::illegal_state("not open"));
        };
        self.settings
            .auth
            .authorize_client(
                &self.router,
                principal,
                self.id,
                &self.peer,
                permission,
                address,
            )
            .map_err(|denied| Failure::new(ErrorCondition::UnauthorizedAccess, denied.to_string()))
    }

    /// The session on `channel`, or `not-found` naming the performative.
    pub(super) fn session(&mut self, channel: u32, what: &str) -> Result<&mut Session, Failure> {
        self.sessions
            .get_mut(&channel)
            .ok_or_else(|| no_session(channel, what))
    }

    fn declare(&mut self, channel: u32, declare: Declare) -> Result<Step, Failure> {
        self.session(channel, "declare")?;
        let txn_id = declare.txn_id;
        let error = if self.transactions.contains_key(&txn_id) {
            Some(ErrorInfo::new(
                ErrorCondition::IllegalState,
                format!("transaction '{txn_id}' is already open"),
            ))
        } else if self.transactions.len() >= self.settings.max_transactions {
            Some(ErrorInfo::new(
                ErrorCondition::ResourceLimitExceeded,
                format!(
                    "limit of {} open transactions per connection reached",
                    self.settings.max_transactions
                ),
            ))
        } else {
            self.transactions.insert(
                txn_id.clone(),
                OpenTransaction {
                    channel,
                    work: Transaction::default(),
                },
            );
            None
        };
        self.outbox
            .frame(Frame::new(channel, Declare { txn_id, error }));
        Ok(Step::Continue)
    }

    fn discharge(&mut self, channel: u32, discharge: Discharge) -> Result<Step, Failure> {
        self.session(channel, "discharge")?;
        let Discharge { txn_id, fail, .. } = discharge;
        let Some(t) = self.transactions.remove(&txn_id) else {
            let error = ErrorInfo::new(
                ErrorCondition::NotFound,
                format!("no open transaction '{txn_id}'"),
            );
            self.outbox.frame(Frame::new(
                channel,
                Discharge {
                    txn_id,
                    fail,
                    error: Some(error),
                },
            ));
            return Ok(Step::Continue);
        };
        let ok = Frame::new(
            channel,
            Discharge {
                txn_id: txn_id.clone(),
                fail,
                error: None,
            },
        );
        if fail {
            self.rollback(t.work);
            self.outbox.frame(ok);
            return Ok(Step::Continue);
        }
        // One atomic log batch, as a STOMP COMMIT: see `Transaction::commit`.
        let commits = t.work.commit(&self.router, self.id);
        // Durability ordering: the answer waits for every persistent transfer
        // and every acknowledgement of the transaction to be durable.
        let failed = Frame::new(
            channel,
            Discharge {
                txn_id,
                fail,
                error: Some(ErrorInfo::new(
                    ErrorCondition::InternalError,
                    "the transaction's messages or acknowledgements were not stored",
                )),
            },
        );
        self.outbox.push(Outgoing::AfterCommits {
            commits,
            ok: Box::new(ok),
            failed: Box::new(failed),
        });
        Ok(Step::Continue)
    }

    /// Undoes a transaction: its transfers vanish, its dispositions are undone.
    pub(super) fn rollback(&self, t: Transaction) {
        t.rollback(&self.router);
    }

    /// The connection ended: roll back its transactions, return unsettled
    /// deliveries to their queues, remove its temporary destinations.
    pub fn close(&mut self) {
        for (_, t) in std::mem::take(&mut self.transactions) {
            self.rollback(t.work);
        }
        for (_, session) in std::mem::take(&mut self.sessions) {
            for (_, link) in session.links {
                self.drop_link(link);
            }
        }
        self.router.drop_temporaries(self.id);
    }
}

pub(super) fn no_session(channel: u32, what: &str) -> Failure {
    Failure::not_found(format!(
        "{what} on channel {channel}, which has no session: send Begin first"
    ))
}

/// The condition a router refusal is reported with.
pub(super) fn router_failure(e: RouterError) -> Failure {
    let condition = match e {
        RouterError::IllegalDestination(_) | RouterError::TemporaryDestination(_) => {
            ErrorCondition::NotFound
        }
        RouterError::TooManyDestinations(_) => ErrorCondition::ResourceLimitExceeded,
        _ => ErrorCondition::NotAllowed,
    };
    Failure::new(condition, e.to_string())
}

/// Whether the broker's answer to `p` must be written before the transfers
/// handling `p` causes (the STOMP receipt rule, `crate::outbox`), so
/// deliveries are held while it is handled: a Detach or End (unsettled
/// messages go back to their queues and may reach another link of this
/// connection), an unsettled Disposition (the broker's settling answer
/// before a `modified`/`released` redelivery or the transfer the freed
/// credit lets through), a Discharge. Not a Flow: its answer describes the
/// link after the transfers its credit allowed, so it follows them. Not an
/// Attach: a consumer link has no credit before its answer is queued. Not a
/// Transfer, as not a STOMP SEND. A settled Disposition has no answer and
/// pays nothing.
fn answer_precedes_deliveries(p: &Performative) -> bool {
    match p {
        Performative::Detach(_) | Performative::End(_) | Performative::Discharge(_) => true,
        Performative::Disposition(d) => !d.settled,
        _ => false,
    }
}
