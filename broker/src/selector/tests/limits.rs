//! Bounds on nesting and length, and a seeded fuzz run: no input panics
//! and every error stays a short single line.

use super::*;
use crate::selector::ast::{Expr, Literal};
use crate::selector::{Selector, MAX_DEPTH, MAX_SELECTOR_BYTES};

#[test]
fn nesting_is_bounded_without_overflowing_the_stack() {
    let nested = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
    assert!(matches(&nested(MAX_DEPTH), &stomp(&[("a", "1")])));
    let err = error_of(&nested(MAX_DEPTH + 1));
    assert!(err.message.contains("nested too deeply"), "{err}");
    assert_eq!(err.position, MAX_DEPTH + 1);
    // Far beyond the limit, including unbalanced input, is an error too.
    assert!(error_of(&"(".repeat(8000)).message.contains("too deeply"));
    assert!(error_of(&format!("{}a", "NOT ".repeat(2000)))
        .message
        .contains("too deeply"));
    assert!(error_of(&format!("{}1 = a", "- ".repeat(4000)))
        .message
        .contains("too deeply"));
    // Left-deep arithmetic builds a tall tree without any parentheses.
    let chain = format!("a = {}", vec!["1"; 1000].join(" + "));
    assert!(error_of(&chain).message.contains("too deeply"));
}

#[test]
fn long_or_chains_stay_shallow_and_evaluate() {
    let text = (0..500)
        .map(|i| format!("id = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let selector = parse(&text);
    match &selector.root {
        Expr::Or(items) => assert_eq!(items.len(), 500),
        other => panic!("expected one flat OR, got {other:?}"),
    }
    assert!(selector.matches(&stomp(&[("id", "499")])));
    assert!(!selector.matches(&stomp(&[("id", "500")])));
}

#[test]
fn signed_literals_are_folded_at_parse_time() {
    let selector = parse("a = -5 AND b = +2.5 AND c = -9223372036854775808");
    let Expr::And(items) = &selector.root else {
        panic!("expected AND, got {:?}", selector.root);
    };
    let literals: Vec<&Expr> = items
        .iter()
        .map(|item| match item {
            Expr::Compare(_, _, right) => &**right,
            other => panic!("expected a comparison, got {other:?}"),
        })
        .collect();
    assert_eq!(
        literals,
        vec![
            &Expr::Literal(Literal::Long(-5)),
            &Expr::Literal(Literal::Double(2.5)),
            &Expr::Literal(Literal::Long(i64::MIN)),
        ]
    );
}

#[test]
fn selector_length_is_bounded() {
    let limit = MAX_SELECTOR_BYTES;
    let padded = format!("a = 1{}", " ".repeat(limit - 5));
    assert_eq!(padded.len(), limit);
    assert!(Selector::parse(&padded).is_ok());
    let err = error_of(&format!("{padded} "));
    assert_eq!(err.position, limit + 1);
    assert!(err.message.contains("limit"), "{err}");
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    "a",
    "b",
    "JMSPriority",
    "'x'",
    "'%_'",
    "''",
    "'",
    "\"",
    "\"q\"",
    "1",
    "-",
    "+",
    "*",
    "/",
    "2.5",
    "1e3",
    "0x1F",
    "07",
    "9223372036854775808",
    "(",
    ")",
    ",",
    "=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "AND",
    "OR",
    "NOT",
    "BETWEEN",
    "IN",
    "LIKE",
    "ESCAPE",
    "IS",
    "NULL",
    "TRUE",
    "FALSE",
    " ",
    " ",
    "--",
    "/*",
    "*/",
    "é",
    "\u{0}",
    "\n",
    ".",
    "$",
    "_",
    "!",
    "#",
];

const SEEDS: &[&str] = &[
    "a = 1 OR b = 2 AND c = 3",
    "JMSPriority BETWEEN 3 AND 7 AND a LIKE 'x%' ESCAPE '!'",
    "a IN ('x', 'y') AND NOT b IS NULL",
    "(a + 2) * -b / 3.5 >= 0x10",
];

fn check_never_panics(text: &str, props: &Props) {
    match Selector::parse(text) {
        Ok(selector) => {
            selector.matches(props);
        }
        Err(e) => {
            let chars = text.chars().count();
            assert!(
                e.position >= 1 && e.position <= chars + 1,
                "{text:?}: position {} outside 1..={}",
                e.position,
                chars + 1
            );
            assert!(!e.message.is_empty());
            assert_one_short_line(&e);
        }
    }
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let props = stomp(&[("a", "1"), ("b", "x"), ("c", "3"), ("JMSPriority", "4")]);
    for _ in 0..20_000 {
        // Random token soup.
        let len = rng.below(24);
        let text: String = (0..len)
            .map(|_| {
                let f = FRAGMENTS[rng.below(FRAGMENTS.len())];
                if rng.below(2) == 0 {
                    format!("{f} ")
                } else {
                    f.to_string()
                }
            })
            .collect();
        check_never_panics(&text, &props);
        // A valid selector with a few characters changed.
        let mut chars: Vec<char> = SEEDS[rng.below(SEEDS.len())].chars().collect();
        for _ in 0..=rng.below(3) {
            let at = rng.below(chars.len() + 1);
            let ch = char::from_u32(rng.below(0x80) as u32).unwrap_or('?');
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = ch,
                _ => chars.insert(at, ch),
            }
        }
        check_never_panics(&chars.into_iter().collect::<String>(), &props);
    }
}
