//! Checks that `protocol/native.proto` (documentation) and the hand-written prost
//! types in `protocol/src/native/` describe the same wire format.
//!
//! The .proto is parsed for its messages, fields and enums. For each message,
//! the Rust type must have the same field names in the same order (read from
//! prost's `Debug` output of a default value, where a oneof shows as one field
//! named after the group), and a sample with every field set must put exactly
//! the .proto's field numbers on the wire, each with the wire type its .proto
//! type implies. Each enum must have the same values under the same names.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use bytes::Bytes;
use ferromq_protocol::native::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

const PROTO: &str = include_str!("../native.proto");

#[derive(Debug)]
struct ProtoField {
    name: String,
    ty: String,
    repeated: bool,
    tag: u32,
    oneof: Option<String>,
}

#[derive(Debug, Default)]
struct ProtoFile {
    messages: BTreeMap<String, Vec<ProtoField>>,
    enums: BTreeMap<String, Vec<(String, i32)>>,
}

/// Parses the subset of proto3 that native.proto is written in (see its header).
fn parse_proto(text: &str) -> ProtoFile {
    enum Scope {
        Top,
        Message(String),
        Oneof(String, String),
        Enum(String),
    }
    let mut file = ProtoFile::default();
    let mut scope = Scope::Top;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = format!("native.proto line {}: {raw}", n + 1);
        scope = match (scope, words.as_slice()) {
            (Scope::Top, ["syntax", ..] | ["package", ..]) => Scope::Top,
            (Scope::Top, ["message", name, "{"]) => {
                assert!(
                    file.messages.insert(name.to_string(), vec![]).is_none(),
                    "{at}"
                );
                Scope::Message(name.to_string())
            }
            (Scope::Top, ["enum", name, "{"]) => {
                assert!(
                    file.enums.insert(name.to_string(), vec![]).is_none(),
                    "{at}"
                );
                Scope::Enum(name.to_string())
            }
            (Scope::Message(m), ["oneof", group, "{"]) => Scope::Oneof(m, group.to_string()),
            (Scope::Message(_) | Scope::Enum(_), ["}"]) => Scope::Top,
            (Scope::Oneof(m, _), ["}"]) => Scope::Message(m),
            (Scope::Enum(e), [name, "=", value]) => {
                let value = value.trim_end_matches(';').parse().expect(&at);
                file.enums
                    .get_mut(&e)
                    .unwrap()
                    .push((name.to_string(), value));
                Scope::Enum(e)
            }
            (Scope::Message(m), _) => {
                let field = parse_field(line, None, &at);
                file.messages.get_mut(&m).unwrap().push(field);
                Scope::Message(m)
            }
            (Scope::Oneof(m, g), _) => {
                let field = parse_field(line, Some(g.clone()), &at);
                file.messages.get_mut(&m).unwrap().push(field);
                Scope::Oneof(m, g)
            }
            (_, _) => panic!("unexpected {at}"),
        };
    }
    file
}

fn parse_field(line: &str, oneof: Option<String>, at: &str) -> ProtoField {
    let line = line.strip_suffix(';').expect(at);
    let (decl, tag) = line.split_once(" = ").expect(at);
    let tag = tag.trim().parse().expect(at);
    let (ty_part, name) = decl.rsplit_once(' ').expect(at);
    let ty_part = ty_part.trim();
    let (repeated, ty) = match ty_part.split_once(' ') {
        Some(("repeated", ty)) => (true, ty.to_string()),
        Some(("optional", ty)) => (false, ty.to_string()),
        _ if ty_part.starts_with("map<") => (true, ty_part.to_string()),
        None => (false, ty_part.to_string()),
        Some(_) => panic!("unexpected label in {at}"),
    };
    ProtoField {
        name: name.to_string(),
        ty,
        repeated,
        tag,
        oneof,
    }
}

/// The wire type a field of this .proto type is written with (no packed fields here).
fn wire_type(field: &ProtoField, enums: &BTreeMap<String, Vec<(String, i32)>>) -> u64 {
    match field.ty.as_str() {
        "uint32" | "uint64" | "int32" | "int64" | "bool" => 0,
        ty if enums.contains_key(ty) => 0,
        _ => 2, // string, bytes, messages, maps
    }
}

fn read_varint(buf: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (byte, rest) = buf.split_first().expect("truncated varint");
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint too long")
}

/// The (field number, wire type) pairs at the top level of an encoded message.
fn wire_fields(mut buf: &[u8]) -> BTreeSet<(u32, u64)> {
    let mut fields = BTreeSet::new();
    while !buf.is_empty() {
        let key = read_varint(&mut buf);
        let (tag, wt) = (u32::try_from(key >> 3).unwrap(), key & 7);
        match wt {
            0 => {
                read_varint(&mut buf);
            }
            2 => {
                let len = usize::try_from(read_varint(&mut buf)).unwrap();
                buf = &buf[len..];
            }
            other => panic!("unexpected wire type {other}"),
        }
        fields.insert((tag, wt));
    }
    fields
}

/// Top-level field names in prost's Debug output of a value (`Name { a: …, b: … }`).
fn debug_field_names(debug: &str) -> Vec<String> {
    let Some(inner) = debug.split_once(" { ").map(|(_, rest)| rest) else {
        return vec![]; // `Name` alone: no fields
    };
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    let mut at_field_start = true;
    let mut in_string = false;
    let mut escaped = false;
    for ch in inner.chars() {
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => in_string = true,
            '{' | '(' | '[' => depth += 1,
            '}' | ')' | ']' if depth > 0 => depth -= 1,
            ',' if depth == 0 => at_field_start = true,
            ':' if depth == 0 && at_field_start => {
                names.push(current.trim().to_string());
                current.clear();
                at_field_start = false;
            }
            _ if at_field_start => current.push(ch),
            _ => {}
        }
    }
    names
}

struct RustMessage {
    default_debug: String,
    /// Encodings of values that, together, set every field (each oneof variant).
    samples: Vec<Vec<u8>>,
}

fn rust<M: prost::Message + Default + Debug>(samples: Vec<M>) -> RustMessage {
    RustMessage {
        default_debug: format!("{:?}", M::default()),
        samples: samples.iter().map(|m| m.encode_to_vec()).collect(),
    }
}

fn error() -> Option<ErrorInfo> {
    Some(ErrorInfo::new(ErrorCondition::NotFound, "x"))
}

fn full_properties() -> Properties {
    Properties {
        message_id: "m".into(),
        destination: "/queue/a".into(),
        persistent: true,
        priority: Some(9),
        expires: 1,
        timestamp: 2,
        correlation_id: Some("c".into()),
        reply_to: Some("r".into()),
        content_type: Some("t".into()),
        redelivered: true,
        delivery_count: 3,
    }
}

fn full_message() -> Message {
    Message {
        properties: Some(full_properties()),
        application_headers: [("k".to_string(), "v".to_string())].into(),
        body: Bytes::from_static(b"body"),
    }
}

fn every_performative() -> Vec<Performative> {
    vec![
        Performative::Open(Open {
            container_id: "c".into(),
            ..Open::default()
        }),
        Performative::Begin(Begin::default()),
        Performative::End(End::default()),
        Performative::Attach(Attach::default()),
        Performative::Detach(Detach::default()),
        Performative::Flow(Flow::default()),
        Performative::Transfer(Transfer::default()),
        Performative::Disposition(Disposition::default()),
        Performative::Close(Close::default()),
        Performative::Declare(Declare::default()),
        Performative::Discharge(Discharge::default()),
        Performative::Heartbeat(Heartbeat {}),
    ]
}

/// Every message type of native.proto, by its .proto name.
fn rust_messages() -> BTreeMap<&'static str, RustMessage> {
    let state = |s: DeliveryState| Disposition {
        role: Role::Receiver.into(),
        first: 1,
        last: Some(2),
        settled: true,
        txn_id: Some("t".into()),
        state: Some(s),
    };
    BTreeMap::from([
        (
            "Frame",
            rust(
                every_performative()
                    .into_iter()
                    .map(|p| Frame::new(5, p))
                    .collect(),
            ),
        ),
        (
            "Open",
            rust(vec![Open {
                container_id: "c".into(),
                max_frame_size: 512,
                idle_timeout_ms: 1,
                credentials: Some(PlainCredentials::default()),
                offered_capabilities: vec!["o".into()],
                desired_capabilities: vec!["d".into()],
                hostname: "h".into(),
            }]),
        ),
        (
            "PlainCredentials",
            rust(vec![PlainCredentials {
                username: "u".into(),
                password: "p".into(),
            }]),
        ),
        (
            "Begin",
            rust(vec![Begin {
                remote_channel: Some(1),
                handle_max: 2,
            }]),
        ),
        ("End", rust(vec![End { error: error() }])),
        (
            "Attach",
            rust(vec![Attach {
                name: "n".into(),
                handle: 1,
                role: Role::Receiver.into(),
                address: "/queue/a".into(),
                durable_subscription: Some("d".into()),
                selector: Some("s".into()),
                settle_mode: SettleMode::Mixed.into(),
                initial_delivery_count: 1,
                max_message_size: 1,
            }]),
        ),
        (
            "Detach",
            rust(vec![Detach {
                handle: 1,
                closed: true,
                error: error(),
            }]),
        ),
        (
            "Flow",
            rust(vec![Flow {
                handle: 1,
                link_credit: 1,
                delivery_count: 1,
                drain: true,
                echo: true,
                available: 1,
            }]),
        ),
        (
            "Transfer",
            rust(vec![Transfer {
                handle: 1,
                delivery_id: 1,
                delivery_tag: Bytes::from_static(b"t"),
                settled: true,
                more: true,
                message: Some(full_message()),
                txn_id: Some("t".into()),
            }]),
        ),
        ("Message", rust(vec![full_message()])),
        ("Properties", rust(vec![full_properties()])),
        (
            "Disposition",
            rust(vec![
                state(DeliveryState::Accepted(Accepted {})),
                state(DeliveryState::Rejected(Rejected::default())),
                state(DeliveryState::Released(Released {})),
                state(DeliveryState::Modified(Modified::default())),
            ]),
        ),
        ("Accepted", rust(vec![Accepted {}])),
        ("Rejected", rust(vec![Rejected { error: error() }])),
        ("Released", rust(vec![Released {}])),
        (
            "Modified",
            rust(vec![Modified {
                delivery_failed: true,
                undeliverable_here: true,
            }]),
        ),
        ("Close", rust(vec![Close { error: error() }])),
        (
            "Declare",
            rust(vec![Declare {
                txn_id: "t".into(),
                error: error(),
            }]),
        ),
        (
            "Discharge",
            rust(vec![Discharge {
                txn_id: "t".into(),
                fail: true,
                error: error(),
            }]),
        ),
        ("Heartbeat", rust(vec![Heartbeat {}])),
        (
            "ErrorInfo",
            rust(vec![ErrorInfo::new(ErrorCondition::IllegalState, "d")]),
        ),
    ])
}

#[test]
fn every_proto_message_matches_its_rust_type() {
    let proto = parse_proto(PROTO);
    let rust = rust_messages();
    let proto_names: Vec<&str> = proto.messages.keys().map(String::as_str).collect();
    let rust_names: Vec<&str> = rust.keys().copied().collect();
    assert_eq!(proto_names, rust_names, "message sets differ");

    for (name, fields) in &proto.messages {
        let r = &rust[name.as_str()];
        // Names, in declaration order; a oneof group counts once, by its name.
        let mut expected_names: Vec<String> = Vec::new();
        for f in fields {
            let entry = f.oneof.clone().unwrap_or_else(|| f.name.clone());
            if expected_names.last() != Some(&entry) {
                expected_names.push(entry);
            }
        }
        assert_eq!(
            debug_field_names(&r.default_debug),
            expected_names,
            "field names of {name}"
        );
        // Numbers and wire types.
        let expected: BTreeSet<(u32, u64)> = fields
            .iter()
            .map(|f| (f.tag, wire_type(f, &proto.enums)))
            .collect();
        let seen: BTreeSet<(u32, u64)> = r.samples.iter().flat_map(|s| wire_fields(s)).collect();
        assert_eq!(seen, expected, "field numbers / wire types of {name}");
        let repeated: Vec<&str> = fields
            .iter()
            .filter(|f| f.repeated)
            .map(|f| f.name.as_str())
            .collect();
        for field in repeated {
            assert!(
                r.default_debug.contains(&format!("{field}: ["))
                    || r.default_debug.contains(&format!("{field}: {{")),
                "{name}.{field} is repeated or a map in the .proto but not in Rust: {}",
                r.default_debug
            );
        }
    }
}

fn rust_enum<E: TryFrom<i32> + Debug>() -> Vec<(String, i32)> {
    (-8..256)
        .filter_map(|v| E::try_from(v).ok().map(|e| (format!("{e:?}"), v)))
        .collect()
}

/// `ERROR_CONDITION_NOT_FOUND` in enum `ErrorCondition` → `NotFound`.
fn rust_variant_name(enum_name: &str, value_name: &str) -> String {
    let mut prefix = String::new();
    for (i, ch) in enum_name.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(ch.to_ascii_uppercase());
    }
    prefix.push('_');
    let bare = value_name
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{value_name} lacks the prefix {prefix}"));
    bare.split('_')
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}

#[test]
fn every_proto_enum_matches_its_rust_type() {
    let proto = parse_proto(PROTO);
    let rust: BTreeMap<&str, Vec<(String, i32)>> = BTreeMap::from([
        ("Role", rust_enum::<Role>()),
        ("SettleMode", rust_enum::<SettleMode>()),
        ("ErrorCondition", rust_enum::<ErrorCondition>()),
    ]);
    let proto_names: Vec<&str> = proto.enums.keys().map(String::as_str).collect();
    assert_eq!(proto_names, rust.keys().copied().collect::<Vec<_>>());
    for (name, values) in &proto.enums {
        let expected: Vec<(String, i32)> = values
            .iter()
            .map(|(v, n)| (rust_variant_name(name, v), *n))
            .collect();
        assert_eq!(rust[name.as_str()], expected, "enum {name}");
    }
}

#[test]
fn the_checker_notices_a_disagreement() {
    // A .proto with a renumbered field and a renamed one must not pass.
    let altered = PROTO
        .replace("uint32 link_credit = 2;", "uint32 link_credit = 12;")
        .replace("bool drain = 4;", "bool drain_all = 4;");
    let proto = parse_proto(&altered);
    let flow = &proto.messages["Flow"];
    let r = &rust_messages()["Flow"];
    let tags: BTreeSet<u32> = flow.iter().map(|f| f.tag).collect();
    let seen: BTreeSet<u32> = r
        .samples
        .iter()
        .flat_map(|s| wire_fields(s))
        .map(|(t, _)| t)
        .collect();
    assert_ne!(tags, seen);
    let names: Vec<String> = flow.iter().map(|f| f.name.clone()).collect();
    assert_ne!(names, debug_field_names(&r.default_debug));
    assert_eq!(
        debug_field_names("X { a: \"q, b: z\", c: Some(Y { d: 1 }), e: [] }"),
        ["a", "c", "e"]
    );
}
