//! [`ConfigError`], and the translation of TOML parse/deserialize errors into
//! it: every error names the file and the dotted key it is about, so an
//! operator can go straight to the offending line.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A configuration problem: which file, which dotted key, and why.
///
/// Displays as `{file}:{key}: {reason}`, e.g.
/// `ferromq.toml:stomp.max_frame_size: must be at least 1024 bytes`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{key}: {reason}", file.display())]
pub struct ConfigError {
    /// The file the configuration came from.
    pub file: PathBuf,
    /// Dotted key, e.g. `stomp.max_frame_size` or `auth.users[0].password_hash`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Key reported for errors that are about no key in particular (an empty
/// document with a syntax error, an unreadable file).
pub(crate) const WHOLE_FILE: &str = "(file)";

impl ConfigError {
    /// Builds an error about `key` in `file`.
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Translates an error from `toml` about `text` (the content of `file`).
    pub(crate) fn from_toml(file: &Path, text: &str, error: &toml::de::Error) -> Self {
        let Some(span) = error.span() else {
            return Self::new(file, WHOLE_FILE, reword(error.message()));
        };
        let key = match DeTable::parse(text) {
            // The document is syntactically fine: this is a schema error and
            // the span points at a key or a value we can find in the tree.
            Ok(document) => locate_in_table(document.get_ref(), &span).map(|path| path.join("")),
            // A syntax error: the tree is unavailable, read the text instead.
            Err(_) => locate_in_text(text, span.start),
        }
        .unwrap_or_else(|| WHOLE_FILE.to_owned());
        let (line, column) = line_column(text, span.start);
        Self::new(
            file,
            key,
            format!("{} (line {line}, column {column})", reword(error.message())),
        )
    }
}

/// Says "key" where serde says "field", since the file has keys.
fn reword(message: &str) -> String {
    let message = message.trim_end();
    match message.strip_prefix("unknown field ") {
        Some(rest) => {
            let rest = rest
                .replacen(", expected one of ", "; valid keys are ", 1)
                .replacen(", expected ", "; the only valid key is ", 1)
                .replacen(", there are no fields", "; this table takes no keys", 1);
            format!("unknown key {rest}")
        }
        // "expected struct StompConfig" names a Rust type the operator
        // never sees; in the file it is a table.
        None => match message.find("expected struct ") {
            Some(at) => format!("{}expected a table", &message[..at]),
            None => message.to_owned(),
        },
    }
}

/// 1-based line and column (in characters) of byte offset `pos`.
fn line_column(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = text.get(..pos).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn contains(span: &Range<usize>, target: &Range<usize>) -> bool {
    span.start <= target.start && target.start < span.end.max(span.start + 1)
}

/// Path segments (`"stomp"`, `".listen"`, `"[2]"`) of the deepest key or
/// value in `table` whose span holds the start of `target`. Children are
/// searched before any entry's own span is considered, so a container whose
/// span is wider than its text (a `[table]` header) never shadows the key.
fn locate_in_table(table: &DeTable<'_>, target: &Range<usize>) -> Option<Vec<String>> {
    let deeper = table.iter().find_map(|(key, value)| {
        locate_in_value(value.get_ref(), target).map(|mut inner| {
            inner.insert(0, key.get_ref().to_string());
            inner
        })
    });
    deeper.or_else(|| {
        table
            .iter()
            .find(|(key, value)| contains(&key.span(), target) || contains(&value.span(), target))
            .map(|(key, _)| vec![key.get_ref().to_string()])
    })
}

fn locate_in_value(value: &DeValue<'_>, target: &Range<usize>) -> Option<Vec<String>> {
    match value {
        DeValue::Table(table) => locate_in_table(table, target).map(|mut path| {
            if let Some(first) = path.first_mut() {
                first.insert(0, '.');
            }
            path
        }),
        DeValue::Array(array) => array.iter().enumerate().find_map(|(index, item)| {
            let mut inner = locate_in_value(item.get_ref(), target);
            if inner.is_none() && contains(&item.span(), target) {
                inner = Some(Vec::new());
            }
            inner.map(|mut path| {
                path.insert(0, format!("[{index}]"));
                path
            })
        }),
        _ => None,
    }
}

/// Best-effort key for a syntax error at byte `pos`: the last `[table]`
/// header before it plus the key on the error's line, if any.
fn locate_in_text(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    let before = text.get(..pos)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text
        .get(pos..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| pos + i);
    let line = text.get(line_start..line_end)?.trim();
    let table = before
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|header| {
            header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned()
        });
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned(),
        );
    }
    match (table, key) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (None, key) => key,
        (table, None) => table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_key_reason() {
        let error = ConfigError::new(
            Path::new("ferromq.toml"),
            "stomp.max_frame_size",
            "too small",
        );
        assert_eq!(
            error.to_string(),
            "ferromq.toml:stomp.max_frame_size: too small"
        );
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("a = 1\nbb = 2\n", 0), (1, 1));
        assert_eq!(line_column("a = 1\nbb = 2\n", 9), (2, 4));
    }

    #[test]
    fn text_locator_uses_header_and_key() {
        let text = "[stomp]\nlisten = \"x\"\nmax_headers = = 3\n";
        let pos = text.find("= 3").unwrap();
        assert_eq!(
            locate_in_text(text, pos).as_deref(),
            Some("stomp.max_headers")
        );
    }

    #[test]
    fn reword_lists_valid_keys() {
        assert_eq!(
            reword("unknown field `x`, expected one of `a`, `b`"),
            "unknown key `x`; valid keys are `a`, `b`"
        );
    }
}
