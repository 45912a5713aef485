//! Static type checks applied while parsing: what each operator accepts,
//! so that selectors which can never match (`'x' = 1`, `'a' < 'b'`,
//! `1 + 2` as a whole selector) are rejected with a position instead of
//! silently selecting nothing.

use super::ast::{CompareOp, Expr};
use super::SelectorError;

/// What an expression statically evaluates to. Properties are `Any`: their
/// type is only known per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Bool,
    Num,
    Str,
    Any,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Bool => "a condition",
            Ty::Num => "a number",
            Ty::Str => "a string",
            Ty::Any => "a property",
        }
    }
}

/// An expression under construction with what the checks need to know.
pub(super) struct Node {
    pub(super) expr: Expr,
    pub(super) ty: Ty,
    /// Column where the expression starts.
    pub(super) pos: usize,
    /// Height of the tree below and including this node.
    pub(super) depth: usize,
}

pub(super) fn require_condition(node: &Node, user: &str) -> Result<(), SelectorError> {
    match node.ty {
        Ty::Bool | Ty::Any => Ok(()),
        ty => Err(error(
            node.pos,
            format!("{user} needs a condition, but this is {}", ty.describe()),
        )),
    }
}

pub(super) fn require_number(node: &Node, user: &str) -> Result<(), SelectorError> {
    match node.ty {
        Ty::Num | Ty::Any => Ok(()),
        ty => Err(error(
            node.pos,
            format!("{user} needs a number, but this is {}", ty.describe()),
        )),
    }
}

pub(super) fn require_string(node: &Node, user: &str) -> Result<(), SelectorError> {
    match node.ty {
        Ty::Str | Ty::Any => Ok(()),
        ty => Err(error(
            node.pos,
            format!("{user} needs a string, but this is {}", ty.describe()),
        )),
    }
}

/// `=`/`<>` need operands of one type unless a property is involved;
/// `< <= > >=` need numbers (JMS 1.1 §3.8.1.2, as ActiveMQ checks too).
pub(super) fn check_comparison(
    op: CompareOp,
    pos: usize,
    left: &Node,
    right: &Node,
) -> Result<(), SelectorError> {
    if op.is_ordering() {
        for side in [left, right] {
            if matches!(side.ty, Ty::Str | Ty::Bool) {
                return Err(error(
                    side.pos,
                    format!(
                        "'{}' compares numbers only, but this is {} \
                             (strings and booleans allow only = and <>)",
                        op.symbol(),
                        side.ty.describe()
                    ),
                ));
            }
        }
    } else if left.ty != Ty::Any && right.ty != Ty::Any && left.ty != right.ty {
        return Err(error(
            pos,
            format!(
                "cannot compare {} with {}",
                left.ty.describe(),
                right.ty.describe()
            ),
        ));
    }
    Ok(())
}

fn error(pos: usize, message: String) -> SelectorError {
    SelectorError {
        position: pos,
        message,
    }
}
