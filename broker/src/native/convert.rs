//! Router messages to native [`native::Message`]s and back, following the
//! STOMP ↔ native mapping of `protocol/NATIVE.md` section 9: the router keeps
//! `correlation-id`, `reply-to` and `content-type` among a message's headers
//! under their STOMP names, so a message reads the same whichever protocol
//! sent it and whichever receives it.

use super::Failure;
use crate::router::{
    now_ms, Address, ConnectionId, Delivery, Destination, Message, PageError, Router,
};
use bytes::Bytes;
use ferromq_protocol::native::stomp_mapping::is_reserved_header;
use ferromq_protocol::native::{self, ErrorCondition, Properties};
use ferromq_protocol::Headers;
use std::collections::BTreeMap;

/// Headers stored with a message that are native properties, not
/// application headers.
const PROPERTY_HEADERS: [&str; 3] = ["correlation-id", "reply-to", "content-type"];

/// The native message a consumer receives for `delivery`.
pub fn to_native(delivery: &Delivery, router: &Router) -> Result<native::Message, PageError> {
    let m = &delivery.message;
    let c = &delivery.consumer;
    let dest = &c.destination.address;
    // A temporary destination shows its owner the name it used, as STOMP does.
    let shown = match (&dest.owner_name, dest.temp_owner) {
        (Some(own), Some(owner)) if owner == c.connection && *m.destination == *dest.name => {
            own.to_string()
        }
        _ => m.destination.to_string(),
    };
    let mut application_headers = BTreeMap::new();
    for (name, value) in m.headers.iter() {
        if !is_reserved_header(name) {
            application_headers
                .entry(name.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    let text = |name: &str| m.headers.get(name).map(str::to_string);
    Ok(native::Message {
        properties: Some(Properties {
            message_id: router.message_id(m.seq),
            destination: shown,
            persistent: m.persistent,
            priority: Some(u32::from(m.priority)),
            expires: m.expires,
            timestamp: m.timestamp,
            correlation_id: text("correlation-id"),
            reply_to: text("reply-to"),
            content_type: text("content-type"),
            redelivered: delivery.redeliveries > 0,
            delivery_count: delivery.redeliveries,
        }),
        application_headers,
        body: m.body.get()?,
    })
}

/// The router message for a producer's transfer to `destination`.
pub fn from_native(
    message: native::Message,
    destination: &Destination,
    conn: ConnectionId,
    router: &Router,
) -> Result<Message, Failure> {
    let properties = message.properties.unwrap_or_default();
    let mut headers = Headers::new();
    if let Some(id) = &properties.correlation_id {
        headers.push("correlation-id", id);
    }
    if let Some(reply_to) = &properties.reply_to {
        // A private temp name means nothing to the receiver: give it the form
        // other connections can send to.
        if reply_to.starts_with("/temp-queue/") || reply_to.starts_with("/temp-topic/") {
            let address = Address::parse(reply_to, conn)
                .map_err(|e| Failure::new(ErrorCondition::NotAllowed, e.to_string()))?;
            headers.push("reply-to", &address.name);
        } else {
            headers.push("reply-to", reply_to);
        }
    }
    if let Some(content_type) = &properties.content_type {
        headers.push("content-type", content_type);
    }
    for (name, value) in &message.application_headers {
        if !is_reserved_header(name) && !PROPERTY_HEADERS.contains(&name.as_str()) {
            headers.push(name, value);
        }
    }
    // Checked by the codec (validate): at most 9.
    let priority = u8::try_from(properties.priority().min(9)).unwrap_or(4);
    Ok(Message {
        seq: router.next_seq(),
        destination: destination.address.name.clone(),
        persistent: properties.persistent,
        priority,
        expires: properties.expires,
        timestamp: now_ms(),
        headers,
        body: message.body.into(),
    })
}

/// The delivery tag the broker gives a delivery: the message's sequence number.
pub fn delivery_tag(seq: u64) -> Bytes {
    Bytes::copy_from_slice(&seq.to_be_bytes())
}
