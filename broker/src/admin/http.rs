//! Just enough HTTP/1.1 for the admin endpoint: reads one request head
//! (bounded in size and time), writes one response, closes. No keep-alive,
//! no request bodies: every endpoint is a GET.

use base64::Engine;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head accepted; scrapers send a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// The parts of a request the endpoint looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// `Authorization: Basic` user and password, if sent and decodable.
    pub basic_auth: Option<(String, String)>,
}

/// Why no request could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The peer closed or the socket failed.
    Closed,
    /// The head did not arrive within the time limit.
    Timeout,
    /// Larger than [`MAX_HEAD`].
    TooLarge,
    /// Not an HTTP/1.x request line.
    Malformed,
}

/// Reads one request head within `timeout`.
pub async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            if let Some(end) = find_head_end(&buf) {
                return parse_head(&buf[..end]);
            }
            if buf.len() >= MAX_HEAD {
                return Err(ReadError::TooLarge);
            }
            let mut chunk = [0u8; 1024];
            let want = chunk.len().min(MAX_HEAD - buf.len());
            match reader.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(ReadError::Timeout))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| {
        // Tolerate bare-LF clients (curl never does this; netcat users do).
        buf.windows(2).position(|w| w == b"\n\n")
    })
}

fn parse_head(head: &[u8]) -> Result<Request, ReadError> {
    let text = std::str::from_utf8(head).map_err(|_| ReadError::Malformed)?;
    let mut lines = text.lines();
    let request_line = lines.next().ok_or(ReadError::Malformed)?;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed);
    }
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let basic_auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| decode_basic(value.trim()));
    Ok(Request {
        method: method.to_owned(),
        path,
        basic_auth,
    })
}

/// `Basic dXNlcjpwYXNz` → `("user", "pass")`.
fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A response ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra header lines (`Name: value`).
    pub headers: Vec<String>,
    /// Body.
    pub body: String,
}

impl Response {
    /// A response with `status`, `content_type` and `body`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// Writes the response (the body only when `with_body`, i.e. not for
    /// HEAD) and shuts the connection down.
    pub async fn write<W: AsyncWrite + Unpin>(&self, writer: &mut W, with_body: bool) {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for h in &self.headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        if with_body {
            out.push_str(&self.body);
        }
        let write = async {
            writer.write_all(out.as_bytes()).await?;
            writer.shutdown().await
        };
        // A scraper that stops reading must not hold the task forever.
        let _ = tokio::time::timeout(Duration::from_secs(10), write).await;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_line_path_and_basic_auth() {
        let head =
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nauthorization: Basic YWRtaW46cHc6eA==\r\n";
        let r = parse_head(head).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        // The password may itself contain ':'.
        assert_eq!(r.basic_auth, Some(("admin".into(), "pw:x".into())));
    }

    #[test]
    fn rejects_non_http() {
        assert_eq!(parse_head(b"HELLO"), Err(ReadError::Malformed));
        assert_eq!(parse_head(b"GET / SMTP/1.0"), Err(ReadError::Malformed));
        assert_eq!(decode_basic("Bearer abc"), None);
        assert_eq!(decode_basic("Basic !!!"), None);
    }

    #[tokio::test]
    async fn head_size_is_bounded() {
        let big = vec![b'a'; MAX_HEAD + 10];
        let mut reader = &big[..];
        let r = read_request(&mut reader, Duration::from_secs(1)).await;
        assert_eq!(r, Err(ReadError::TooLarge));
    }
}
