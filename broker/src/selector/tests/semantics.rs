//! What selectors evaluate to: truth tables, each operator, precedence,
//! conversions between strings, numbers and booleans, JMS headers.

use super::*;
use crate::selector::{Selector, Value};

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
