//! The JMS selector language through its public API: truth tables,
//! operators, precedence, type conversion, error positions, limits, and a
//! seeded fuzz run showing that no input panics.

use ferromq_broker::selector::{PropertySource, Selector, SelectorError, Value, MAX_DEPTH};

/// A message's properties and headers, as the router would expose them.
struct Props(Vec<(&'static str, Value<'static>)>);

impl PropertySource for Props {
    fn property(&self, name: &str) -> Option<Value<'_>> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// STOMP-style message: every property is a string.
fn stomp(pairs: &[(&'static str, &'static str)]) -> Props {
    Props(pairs.iter().map(|(k, v)| (*k, Value::Str(v))).collect())
}

fn typed(pairs: &[(&'static str, Value<'static>)]) -> Props {
    Props(pairs.to_vec())
}

fn parse(text: &str) -> Selector {
    match Selector::parse(text) {
        Ok(s) => s,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn matches(text: &str, props: &Props) -> bool {
    parse(text).matches(props)
}

/// The three-valued result of `text`: TRUE if it matches, FALSE if its
/// negation matches, UNKNOWN (None) if neither does.
fn truth(text: &str, props: &Props) -> Option<bool> {
    let positive = matches(text, props);
    let negative = matches(&format!("NOT ({text})"), props);
    assert!(!(positive && negative), "{text} is both TRUE and FALSE");
    match (positive, negative) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);
const U: Option<bool> = None;

/// `t` is TRUE, `f` FALSE and `u` (absent) UNKNOWN.
fn tfu() -> Props {
    typed(&[("t", Value::Bool(true)), ("f", Value::Bool(false))])
}

fn name(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "t",
        Some(false) => "f",
        None => "u",
    }
}

#[test]
fn and_or_not_follow_the_jms_truth_tables() {
    let props = tfu();
    let values = [T, F, U];
    for a in values {
        assert_eq!(truth(&format!("NOT {}", name(a)), &props), a.map(|x| !x));
        for b in values {
            let and = match (a, b) {
                (F, _) | (_, F) => F,
                (T, T) => T,
                _ => U,
            };
            let or = match (a, b) {
                (T, _) | (_, T) => T,
                (F, F) => F,
                _ => U,
            };
            let (x, y) = (name(a), name(b));
            assert_eq!(truth(&format!("{x} AND {y}"), &props), and, "{x} AND {y}");
            assert_eq!(truth(&format!("{x} OR {y}"), &props), or, "{x} OR {y}");
        }
    }
}

#[test]
fn string_booleans_work_as_conditions() {
    let props = stomp(&[("yes", "true"), ("no", "FALSE"), ("junk", "maybe")]);
    assert_eq!(truth("yes", &props), T);
    assert_eq!(truth("no", &props), F);
    assert_eq!(truth("junk", &props), U);
    assert_eq!(truth("yes AND NOT no", &props), T);
}

#[test]
fn comparisons_on_numbers_promote_long_and_double() {
    let props = typed(&[
        ("l", Value::Long(5)),
        ("d", Value::Double(5.5)),
        ("big", Value::Long(i64::MIN)),
    ]);
    for (text, want) in [
        ("l = 5", T),
        ("l = 5.0", T),
        ("l <> 5", F),
        ("l < 5.5", T),
        ("l <= 5", T),
        ("l > 4", T),
        ("l >= 6", F),
        ("d > l", T),
        ("d = 5.5", T),
        ("d < 5", F),
        ("big = -9223372036854775808", T),
        ("missing = 5", U),
        ("missing <> 5", U),
        ("missing < l", U),
    ] {
        assert_eq!(truth(text, &props), want, "{text}");
    }
}

#[test]
fn string_properties_convert_when_compared_with_numbers() {
    let props = stomp(&[
        ("price", "20"),
        ("ratio", "0.75"),
        ("name", "abc"),
        ("n", "31"),
    ]);
    for (text, want) in [
        ("price > 10", T),
        ("price = 20", T),
        ("price = 20.0", T),
        ("10 < price", T),
        ("ratio < 1", T),
        ("ratio = 0.75", T),
        ("n = 0x1F", T),
        ("n = 037", T),
        ("n = 31L", T),
        // A string that is no number compares FALSE (unlike types), so its
        // negation holds; NULL stays UNKNOWN.
        ("name > 10", F),
        ("name = 10", F),
        ("price = 'abc'", F),
        ("price = '20'", T),
    ] {
        assert_eq!(truth(text, &props), want, "{text}");
    }
}

#[test]
fn strings_compare_only_for_equality_and_booleans_convert() {
    let props = Props(vec![
        ("color", Value::Str("red")),
        ("other", Value::Str("blue")),
        ("flag", Value::Str("TRUE")),
        ("real", Value::Bool(false)),
        ("odd", Value::Str("yes")),
    ]);
    for (text, want) in [
        ("color = 'red'", T),
        ("color <> 'red'", F),
        ("color = 'Red'", F),
        ("color = other", F),
        ("color <> other", T),
        // Strings have no order: FALSE, not an alphabetical answer.
        ("color < other", F),
        ("color > other", F),
        ("flag = TRUE", T),
        ("flag = FALSE", F),
        ("real = FALSE", T),
        ("real <> TRUE", T),
        ("real = flag", F),
        ("odd = TRUE", F),
        ("odd = FALSE", F),
        ("real = 1", F),
    ] {
        assert_eq!(truth(text, &props), want, "{text}");
    }
}

#[test]
fn arithmetic_follows_java_rules_and_propagates_null() {
    let props = typed(&[
        ("a", Value::Long(1)),
        ("s", Value::Str("5")),
        ("max", Value::Long(i64::MAX)),
    ]);
    for (text, want) in [
        ("a + 2 * 3 = 7", T),
        ("(a + 2) * 3 = 9", T),
        ("10 - 4 - 3 = 3", T),
        ("12 / 3 / 2 = 2", T),
        ("7 / 2 = 3", T),
        ("7.0 / 2 = 3.5", T),
        ("7 / 2.0 = 3.5", T),
        ("-s = -5", T),
        ("+s = 5", T),
        ("- -a = 1", T),
        ("s * 2 = 10", T),
        ("s / 2 = 2", T),
        ("missing + 1 = 2", U),
        ("missing * 0 = 0", U),
        ("-missing = 0", U),
        ("a / 0 = 0", U),
        ("max + 1 > 0", U),
        ("a / 0.0 > 1000", T),
        ("'x' = 'x' AND a - 1 = 0", T),
    ] {
        assert_eq!(truth(text, &props), want, "{text}");
    }
}

#[test]
fn precedence_is_or_then_and_then_not_then_comparison() {
    let text = "a = 1 OR b = 2 AND c = 3";
    assert!(matches(text, &stomp(&[("a", "1"), ("b", "0"), ("c", "0")])));
    assert!(!matches(
        text,
        &stomp(&[("a", "0"), ("b", "2"), ("c", "0")])
    ));
    assert!(matches(text, &stomp(&[("a", "0"), ("b", "2"), ("c", "3")])));
    // NOT binds looser than the comparison: NOT (a = 1).
    assert!(matches("NOT a = 1", &stomp(&[("a", "2")])));
    assert!(matches(
        "NOT a = 1 AND b = 2",
        &stomp(&[("a", "2"), ("b", "2")])
    ));
    assert!(!matches(
        "NOT (a = 1 AND b = 2)",
        &stomp(&[("a", "1"), ("b", "2")])
    ));
    // Arithmetic binds tighter than comparison; unary minus tightest.
    assert!(matches("a * -2 + 1 < -1", &stomp(&[("a", "2")])));
}

#[test]
fn between_is_inclusive_and_negatable() {
    for (age, between) in [("14", F), ("15", T), ("17", T), ("19", T), ("20", F)] {
        let props = stomp(&[("age", age)]);
        assert_eq!(truth("age BETWEEN 15 AND 19", &props), between, "{age}");
        assert_eq!(
            truth("age NOT BETWEEN 15 AND 19", &props),
            between.map(|b| !b),
            "{age}"
        );
    }
    let props = stomp(&[]);
    assert_eq!(truth("age BETWEEN 15 AND 19", &props), U);
    assert_eq!(truth("age NOT BETWEEN 15 AND 19", &props), U);
    // One known-false bound decides even when the other side is NULL.
    let props = typed(&[("age", Value::Long(30))]);
    assert_eq!(truth("age BETWEEN low AND 19", &props), F);
    assert_eq!(truth("age BETWEEN 1 + 1 AND 10 * 3", &props), T);
    assert!(matches("age BETWEEN 1 AND 100 AND age = 30", &props));
}

#[test]
fn in_lists_match_strings_and_negate() {
    let text = "Country IN ('UK', 'US', 'France')";
    let negated = "Country NOT IN ('UK', 'US', 'France')";
    for (country, want) in [("UK", T), ("France", T), ("Peru", F), ("uk", F)] {
        let props = stomp(&[("Country", country)]);
        assert_eq!(truth(text, &props), want, "{country}");
        assert_eq!(truth(negated, &props), want.map(|b| !b), "{country}");
    }
    assert_eq!(truth(text, &stomp(&[])), U);
    assert_eq!(truth(negated, &stomp(&[])), U);
    // A value that is no string is of an unlike type: FALSE either way.
    let props = typed(&[("Country", Value::Long(1))]);
    assert!(!matches(text, &props) && !matches(negated, &props));
    assert!(matches("x IN ('a''b')", &stomp(&[("x", "a'b")])));
}

#[test]
fn like_supports_wildcards_escape_and_not() {
    for (pattern, value, want) in [
        ("'12%3'", "123", true),
        ("'12%3'", "12993", true),
        ("'12%3'", "1234", false),
        ("'l_se'", "lose", true),
        ("'l_se'", "loose", false),
        ("'\\_%' ESCAPE '\\'", "_foo", true),
        ("'\\_%' ESCAPE '\\'", "bar", false),
        ("'100!%' ESCAPE '!'", "100%", true),
        ("'100!%' ESCAPE '!'", "1000", false),
        ("'%'", "", true),
        ("'a%b%c'", "aXbYc", true),
    ] {
        let props = stomp(&[("v", value)]);
        let text = format!("v LIKE {pattern}");
        assert_eq!(truth(&text, &props), Some(want), "{text} on {value}");
        let text = format!("v NOT LIKE {pattern}");
        assert_eq!(truth(&text, &props), Some(!want), "{text} on {value}");
    }
    assert_eq!(truth("v LIKE 'a%'", &stomp(&[])), U);
    assert_eq!(truth("v NOT LIKE 'a%'", &stomp(&[])), U);
}

#[test]
fn is_null_tests_presence() {
    let props = stomp(&[("present", "")]);
    assert_eq!(truth("present IS NULL", &props), F);
    assert_eq!(truth("present IS NOT NULL", &props), T);
    assert_eq!(truth("absent IS NULL", &props), T);
    assert_eq!(truth("absent IS NOT NULL", &props), F);
    assert_eq!(truth("absent + 1 IS NULL", &props), T);
    assert_eq!(truth("absent IS NULL OR absent = 1", &props), T);
}

#[test]
fn jms_headers_are_identifiers_like_properties() {
    let props = Props(vec![
        ("JMSPriority", Value::Long(7)),
        ("JMSType", Value::Str("car")),
        ("JMSDeliveryMode", Value::Str("PERSISTENT")),
        ("JMSRedelivered", Value::Bool(false)),
        ("JMSTimestamp", Value::Long(1_700_000_000_000)),
        ("color", Value::Str("blue")),
    ]);
    assert!(matches(
        "JMSPriority > 4 AND JMSType = 'car' AND JMSDeliveryMode = 'PERSISTENT'",
        &props
    ));
    assert!(matches("NOT JMSRedelivered AND color LIKE 'bl%'", &props));
    assert!(matches("JMSTimestamp > 1600000000000", &props));
    assert!(!matches("JMSPriority BETWEEN 0 AND 4", &props));
}

#[test]
fn syntax_extensions_and_keyword_case() {
    let props = stomp(&[("content-type", "text/plain"), ("a", "1"), ("x.y", "2")]);
    assert!(matches("\"content-type\" = 'text/plain'", &props));
    assert!(matches("a = 1 and not b is null or x.y = 2", &props));
    assert!(matches("a = 1 /* block */ AND -- line\n x.y = 2", &props));
    assert!(matches(
        "a = 1e0 AND a = 1. AND a*10 = 10 AND .5 < a",
        &props
    ));
}

#[test]
fn text_is_kept_and_selectors_are_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Selector>();
    let s = parse("  color = 'red'  ");
    assert_eq!(s.text(), "  color = 'red'  ");
    assert_eq!(s.to_string(), "  color = 'red'  ");
}

fn error_of(text: &str) -> SelectorError {
    match Selector::parse(text) {
        Ok(_) => panic!("{text:?} should be rejected"),
        Err(e) => e,
    }
}

#[test]
fn malformed_selectors_report_position_and_reason() {
    for (text, position, fragment) in [
        ("", 1, "empty"),
        ("   ", 1, "empty"),
        ("color = 'red", 9, "unterminated string"),
        ("color = ", 9, "expected an operand"),
        ("color = 'red' AND", 18, "expected an operand"),
        ("(a = 1", 7, "expected ')'"),
        ("a = 1)", 6, "unbalanced ')'"),
        ("((a = 1) OR b = 2", 18, "'(' at position 1"),
        ("a = 1 b = 2", 7, "unexpected identifier 'b'"),
        ("a LIKE 'x' ESCAPE 'ab'", 19, "exactly one character"),
        ("a LIKE 'x' ESCAPE ''", 19, "exactly one character"),
        ("a LIKE 'x!y' ESCAPE '!'", 8, "escape character"),
        ("a LIKE b", 8, "string literal pattern"),
        ("a IN ('x', 2)", 12, "only string literals"),
        ("a IN ('x' 'y')", 11, "expected ',' or ')'"),
        ("a IN ()", 7, "empty"),
        ("a IN 'x'", 6, "expected '('"),
        ("a BETWEEN 1 OR 2", 13, "expected AND"),
        ("a IS 5", 6, "expected NULL"),
        ("a IS NOT 'x'", 10, "expected NULL"),
        ("a = NULL", 5, "IS NULL"),
        ("a NOT = 1", 3, "NOT BETWEEN"),
        ("a = 1 = 2", 7, "chained"),
        ("a < 'x'", 5, "compares numbers only"),
        ("TRUE > a", 1, "compares numbers only"),
        ("'x' = 1", 5, "cannot compare a string with a number"),
        ("a + 'x' = 1", 5, "needs a number"),
        ("'x' LIKE 'y' AND 1 LIKE 'y'", 18, "needs a string"),
        ("a = 1 AND 5", 11, "needs a condition"),
        ("1 + 2", 1, "needs a condition"),
        ("NOT 'x'", 5, "needs a condition"),
        ("a = 9223372036854775808", 5, "out of range"),
        ("a = 12x", 5, "invalid numeric literal"),
        ("a=1AND b", 3, "invalid numeric literal"),
        ("a = 08", 5, "octal"),
        ("a # 1", 3, "unexpected character '#'"),
        ("a != 1", 3, "use '<>'"),
        ("é = 'x' AND ö = ", 17, "expected an operand"),
        ("AND = 1", 1, "expected an operand, found 'AND'"),
        ("a = 1 /* open", 7, "unterminated comment"),
    ] {
        let err = error_of(text);
        assert_eq!(err.position, position, "{text:?}: {err}");
        assert!(err.message.contains(fragment), "{text:?}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid selector at position {position}: ")),
            "{err}"
        );
    }
}

/// Errors go back to the client in a STOMP header: one line, bounded.
fn assert_one_short_line(e: &SelectorError) {
    let text = e.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.chars().count() <= 300, "{} chars: {text}", text.len());
}

#[test]
fn errors_quote_client_text_on_one_short_line() {
    let err = error_of("a = 1 'first\nsecond\r\u{7}'");
    assert_one_short_line(&err);
    assert!(err.message.contains("'first\\nsecond"), "{err}");
    let long = format!("a = 1 {}", "x".repeat(5000));
    let err = error_of(&long);
    assert_one_short_line(&err);
    assert!(
        err.message.contains(&format!("'{}…'", "x".repeat(40))),
        "{err}"
    );
    let err = error_of(&format!("a = 0{}", "7".repeat(3000)));
    assert!(err.message.contains("out of range"), "{err}");
    assert_one_short_line(&err);
    let err = error_of("a LIKE 'x' ESCAPE '\t\t'");
    assert_one_short_line(&err);
}

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
    assert!(selector.matches(&stomp(&[("id", "499")])));
    assert!(!selector.matches(&stomp(&[("id", "500")])));
}

#[test]
fn selector_length_is_bounded() {
    let limit = ferromq_broker::selector::MAX_SELECTOR_BYTES;
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
