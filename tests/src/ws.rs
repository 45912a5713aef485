//! A STOMP client over WebSocket (tokio-tungstenite) for the end-to-end
//! tests of the broker's WebSocket listeners. It checks on the way that
//! every message the broker sends holds whole frames, as stomp.js needs.

use crate::WAIT;
use bytes::BytesMut;
use ferromq_protocol::stomp::{encode_frame, Command, Decoder, Frame, Limits, Version};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Which kind of data message carried something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text message.
    Text,
    /// A binary message.
    Binary,
}

/// A STOMP client over a WebSocket, checking on the way that every message
/// the broker sends holds whole frames (stomp.js needs that).
pub struct WsClient<S> {
    /// The WebSocket, for sending control or raw messages.
    pub ws: WebSocketStream<S>,
    decoder: Decoder,
    buf: BytesMut,
    version: Version,
    /// The `Sec-WebSocket-Protocol` the broker answered with.
    pub subprotocol: Option<String>,
    /// The kind of each data message received, in order.
    pub kinds: Vec<Kind>,
}

/// Upgrades `stream` to a WebSocket on `url`, offering `protocols`.
pub async fn upgrade<S>(stream: S, url: &str, protocols: &[&str]) -> Result<WsClient<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request()?;
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols.join(", ")).unwrap(),
        );
    }
    let (ws, response) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async_with_config(request, stream, None),
    )
    .await
    .expect("WebSocket handshake timed out")?;
    let subprotocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string());
    Ok(WsClient {
        ws,
        decoder: Decoder::new(Limits {
            max_frame_size: 64 << 20,
            ..Limits::default()
        }),
        buf: BytesMut::new(),
        version: Version::V1_0,
        subprotocol,
        kinds: Vec::new(),
    })
}

/// A plain `ws://` connection to `addr` offering `protocols`.
pub async fn ws_connect(
    addr: SocketAddr,
    protocols: &[&str],
) -> Result<WsClient<TcpStream>, WsError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    upgrade(tcp, &format!("ws://{addr}/ws"), protocols).await
}

/// A `ws://` connection offering stomp.js's subprotocols, with a STOMP 1.2
/// session (CONNECT sent, CONNECTED received).
pub async fn ws_session(addr: SocketAddr) -> WsClient<TcpStream> {
    let mut c = ws_connect(addr, &["v12.stomp", "v11.stomp", "v10.stomp"])
        .await
        .unwrap();
    let connected = c.connect().await;
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    c
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    /// Sets the version used for escaping in both directions.
    pub fn set_version(&mut self, v: Version) {
        self.version = v;
        self.decoder.set_version(v);
    }

    /// `frame` encoded for the session's version.
    pub fn encode(&self, frame: &Frame) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_frame(frame, self.version, &mut b);
        b.to_vec()
    }

    /// Sends one WebSocket message.
    pub async fn send_message(&mut self, message: Message) {
        tokio::time::timeout(WAIT, self.ws.send(message))
            .await
            .expect("WebSocket send timed out")
            .expect("WebSocket send failed");
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.send_message(Message::text(text)).await;
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.send_message(Message::binary(bytes)).await;
    }

    /// Sends one frame as one text message.
    pub async fn send(&mut self, frame: Frame) {
        let bytes = self.encode(&frame);
        self.send_text(std::str::from_utf8(&bytes).unwrap()).await;
    }

    /// Sends CONNECT (STOMP 1.2) and returns the answer.
    pub async fn connect(&mut self) -> Frame {
        self.send(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "/"),
        )
        .await;
        let reply = self.recv().await;
        if reply.command == Command::Connected {
            self.set_version(Version::V1_2);
        }
        reply
    }

    /// The next data message's payload, or `None` once the broker closed.
    /// Pings are answered by tungstenite; pongs are returned as empty.
    pub async fn next_message(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.ws.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            Ok(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) | Ok(None) => None,
            // The broker closed with our unread bytes in its buffer (RST),
            // or before our close reply went out.
            Ok(Some(Err(WsError::Io(e))))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                None
            }
            Ok(Some(Err(e))) => panic!("WebSocket read failed: {e}"),
            Err(_) => panic!("nothing from the broker within {WAIT:?}"),
        }
    }

    /// Adds a data message to the decode buffer, checking that the previous
    /// messages ended on a frame boundary.
    fn take(&mut self, payload: &[u8], kind: Kind) {
        assert!(
            self.buf.iter().all(|b| *b == b'\n' || *b == b'\r'),
            "a WebSocket message ended inside a frame: {:?} left over",
            String::from_utf8_lossy(&self.buf)
        );
        self.kinds.push(kind);
        self.buf.extend_from_slice(payload);
    }

    /// Receives the next frame, failing after [`WAIT`].
    pub async fn recv(&mut self) -> Frame {
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .expect("broker sent a malformed frame")
            {
                return f;
            }
            match self.next_message().await {
                Some(Message::Text(t)) => self.take(t.as_bytes(), Kind::Text),
                Some(Message::Binary(b)) => self.take(&b, Kind::Binary),
                Some(Message::Close(c)) => panic!("closed while waiting for a frame: {c:?}"),
                Some(_) => {}
                None => panic!("connection ended while waiting for a frame"),
            }
        }
    }

    /// Receives frames until the broker closes; returns them and whether a
    /// WebSocket close message came (rather than just the TCP close).
    pub async fn recv_until_closed(&mut self) -> (Vec<Frame>, bool) {
        let mut frames = Vec::new();
        loop {
            while let Some(f) = self.decoder.decode(&mut self.buf).expect("malformed frame") {
                frames.push(f);
            }
            match self.next_message().await {
                Some(Message::Text(t)) => self.take(t.as_bytes(), Kind::Text),
                Some(Message::Binary(b)) => self.take(&b, Kind::Binary),
                Some(Message::Close(_)) => {
                    // Finish the close handshake; the broker then drops TCP.
                    while self.next_message().await.is_some() {}
                    return (frames, true);
                }
                Some(_) => {}
                None => return (frames, false),
            }
        }
    }

    /// Expects one ERROR frame and then a WebSocket close; returns the ERROR.
    pub async fn expect_error(&mut self) -> Frame {
        let (frames, close_message) = self.recv_until_closed().await;
        let errors: Vec<&Frame> = frames
            .iter()
            .filter(|f| f.command == Command::Error)
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one ERROR, got {frames:?}"
        );
        assert!(close_message, "no WebSocket close message after the ERROR");
        errors[0].clone()
    }

    /// Subscribes and waits for the receipt.
    pub async fn subscribe(&mut self, id: &str, destination: &str, ack: &str) {
        let receipt = format!("sub-{id}");
        self.send(
            Frame::new(Command::Subscribe)
                .header("id", id)
                .header("destination", destination)
                .header("ack", ack)
                .header("receipt", &receipt),
        )
        .await;
        let r = self.recv().await;
        assert_eq!(r.command, Command::Receipt, "{r:?}");
        assert_eq!(r.get("receipt-id"), Some(receipt.as_str()));
    }

    /// Sends a message with a receipt and waits for it.
    pub async fn send_with_receipt(&mut self, frame: Frame, receipt: &str) {
        self.send(frame.header("receipt", receipt)).await;
        let r = self.recv().await;
        assert_eq!(r.command, Command::Receipt, "{r:?}");
        assert_eq!(r.get("receipt-id"), Some(receipt));
    }
}
