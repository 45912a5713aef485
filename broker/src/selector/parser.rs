//! Recursive-descent parser from tokens to an [`Expr`] tree, with the static
//! checks that catch selectors which could never match (comparing a string
//! literal with a number, `NULL` outside `IS NULL`, `'a' < 'b'`, ...).
//!
//! Precedence, loosest first (JMS 1.1 §3.8.1.1, SQL-92):
//! `OR`, `AND`, `NOT`, comparison (`= <> < <= > >=`, `BETWEEN`, `IN`,
//! `LIKE`, `IS NULL`, not chainable), `+ -`, `* /`, unary `+ -`, primary.
//!
//! Type checks live in [`super::check`].
//!
//! Both the parser's recursion and the depth of the built tree are capped at
//! [`MAX_DEPTH`] so that no input can exhaust the stack, here or in the
//! evaluator.

use super::ast::{ArithOp, CompareOp, Expr, Literal, Sign};
use super::check::{check_comparison, require_condition, require_number, require_string, Node, Ty};
use super::lexer::{excerpt, Token, TokenKind};
use super::like::LikePattern;
use super::{SelectorError, MAX_DEPTH};

/// Parses a whole token stream (ending with `End`) into an expression.
pub(super) fn parse(tokens: Vec<Token>) -> Result<Expr, SelectorError> {
    let mut parser = Parser {
        tokens,
        at: 0,
        nesting: 0,
    };
    if parser.peek().kind == TokenKind::End {
        return Err(error(1, "empty selector"));
    }
    // ActiveMQ also takes `XPATH '...'` and `XQUERY '...'` selectors over
    // XML bodies; say so rather than report a stray string.
    if let (TokenKind::Ident(word), Some(TokenKind::Str(_))) =
        (&parser.peek().kind, parser.peek_kind_after())
    {
        if word.eq_ignore_ascii_case("XPATH") || word.eq_ignore_ascii_case("XQUERY") {
            return Err(error(
                parser.peek().pos,
                format!(
                    "{} selectors are not supported; use a JMS (SQL-92) selector",
                    word.to_ascii_uppercase()
                ),
            ));
        }
    }
    let root = parser.parse_or()?;
    let next = parser.peek();
    match next.kind {
        TokenKind::End => {}
        TokenKind::RParen => return Err(error(next.pos, "unbalanced ')': no '(' to close")),
        ref other => {
            return Err(error(
                next.pos,
                format!(
                    "unexpected {} after a complete expression",
                    other.describe()
                ),
            ))
        }
    }
    require_condition(&root, "a selector")?;
    Ok(root.expr)
}

fn error(pos: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        position: pos,
        message: message.into(),
    }
}

fn compare_op(kind: &TokenKind) -> Option<CompareOp> {
    Some(match kind {
        TokenKind::Eq => CompareOp::Eq,
        TokenKind::Ne => CompareOp::Ne,
        TokenKind::Lt => CompareOp::Lt,
        TokenKind::Le => CompareOp::Le,
        TokenKind::Gt => CompareOp::Gt,
        TokenKind::Ge => CompareOp::Ge,
        _ => return None,
    })
}

fn starts_comparison(kind: &TokenKind) -> bool {
    compare_op(kind).is_some()
        || matches!(
            kind,
            TokenKind::Between | TokenKind::Like | TokenKind::In | TokenKind::Is
        )
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Current recursion through parentheses and prefix operators.
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends the stream with `End` and the parser never
        // moves past it, so the fallback is only a guard.
        self.tokens
            .get(self.at)
            .or_else(|| self.tokens.last())
            .unwrap_or(&END)
    }

    fn peek_kind_after(&self) -> Option<&TokenKind> {
        self.tokens.get(self.at + 1).map(|t| &t.kind)
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::End {
            self.at += 1;
        }
        token
    }

    fn enter(&mut self, pos: usize) -> Result<(), SelectorError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(too_deep(pos));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    fn node(
        &self,
        expr: Expr,
        ty: Ty,
        pos: usize,
        children: &[usize],
    ) -> Result<Node, SelectorError> {
        let depth = 1 + children.iter().copied().max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(too_deep(pos));
        }
        Ok(Node {
            expr,
            ty,
            pos,
            depth,
        })
    }

    fn parse_or(&mut self) -> Result<Node, SelectorError> {
        self.parse_chain(TokenKind::Or, Self::parse_and, "OR", Expr::Or)
    }

    fn parse_and(&mut self) -> Result<Node, SelectorError> {
        self.parse_chain(TokenKind::And, Self::parse_not, "AND", Expr::And)
    }

    /// `operand (op operand)*`, flattened into one n-ary node.
    fn parse_chain(
        &mut self,
        op: TokenKind,
        operand: fn(&mut Self) -> Result<Node, SelectorError>,
        name: &str,
        build: fn(Box<[Expr]>) -> Expr,
    ) -> Result<Node, SelectorError> {
        let first = operand(self)?;
        if self.peek().kind != op {
            return Ok(first);
        }
        let pos = first.pos;
        require_condition(&first, name)?;
        let mut depth = first.depth;
        let mut items = vec![first.expr];
        while self.peek().kind == op {
            self.bump();
            let next = operand(self)?;
            require_condition(&next, name)?;
            depth = depth.max(next.depth);
            items.push(next.expr);
        }
        self.node(build(items.into()), Ty::Bool, pos, &[depth])
    }

    fn parse_not(&mut self) -> Result<Node, SelectorError> {
        if self.peek().kind != TokenKind::Not {
            return self.parse_comparison();
        }
        let pos = self.bump().pos;
        self.enter(pos)?;
        let operand = self.parse_not()?;
        self.leave();
        require_condition(&operand, "NOT")?;
        self.node(
            Expr::Not(Box::new(operand.expr)),
            Ty::Bool,
            pos,
            &[operand.depth],
        )
    }

    fn parse_comparison(&mut self) -> Result<Node, SelectorError> {
        let left = self.parse_additive()?;
        let token = self.peek().clone();
        let result = if let Some(op) = compare_op(&token.kind) {
            self.bump();
            let right = self.parse_additive()?;
            self.compare(op, token.pos, left, right)?
        } else {
            let negated = token.kind == TokenKind::Not
                && matches!(
                    self.peek_kind_after(),
                    Some(TokenKind::Between | TokenKind::Like | TokenKind::In)
                );
            if negated {
                self.bump();
            }
            match self.peek().kind {
                TokenKind::Between => self.between(negated, left)?,
                TokenKind::In => self.in_list(negated, left)?,
                TokenKind::Like => self.like(negated, left)?,
                TokenKind::Is => self.is_null(left)?,
                TokenKind::Not => {
                    return Err(error(
                        token.pos,
                        "unexpected 'NOT' here: expected NOT BETWEEN, NOT LIKE or NOT IN",
                    ))
                }
                _ => return Ok(left),
            }
        };
        let next = self.peek();
        if starts_comparison(&next.kind) {
            return Err(error(
                next.pos,
                format!(
                    "comparisons cannot be chained: unexpected {}; use parentheses or AND",
                    next.kind.describe()
                ),
            ));
        }
        Ok(result)
    }

    fn compare(
        &self,
        op: CompareOp,
        pos: usize,
        left: Node,
        right: Node,
    ) -> Result<Node, SelectorError> {
        check_comparison(op, pos, &left, &right)?;
        let depths = [left.depth, right.depth];
        let expr = Expr::Compare(op, Box::new(left.expr), Box::new(right.expr));
        self.node(expr, Ty::Bool, left.pos, &depths)
    }

    fn between(&mut self, negated: bool, value: Node) -> Result<Node, SelectorError> {
        self.bump();
        require_number(&value, "BETWEEN")?;
        let low = self.parse_additive()?;
        require_number(&low, "BETWEEN")?;
        let and = self.bump();
        if and.kind != TokenKind::And {
            return Err(error(
                and.pos,
                format!("expected AND in BETWEEN, found {}", and.kind.describe()),
            ));
        }
        let high = self.parse_additive()?;
        require_number(&high, "BETWEEN")?;
        let depths = [value.depth, low.depth, high.depth];
        let pos = value.pos;
        let expr = Expr::Between {
            negated,
            value: Box::new(value.expr),
            low: Box::new(low.expr),
            high: Box::new(high.expr),
        };
        self.node(expr, Ty::Bool, pos, &depths)
    }

    fn in_list(&mut self, negated: bool, value: Node) -> Result<Node, SelectorError> {
        self.bump();
        require_string(&value, "IN")?;
        let open = self.bump();
        if open.kind != TokenKind::LParen {
            return Err(error(
                open.pos,
                format!("expected '(' after IN, found {}", open.kind.describe()),
            ));
        }
        if self.peek().kind == TokenKind::RParen {
            return Err(error(self.peek().pos, "IN list is empty"));
        }
        let mut list: Vec<Box<str>> = Vec::new();
        loop {
            let item = self.bump();
            match item.kind {
                TokenKind::Str(s) => list.push(s.into()),
                other => {
                    return Err(error(
                        item.pos,
                        format!(
                            "IN list accepts only string literals, found {}",
                            other.describe()
                        ),
                    ))
                }
            }
            let separator = self.bump();
            match separator.kind {
                TokenKind::Comma => {}
                TokenKind::RParen => break,
                other => {
                    return Err(error(
                        separator.pos,
                        format!("expected ',' or ')' in IN list, found {}", other.describe()),
                    ))
                }
            }
        }
        list.sort_unstable();
        list.dedup();
        let pos = value.pos;
        let depths = [value.depth];
        let expr = Expr::In {
            negated,
            value: Box::new(value.expr),
            list: list.into(),
        };
        self.node(expr, Ty::Bool, pos, &depths)
    }

    fn like(&mut self, negated: bool, value: Node) -> Result<Node, SelectorError> {
        self.bump();
        require_string(&value, "LIKE")?;
        let pattern = self.bump();
        let TokenKind::Str(text) = pattern.kind else {
            return Err(error(
                pattern.pos,
                format!(
                    "LIKE needs a string literal pattern, found {}",
                    pattern.kind.describe()
                ),
            ));
        };
        let mut escape = None;
        if self.peek().kind == TokenKind::Escape {
            self.bump();
            let token = self.bump();
            let TokenKind::Str(esc) = token.kind else {
                return Err(error(
                    token.pos,
                    format!(
                        "ESCAPE needs a one-character string literal, found {}",
                        token.kind.describe()
                    ),
                ));
            };
            let mut chars = esc.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => escape = Some(c),
                _ => {
                    return Err(error(
                        token.pos,
                        format!(
                            "ESCAPE must be exactly one character, found '{}'",
                            excerpt(&esc)
                        ),
                    ))
                }
            }
        }
        let pattern = LikePattern::compile(&text, escape, pattern.pos)?;
        let pos = value.pos;
        let depths = [value.depth];
        let expr = Expr::Like {
            negated,
            value: Box::new(value.expr),
            pattern,
        };
        self.node(expr, Ty::Bool, pos, &depths)
    }

    fn is_null(&mut self, value: Node) -> Result<Node, SelectorError> {
        self.bump();
        let negated = self.peek().kind == TokenKind::Not;
        if negated {
            self.bump();
        }
        let null = self.bump();
        if null.kind != TokenKind::Null {
            let expected = if negated { "IS NOT" } else { "IS" };
            return Err(error(
                null.pos,
                format!(
                    "expected NULL after {expected}, found {}",
                    null.kind.describe()
                ),
            ));
        }
        let pos = value.pos;
        let depths = [value.depth];
        let expr = Expr::IsNull {
            negated,
            value: Box::new(value.expr),
        };
        self.node(expr, Ty::Bool, pos, &depths)
    }

    fn parse_additive(&mut self) -> Result<Node, SelectorError> {
        let mut left = self.parse_multiplicative()?;
        loop {
            let op = match self.peek().kind {
                TokenKind::Plus => ArithOp::Add,
                TokenKind::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            let symbol = self.bump();
            let right = self.parse_multiplicative()?;
            left = self.arith(op, &symbol, left, right)?;
        }
    }

    fn parse_multiplicative(&mut self) -> Result<Node, SelectorError> {
        let mut left = self.parse_unary()?;
        loop {
            let op = match self.peek().kind {
                TokenKind::Star => ArithOp::Mul,
                TokenKind::Slash => ArithOp::Div,
                _ => return Ok(left),
            };
            let symbol = self.bump();
            let right = self.parse_unary()?;
            left = self.arith(op, &symbol, left, right)?;
        }
    }

    fn arith(
        &self,
        op: ArithOp,
        symbol: &Token,
        left: Node,
        right: Node,
    ) -> Result<Node, SelectorError> {
        let user = symbol.kind.describe();
        require_number(&left, &user)?;
        require_number(&right, &user)?;
        let depths = [left.depth, right.depth];
        let pos = left.pos;
        let expr = Expr::Arith(op, Box::new(left.expr), Box::new(right.expr));
        self.node(expr, Ty::Num, pos, &depths)
    }

    fn parse_unary(&mut self) -> Result<Node, SelectorError> {
        let sign = match self.peek().kind {
            TokenKind::Plus => Sign::Plus,
            TokenKind::Minus => Sign::Minus,
            _ => return self.parse_primary(),
        };
        let pos = self.bump().pos;
        // i64::MIN has no positive counterpart, so `-9223372036854775808`
        // is recognised as one literal.
        if sign == Sign::Minus && self.peek().kind == TokenKind::Integer(1 << 63) {
            self.bump();
            return self.node(Expr::Literal(Literal::Long(i64::MIN)), Ty::Num, pos, &[]);
        }
        self.enter(pos)?;
        let operand = self.parse_unary()?;
        self.leave();
        require_number(&operand, if sign == Sign::Minus { "'-'" } else { "'+'" })?;
        // Fold signs on literals so `-5` costs nothing per message.
        let expr = match (sign, operand.expr) {
            (Sign::Minus, Expr::Literal(Literal::Long(n))) => Expr::Literal(Literal::Long(-n)),
            (Sign::Minus, Expr::Literal(Literal::Double(d))) => Expr::Literal(Literal::Double(-d)),
            (Sign::Plus, literal @ Expr::Literal(_)) => literal,
            (sign, other) => Expr::Unary(sign, Box::new(other)),
        };
        self.node(expr, Ty::Num, pos, &[operand.depth])
    }

    fn parse_primary(&mut self) -> Result<Node, SelectorError> {
        let token = self.bump();
        let pos = token.pos;
        let (expr, ty) = match token.kind {
            TokenKind::Str(s) => (Expr::Literal(Literal::Str(s.into())), Ty::Str),
            TokenKind::Integer(n) => match i64::try_from(n) {
                Ok(n) => (Expr::Literal(Literal::Long(n)), Ty::Num),
                Err(_) => {
                    return Err(error(
                        pos,
                        "integer literal is out of range for a 64-bit signed integer",
                    ))
                }
            },
            TokenKind::Float(f) => (Expr::Literal(Literal::Double(f)), Ty::Num),
            TokenKind::True => (Expr::Literal(Literal::Bool(true)), Ty::Bool),
            TokenKind::False => (Expr::Literal(Literal::Bool(false)), Ty::Bool),
            TokenKind::Ident(name) => (Expr::Property(name.into()), Ty::Any),
            TokenKind::LParen => {
                self.enter(pos)?;
                let inner = self.parse_or()?;
                self.leave();
                let close = self.bump();
                if close.kind != TokenKind::RParen {
                    return Err(error(
                        close.pos,
                        format!(
                            "expected ')' to close the '(' at position {pos}, found {}",
                            close.kind.describe()
                        ),
                    ));
                }
                return Ok(Node { pos, ..inner });
            }
            TokenKind::Null => {
                return Err(error(
                    pos,
                    "NULL can only be used in IS NULL or IS NOT NULL \
                     (a comparison with NULL is never true)",
                ))
            }
            other => {
                return Err(error(
                    pos,
                    format!("expected an operand, found {}", other.describe()),
                ))
            }
        };
        self.node(expr, ty, pos, &[])
    }
}

static END: Token = Token {
    kind: TokenKind::End,
    pos: 1,
};

fn too_deep(pos: usize) -> SelectorError {
    error(
        pos,
        format!("selector is nested too deeply (more than {MAX_DEPTH} levels)"),
    )
}
