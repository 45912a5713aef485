//! The ferromq broker.
//!
//! The data path reads top to bottom:
//! [`server`] (listeners, admission, TLS) → [`websocket`] (the upgrade, for
//! STOMP over WebSocket only) → [`stomp`] (connection, session,
//! outbox/writer) → [`router`] (destinations, subscriptions, credit) →
//! [`store`] (an ordered log of typed entries). The router knows no protocol
//! and touches no socket; the store knows no protocol either.

#![deny(missing_docs)]

pub mod admin;
pub mod admin_client;
pub mod auth;
pub mod cluster;
pub mod cluster_client;
pub mod leadership;
pub mod message;
pub mod metrics;
pub mod native;
pub mod outbox;
pub mod registry;
pub mod reload;
pub mod router;
pub mod selector;
pub mod server;
pub mod spliced;
pub mod stomp;
pub mod store;
pub mod tls;
pub mod transaction;
pub mod websocket;

use ferromq_config::Config;
use router::{Router, RouterConfig};
use server::{accept_loop, Admission, ListenerContext, ListenerKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stomp::{ConnectionConfig, SessionConfig};
use store::log_writer::WriterSettings;
use store::sled_store::{SledStore, StoreSettings};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Why the broker could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS files are missing or invalid.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] tls::TlsError),
    /// The durable store cannot be opened (the error names the directory).
    #[error("cannot open the message store: {0}")]
    Store(#[from] store::OpenError),
    /// The users file or a password hash is unusable.
    #[error("cannot load the users: {0}")]
    Auth(#[from] auth::AuthLoadError),
    /// Recovered messages could not be put back (e.g. destination limit).
    #[error("cannot restore the stored messages: {0}")]
    Restore(#[from] router::RouterError),
    /// The cluster node could not start (`[cluster]`).
    #[error("cannot start the cluster node: {0}")]
    Cluster(#[from] cluster::StartError),
}

/// A started broker: listeners bound, accepting connections.
pub struct Broker {
    router: Arc<Router>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    shutdown_timeout: Duration,
    listeners: Vec<(ListenerKind, SocketAddr)>,
    store: Arc<dyn store::Store>,
    auth: Arc<auth::Authenticator>,
    tls: Option<Arc<tls::ReloadableAcceptor>>,
    /// Cluster mode: the node, stopped after the store at shutdown.
    cluster: Option<cluster::ClusterNode>,
    /// Cancelled when the daemon must restart (a deposed leader).
    restart: CancellationToken,
}

fn router_config(config: &Config) -> RouterConfig {
    RouterConfig {
        node: config.broker.name.clone(),
        memory_limit: config.destinations.memory_limit.as_usize(),
        flow_control_window: config.destinations.flow_control_window as usize,
        queue_window: config.destinations.queue_window as usize,
        queue_prefetch: config.destinations.queue_prefetch as usize,
        topic_prefetch: config.destinations.topic_prefetch as usize,
        max_destinations: config.limits.max_destinations as usize,
        durable_limit: config.destinations.durable_subscription_limit as usize,
        durable_drop_oldest: config.destinations.durable_subscription_policy
            == ferromq_config::DurableSubscriptionPolicy::DropOldest,
        dead_letter: router::DeadLetterPolicy {
            max_redeliveries: config.destinations.max_redeliveries,
            queue: config.destinations.dead_letter_queue.clone(),
            individual: config.destinations.individual_dead_letter,
            nack: match config.destinations.nack {
                ferromq_config::NackPolicy::Redeliver => router::NackPolicy::Redeliver,
                ferromq_config::NackPolicy::DeadLetter => router::NackPolicy::DeadLetter,
            },
            expired_to_dlq: config.destinations.expired_to_dlq,
            redelivery_delay: config.destinations.redelivery_delay.get(),
            redelivery_backoff: config.destinations.redelivery_backoff,
        },
    }
}

fn connection_config(
    config: &Config,
    auth: Arc<auth::Authenticator>,
    leadership: Arc<leadership::Leadership>,
) -> ConnectionConfig {
    let s = &config.stomp;
    ConnectionConfig {
        limits: ferromq_protocol::stomp::Limits {
            max_frame_size: s.max_frame_size.as_usize(),
            max_headers: s.max_headers as usize,
            max_header_line: s.max_header_line.as_usize(),
        },
        connect_timeout: s.connect_timeout.as_duration(),
        frame_timeout: s.frame_timeout.as_duration(),
        heartbeat_grace: s.heartbeat_grace,
        reply_limit: 10_000,
        session: Arc::new(SessionConfig {
            heartbeat_send_min: s.heartbeat_send_min.as_duration(),
            heartbeat_receive_min: s.heartbeat_receive_min.as_duration(),
            max_subscriptions: config.limits.max_subscriptions_per_connection as usize,
            max_transaction_bytes: config.destinations.memory_limit.as_usize(),
            max_transactions: 100,
            server: format!("ferromq/{}", env!("CARGO_PKG_VERSION")),
            auth,
            max_unacked: config.limits.max_unacked_per_connection as usize,
            leadership,
        }),
    }
}

fn native_settings(
    config: &Config,
    auth: Arc<auth::Authenticator>,
    leadership: Arc<leadership::Leadership>,
) -> native::NativeSettings {
    let n = &config.native;
    native::NativeSettings {
        max_frame_size: u32::try_from(n.max_frame_size.as_usize()).unwrap_or(u32::MAX),
        idle_timeout: n.idle_timeout.as_duration(),
        connect_timeout: config.stomp.connect_timeout.as_duration(),
        frame_timeout: config.stomp.frame_timeout.as_duration(),
        // The same message size limit as STOMP, so a message fits either protocol.
        max_message_size: config.stomp.max_frame_size.as_usize(),
        max_links: config.limits.max_subscriptions_per_connection as usize,
        max_sessions: 256,
        max_unacked: config.limits.max_unacked_per_connection as usize,
        max_transactions: 100,
        max_transaction_bytes: config.destinations.memory_limit.as_usize(),
        producer_credit: 1000,
        reply_limit: 10_000,
        container_id: config.broker.name.clone(),
        auth,
        leadership,
    }
}

impl Broker {
    /// Binds every configured listener and starts accepting.
    pub async fn start(config: &Config) -> Result<Broker, StartError> {
        // The store opens (and recovers) before any listener: no client can
        // see the broker until every stored message is back in its queue.
        let store_settings = StoreSettings {
            path: config.broker.data_dir.join("store"),
            writer: WriterSettings {
                sync: config.store.sync,
                batch_delay: config.store.batch_delay.as_duration(),
                disk_limit: config.store.disk_limit.get(),
                ack_gather: store::log_writer::ACK_GATHER,
                checkpoint_bytes: config.store.checkpoint_every.get(),
            },
            cache_bytes: (config.store.memory_limit.get() / 2).max(8 << 20),
            body_budget: config.store.memory_limit.get(),
            compact_min_bytes: config.store.compact_threshold.get(),
            bodies: store::body_segments::BodySettings::new(
                config.broker.data_dir.join("bodies"),
                config.store.body_inline_max.get(),
            ),
        };
        let shutdown = CancellationToken::new();
        let restart = CancellationToken::new();
        let (store, router, leadership, cluster_node) =
            match cluster::ClusterSettings::from_config(config) {
                None => {
                    let (sled_store, recovered) = SledStore::open(store_settings)?;
                    let store: Arc<dyn store::Store> = Arc::new(sled_store);
                    let router = Arc::new(Router::new(router_config(config), store.clone()));
                    router.restore(recovered)?;
                    (store, router, leadership::Leadership::single(), None)
                }
                Some(settings) => {
                    let started = start_cluster(config, settings, store_settings).await?;
                    let (store, node, state) = started;
                    let router = Arc::new(Router::new(router_config(config), store.clone()));
                    let leadership = leadership::Leadership::clustered(node.clone());
                    // Nothing is restored yet: the router is restored from
                    // the store when this node becomes leader.
                    tokio::spawn(leadership.clone().follow(
                        state,
                        router.clone(),
                        shutdown.clone(),
                        restart.clone(),
                    ));
                    (store, router, leadership, Some(node))
                }
            };
        tokio::spawn(router.clone().run_errands());
        tokio::spawn(router.clone().run_scheduler());
        let tracker = TaskTracker::new();
        let policy = auth::AccessPolicy::load(config)?;
        if config.auth.anonymous && policy.user_count() > 0 {
            info!("auth.anonymous is ignored: users are configured, every client must log in");
        }
        let auth = Arc::new(auth::Authenticator::new(policy)?);
        let ctx = Arc::new(ListenerContext {
            router: router.clone(),
            stomp: Arc::new(connection_config(config, auth.clone(), leadership.clone())),
            native: Arc::new(native_settings(config, auth.clone(), leadership.clone())),
            admission: Admission::new(
                config.limits.max_connections as usize,
                config.limits.max_connections_per_ip as usize,
            ),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        });
        let acceptor = tls::acceptor(&config.tls)?.map(tls::ReloadableAcceptor::new);
        let mut planned = Vec::new();
        if let Some(addr) = config.stomp.listen_addr() {
            planned.push((ListenerKind::Stomp, addr, None));
        }
        match (config.stomp.tls_listen_addr(), &acceptor) {
            (Some(addr), Some(a)) => planned.push((ListenerKind::StompTls, addr, Some(a.clone()))),
            (Some(_), None) => {
                info!("stomp+tls listener not started: tls.cert and tls.key are not set")
            }
            _ => {}
        }
        if let Some(addr) = config.websocket.listen_addr() {
            planned.push((ListenerKind::WebSocket, addr, None));
        }
        match (config.websocket.tls_listen_addr(), &acceptor) {
            (Some(addr), Some(a)) => {
                planned.push((ListenerKind::WebSocketTls, addr, Some(a.clone())))
            }
            (Some(_), None) => {
                info!("websocket+tls listener not started: tls.cert and tls.key are not set")
            }
            _ => {}
        }
        if let Some(addr) = config.native.listen_addr() {
            planned.push((ListenerKind::Native, addr, None));
        }
        match (config.native.tls_listen_addr(), &acceptor) {
            (Some(addr), Some(a)) => planned.push((ListenerKind::NativeTls, addr, Some(a.clone()))),
            (Some(_), None) => {
                info!("native+tls listener not started: tls.cert and tls.key are not set")
            }
            _ => {}
        }
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for (kind, addr, tls) in planned {
            let listener = server::bind(addr).map_err(|source| StartError::Bind {
                listener: kind.name(),
                addr,
                source,
            })?;
            let local = listener.local_addr().unwrap_or(addr);
            bound.push((listener, kind, tls));
            listeners.push((kind, local));
        }
        // The admin endpoint: plain HTTP on admin.listen, HTTPS on its own
        // admin.tls_listen (with the [tls] certificate).
        let mut admin = Vec::new();
        let admin_tls = match (config.admin.tls_listen_addr(), &acceptor) {
            (Some(addr), Some(a)) => Some((addr, a.clone())),
            (Some(_), None) => {
                info!("admin+tls listener not started: tls.cert and tls.key are not set");
                None
            }
            _ => None,
        };
        let planned_admin = [
            config.admin.listen_addr().map(|a| (a, "admin", None)),
            admin_tls.map(|(a, t)| (a, "admin+tls", Some(t))),
        ];
        for (addr, name, tls) in planned_admin.into_iter().flatten() {
            let bound = TcpListener::bind(addr).await;
            let listener = bound.map_err(|source| StartError::Bind {
                listener: name,
                addr,
                source,
            })?;
            let local = listener.local_addr().unwrap_or(addr);
            admin.push((listener, local, name, tls));
        }
        for (listener, kind, tls) in bound {
            tokio::spawn(accept_loop(listener, kind, tls, ctx.clone()));
        }
        for (kind, addr) in &listeners {
            info!(listener = kind.name(), %addr, "listener ready");
        }
        if !admin.is_empty() {
            let sources = Arc::new(admin::metrics::Sources {
                router: router.clone(),
                admission: ctx.admission.clone(),
                auth: auth.clone(),
                store: store.clone(),
                started: std::time::Instant::now(),
                leadership: leadership.clone(),
                rates: admin::rates::Rates::default(),
                metrics_destination_limit: config.admin.metrics_destination_limit as usize,
            });
            tokio::spawn(admin::sample_rates(sources.clone(), shutdown.clone()));
            for (listener, addr, name, tls) in admin {
                tokio::spawn(admin::run(listener, tls, sources.clone(), shutdown.clone()));
                info!(listener = name, %addr, "listener ready");
            }
        }
        Ok(Broker {
            router,
            shutdown,
            tracker,
            shutdown_timeout: config.broker.shutdown_timeout.as_duration(),
            listeners,
            store,
            auth,
            tls: acceptor,
            cluster: cluster_node,
            restart,
        })
    }

    /// Resolves when the daemon must restart itself: in cluster mode, after
    /// this node lost the leadership it served clients under (its router
    /// may be ahead of the log; a restart rebuilds it as a follower's).
    /// Never resolves for a single node.
    pub async fn restart_requested(&self) {
        self.restart.cancelled().await
    }

    /// The bound address of each listener.
    pub fn listeners(&self) -> &[(ListenerKind, SocketAddr)] {
        &self.listeners
    }

    /// The router (for tests and the admin API).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// SIGHUP: applies the reloadable parts of `config` (TLS certificates,
    /// users and ACL) without touching open connections.
    pub fn reload(&self, config: &Config) -> Result<(), reload::ReloadError> {
        reload::apply(config, &self.auth, self.tls.as_deref())
    }

    /// Graceful shutdown: stop accepting, tell every client (STOMP ERROR
    /// "broker shutting down"), return their unacked messages, and wait up
    /// to the configured timeout for connections to finish.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.tracker.len(),
                "shutdown timeout reached with connections still open"
            );
        }
        // Last: write and flush whatever the connections appended (in
        // cluster mode: propose it, so the node stops after the store).
        self.store.close();
        if let Some(node) = &self.cluster {
            node.shutdown().await;
        }
    }
}

/// Cluster mode: opens the store on the cluster's log and starts the node
/// (peer listener, Raft); the writer proposes through the node from then on.
async fn start_cluster(
    config: &Config,
    settings: cluster::ClusterSettings,
    store_settings: StoreSettings,
) -> Result<
    (
        Arc<dyn store::Store>,
        cluster::ClusterNode,
        Arc<store::replicated::ReplicatedState>,
    ),
    StartError,
> {
    let listen = config
        .cluster
        .as_ref()
        .map(|c| c.listen.as_str())
        .unwrap_or_default();
    let addr: SocketAddr = listen.parse().map_err(|e| {
        cluster::StartError::Config(format!("cluster.listen '{listen}' is not ip:port: {e}"))
    })?;
    let replicator = Arc::new(std::sync::OnceLock::new());
    let replication = store::log_writer::Replication {
        replicator: replicator.clone(),
        runtime: tokio::runtime::Handle::current(),
        max_in_flight: settings.max_in_flight,
    };
    let (sled_store, state) = SledStore::open_replicated(store_settings, replication)?;
    let listener = cluster::PeerListener::bind(addr).await?;
    let node = cluster::ClusterNode::start(settings, state.clone(), listener).await?;
    let as_replicator: Arc<dyn cluster::Replicator> = Arc::new(node.clone());
    let _ = replicator.set(as_replicator);
    info!(listener = "cluster", %addr, node = node.node_id(), "listener ready");
    Ok((Arc::new(sled_store), node, state))
}
