//! The live connection registry: which client connections are open, of
//! which protocol, from where, as whom, how many bytes and messages they
//! moved, and a way for an administrator to close one.
//!
//! A connection registers right after it gets its id and stays registered
//! until its [`Registration`] drops (when its task ends). The registry knows
//! no protocol: closing only raises a signal with a reason; each protocol's
//! connection loop notices it at its next read wait and ends the connection
//! its own way (STOMP ERROR frame, native Close), so unacknowledged messages
//! go back to their queues exactly as on any other disconnect.
//!
//! Cost on the data path: one relaxed atomic add per socket read or write
//! (the byte counters) and one per message a client sends or is sent (the
//! message counters, on a cache line only that connection's tasks write).

use crate::router::ConnectionId;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Every open client connection, by id.
#[derive(Default)]
pub struct Registry {
    /// Held only to insert, remove or copy out entries.
    open: Mutex<HashMap<ConnectionId, Arc<ConnectionInfo>>>,
}

/// What is known about one open connection.
pub struct ConnectionInfo {
    /// The router's connection id.
    pub id: ConnectionId,
    /// `stomp` (also over WebSocket) or `native`.
    pub protocol: &'static str,
    /// `ip:port` of the client.
    pub peer: String,
    /// When it was accepted, ms since the epoch.
    pub connected_at_ms: u64,
    user: OnceLock<Arc<str>>,
    /// Bytes read from the client.
    pub bytes_in: AtomicU64,
    /// Bytes written to the client.
    pub bytes_out: AtomicU64,
    /// Whole messages received from the client (STOMP SEND frames, native
    /// transfers once reassembled), counted as they reach the session,
    /// whatever the router then does with them.
    messages_in: AtomicU64,
    /// Messages encoded for the client (STOMP MESSAGE frames, native
    /// delivery transfers), counted by the writer task.
    messages_out: AtomicU64,
    closing: AtomicBool,
    close_reason: Mutex<String>,
    close: Notify,
}

impl ConnectionInfo {
    /// The authenticated user, once the client has logged in.
    pub fn user(&self) -> Option<&str> {
        self.user.get().map(|u| &**u)
    }

    /// Records the authenticated user (the first call wins).
    pub fn set_user(&self, user: &str) {
        if self.user.get().is_none() {
            let _ = self.user.set(user.into());
        }
    }

    /// Whether the user is already recorded (a cheap check for the
    /// connection loops, which record it once after login).
    pub fn has_user(&self) -> bool {
        self.user.get().is_some()
    }

    /// Counts one message received from the client.
    pub fn count_message_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one message encoded for the client.
    pub fn count_message_out(&self) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages received from the client so far.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed)
    }

    /// Messages sent to the client so far.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.load(Ordering::Relaxed)
    }

    /// Asks the connection to close, telling the client `reason`.
    pub fn request_close(&self, reason: &str) {
        *self.close_reason.lock().unwrap_or_else(|e| e.into_inner()) = reason.to_owned();
        self.closing.store(true, Ordering::Release);
        // notify_one stores a permit, so a loop not waiting right now sees
        // it at its next wait.
        self.close.notify_one();
    }

    /// Resolves with the reason once [`ConnectionInfo::request_close`] was
    /// called.
    pub async fn close_requested(&self) -> String {
        loop {
            if self.closing.load(Ordering::Acquire) {
                return self
                    .close_reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
            }
            self.close.notified().await;
        }
    }
}

/// Keeps a connection registered; unregisters it when dropped.
pub struct Registration {
    info: Arc<ConnectionInfo>,
    registry: Arc<Registry>,
}

impl Registration {
    /// The registered connection.
    pub fn info(&self) -> &Arc<ConnectionInfo> {
        &self.info
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.info.id);
    }
}

impl Registry {
    /// Registers connection `id` of `protocol` from `peer`.
    pub fn register(
        self: &Arc<Self>,
        id: ConnectionId,
        protocol: &'static str,
        peer: &str,
    ) -> Registration {
        let info = Arc::new(ConnectionInfo {
            id,
            protocol,
            peer: peer.to_owned(),
            connected_at_ms: crate::router::now_ms(),
            user: OnceLock::new(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close_reason: Mutex::new(String::new()),
            close: Notify::new(),
        });
        self.lock().insert(id, info.clone());
        Registration {
            info,
            registry: self.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Arc<ConnectionInfo>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every open connection, by id.
    pub fn list(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Connection `id`, if open.
    pub fn get(&self, id: ConnectionId) -> Option<Arc<ConnectionInfo>> {
        self.lock().get(&id).cloned()
    }

    /// Open connections per protocol, sorted by protocol name.
    pub fn count_by_protocol(&self) -> Vec<(&'static str, usize)> {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for c in self.lock().values() {
            *counts.entry(c.protocol).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }
}

/// A socket half that adds what passes through it to a connection's byte
/// counters.
pub struct Counted<T> {
    inner: T,
    info: Arc<ConnectionInfo>,
}

impl<T> Counted<T> {
    /// Counts `inner`'s traffic on `info`.
    pub fn new(inner: T, info: &Arc<ConnectionInfo>) -> Counted<T> {
        Counted {
            inner,
            info: info.clone(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.info.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.info.bytes_out.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            self.info.bytes_out.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn registration_lists_counts_and_unregisters_on_drop() {
        let registry = Arc::new(Registry::default());
        let a = registry.register(7, "stomp", "127.0.0.1:1");
        let b = registry.register(3, "native", "127.0.0.1:2");
        assert_eq!(
            registry.list().iter().map(|c| c.id).collect::<Vec<_>>(),
            [3, 7]
        );
        assert_eq!(registry.count_by_protocol(), [("native", 1), ("stomp", 1)]);
        let (client, server) = tokio::io::duplex(64);
        let (r, w) = tokio::io::split(server);
        let mut r = Counted::new(r, a.info());
        let mut w = Counted::new(w, a.info());
        let (mut cr, mut cw) = tokio::io::split(client);
        cw.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        r.read_exact(&mut buf).await.unwrap();
        w.write_all(b"abc").await.unwrap();
        let mut got = [0u8; 3];
        cr.read_exact(&mut got).await.unwrap();
        assert_eq!(a.info().bytes_in.load(Ordering::Relaxed), 5);
        assert_eq!(a.info().bytes_out.load(Ordering::Relaxed), 3);
        a.info().count_message_in();
        a.info().count_message_in();
        a.info().count_message_out();
        assert_eq!((a.info().messages_in(), a.info().messages_out()), (2, 1));
        a.info().set_user("alice");
        a.info().set_user("mallory");
        assert_eq!(a.info().user(), Some("alice"));
        drop(b);
        assert!(registry.get(3).is_none());
        assert!(registry.get(7).is_some());
    }

    #[tokio::test]
    async fn a_close_request_is_seen_even_when_made_before_the_wait() {
        let registry = Arc::new(Registry::default());
        let r = registry.register(1, "stomp", "p");
        r.info().request_close("maintenance");
        let reason = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            r.info().close_requested(),
        )
        .await
        .unwrap();
        assert_eq!(reason, "maintenance");
    }
}
