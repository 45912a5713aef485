//! Turns selector text into tokens, each tagged with the 1-based character
//! column where it starts so every parse error can point at the culprit.
//!
//! Literal forms follow JMS 1.1 §3.8.1.1 plus what ActiveMQ's grammar also
//! accepts (hex and octal integers, an `L` suffix, `--` and `/* */`
//! comments, `"double quoted"` identifiers for header names such as
//! `"content-type"` that are not Java identifiers).

use super::SelectorError;

/// One lexical unit.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind {
    Ident(String),
    Str(String),
    /// The magnitude of an exact numeric literal. Up to 2^63 is kept so
    /// that `-9223372036854775808` can be written; the parser rejects 2^63
    /// without a minus sign.
    Integer(u64),
    Float(f64),
    True,
    False,
    Null,
    Not,
    And,
    Or,
    Between,
    Like,
    In,
    Is,
    Escape,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    Comma,
    End,
}

impl TokenKind {
    /// How an error message names this token.
    pub(super) fn describe(&self) -> String {
        match self {
            TokenKind::Ident(name) => format!("identifier '{}'", excerpt(name)),
            TokenKind::Str(s) => format!("string '{}'", excerpt(s)),
            TokenKind::Integer(n) => format!("number {n}"),
            TokenKind::Float(f) => format!("number {}", excerpt(&f.to_string())),
            TokenKind::End => "the end of the selector".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            TokenKind::True => "TRUE",
            TokenKind::False => "FALSE",
            TokenKind::Null => "NULL",
            TokenKind::Not => "NOT",
            TokenKind::And => "AND",
            TokenKind::Or => "OR",
            TokenKind::Between => "BETWEEN",
            TokenKind::Like => "LIKE",
            TokenKind::In => "IN",
            TokenKind::Is => "IS",
            TokenKind::Escape => "ESCAPE",
            TokenKind::Eq => "=",
            TokenKind::Ne => "<>",
            TokenKind::Lt => "<",
            TokenKind::Le => "<=",
            TokenKind::Gt => ">",
            TokenKind::Ge => ">=",
            TokenKind::Plus => "+",
            TokenKind::Minus => "-",
            TokenKind::Star => "*",
            TokenKind::Slash => "/",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::Comma => ",",
            TokenKind::Ident(_)
            | TokenKind::Str(_)
            | TokenKind::Integer(_)
            | TokenKind::Float(_)
            | TokenKind::End => "",
        }
    }
}

/// Client text quoted in an error message, kept short and on one line: the
/// message travels back in a STOMP `message` header.
pub(super) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A token and the 1-based character column it starts at.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) kind: TokenKind,
    pub(super) pos: usize,
}

/// Splits `text` into tokens, always ending with [`TokenKind::End`].
pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, SelectorError> {
    Lexer {
        chars: text.chars().collect(),
        at: 0,
    }
    .run()
}

struct Lexer {
    chars: Vec<char>,
    /// 0-based index into `chars`; error columns are `at + 1`.
    at: usize,
}

fn error(pos: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        position: pos,
        message: message.into(),
    }
}

/// Java identifier rules, plus `.` inside a name as ActiveMQ allows
/// (`activemq.foo`).
fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn ident_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '.'
}

fn keyword(word: &str) -> Option<TokenKind> {
    const KEYWORDS: [(&str, TokenKind); 11] = [
        ("TRUE", TokenKind::True),
        ("FALSE", TokenKind::False),
        ("NULL", TokenKind::Null),
        ("NOT", TokenKind::Not),
        ("AND", TokenKind::And),
        ("OR", TokenKind::Or),
        ("BETWEEN", TokenKind::Between),
        ("LIKE", TokenKind::Like),
        ("IN", TokenKind::In),
        ("IS", TokenKind::Is),
        ("ESCAPE", TokenKind::Escape),
    ];
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, kind)| kind.clone())
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn run(mut self) -> Result<Vec<Token>, SelectorError> {
        let mut tokens = Vec::new();
        loop {
            self.skip_blanks_and_comments()?;
            let pos = self.at + 1;
            let Some(c) = self.peek(0) else {
                tokens.push(Token {
                    kind: TokenKind::End,
                    pos,
                });
                return Ok(tokens);
            };
            let kind = match c {
                '\'' => TokenKind::Str(self.quoted('\'', "string literal")?),
                '"' => TokenKind::Ident(self.quoted('"', "quoted identifier")?),
                c if ident_start(c) => self.word(),
                c if c.is_ascii_digit() => self.number()?,
                '.' if self.peek(1).is_some_and(|d| d.is_ascii_digit()) => self.number()?,
                _ => self.operator(c)?,
            };
            tokens.push(Token { kind, pos });
        }
    }

    fn skip_blanks_and_comments(&mut self) -> Result<(), SelectorError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_whitespace() => self.at += 1,
                (Some('-'), Some('-')) => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.at += 1;
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.at + 1;
                    self.at += 2;
                    loop {
                        match (self.peek(0), self.peek(1)) {
                            (Some('*'), Some('/')) => {
                                self.at += 2;
                                break;
                            }
                            (Some(_), _) => self.at += 1,
                            (None, _) => {
                                return Err(error(start, "unterminated comment: missing '*/'"))
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// A literal enclosed in `quote`, where a doubled quote stands for one.
    fn quoted(&mut self, quote: char, what: &str) -> Result<String, SelectorError> {
        let start = self.at + 1;
        self.at += 1;
        let mut value = String::new();
        loop {
            match self.peek(0) {
                None => {
                    return Err(error(
                        start,
                        format!("unterminated {what}: missing closing {quote}"),
                    ))
                }
                Some(c) if c == quote => {
                    if self.peek(1) == Some(quote) {
                        value.push(quote);
                        self.at += 2;
                    } else {
                        self.at += 1;
                        if quote == '"' && value.is_empty() {
                            return Err(error(start, "empty quoted identifier"));
                        }
                        return Ok(value);
                    }
                }
                Some(c) => {
                    value.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn word(&mut self) -> TokenKind {
        let start = self.at;
        while self.peek(0).is_some_and(ident_part) {
            self.at += 1;
        }
        let word: String = self.chars[start..self.at].iter().collect();
        keyword(&word).unwrap_or(TokenKind::Ident(word))
    }

    fn digits(&mut self, radix: u32) -> usize {
        let start = self.at;
        while self.peek(0).is_some_and(|c| c.is_digit(radix)) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<TokenKind, SelectorError> {
        let start = self.at;
        let pos = start + 1;
        if self.peek(0) == Some('0') && matches!(self.peek(1), Some('x' | 'X')) {
            self.at += 2;
            let digits_at = self.at;
            if self.digits(16) == 0 {
                return Err(error(pos, "hexadecimal literal has no digits after 0x"));
            }
            let text: String = self.chars[digits_at..self.at].iter().collect();
            return self.integer_end(pos, &text, 16);
        }
        let int_digits = self.digits(10);
        let mut is_float = false;
        if self.peek(0) == Some('.') {
            is_float = true;
            self.at += 1;
            self.digits(10);
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            is_float = true;
            self.at += 1;
            if matches!(self.peek(0), Some('+' | '-')) {
                self.at += 1;
            }
            if self.digits(10) == 0 {
                return Err(error(pos, "exponent of a numeric literal has no digits"));
            }
        }
        let text: String = self.chars[start..self.at].iter().collect();
        if is_float {
            if self.peek(0).is_some_and(ident_part) {
                return Err(self.bad_number(pos));
            }
            return match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(TokenKind::Float(f)),
                _ => Err(error(
                    pos,
                    format!("numeric literal {} is out of range", excerpt(&text)),
                )),
            };
        }
        if int_digits > 1 && text.starts_with('0') {
            // Java and ActiveMQ read a leading zero as octal.
            if text.chars().any(|c| !c.is_digit(8)) {
                return Err(error(
                    pos,
                    format!(
                        "invalid octal literal {} (a leading 0 means octal)",
                        excerpt(&text)
                    ),
                ));
            }
            return self.integer_end(pos, &text[1..], 8);
        }
        self.integer_end(pos, &text, 10)
    }

    /// Finishes an integer: optional `L` suffix, nothing glued after it.
    fn integer_end(
        &mut self,
        pos: usize,
        digits: &str,
        radix: u32,
    ) -> Result<TokenKind, SelectorError> {
        if matches!(self.peek(0), Some('l' | 'L')) {
            self.at += 1;
        }
        if self.peek(0).is_some_and(ident_part) {
            return Err(self.bad_number(pos));
        }
        const LIMIT: u64 = 1 << 63;
        match u64::from_str_radix(digits, radix) {
            Ok(n) if n <= LIMIT => Ok(TokenKind::Integer(n)),
            _ => Err(error(
                pos,
                "integer literal is out of range for a 64-bit signed integer",
            )),
        }
    }

    fn bad_number(&self, pos: usize) -> SelectorError {
        error(
            pos,
            format!(
                "invalid numeric literal: unexpected '{}' after the digits",
                self.peek(0).unwrap_or(' ')
            ),
        )
    }

    fn operator(&mut self, c: char) -> Result<TokenKind, SelectorError> {
        let pos = self.at + 1;
        let next = self.peek(1);
        let (kind, len) = match (c, next) {
            ('<', Some('>')) => (TokenKind::Ne, 2),
            ('<', Some('=')) => (TokenKind::Le, 2),
            ('>', Some('=')) => (TokenKind::Ge, 2),
            ('=', Some('=')) => return Err(error(pos, "'==' is not a selector operator; use '='")),
            ('!', Some('=')) => {
                return Err(error(pos, "'!=' is not a selector operator; use '<>'"))
            }
            ('<', _) => (TokenKind::Lt, 1),
            ('>', _) => (TokenKind::Gt, 1),
            ('=', _) => (TokenKind::Eq, 1),
            ('+', _) => (TokenKind::Plus, 1),
            ('-', _) => (TokenKind::Minus, 1),
            ('*', _) => (TokenKind::Star, 1),
            ('/', _) => (TokenKind::Slash, 1),
            ('(', _) => (TokenKind::LParen, 1),
            (')', _) => (TokenKind::RParen, 1),
            (',', _) => (TokenKind::Comma, 1),
            _ => {
                return Err(error(
                    pos,
                    format!("unexpected character '{}'", excerpt(&c.to_string())),
                ))
            }
        };
        self.at += len;
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn numbers_in_every_accepted_form() {
        use TokenKind::*;
        assert_eq!(
            kinds("57 57L 0x1F 017 7E3 57.9E2 7. .5 1e-2 0"),
            vec![
                Integer(57),
                Integer(57),
                Integer(31),
                Integer(15),
                Float(7000.0),
                Float(5790.0),
                Float(7.0),
                Float(0.5),
                Float(0.01),
                Integer(0),
                End
            ]
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_identifiers_keep_case() {
        use TokenKind::*;
        assert_eq!(
            kinds("not And oR between LIKE In is Escape true FALSE null Color $x _y a.b"),
            vec![
                Not,
                And,
                Or,
                Between,
                Like,
                In,
                Is,
                Escape,
                True,
                False,
                Null,
                Ident("Color".into()),
                Ident("$x".into()),
                Ident("_y".into()),
                Ident("a.b".into()),
                End
            ]
        );
    }

    #[test]
    fn quotes_double_to_escape_and_comments_are_skipped() {
        use TokenKind::*;
        assert_eq!(
            kinds("'it''s' -- rest\n\"content-type\" /* c */ <> <= >="),
            vec![
                Str("it's".into()),
                Ident("content-type".into()),
                Ne,
                Le,
                Ge,
                End
            ]
        );
    }

    #[test]
    fn positions_are_one_based_character_columns() {
        let tokens = tokenize("é = 'ü' AND x").unwrap();
        let positions: Vec<usize> = tokens.iter().map(|t| t.pos).collect();
        assert_eq!(positions, vec![1, 3, 5, 9, 13, 14]);
    }

    #[test]
    fn malformed_literals_are_rejected_with_their_position() {
        for (text, pos) in [
            ("a = 'abc", 5),
            ("a = 0x", 5),
            ("a = 09", 5),
            ("a = 1e", 5),
            ("a = 12abc", 5),
            ("a = 9223372036854775809", 5),
            ("a = 1e999", 5),
            ("a # 1", 3),
            ("a == 1", 3),
            ("a != 1", 3),
            ("\"\" = 1", 1),
            ("a = 1 /* open", 7),
        ] {
            let err = tokenize(text).unwrap_err();
            assert_eq!(err.position, pos, "{text}: {err}");
        }
    }
}
