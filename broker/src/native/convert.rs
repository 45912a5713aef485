//! Router messages to native [`native::Message`]s and back, following the
//! STOMP ↔ native mapping of `protocol/NATIVE.md` section 9: the router keeps
//! `correlation-id`, `reply-to` and `content-type` among a message's headers
//! under their STOMP names, so a message reads the same whichever protocol
//! sent it and whichever receives it.

use super::Failure;
use crate::router::{Address, ConnectionId, Delivery, Destination, Message, Router};
use bytes::Bytes;
use ferromq_protocol::native::lean::PropertiesRef;
use ferromq_protocol::native::stomp_mapping::is_reserved_header;
use ferromq_protocol::native::{self, ErrorCondition, Properties};
use ferromq_protocol::Headers;
use std::collections::BTreeMap;

/// Headers stored with a message that are native properties, not
/// application headers.
const PROPERTY_HEADERS: [&str; 3] = ["correlation-id", "reply-to", "content-type"];

/// The destination name a consumer is shown for `delivery`: a temporary
/// destination shows its owner the name it used, as STOMP does.
pub fn shown_destination(delivery: &Delivery) -> &str {
    let m = &delivery.message;
    let c = &delivery.consumer;
    let dest = &c.destination.address;
    match (&dest.owner_name, dest.temp_owner) {
        (Some(own), Some(owner)) if owner == c.connection && *m.destination == *dest.name => own,
        _ => &m.destination,
    }
}

/// The message's headers that are application headers on the native side,
/// each name once (the first occurrence, as STOMP reads repeated headers).
pub fn application_headers(m: &Message) -> impl Iterator<Item = (&str, &str)> + '_ {
    m.headers
        .iter()
        .enumerate()
        .filter_map(move |(i, (name, value))| {
            let repeated = m.headers.iter().take(i).any(|(earlier, _)| earlier == name);
            (!is_reserved_header(name) && !repeated).then_some((name, value))
        })
}

/// The properties a consumer receives for `delivery`, borrowed;
/// `message_id` is the router's id of the message (see [`Router::message_id`]).
pub fn properties_ref<'a>(delivery: &'a Delivery, message_id: &'a str) -> PropertiesRef<'a> {
    let m = &delivery.message;
    let mut p = PropertiesRef {
        message_id,
        destination: shown_destination(delivery),
        persistent: m.persistent,
        priority: Some(u32::from(m.priority)),
        expires: m.expires,
        timestamp: m.timestamp,
        correlation_id: None,
        reply_to: None,
        content_type: None,
        redelivered: delivery.redeliveries > 0,
        delivery_count: delivery.redeliveries,
    };
    // One pass; the first of a repeated header counts, as `Headers::get`.
    for (name, value) in m.headers.iter() {
        let slot = match name {
            "correlation-id" => &mut p.correlation_id,
            "reply-to" => &mut p.reply_to,
            "content-type" => &mut p.content_type,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    p
}

/// The native message a consumer receives for `delivery`, owned, with its
/// `body` (read by the caller: it may be paged out). The writer's path for
/// messages that must be split; whole ones are encoded from
/// [`properties_ref`] and [`application_headers`] without copying.
pub fn to_native(delivery: &Delivery, router: &Router, body: Bytes) -> native::Message {
    let m = &delivery.message;
    let id = router.message_id(m.seq);
    let p = properties_ref(delivery, &id);
    let owned = |s: Option<&str>| s.map(str::to_string);
    let application_headers: BTreeMap<String, String> = application_headers(m)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    native::Message {
        properties: Some(Properties {
            message_id: id.clone(),
            destination: p.destination.to_string(),
            persistent: p.persistent,
            priority: p.priority,
            expires: p.expires,
            timestamp: p.timestamp,
            correlation_id: owned(p.correlation_id),
            reply_to: owned(p.reply_to),
            content_type: owned(p.content_type),
            redelivered: p.redelivered,
            delivery_count: p.delivery_count,
        }),
        application_headers,
        body,
    }
}

/// A native message's properties, borrowed.
pub fn borrow_properties(p: &Properties) -> PropertiesRef<'_> {
    PropertiesRef {
        message_id: &p.message_id,
        destination: &p.destination,
        persistent: p.persistent,
        priority: p.priority,
        expires: p.expires,
        timestamp: p.timestamp,
        correlation_id: p.correlation_id.as_deref(),
        reply_to: p.reply_to.as_deref(),
        content_type: p.content_type.as_deref(),
        redelivered: p.redelivered,
        delivery_count: p.delivery_count,
    }
}

/// The router message for a producer's transfer to `destination`, from its
/// properties (absent: the defaults), application headers (each name once,
/// in ascending order, as a decoded map gives them) and body, published at
/// `timestamp` (ms since the epoch).
pub fn from_parts<'a>(
    properties: Option<PropertiesRef<'_>>,
    application_headers: impl Iterator<Item = (&'a str, &'a str)>,
    body: Bytes,
    destination: &Destination,
    conn: ConnectionId,
    router: &Router,
    timestamp: u64,
) -> Result<Message, Failure> {
    let properties = properties.unwrap_or_default();
    // Room for a few headers at once; more grow the lists as usual.
    let mut headers = Headers::with_capacity(4, 128);
    if let Some(id) = properties.correlation_id {
        headers.push("correlation-id", id);
    }
    if let Some(reply_to) = properties.reply_to {
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
    if let Some(content_type) = properties.content_type {
        headers.push("content-type", content_type);
    }
    for (name, value) in application_headers {
        if !is_reserved_header(name) && !PROPERTY_HEADERS.contains(&name) {
            headers.push(name, value);
        }
    }
    // Checked by the codec (validate): at most 9; absent means the default.
    let priority = properties.priority.unwrap_or(native::DEFAULT_PRIORITY);
    let priority = u8::try_from(priority.min(9)).unwrap_or(4);
    Ok(Message {
        seq: router.next_seq(),
        destination: destination.address.name.clone(),
        persistent: properties.persistent,
        priority,
        expires: properties.expires,
        timestamp,
        headers,
        body: body.into(),
    })
}

/// The delivery tag the broker gives a delivery: the message's sequence number.
pub fn delivery_tag(seq: u64) -> Bytes {
    Bytes::copy_from_slice(&seq.to_be_bytes())
}
