//! JMS message selectors (the SUBSCRIBE `selector` header): the SQL-92
//! subset of JMS 1.1 §3.8.1, parsed once into a [`Selector`] and evaluated
//! per message against any [`PropertySource`] without allocating.
//!
//! This module knows nothing of frames or the router: the caller decides
//! which names (user properties, `JMSPriority`, `JMSType`, ...) resolve to
//! which values.
//!
//! - `lexer`: text → positioned tokens.
//! - `parser`: tokens → expression tree.
//! - `check`: static type checks the parser applies.
//! - `like`: compiled `LIKE` patterns.
//! - `eval`: three-valued evaluation.
//!
//! Beyond the JMS text, as ActiveMQ accepts them: hex (`0x1F`) and octal
//! (`017`) integers, an `L` suffix, `--` and `/* */` comments, `.` inside
//! identifiers and `"double-quoted"` identifiers for names such as
//! `"content-type"`. Comparisons follow ActiveMQ's STOMP mode
//! (`convert_string_expressions:`): string values meet numbers and booleans
//! by conversion.
//!
//! Evaluation rules worth knowing:
//! - NULL (an absent property) makes comparisons, arithmetic, `BETWEEN`,
//!   `IN` and `LIKE` UNKNOWN; `AND`/`OR`/`NOT` use the SQL truth tables.
//! - A string meeting a number is parsed as one (`price > 10` with
//!   `price:20`); `'true'`/`'false'` (any case) meet booleans.
//! - Values of unlike types that do not convert (`price > 10` with
//!   `price:abc`, `'red' < 'blue'`, a number in `IN`/`LIKE`) compare FALSE,
//!   as JMS 1.1 §3.8.1.2 and ActiveMQ have it, so `NOT (price > 10)` holds.
//! - Long arithmetic is integral (`7 / 2 = 3`); overflow and division of
//!   longs by zero are UNKNOWN.
//! - Checked at parse time and rejected: literals of unlike types
//!   (`'x' = 1`), string or boolean literals in `< <= > >=` and `BETWEEN`,
//!   `NULL` outside `IS [NOT] NULL`, a number or string where a condition
//!   belongs, chained comparisons (`a = 1 = 2`).

mod ast;
mod check;
mod eval;
mod lexer;
mod like;
mod parser;

use std::fmt;
use thiserror::Error;

/// Longest selector accepted, in bytes: a selector is parsed per
/// subscription and evaluated per message, so its size must be bounded.
pub const MAX_SELECTOR_BYTES: usize = 8 * 1024;

/// Deepest nesting accepted (parentheses, prefix operators, and the height
/// of the expression tree), so no selector can overflow the stack.
pub const MAX_DEPTH: usize = 100;

/// A parsed selector. Immutable, `Send + Sync`, cheap to evaluate.
#[derive(Debug, Clone)]
pub struct Selector {
    text: Box<str>,
    root: ast::Expr,
}

/// Why a selector was rejected.
#[derive(Error, Debug, Clone, PartialEq)]
#[error("invalid selector at position {position}: {message}")]
pub struct SelectorError {
    /// 1-based character column of the offending token.
    pub position: usize,
    /// What is wrong, naming the token where that helps.
    pub message: String,
}

/// Where a selector finds property and header values for one message.
pub trait PropertySource {
    /// The value of a property or JMS header field by name (`JMSPriority`,
    /// `JMSType`, `color`, ...), or None when absent (-> SQL NULL).
    fn property(&self, name: &str) -> Option<Value<'_>>;
}

/// A property value as the selector sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Every STOMP header arrives as this; it converts to a number or a
    /// boolean when compared with one.
    Str(&'a str),
    /// An integer (JMS `long`): priorities, timestamps, integer literals.
    Long(i64),
    /// A floating-point number (JMS `double`).
    Double(f64),
    /// A boolean (JMS `boolean`).
    Bool(bool),
}

impl Selector {
    /// Parses `text`, or says what is wrong and where.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        if text.len() > MAX_SELECTOR_BYTES {
            let within = text
                .char_indices()
                .take_while(|(at, _)| *at < MAX_SELECTOR_BYTES)
                .count();
            return Err(SelectorError {
                position: within + 1,
                message: format!(
                    "selector is {} bytes long; the limit is {MAX_SELECTOR_BYTES}",
                    text.len()
                ),
            });
        }
        let tokens = lexer::tokenize(text)?;
        let root = parser::parse(tokens)?;
        Ok(Selector {
            text: text.into(),
            root,
        })
    }

    /// Whether the selector is TRUE for `message`; FALSE and UNKNOWN both
    /// mean no match.
    pub fn matches(&self, message: &dyn PropertySource) -> bool {
        eval::matches(&self.root, message)
    }

    /// The selector as the client wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests;
