//! `LIKE` patterns, compiled once at parse time.
//!
//! The common shapes (`'abc'`, `'abc%'`, `'%abc'`, `'%abc%'`) become plain
//! string operations; anything else runs the classic wildcard matcher that
//! remembers only the last `%` and so takes at most O(pattern × text) steps,
//! never exponential time, on any input.

use super::lexer::excerpt;
use super::SelectorError;

/// One element of a general pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Piece {
    /// A character that must appear as is.
    Char(char),
    /// `_`: exactly one character.
    AnyOne,
    /// `%`: any sequence, possibly empty.
    AnyRun,
}

/// A compiled `LIKE` pattern.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LikePattern {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    Contains(Box<str>),
    General(Box<[Piece]>),
}

impl LikePattern {
    /// Compiles `pattern`; `escape` makes the following `%`, `_` or escape
    /// character literal. `pos` is where the pattern literal starts, for
    /// errors.
    pub(super) fn compile(
        pattern: &str,
        escape: Option<char>,
        pos: usize,
    ) -> Result<LikePattern, SelectorError> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let piece = if Some(c) == escape {
                match chars.next() {
                    Some(next) if next == '%' || next == '_' || Some(next) == escape => {
                        Piece::Char(next)
                    }
                    Some(next) => {
                        return Err(SelectorError {
                            position: pos,
                            message: format!(
                                "in LIKE pattern, escape character '{}' is followed by '{}'; \
                                 it may only precede '%', '_' or itself",
                                excerpt(&c.to_string()),
                                excerpt(&next.to_string())
                            ),
                        })
                    }
                    None => {
                        return Err(SelectorError {
                            position: pos,
                            message: format!(
                                "LIKE pattern ends with escape character '{}'",
                                excerpt(&c.to_string())
                            ),
                        })
                    }
                }
            } else {
                match c {
                    '%' => Piece::AnyRun,
                    '_' => Piece::AnyOne,
                    c => Piece::Char(c),
                }
            };
            // Consecutive `%` are one `%`.
            if !(piece == Piece::AnyRun && pieces.last() == Some(&Piece::AnyRun)) {
                pieces.push(piece);
            }
        }
        Ok(Self::simplify(pieces))
    }

    fn simplify(pieces: Vec<Piece>) -> LikePattern {
        if pieces.contains(&Piece::AnyOne) {
            return LikePattern::General(pieces.into());
        }
        let runs = pieces.iter().filter(|p| **p == Piece::AnyRun).count();
        let leading = pieces.first() == Some(&Piece::AnyRun);
        let trailing = pieces.len() > 1 && pieces.last() == Some(&Piece::AnyRun);
        let literal = || -> Box<str> {
            pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Char(c) => Some(*c),
                    _ => None,
                })
                .collect::<String>()
                .into()
        };
        match (runs, leading, trailing) {
            (0, _, _) => LikePattern::Exact(literal()),
            (1, false, true) => LikePattern::Prefix(literal()),
            // A lone `%` counts as leading: the empty suffix matches all.
            (1, true, false) => LikePattern::Suffix(literal()),
            (2, true, true) => LikePattern::Contains(literal()),
            _ => LikePattern::General(pieces.into()),
        }
    }

    /// Whether `text` matches the whole pattern. Never allocates.
    pub(super) fn matches(&self, text: &str) -> bool {
        match self {
            LikePattern::Exact(s) => text == &**s,
            LikePattern::Prefix(s) => text.starts_with(&**s),
            LikePattern::Suffix(s) => text.ends_with(&**s),
            LikePattern::Contains(s) => text.contains(&**s),
            LikePattern::General(pieces) => general_match(pieces, text),
        }
    }
}

fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|rest| rest.chars().next())
}

/// Greedy wildcard matching with backtracking to the most recent `%` only:
/// a later `%` can absorb anything an earlier one could, so older choices
/// never need revisiting.
fn general_match(pieces: &[Piece], text: &str) -> bool {
    let mut p = 0; // index into pieces
    let mut t = 0; // byte offset into text
                   // After the last `%`: the piece index following it and the text offset
                   // it has absorbed up to.
    let mut last_run: Option<(usize, usize)> = None;
    loop {
        if let Some(piece) = pieces.get(p) {
            let next = char_at(text, t);
            match (piece, next) {
                (Piece::AnyRun, _) => {
                    p += 1;
                    last_run = Some((p, t));
                    continue;
                }
                (Piece::AnyOne, Some(c)) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                (Piece::Char(want), Some(c)) if *want == c => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                _ => {}
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last `%` swallow one more character and retry.
        match last_run {
            Some((after, absorbed)) => match char_at(text, absorbed) {
                Some(c) => {
                    let absorbed = absorbed + c.len_utf8();
                    last_run = Some((after, absorbed));
                    p = after;
                    t = absorbed;
                }
                None => return false,
            },
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(pattern: &str, text: &str) -> bool {
        LikePattern::compile(pattern, None, 1)
            .unwrap()
            .matches(text)
    }

    #[test]
    fn simple_shapes_pick_the_fast_path_and_match() {
        assert!(matches!(
            LikePattern::compile("ab", None, 1).unwrap(),
            LikePattern::Exact(_)
        ));
        assert!(matches!(
            LikePattern::compile("ab%", None, 1).unwrap(),
            LikePattern::Prefix(_)
        ));
        assert!(matches!(
            LikePattern::compile("%ab", None, 1).unwrap(),
            LikePattern::Suffix(_)
        ));
        assert!(matches!(
            LikePattern::compile("%%ab%%", None, 1).unwrap(),
            LikePattern::Contains(_)
        ));
        assert!(like("ab", "ab") && !like("ab", "abc"));
        assert!(like("ab%", "abc") && !like("ab%", "cab"));
        assert!(like("%ab", "cab") && !like("%ab", "abc"));
        assert!(like("%ab%", "xaby") && !like("%ab%", "a b"));
        assert!(like("%", "") && like("%", "anything"));
        assert!(like("", "") && !like("", "x"));
    }

    #[test]
    fn general_patterns_match_the_jms_examples() {
        // JMS 1.1 §3.8.1.2 examples.
        assert!(like("12%3", "123") && like("12%3", "12993"));
        assert!(!like("12%3", "1234"));
        assert!(like("l_se", "lose") && !like("l_se", "loose"));
        assert!(like("a%b%c", "aXXbYYc") && like("a%b%c", "abc"));
        assert!(!like("a%b%c", "acb"));
        assert!(like("_é_", "aéb") && !like("_é_", "éb"));
        assert!(like("%a_", "xxab") && !like("%a_", "xxa"));
    }

    #[test]
    fn escape_makes_wildcards_literal() {
        let p = LikePattern::compile("\\_%", Some('\\'), 1).unwrap();
        assert!(p.matches("_foo") && !p.matches("foo"));
        let p = LikePattern::compile("100!%", Some('!'), 1).unwrap();
        assert!(p.matches("100%") && !p.matches("1000"));
        let p = LikePattern::compile("a!!b", Some('!'), 1).unwrap();
        assert!(p.matches("a!b"));
    }

    #[test]
    fn bad_escape_sequences_are_errors() {
        let err = LikePattern::compile("a!b", Some('!'), 7).unwrap_err();
        assert_eq!(err.position, 7);
        assert!(err.message.contains("followed by 'b'"), "{}", err.message);
        assert!(LikePattern::compile("ab!", Some('!'), 1).is_err());
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        let text = "a".repeat(4000);
        let pattern = format!("{}b", "%a".repeat(200));
        let started = std::time::Instant::now();
        assert!(!like(&pattern, &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
