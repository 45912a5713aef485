//! STOMP over WebSocket, for stomp.js (`@stomp/stompjs`) in browsers and
//! Node: the WebSocket upgrade of an accepted (plain or TLS) connection, and
//! the byte stream over its messages that the STOMP connection runs on.
//!
//! There is no second STOMP implementation here: after the upgrade the
//! connection is handed to [`crate::stomp::serve`] like a TCP or TLS one,
//! so connection limits, authentication, ACLs, heart-beats, frame limits,
//! ERROR-then-close and the redelivery of unacknowledged messages on close
//! all apply unchanged. This module owns only what WebSocket adds: the HTTP
//! upgrade and subprotocol ([`handshake`]), message boundaries and control
//! messages ([`stream`]), and the size bound of an inbound message.

pub mod handshake;
pub mod stream;

use crate::router::Router;
use crate::stomp::{self, ConnectionConfig};
use bytes::BytesMut;
use ferromq_protocol::stomp::{encode_frame, Command, Frame, Version};
use handshake::Upgrade;
use std::sync::Arc;
use std::time::Duration;
use stream::MessageStream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Room above `stomp.max_frame_size` in one inbound message: a frame of
/// exactly the limit still fits with the EOLs that may follow it, so the
/// STOMP decoder (not the WebSocket layer) judges the frame.
const MESSAGE_HEADROOM: usize = 1024;

/// Read buffer tungstenite allocates up front per connection. Smaller than
/// its 128 KiB default: thousands of mostly idle browser connections are
/// the normal case, and a larger message simply takes more reads.
const READ_BUFFER: usize = 32 * 1024;

/// Largest inbound WebSocket message for a `max_frame_size` STOMP limit.
pub fn max_message_size(max_frame_size: usize) -> usize {
    max_frame_size.saturating_add(MESSAGE_HEADROOM)
}

fn protocol_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Performs the WebSocket upgrade of `stream` within `timeout`. Failures
/// (not HTTP, not an upgrade, a foreign subprotocol, too slow) are logged
/// and yield `None`; tungstenite has already answered the HTTP request.
pub async fn accept<S>(
    stream: S,
    max_frame_size: usize,
    timeout: Duration,
    listener: &'static str,
    peer: &str,
) -> Option<(MessageStream<S>, Upgrade)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max_message = max_message_size(max_frame_size);
    let mut upgrade = Upgrade::default();
    let callback = handshake::Negotiation(&mut upgrade);
    let accepted = tokio::time::timeout(
        timeout,
        tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            callback,
            Some(protocol_config(max_message)),
        ),
    )
    .await;
    match accepted {
        Ok(Ok(ws)) => Some((MessageStream::new(ws, max_frame_size), upgrade)),
        Ok(Err(e)) => {
            info!(listener, %peer, path = %upgrade.path, error = %e, "WebSocket handshake failed");
            None
        }
        Err(_) => {
            info!(listener, %peer, "WebSocket handshake timed out");
            None
        }
    }
}

/// Serves one STOMP-over-WebSocket connection: the upgrade (bounded by
/// `stomp.connect_timeout`), then the ordinary STOMP connection.
/// `certificate_user` is the verified TLS client certificate's user (wss).
pub async fn serve<S>(
    stream: S,
    kind: crate::server::ListenerKind,
    peer: String,
    certificate_user: Option<Arc<str>>,
    config: Arc<ConnectionConfig>,
    router: Arc<Router>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = kind.name();
    let max_frame_size = config.limits.max_frame_size;
    let timeout = config.connect_timeout;
    // A shutdown need not wait for an upgrade still under way.
    let accepted = tokio::select! {
        accepted = accept(stream, max_frame_size, timeout, listener, &peer) => accepted,
        _ = shutdown.cancelled() => None,
    };
    let Some((ws, upgrade)) = accepted else {
        return;
    };
    info!(
        listener,
        %peer,
        path = %upgrade.path,
        subprotocol = upgrade.subprotocol.unwrap_or("-"),
        "WebSocket upgraded"
    );
    let (reader, writer) = tokio::io::split(ws);
    stomp::serve(
        reader,
        writer,
        peer,
        kind,
        certificate_user,
        config,
        router,
        shutdown,
    )
    .await;
}

/// Tells a client refused by a connection limit why, in the only way
/// stomp.js can show it: upgrade, one ERROR frame, close. At most `limit`
/// is spent on it, since a refused connection holds no admission slot.
pub async fn refuse<S>(
    stream: S,
    why: &'static str,
    max_frame_size: usize,
    limit: Duration,
    listener: &'static str,
    peer: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(limit, async {
        let Some((mut ws, _)) = accept(stream, max_frame_size, limit, listener, peer).await else {
            return;
        };
        let mut buf = BytesMut::new();
        let frame = Frame::new(Command::Error).header("message", why).body(why);
        encode_frame(&frame, Version::V1_0, &mut buf);
        if ws.write_all(&buf).await.is_ok() && ws.flush().await.is_ok() {
            let _ = ws.shutdown().await;
        }
    })
    .await;
}
