//! Tests of the selector language through its public API: truth tables,
//! operators, precedence, type conversion, error positions, limits, and a
//! seeded fuzz run showing that no input panics. They live inside the crate
//! so that `cargo test -p ferromq-broker selector` selects all of them.

mod errors;
mod limits;
mod semantics;

use super::{PropertySource, Selector, SelectorError, Value};

/// A message's properties and headers, as the router would expose them.
pub(super) struct Props(pub(super) Vec<(&'static str, Value<'static>)>);

impl PropertySource for Props {
    fn property(&self, name: &str) -> Option<Value<'_>> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// STOMP-style message: every property is a string.
pub(super) fn stomp(pairs: &[(&'static str, &'static str)]) -> Props {
    Props(pairs.iter().map(|(k, v)| (*k, Value::Str(v))).collect())
}

pub(super) fn typed(pairs: &[(&'static str, Value<'static>)]) -> Props {
    Props(pairs.to_vec())
}

pub(super) fn parse(text: &str) -> Selector {
    match Selector::parse(text) {
        Ok(s) => s,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

pub(super) fn matches(text: &str, props: &Props) -> bool {
    parse(text).matches(props)
}

/// The three-valued result of `text`: TRUE if it matches, FALSE if its
/// negation matches, UNKNOWN (None) if neither does.
pub(super) fn truth(text: &str, props: &Props) -> Option<bool> {
    let positive = matches(text, props);
    let negative = matches(&format!("NOT ({text})"), props);
    assert!(!(positive && negative), "{text} is both TRUE and FALSE");
    match (positive, negative) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

pub(super) const T: Option<bool> = Some(true);
pub(super) const F: Option<bool> = Some(false);
pub(super) const U: Option<bool> = None;

/// `t` is TRUE, `f` FALSE and `u` (absent) UNKNOWN.
pub(super) fn tfu() -> Props {
    typed(&[("t", Value::Bool(true)), ("f", Value::Bool(false))])
}

pub(super) fn name(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "t",
        Some(false) => "f",
        None => "u",
    }
}

pub(super) fn error_of(text: &str) -> SelectorError {
    match Selector::parse(text) {
        Ok(_) => panic!("{text:?} should be rejected"),
        Err(e) => e,
    }
}

/// Errors go back to the client in a STOMP header: one line, bounded.
pub(super) fn assert_one_short_line(e: &SelectorError) {
    let text = e.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.chars().count() <= 300, "{} chars: {text}", text.len());
}
