//! Evaluates a parsed selector against one message with SQL three-valued
//! logic (JMS 1.1 §3.8.1.2): a missing property is NULL, NULL makes
//! comparisons and arithmetic UNKNOWN, and only TRUE selects the message.
//!
//! STOMP carries every property as a string, so, like ActiveMQ's
//! `convert_string_expressions:` mode, a string meeting a number is read as
//! a number and the strings `true`/`false` as booleans. Comparing values of
//! unlike types (after that conversion failed) is FALSE, not UNKNOWN, as
//! the JMS specification and ActiveMQ both have it; see [`UNLIKE_TYPES`].
//!
//! Nothing here allocates: values borrow from the selector or the message.

use super::ast::{ArithOp, CompareOp, Expr, Literal, Sign};
use super::{PropertySource, Value};
use std::cmp::Ordering;

/// A value during evaluation; `Null` doubles as UNKNOWN.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Null,
    Str(&'a str),
    Long(i64),
    Double(f64),
    Bool(bool),
}

/// The result of a comparison between values of unlike types, e.g. a
/// number with a string that does not parse as one. JMS 1.1 §3.8.1.2:
/// "If the comparison of non-like type values is attempted, the value of
/// the operation is false."
const UNLIKE_TYPES: Val<'static> = Val::Bool(false);

#[derive(Debug, Clone, Copy)]
enum Num {
    Long(i64),
    Double(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Long(n) => n as f64,
            Num::Double(d) => d,
        }
    }

    fn into_val<'a>(self) -> Val<'a> {
        match self {
            Num::Long(n) => Val::Long(n),
            Num::Double(d) => Val::Double(d),
        }
    }
}

/// Whether `root` evaluates to TRUE for `message`.
pub(super) fn matches(root: &Expr, message: &dyn PropertySource) -> bool {
    truth(eval(root, message)) == Some(true)
}

fn eval<'a>(expr: &'a Expr, message: &'a dyn PropertySource) -> Val<'a> {
    match expr {
        Expr::Literal(literal) => match literal {
            Literal::Str(s) => Val::Str(s),
            Literal::Long(n) => Val::Long(*n),
            Literal::Double(d) => Val::Double(*d),
            Literal::Bool(b) => Val::Bool(*b),
        },
        Expr::Property(name) => match message.property(name) {
            None => Val::Null,
            Some(Value::Str(s)) => Val::Str(s),
            Some(Value::Long(n)) => Val::Long(n),
            Some(Value::Double(d)) => Val::Double(d),
            Some(Value::Bool(b)) => Val::Bool(b),
        },
        Expr::Unary(sign, operand) => match (sign, number(eval(operand, message))) {
            (_, None) => Val::Null,
            (Sign::Plus, Some(n)) => n.into_val(),
            (Sign::Minus, Some(Num::Long(n))) => n.checked_neg().map_or(Val::Null, Val::Long),
            (Sign::Minus, Some(Num::Double(d))) => Val::Double(-d),
        },
        Expr::Arith(op, left, right) => arith(*op, eval(left, message), eval(right, message)),
        Expr::Compare(op, left, right) => compare(*op, eval(left, message), eval(right, message)),
        Expr::Between {
            negated,
            value,
            low,
            high,
        } => {
            let value = eval(value, message);
            let low = truth(compare(CompareOp::Ge, value, eval(low, message)));
            let high = truth(compare(CompareOp::Le, value, eval(high, message)));
            from_truth(and(low, high).map(|t| t != *negated))
        }
        Expr::In {
            negated,
            value,
            list,
        } => match eval(value, message) {
            Val::Null => Val::Null,
            Val::Str(s) => {
                let found = list.binary_search_by(|item| (**item).cmp(s)).is_ok();
                Val::Bool(found != *negated)
            }
            _ => UNLIKE_TYPES,
        },
        Expr::Like {
            negated,
            value,
            pattern,
        } => match eval(value, message) {
            Val::Null => Val::Null,
            Val::Str(s) => Val::Bool(pattern.matches(s) != *negated),
            _ => UNLIKE_TYPES,
        },
        Expr::IsNull { negated, value } => {
            Val::Bool((eval(value, message) == Val::Null) != *negated)
        }
        Expr::Not(operand) => from_truth(truth(eval(operand, message)).map(|t| !t)),
        Expr::And(operands) => {
            let mut unknown = false;
            for operand in operands.iter() {
                match truth(eval(operand, message)) {
                    Some(false) => return Val::Bool(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            if unknown {
                Val::Null
            } else {
                Val::Bool(true)
            }
        }
        Expr::Or(operands) => {
            let mut unknown = false;
            for operand in operands.iter() {
                match truth(eval(operand, message)) {
                    Some(true) => return Val::Bool(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            if unknown {
                Val::Null
            } else {
                Val::Bool(false)
            }
        }
    }
}

/// A value used as a condition: TRUE, FALSE or UNKNOWN (`None`).
fn truth(value: Val<'_>) -> Option<bool> {
    match value {
        Val::Bool(b) => Some(b),
        Val::Str(s) => parse_bool(s),
        Val::Null | Val::Long(_) | Val::Double(_) => None,
    }
}

fn from_truth<'a>(truth: Option<bool>) -> Val<'a> {
    truth.map_or(Val::Null, Val::Bool)
}

/// Three-valued AND: FALSE wins over UNKNOWN.
fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Reads a string property as a number the way a Java `Long.valueOf` or
/// `Double.valueOf` would, minus Java's `NaN`/`Infinity`/hex-float forms.
fn parse_number(s: &str) -> Option<Num> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(Num::Long(n));
    }
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !plain {
        return None;
    }
    s.parse::<f64>()
        .ok()
        .filter(|d| d.is_finite())
        .map(Num::Double)
}

fn number(value: Val<'_>) -> Option<Num> {
    match value {
        Val::Long(n) => Some(Num::Long(n)),
        Val::Double(d) => Some(Num::Double(d)),
        Val::Str(s) => parse_number(s),
        Val::Null | Val::Bool(_) => None,
    }
}

/// Java semantics: long arithmetic stays integral (`7 / 2 = 3`), anything
/// with a double is double. Overflow and integer division by zero, which
/// Java would wrap or throw on, give UNKNOWN here.
fn arith<'a>(op: ArithOp, left: Val<'a>, right: Val<'a>) -> Val<'a> {
    let (Some(a), Some(b)) = (number(left), number(right)) else {
        return Val::Null;
    };
    match (a, b) {
        (Num::Long(x), Num::Long(y)) => {
            let result = match op {
                ArithOp::Add => x.checked_add(y),
                ArithOp::Sub => x.checked_sub(y),
                ArithOp::Mul => x.checked_mul(y),
                ArithOp::Div => x.checked_div(y),
            };
            result.map_or(Val::Null, Val::Long)
        }
        _ => {
            let (x, y) = (a.as_f64(), b.as_f64());
            Val::Double(match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => x / y,
            })
        }
    }
}

fn equality(op: CompareOp, equal: bool) -> Val<'static> {
    match op {
        CompareOp::Eq => Val::Bool(equal),
        CompareOp::Ne => Val::Bool(!equal),
        // Strings and booleans have no order (JMS 1.1 §3.8.1.2).
        _ => UNLIKE_TYPES,
    }
}

fn compare<'a>(op: CompareOp, left: Val<'a>, right: Val<'a>) -> Val<'a> {
    match (left, right) {
        (Val::Null, _) | (_, Val::Null) => Val::Null,
        (Val::Str(a), Val::Str(b)) => equality(op, a == b),
        (Val::Bool(a), Val::Bool(b)) => equality(op, a == b),
        (Val::Bool(b), Val::Str(s)) | (Val::Str(s), Val::Bool(b)) => match parse_bool(s) {
            Some(parsed) => equality(op, parsed == b),
            None => UNLIKE_TYPES,
        },
        (Val::Bool(_), _) | (_, Val::Bool(_)) => UNLIKE_TYPES,
        _ => match (number(left), number(right)) {
            (Some(a), Some(b)) => Val::Bool(compare_numbers(op, a, b)),
            _ => UNLIKE_TYPES,
        },
    }
}

fn compare_numbers(op: CompareOp, a: Num, b: Num) -> bool {
    if let (Num::Long(x), Num::Long(y)) = (a, b) {
        let order = x.cmp(&y);
        return match op {
            CompareOp::Eq => order == Ordering::Equal,
            CompareOp::Ne => order != Ordering::Equal,
            CompareOp::Lt => order == Ordering::Less,
            CompareOp::Le => order != Ordering::Greater,
            CompareOp::Gt => order == Ordering::Greater,
            CompareOp::Ge => order != Ordering::Less,
        };
    }
    // IEEE rules, as in Java: NaN is unequal to everything.
    let (x, y) = (a.as_f64(), b.as_f64());
    match op {
        CompareOp::Eq => x == y,
        CompareOp::Ne => x != y,
        CompareOp::Lt => x < y,
        CompareOp::Le => x <= y,
        CompareOp::Gt => x > y,
        CompareOp::Ge => x >= y,
    }
}
