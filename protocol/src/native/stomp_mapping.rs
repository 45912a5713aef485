//! The mapping between STOMP headers and native message [`Properties`] plus
//! application headers, as specified in `protocol/NATIVE.md` section 9, so that
//! a message keeps its meaning whichever protocol sends or receives it.
//!
//! Header values follow STOMP: the first occurrence of a repeated header wins.
//! Frame-level STOMP headers (`content-length`, `receipt`, `transaction`,
//! `subscription`, `ack`) are not part of a message and are never mapped.

use super::transfer::{Message, Properties, MAX_PRIORITY};
use crate::headers::Headers;
use bytes::Bytes;
use std::collections::BTreeMap;
use thiserror::Error;

/// STOMP headers that become typed [`Properties`] fields.
pub const PROPERTY_HEADERS: [&str; 10] = [
    "destination",
    "message-id",
    "persistent",
    "priority",
    "expires",
    "timestamp",
    "correlation-id",
    "reply-to",
    "content-type",
    "redelivered",
];

/// STOMP headers that describe the frame, not the message.
pub const FRAME_HEADERS: [&str; 5] = [
    "content-length",
    "receipt",
    "transaction",
    "subscription",
    "ack",
];

/// A STOMP header whose value cannot become the typed native property.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("header '{name}' has value '{value}': expected {expected}")]
pub struct MappingError {
    /// The header's name.
    pub name: &'static str,
    /// Its value as received.
    pub value: String,
    /// What would have been valid.
    pub expected: &'static str,
}

/// Whether `name` is mapped to a property or belongs to the frame, and so is
/// never an application header.
pub fn is_reserved_header(name: &str) -> bool {
    PROPERTY_HEADERS.contains(&name) || FRAME_HEADERS.contains(&name)
}

/// Builds a native message from a STOMP frame's headers and body.
///
/// `persistent` and `redelivered` are true only for the value `true`
/// (STOMP's own spelling). Numbers must be decimal; a priority must be 0 to 9.
pub fn message_from_stomp(headers: &Headers, body: Bytes) -> Result<Message, MappingError> {
    let text = |name: &str| headers.get(name).map(str::to_string);
    let number = |name: &'static str| -> Result<Option<u64>, MappingError> {
        headers
            .get(name)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| MappingError {
                    name,
                    value: v.to_string(),
                    expected: "a non-negative decimal integer",
                })
            })
            .transpose()
    };
    let priority = match number("priority")? {
        None => None,
        Some(p) if p <= u64::from(MAX_PRIORITY) => u32::try_from(p).ok(),
        Some(_) => {
            return Err(MappingError {
                name: "priority",
                value: headers.get("priority").unwrap_or_default().to_string(),
                expected: "0 to 9",
            })
        }
    };
    let properties = Properties {
        message_id: text("message-id").unwrap_or_default(),
        destination: text("destination").unwrap_or_default(),
        persistent: headers.get("persistent") == Some("true"),
        priority,
        expires: number("expires")?.unwrap_or(0),
        timestamp: number("timestamp")?.unwrap_or(0),
        correlation_id: text("correlation-id"),
        reply_to: text("reply-to"),
        content_type: text("content-type"),
        redelivered: headers.get("redelivered") == Some("true"),
        delivery_count: 0,
    };
    let mut application_headers = BTreeMap::new();
    for (name, value) in headers.iter() {
        if !is_reserved_header(name) {
            application_headers
                .entry(name.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    Ok(Message {
        properties: Some(properties),
        application_headers,
        body,
    })
}

/// The STOMP headers for a native message: its properties under their STOMP
/// names (defaults omitted), then its application headers. Application headers
/// whose names are reserved ([`is_reserved_header`]) are left out, so they can
/// not masquerade as properties or frame headers.
pub fn stomp_headers_from(message: &Message) -> Headers {
    let mut headers = Headers::new();
    if let Some(p) = &message.properties {
        let mut push_nonempty = |name: &str, value: &str| {
            if !value.is_empty() {
                headers.push(name, value);
            }
        };
        push_nonempty("destination", &p.destination);
        push_nonempty("message-id", &p.message_id);
        if p.persistent {
            headers.push("persistent", "true");
        }
        if let Some(priority) = p.priority {
            headers.push("priority", &priority.to_string());
        }
        if p.expires != 0 {
            headers.push("expires", &p.expires.to_string());
        }
        if p.timestamp != 0 {
            headers.push("timestamp", &p.timestamp.to_string());
        }
        let optional = [
            ("correlation-id", &p.correlation_id),
            ("reply-to", &p.reply_to),
            ("content-type", &p.content_type),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                headers.push(name, value);
            }
        }
        if p.redelivered {
            headers.push("redelivered", "true");
        }
    }
    for (name, value) in &message.application_headers {
        if !is_reserved_header(name) {
            headers.push(name, value);
        }
    }
    headers
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn stomp_send_headers_become_properties() {
        let headers: Headers = [
            ("destination", "/queue/orders"),
            ("receipt", "r-1"),
            ("persistent", "true"),
            ("priority", "7"),
            ("expires", "1700000000000"),
            ("correlation-id", ""),
            ("content-type", "text/plain"),
            ("x-trace", "first"),
            ("x-trace", "second"),
            ("content-length", "5"),
        ]
        .into_iter()
        .collect();
        let m = message_from_stomp(&headers, Bytes::from_static(b"hello")).unwrap();
        let p = m.properties.as_ref().unwrap();
        assert_eq!(p.destination, "/queue/orders");
        assert!(p.persistent);
        assert_eq!(p.priority, Some(7));
        assert_eq!(p.expires, 1_700_000_000_000);
        assert_eq!(p.correlation_id.as_deref(), Some(""));
        assert_eq!(p.reply_to, None);
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));
        let app: Vec<(&str, &str)> = m
            .application_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(app, [("x-trace", "first")]);
        assert_eq!(&m.body[..], b"hello");
    }

    #[test]
    fn bad_numbers_name_the_header() {
        for (name, value) in [("priority", "10"), ("priority", "high"), ("expires", "-1")] {
            let headers: Headers = [(name, value)].into_iter().collect();
            let err = message_from_stomp(&headers, Bytes::new()).unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn native_message_becomes_stomp_headers() {
        let mut app = BTreeMap::new();
        app.insert("x-a".to_string(), "1".to_string());
        app.insert("receipt".to_string(), "sneaky".to_string());
        let m = Message {
            properties: Some(Properties {
                destination: "/topic/t".into(),
                priority: Some(0),
                reply_to: Some("/temp-queue/r".into()),
                redelivered: true,
                ..Properties::default()
            }),
            application_headers: app,
            body: Bytes::new(),
        };
        let headers = stomp_headers_from(&m);
        let list: Vec<(&str, &str)> = headers.iter().collect();
        assert_eq!(
            list,
            [
                ("destination", "/topic/t"),
                ("priority", "0"),
                ("reply-to", "/temp-queue/r"),
                ("redelivered", "true"),
                ("x-a", "1"),
            ]
        );
    }
}
