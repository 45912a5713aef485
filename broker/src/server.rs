//! Listeners: binds every configured address, accepts connections within the
//! connection limits, hands each one (plain or TLS) to its protocol's
//! connection handler (STOMP over TCP or WebSocket, native), and drains them
//! all on shutdown.

use crate::router::Router;
use crate::stomp::{self, ConnectionConfig};
use crate::tls::ReloadableAcceptor;
use bytes::BytesMut;
use ferromq_protocol::stomp::{encode_frame, Command, Frame, Version};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Kernel receive buffer of client sockets. Linux would otherwise grow it
/// to several MiB per connection: a producer that outruns the broker then
/// parks thousands of messages in the kernel, invisible to flow control, and
/// each one waits behind them (tens to hundreds of ms). 256 KiB still moves
/// gigabytes per second on loopback.
const SOCKET_RECV_BUFFER: u32 = 256 * 1024;

/// Binds a listening socket whose accepted connections get
/// `SOCKET_RECV_BUFFER` (set before `listen`, so they inherit it).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_recv_buffer_size(SOCKET_RECV_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Which protocol a listener speaks and whether it wraps TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// STOMP over TCP.
    Stomp,
    /// STOMP over TLS.
    StompTls,
    /// The native protocol over TCP.
    Native,
    /// The native protocol over TLS.
    NativeTls,
    /// STOMP over WebSocket (stomp.js).
    WebSocket,
    /// STOMP over WebSocket over TLS (wss).
    WebSocketTls,
}

impl ListenerKind {
    /// Name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Stomp => "stomp",
            ListenerKind::StompTls => "stomp+tls",
            ListenerKind::Native => "native",
            ListenerKind::NativeTls => "native+tls",
            ListenerKind::WebSocket => "websocket",
            ListenerKind::WebSocketTls => "websocket+tls",
        }
    }
}

/// Connection admission: a total limit and a per-source-IP limit.
pub struct Admission {
    total: Arc<Semaphore>,
    limit: usize,
    /// Connections admitted since start (metrics).
    admitted: AtomicU64,
    /// Connections refused by a limit since start (metrics).
    refused: AtomicU64,
    per_ip_limit: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Held for the life of an admitted connection; releases its slots on drop.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    admission: Arc<Admission>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut map = self
            .admission
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    /// Limits of `total` connections and `per_ip` from one address.
    pub fn new(total: usize, per_ip: usize) -> Arc<Admission> {
        Arc::new(Admission {
            total: Arc::new(Semaphore::new(total)),
            limit: total,
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            per_ip_limit: per_ip,
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a connection from `ip`, or says which limit refused it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, &'static str> {
        let admitted = self.admit_counted(ip);
        let counter = match admitted {
            Ok(_) => &self.admitted,
            Err(_) => &self.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        admitted
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.limit.saturating_sub(self.total.available_permits())
    }

    /// Connections admitted since start.
    pub fn admitted_total(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Connections refused by `max_connections`/`max_connections_per_ip`.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn admit_counted(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, &'static str> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "connection limit reached (limits.max_connections)")?;
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.per_ip_limit {
            return Err("too many connections from this address (limits.max_connections_per_ip)");
        }
        *n += 1;
        Ok(Admitted {
            _permit: permit,
            ip,
            admission: self.clone(),
        })
    }
}

/// Everything an accept loop needs.
pub struct ListenerContext {
    /// Destination state.
    pub router: Arc<Router>,
    /// STOMP connection settings.
    pub stomp: Arc<ConnectionConfig>,
    /// Native protocol connection settings.
    pub native: Arc<crate::native::NativeSettings>,
    /// Connection limits.
    pub admission: Arc<Admission>,
    /// Fired on shutdown.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// Accepts connections on `listener` until shutdown.
pub async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    tls: Option<Arc<ReloadableAcceptor>>,
    ctx: Arc<ListenerContext>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = ctx.shutdown.cancelled() => return,
        };
        let (socket, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(10);
                x
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!(listener = kind.name(), error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let admitted = match ctx.admission.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                warn!(listener = kind.name(), %peer, reason = why, "connection refused");
                // Explaining costs a task for up to REFUSAL_TIME (and a TLS
                // handshake on wss): a flood past the limit must not turn
                // into unbounded tasks, so past MAX_REFUSALS it is a close.
                if let Ok(permit) = REFUSALS.try_acquire() {
                    let tls = tls.as_ref().map(|t| t.current());
                    let stomp = ctx.stomp.clone();
                    ctx.tracker.spawn(async move {
                        let _permit = permit;
                        refuse(socket, peer, kind, tls, why, stomp).await;
                    });
                }
                continue;
            }
        };
        let ctx2 = ctx.clone();
        // Each connection takes the acceptor current at accept time, so a
        // SIGHUP reload applies to the next client on.
        let tls = tls.as_ref().map(|t| t.current());
        ctx.tracker.spawn(async move {
            let _admitted = admitted;
            serve_socket(socket, peer, kind, tls, ctx2).await;
        });
    }
}

async fn serve_socket(
    socket: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    tls: Option<TlsAcceptor>,
    ctx: Arc<ListenerContext>,
) {
    let peer_text = peer.to_string();
    match (kind, tls) {
        (ListenerKind::Stomp, _) => {
            let (r, w) = socket.into_split();
            let (router, shutdown) = (ctx.router.clone(), ctx.shutdown.clone());
            stomp::serve(
                r,
                w,
                peer_text,
                kind,
                None,
                ctx.stomp.clone(),
                router,
                shutdown,
            )
            .await;
        }
        (ListenerKind::Native, _) => {
            let (r, w) = socket.into_split();
            let (router, shutdown) = (ctx.router.clone(), ctx.shutdown.clone());
            crate::native::serve(
                r,
                w,
                peer_text,
                kind,
                None,
                ctx.native.clone(),
                router,
                shutdown,
            )
            .await;
        }
        (ListenerKind::StompTls, Some(acceptor)) => {
            let timeout = ctx.stomp.connect_timeout;
            if let Some((stream, user)) =
                handshake(&acceptor, socket, timeout, kind, &peer_text).await
            {
                let (r, w) = tokio::io::split(stream);
                let (router, shutdown) = (ctx.router.clone(), ctx.shutdown.clone());
                stomp::serve(
                    r,
                    w,
                    peer_text,
                    kind,
                    user,
                    ctx.stomp.clone(),
                    router,
                    shutdown,
                )
                .await;
            }
        }
        (ListenerKind::NativeTls, Some(acceptor)) => {
            let timeout = ctx.native.connect_timeout;
            if let Some((stream, user)) =
                handshake(&acceptor, socket, timeout, kind, &peer_text).await
            {
                let (r, w) = tokio::io::split(stream);
                let (router, shutdown) = (ctx.router.clone(), ctx.shutdown.clone());
                crate::native::serve(
                    r,
                    w,
                    peer_text,
                    kind,
                    user,
                    ctx.native.clone(),
                    router,
                    shutdown,
                )
                .await;
            }
        }
        (ListenerKind::WebSocket, _) => {
            let (router, shutdown) = (ctx.router.clone(), ctx.shutdown.clone());
            let config = ctx.stomp.clone();
            crate::websocket::serve(socket, kind, peer_text, None, config, router, shutdown).await;
        }
        (ListenerKind::WebSocketTls, Some(acceptor)) => {
            let timeout = ctx.stomp.connect_timeout;
            if let Some((stream, user)) =
                handshake(&acceptor, socket, timeout, kind, &peer_text).await
            {
                let (router, shutdown) = (ctx.router.clone(), ctx.shutdown.clone());
                let config = ctx.stomp.clone();
                crate::websocket::serve(stream, kind, peer_text, user, config, router, shutdown)
                    .await;
            }
        }
        (ListenerKind::StompTls | ListenerKind::NativeTls | ListenerKind::WebSocketTls, None) => {}
    }
}

/// The TLS handshake of an accepted socket, bounded by `timeout`, and the
/// user its client certificate names (rustls has verified the chain against
/// `tls.client_ca`), if any. Failures are logged and yield `None`.
async fn handshake(
    acceptor: &TlsAcceptor,
    socket: TcpStream,
    timeout: Duration,
    kind: ListenerKind,
    peer: &str,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Option<Arc<str>>)> {
    match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => {
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| crate::tls::common_name(cert))
                .map(Arc::from);
            Some((stream, user))
        }
        Ok(Err(e)) => {
            info!(listener = kind.name(), %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            info!(listener = kind.name(), %peer, "TLS handshake timed out");
            None
        }
    }
}

/// How long telling a refused client why may take.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Refused connections told why at once, across all listeners.
const MAX_REFUSALS: usize = 64;
static REFUSALS: Semaphore = Semaphore::const_new(MAX_REFUSALS);

/// Tells a client refused by a connection limit why, in its listener's
/// protocol, then closes.
async fn refuse(
    socket: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    tls: Option<TlsAcceptor>,
    why: &'static str,
    stomp: Arc<ConnectionConfig>,
) {
    let peer = peer.to_string();
    let max_frame_size = stomp.limits.max_frame_size;
    match (kind, tls) {
        (ListenerKind::WebSocket, _) => {
            let name = kind.name();
            crate::websocket::refuse(socket, why, max_frame_size, REFUSAL_TIME, name, &peer).await
        }
        (ListenerKind::WebSocketTls, Some(acceptor)) => {
            let _ = tokio::time::timeout(REFUSAL_TIME, async {
                if let Some((stream, _)) =
                    handshake(&acceptor, socket, REFUSAL_TIME, kind, &peer).await
                {
                    let name = kind.name();
                    crate::websocket::refuse(
                        stream,
                        why,
                        max_frame_size,
                        REFUSAL_TIME,
                        name,
                        &peer,
                    )
                    .await;
                }
            })
            .await;
        }
        _ => refuse_stream(socket, why).await,
    }
}

/// Tells a refused STOMP client why, then closes.
async fn refuse_stream(mut socket: TcpStream, why: &'static str) {
    let mut buf = BytesMut::new();
    let frame = Frame::new(Command::Error).header("message", why).body(why);
    encode_frame(&frame, Version::V1_0, &mut buf);
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.write_all(&buf)).await;
    let _ = socket.shutdown().await;
}
