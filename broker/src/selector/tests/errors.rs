//! Malformed selectors: the position and reason each one reports.

use super::*;

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
        (" xpath '//a'", 2, "XPATH selectors are not"),
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
