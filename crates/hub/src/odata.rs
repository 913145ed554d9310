//! The OData `$filter` dialect of Azure Web PubSub, parsed into a [`Filter`].
//!
//! REST calls that target connections (`:send`, `:addToGroups`, …) carry a
//! filter such as
//! `'0~Lw~YQ' in groups or '0~Lw~Yg' in groups and not ('0~Lw~Yw' in groups)`.
//! [`parse`] turns that text into a [`Filter`]; [`to_odata`] (or the
//! [`Display`](fmt::Display) impl of [`Filter`]) prints one back.
//!
//! # Grammar
//!
//! ```text
//! filter     := ws* (or_expr ws*)?            (empty => every connection)
//! or_expr    := and_expr ('or' and_expr)*
//! and_expr   := unary ('and' unary)*
//! unary      := 'not' not_arg | primary
//! not_arg    := 'not' not_arg | '(' or_expr ')' | 'true' | 'false'
//! primary    := '(' or_expr ')' | 'true' | 'false' | comparison
//! comparison := value ('eq' | 'ne') value
//!             | value 'in' 'groups'
//!             | value 'in' '(' literal (',' literal)* ')'
//! value      := 'connectionId' | 'userId' | literal
//! literal    := string | 'null'
//! string     := "'" ( [^'] | "''" )* "'"
//! ```
//!
//! - Precedence, tightest first: `not`, then `eq`/`ne`/`in`, then `and`,
//!   then `or`. So `not` takes a parenthesised expression (or `true`,
//!   `false`, another `not`): `not ('g' in groups)`, never `not 'g' in groups`.
//!   `a or b and not (c)` means `a or (b and not (c))`.
//! - Keywords and identifiers are ASCII case-insensitive (`AND`, `UserId`,
//!   `Groups`); string contents are compared exactly. Whitespace is spaces,
//!   tabs, CR, LF and form feed.
//! - A comparison may be written either way round (`'alice' eq userId`).
//!   `ne` is the negation of `eq`; `v in ('a', 'b')` is `v eq 'a' or v eq 'b'`.
//! - `userId eq null` holds for connections without a user; `connectionId eq
//!   null` holds for none. Comparisons of two literals are folded to `true`
//!   or `false`.
//! - Not supported (rejected with an error): `gt`/`ge`/`lt`/`le`, functions
//!   such as `length(…)`, numbers, and comparing two identifiers.
//!
//! # Limits
//!
//! Every filter comes from the network, so the parser bounds its work: at
//! most [`MAX_FILTER_LEN`] bytes, [`MAX_DEPTH`] levels of parentheses and
//! `not`s, and [`MAX_TERMS`] terms (comparisons, `in`-list items, `true`,
//! `false`). Parsing is linear in the input and never recurses deeper than
//! [`MAX_DEPTH`], and the resulting [`Filter`] is at most that deep, so
//! evaluating or dropping it is bounded too.

use std::fmt;

use super::Filter;

/// The longest filter accepted, in bytes (32 KiB).
///
/// A Socket.IO `io.to([...rooms])` emits about 30 bytes per room, so this
/// admits about a thousand rooms; the documented guideline of the real
/// service is "fewer than about 100 clauses".
pub const MAX_FILTER_LEN: usize = 32 * 1024;

/// The deepest nesting of parentheses and `not`s accepted.
pub const MAX_DEPTH: usize = 64;

/// The most terms accepted: comparisons, items of `in` lists, and the
/// literals `true` and `false`.
pub const MAX_TERMS: usize = 1024;

/// Why a filter was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterErrorKind {
    /// The text is not a valid filter.
    Syntax,
    /// The text exceeds [`MAX_FILTER_LEN`], [`MAX_DEPTH`] or [`MAX_TERMS`].
    Limit,
}

impl fmt::Display for FilterErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterErrorKind::Syntax => "filter syntax error",
            FilterErrorKind::Limit => "filter too large",
        })
    }
}

/// A rejected filter: where, and what was expected there.
///
/// Displays as, for example,
/// `filter syntax error at position 16: expected a string literal or null after 'eq', found 'and'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at position {position}: {message}")]
pub struct FilterError {
    /// Syntax error or exceeded limit.
    pub kind: FilterErrorKind,
    /// Byte offset into the filter text (0-based) of the offending token.
    pub position: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl FilterError {
    fn syntax(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            kind: FilterErrorKind::Syntax,
            position,
            message: message.into(),
        }
    }

    fn limit(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            kind: FilterErrorKind::Limit,
            position,
            message: message.into(),
        }
    }
}

/// Parses an OData filter; empty or blank text means [`Filter::All`].
///
/// See the [module documentation](self) for the grammar and limits. Never
/// panics, whatever the input.
///
/// ```
/// use portcullis_hub::{odata, Filter};
///
/// let filter = odata::parse("'room' in groups and not (userId eq 'bob')").unwrap();
/// assert_eq!(
///     filter,
///     Filter::And(vec![
///         Filter::InGroup("room".into()),
///         Filter::Not(Box::new(Filter::UserId("bob".into()))),
///     ])
/// );
/// assert_eq!(odata::parse("  ").unwrap(), Filter::All);
///
/// let error = odata::parse("connectionId eq and").unwrap_err();
/// assert_eq!(error.position, 16);
/// assert_eq!(
///     error.to_string(),
///     "filter syntax error at position 16: expected a string literal or null after 'eq', found 'and'"
/// );
/// ```
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(FilterError::limit(
            MAX_FILTER_LEN,
            format!(
                "the filter is {} bytes long; at most {MAX_FILTER_LEN} are allowed",
                input.len()
            ),
        ));
    }
    let mut parser = Parser::new(input)?;
    if parser.tok.kind == Kind::End {
        return Ok(Filter::All);
    }
    let filter = parser.or_expr()?;
    if parser.tok.kind != Kind::End {
        return Err(parser.unexpected("'and', 'or' or the end of the filter"));
    }
    Ok(filter)
}

/// Prints `filter` as OData text that [`parse`] reads back as an equivalent
/// filter (the same as `filter.to_string()`).
///
/// [`Filter::All`] prints as `true`; an empty [`Filter::Or`] as `false`.
pub fn to_odata(filter: &Filter) -> String {
    filter.to_string()
}

// ---------------------------------------------------------------------------
// Printing

/// Binding strength of what is printed: `or` < `and` < everything else.
const LEVEL_OR: u8 = 0;
const LEVEL_AND: u8 = 1;

impl fmt::Display for Filter {
    /// OData text for the filter; see [`to_odata`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_filter(f, self, LEVEL_OR)
    }
}

fn write_filter(f: &mut fmt::Formatter<'_>, filter: &Filter, min_level: u8) -> fmt::Result {
    match filter {
        Filter::All => f.write_str("true"),
        Filter::ConnectionId(id) => {
            f.write_str("connectionId eq ")?;
            write_literal(f, id)
        }
        Filter::UserId(user) => {
            f.write_str("userId eq ")?;
            write_literal(f, user)
        }
        Filter::UserIdIsNull => f.write_str("userId eq null"),
        Filter::InGroup(group) => {
            write_literal(f, group)?;
            f.write_str(" in groups")
        }
        Filter::Not(inner) => match &**inner {
            Filter::All => f.write_str("false"),
            Filter::Not(_) => {
                f.write_str("not ")?;
                write_filter(f, inner, LEVEL_OR)
            }
            _ => {
                f.write_str("not (")?;
                write_filter(f, inner, LEVEL_OR)?;
                f.write_str(")")
            }
        },
        Filter::And(all) => write_list(f, all, "true", " and ", LEVEL_AND, min_level),
        Filter::Or(any) => write_list(f, any, "false", " or ", LEVEL_OR, min_level),
    }
}

fn write_list(
    f: &mut fmt::Formatter<'_>,
    items: &[Filter],
    empty: &str,
    separator: &str,
    level: u8,
    min_level: u8,
) -> fmt::Result {
    match items {
        [] => f.write_str(empty),
        [only] => write_filter(f, only, min_level),
        _ => {
            let wrap = level < min_level;
            if wrap {
                f.write_str("(")?;
            }
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(separator)?;
                }
                write_filter(f, item, level)?;
            }
            if wrap {
                f.write_str(")")?;
            }
            Ok(())
        }
    }
}

fn write_literal(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("'")?;
    for (i, part) in text.split('\'').enumerate() {
        if i > 0 {
            f.write_str("''")?;
        }
        f.write_str(part)?;
    }
    f.write_str("'")
}

// ---------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    LParen,
    RParen,
    Comma,
    /// A string literal, unescaped.
    Str(String),
    /// A run of ASCII letters, digits and `_`: keyword, identifier, number.
    Word,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// Byte offsets of the token's source text.
    start: usize,
    end: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Reads the token at or after byte `pos` (always a char boundary).
fn lex(input: &str, mut pos: usize) -> Result<Token, FilterError> {
    let bytes = input.as_bytes();
    while pos < bytes.len() && is_space(bytes[pos]) {
        pos += 1;
    }
    let Some(&first) = bytes.get(pos) else {
        return Ok(Token {
            kind: Kind::End,
            start: bytes.len(),
            end: bytes.len(),
        });
    };
    let simple = |kind| {
        Ok(Token {
            kind,
            start: pos,
            end: pos + 1,
        })
    };
    match first {
        b'(' => simple(Kind::LParen),
        b')' => simple(Kind::RParen),
        b',' => simple(Kind::Comma),
        b'\'' => lex_string(input, pos),
        b if is_word(b) => {
            let end = bytes[pos..]
                .iter()
                .position(|&b| !is_word(b))
                .map_or(bytes.len(), |n| pos + n);
            Ok(Token {
                kind: Kind::Word,
                start: pos,
                end,
            })
        }
        _ => {
            let c = input[pos..].chars().next().unwrap_or('\u{fffd}');
            Err(FilterError::syntax(
                pos,
                format!("unexpected character '{}'", c.escape_debug()),
            ))
        }
    }
}

/// A string literal starting with the quote at `start`; `''` is a quote.
fn lex_string(input: &str, start: usize) -> Result<Token, FilterError> {
    let mut value = String::new();
    let mut from = start + 1;
    loop {
        let Some(offset) = input[from..].find('\'') else {
            return Err(FilterError::syntax(
                start,
                "unterminated string literal (a quote inside a string is written '')",
            ));
        };
        let quote = from + offset;
        value.push_str(&input[from..quote]);
        if input.as_bytes().get(quote + 1) == Some(&b'\'') {
            value.push('\'');
            from = quote + 2;
        } else {
            return Ok(Token {
                kind: Kind::Str(value),
                start,
                end: quote + 1,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// One side of a comparison.
#[derive(Debug, Clone)]
enum Value {
    ConnectionId,
    UserId,
    Groups,
    Str(String),
    Null,
}

/// Never matches.
fn never() -> Filter {
    Filter::Not(Box::new(Filter::All))
}

fn constant(value: bool) -> Filter {
    if value { Filter::All } else { never() }
}

struct Parser<'a> {
    input: &'a str,
    /// The current (not yet consumed) token.
    tok: Token,
    /// Source span of the previously consumed token, for messages.
    prev: Option<(usize, usize)>,
    depth: usize,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, FilterError> {
        Ok(Parser {
            input,
            tok: lex(input, 0)?,
            prev: None,
            depth: 0,
            terms: 0,
        })
    }

    fn advance(&mut self) -> Result<(), FilterError> {
        let next = lex(self.input, self.tok.end)?;
        self.prev = Some((self.tok.start, self.tok.end));
        self.tok = next;
        Ok(())
    }

    fn text(&self) -> &'a str {
        &self.input[self.tok.start..self.tok.end]
    }

    /// Whether the current token is the keyword or identifier `word`.
    fn at(&self, word: &str) -> bool {
        self.tok.kind == Kind::Word && self.text().eq_ignore_ascii_case(word)
    }

    fn describe(&self, start: usize, end: usize) -> String {
        if start >= self.input.len() {
            return "the end of the filter".to_owned();
        }
        let text = &self.input[start..end];
        let shown = shorten(text);
        if text.starts_with('\'') {
            format!("string literal {shown}")
        } else {
            format!("'{shown}'")
        }
    }

    /// "expected X [after 'prev'], found Y" at the current token.
    fn unexpected(&self, expected: &str) -> FilterError {
        let found = self.describe(self.tok.start, self.tok.end);
        let message = match self.prev {
            Some((start, end)) => format!(
                "expected {expected} after {}, found {found}",
                self.describe(start, end)
            ),
            None => format!("expected {expected}, found {found}"),
        };
        FilterError::syntax(self.tok.start, message)
    }

    /// Enters a parenthesis or `not` at `pos`.
    fn enter(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::limit(
                pos,
                format!("parentheses and 'not' nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// Counts one term starting at `pos`.
    fn term(&mut self, pos: usize) -> Result<(), FilterError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(FilterError::limit(
                pos,
                format!("the filter has more than {MAX_TERMS} terms"),
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Filter, FilterError> {
        let first = self.and_expr()?;
        if !self.at("or") {
            return Ok(first);
        }
        let mut any = Vec::new();
        push_flat(&mut any, first, false);
        while self.at("or") {
            self.advance()?;
            let next = self.and_expr()?;
            push_flat(&mut any, next, false);
        }
        Ok(Filter::Or(any))
    }

    fn and_expr(&mut self) -> Result<Filter, FilterError> {
        let first = self.unary()?;
        if !self.at("and") {
            return Ok(first);
        }
        let mut all = Vec::new();
        push_flat(&mut all, first, true);
        while self.at("and") {
            self.advance()?;
            let next = self.unary()?;
            push_flat(&mut all, next, true);
        }
        Ok(Filter::And(all))
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.at("not") {
            self.not_expr()
        } else {
            self.primary()
        }
    }

    /// `not` and its operand; the current token is `not`.
    fn not_expr(&mut self) -> Result<Filter, FilterError> {
        self.enter(self.tok.start)?;
        self.advance()?;
        let inner = if self.at("not") {
            self.not_expr()?
        } else if self.tok.kind == Kind::LParen || self.at("true") || self.at("false") {
            self.primary()?
        } else {
            let mut error = self.unexpected("'('");
            error.message.push_str(
                "; 'not' binds tighter than 'eq', 'ne' and 'in', so write not (… in groups)",
            );
            return Err(error);
        };
        self.depth -= 1;
        Ok(Filter::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        if self.tok.kind == Kind::LParen {
            let open = self.tok.start;
            self.enter(open)?;
            self.advance()?;
            if self.tok.kind == Kind::RParen {
                return Err(self.unexpected("a filter expression"));
            }
            let inner = self.or_expr()?;
            if self.tok.kind != Kind::RParen {
                return Err(self.unexpected("'and', 'or' or ')'"));
            }
            self.advance()?;
            self.depth -= 1;
            return Ok(inner);
        }
        for (word, value) in [("true", true), ("false", false)] {
            if self.at(word) {
                self.term(self.tok.start)?;
                self.advance()?;
                return Ok(constant(value));
            }
        }
        self.comparison()
    }

    /// Reads a value: an identifier, a string literal or `null`.
    fn value(&mut self, expected: &str) -> Result<Value, FilterError> {
        let value = match &self.tok.kind {
            Kind::Str(text) => Value::Str(text.clone()),
            Kind::Word => {
                let word = self.text();
                let known = [
                    ("connectionId", Value::ConnectionId),
                    ("userId", Value::UserId),
                    ("groups", Value::Groups),
                    ("null", Value::Null),
                ]
                .into_iter()
                .find(|(name, _)| word.eq_ignore_ascii_case(name));
                match known {
                    Some((_, value)) => value,
                    None => return Err(self.unknown_word(expected)),
                }
            }
            _ => return Err(self.unexpected(expected)),
        };
        self.advance()?;
        Ok(value)
    }

    /// The error for a word that is not a value.
    fn unknown_word(&self, expected: &str) -> FilterError {
        let word = self.text();
        const KEYWORDS: [&str; 8] = ["and", "or", "not", "eq", "ne", "in", "true", "false"];
        if word.starts_with(|c: char| c.is_ascii_digit())
            || KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k))
        {
            return self.unexpected(expected);
        }
        let shown = shorten(word);
        let rest = self.input[self.tok.end..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        let message = if rest.starts_with('(') {
            format!("function '{shown}' is not supported")
        } else {
            format!("unknown identifier '{shown}'; expected connectionId, userId or groups")
        };
        FilterError::syntax(self.tok.start, message)
    }

    fn comparison(&mut self) -> Result<Filter, FilterError> {
        let left_pos = self.tok.start;
        let left = self.value("a filter expression")?;
        if matches!(left, Value::Groups) {
            return Err(FilterError::syntax(
                left_pos,
                "'groups' is a collection: test membership with 'group' in groups",
            ));
        }
        let op_pos = self.tok.start;
        if self.at("eq") || self.at("ne") {
            let negate = self.at("ne");
            self.term(left_pos)?;
            let expected = if matches!(left, Value::Str(_) | Value::Null) {
                "connectionId, userId, a string literal or null"
            } else {
                "a string literal or null"
            };
            self.advance()?;
            let right_pos = self.tok.start;
            let right = self.value(expected)?;
            let filter = compare(left, right, right_pos)?;
            return Ok(if negate {
                match filter {
                    Filter::All => never(),
                    Filter::Not(inner) if *inner == Filter::All => Filter::All,
                    other => Filter::Not(Box::new(other)),
                }
            } else {
                filter
            });
        }
        if self.at("in") {
            self.advance()?;
            if self.at("groups") {
                let Value::Str(group) = left else {
                    return Err(FilterError::syntax(
                        left_pos,
                        "expected a string literal before 'in groups'",
                    ));
                };
                self.term(left_pos)?;
                self.advance()?;
                return Ok(Filter::InGroup(group));
            }
            if self.tok.kind == Kind::LParen {
                return self.in_list(left);
            }
            return Err(self.unexpected("'groups' or a parenthesised list of string literals"));
        }
        for op in ["gt", "ge", "lt", "le"] {
            if self.at(op) {
                return Err(FilterError::syntax(
                    op_pos,
                    format!("operator '{op}' is not supported; expected 'eq', 'ne' or 'in'"),
                ));
            }
        }
        Err(self.unexpected("'eq', 'ne' or 'in'"))
    }

    /// `left in ( literal, … )`; the current token is `(`.
    fn in_list(&mut self, left: Value) -> Result<Filter, FilterError> {
        self.advance()?;
        let mut any = Vec::new();
        loop {
            let item_pos = self.tok.start;
            let item = match &self.tok.kind {
                Kind::Str(text) => Value::Str(text.clone()),
                Kind::Word if self.at("null") => Value::Null,
                _ => return Err(self.unexpected("a string literal or null")),
            };
            self.term(item_pos)?;
            self.advance()?;
            push_flat(&mut any, compare(left.clone(), item, item_pos)?, false);
            match self.tok.kind {
                Kind::Comma => self.advance()?,
                Kind::RParen => {
                    self.advance()?;
                    break;
                }
                _ => return Err(self.unexpected("',' or ')'")),
            }
        }
        Ok(if any.len() == 1 {
            any.pop().unwrap_or(Filter::All)
        } else {
            Filter::Or(any)
        })
    }
}

/// `left eq right`; `right_pos` locates errors about the pairing.
fn compare(left: Value, right: Value, right_pos: usize) -> Result<Filter, FilterError> {
    use Value as V;
    match (left, right) {
        (V::Groups, _) | (_, V::Groups) => Err(FilterError::syntax(
            right_pos,
            "'groups' is a collection: test membership with 'group' in groups",
        )),
        (V::ConnectionId, V::Str(id)) | (V::Str(id), V::ConnectionId) => {
            Ok(Filter::ConnectionId(id))
        }
        (V::UserId, V::Str(user)) | (V::Str(user), V::UserId) => Ok(Filter::UserId(user)),
        (V::UserId, V::Null) | (V::Null, V::UserId) => Ok(Filter::UserIdIsNull),
        (V::ConnectionId, V::Null) | (V::Null, V::ConnectionId) => Ok(never()),
        (V::Str(a), V::Str(b)) => Ok(constant(a == b)),
        (V::Null, V::Null) => Ok(Filter::All),
        (V::Str(_), V::Null) | (V::Null, V::Str(_)) => Ok(never()),
        (V::ConnectionId | V::UserId, V::ConnectionId | V::UserId) => Err(FilterError::syntax(
            right_pos,
            "comparing two identifiers is not supported; expected a string literal or null",
        )),
    }
}

/// Appends `filter` to the operands of an `and` (`and_list`) or `or`,
/// splicing in a nested operator of the same kind.
fn push_flat(items: &mut Vec<Filter>, filter: Filter, and_list: bool) {
    match filter {
        Filter::And(inner) if and_list => items.extend(inner),
        Filter::Or(inner) if !and_list => items.extend(inner),
        other => items.push(other),
    }
}

/// At most about 40 bytes of `text`, cut on a char boundary, with control
/// characters escaped.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::new();
    for (i, c) in text.char_indices() {
        if i >= MAX {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FilterSubject;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Subject {
        id: String,
        user: Option<String>,
        groups: Vec<String>,
    }

    impl FilterSubject for Subject {
        fn connection_id(&self) -> &str {
            &self.id
        }
        fn user_id(&self) -> Option<&str> {
            self.user.as_deref()
        }
        fn in_group(&self, group: &str) -> bool {
            self.groups.iter().any(|g| g == group)
        }
    }

    fn subject(id: &str, user: Option<&str>, groups: &[&str]) -> Subject {
        Subject {
            id: id.to_owned(),
            user: user.map(str::to_owned),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn group(g: &str) -> Filter {
        Filter::InGroup(g.to_owned())
    }

    fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }

    fn ok(text: &str) -> Filter {
        match parse(text) {
            Ok(f) => f,
            Err(e) => panic!("{text:?} did not parse: {e}"),
        }
    }

    fn err(text: &str) -> FilterError {
        match parse(text) {
            Ok(f) => panic!("{text:?} parsed as {f:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn sdk_forms() {
        assert_eq!(ok("'0~Lw~' in groups"), group("0~Lw~"));
        assert_eq!(
            ok("not ('0~Lw~cm9vbTI' in groups)"),
            not(group("0~Lw~cm9vbTI"))
        );
        assert_eq!(
            ok("connectionId eq 'conn-abc123'"),
            Filter::ConnectionId("conn-abc123".into())
        );
        assert_eq!(
            ok("'0~Lw~YQ' in groups or '0~Lw~Yg' in groups"),
            Filter::Or(vec![group("0~Lw~YQ"), group("0~Lw~Yg")])
        );
        assert_eq!(
            ok("'0~Lw~' in groups and not ('0~Lw~aXJyOXhIMTVCNUk0STJjbEFBQUE' in groups)"),
            Filter::And(vec![
                group("0~Lw~"),
                not(group("0~Lw~aXJyOXhIMTVCNUk0STJjbEFBQUE"))
            ])
        );
        assert_eq!(
            ok("not ('X1' in groups) and not ('X2' in groups)"),
            Filter::And(vec![not(group("X1")), not(group("X2"))])
        );
    }

    #[test]
    fn sdk_mixed_form_binds_and_tighter_than_or() {
        let text = "'0~Lw~YQ' in groups or '0~Lw~Yg' in groups and not ('0~Lw~Yw' in groups) and not ('0~Lw~ZA' in groups)";
        let filter = ok(text);
        assert_eq!(
            filter,
            Filter::Or(vec![
                group("0~Lw~YQ"),
                Filter::And(vec![
                    group("0~Lw~Yg"),
                    not(group("0~Lw~Yw")),
                    not(group("0~Lw~ZA")),
                ]),
            ])
        );
        // a or (b and not c and not d): membership of a wins over the excepts.
        let cases: [(&[&str], bool); 8] = [
            (&["0~Lw~YQ"], true),
            (&["0~Lw~YQ", "0~Lw~Yw"], true),
            (&["0~Lw~YQ", "0~Lw~ZA"], true),
            (&["0~Lw~Yg"], true),
            (&["0~Lw~Yg", "0~Lw~Yw"], false),
            (&["0~Lw~Yg", "0~Lw~ZA"], false),
            (&["0~Lw~Yw"], false),
            (&[], false),
        ];
        for (groups, expected) in cases {
            assert_eq!(
                filter.matches(&subject("c", None, groups)),
                expected,
                "{groups:?}"
            );
        }
        assert_eq!(
            filter.candidates(),
            crate::Candidates::Groups(vec!["0~Lw~YQ", "0~Lw~Yg"])
        );
    }

    #[test]
    fn blank_means_everyone() {
        assert_eq!(ok(""), Filter::All);
        assert_eq!(ok(" \t\r\n "), Filter::All);
    }

    #[test]
    fn escapes() {
        assert_eq!(ok("'it''s' in groups"), group("it's"));
        assert_eq!(ok("'''' in groups"), group("'"));
        assert_eq!(ok("'' in groups"), group(""));
        assert_eq!(ok("userId eq 'a''''b'"), Filter::UserId("a''b".into()));
        assert_eq!(ok("'ü ( ) , or' in groups"), group("ü ( ) , or"));
    }

    #[test]
    fn case_insensitive_keywords_and_identifiers() {
        assert_eq!(
            ok("CONNECTIONID EQ 'X' AND 'G' IN GROUPS Or NOT (UserId Ne 'u')"),
            Filter::Or(vec![
                Filter::And(vec![Filter::ConnectionId("X".into()), group("G")]),
                not(not(Filter::UserId("u".into()))),
            ])
        );
        // String contents stay case-sensitive.
        let f = ok("'Room' in Groups");
        assert!(f.matches(&subject("c", None, &["Room"])));
        assert!(!f.matches(&subject("c", None, &["room"])));
    }

    #[test]
    fn in_lists() {
        assert_eq!(
            ok("userId in ('a','b')"),
            Filter::Or(vec![Filter::UserId("a".into()), Filter::UserId("b".into())])
        );
        assert_eq!(
            ok("connectionId in ( 'x' )"),
            Filter::ConnectionId("x".into())
        );
        let f = ok("connectionId IN ('x', 'y',\n'z')");
        assert_eq!(
            f.candidates(),
            crate::Candidates::Connections(vec!["x", "y", "z"])
        );
        let f = ok("userId in ('a', null)");
        assert!(f.matches(&subject("c", None, &[])));
        assert!(f.matches(&subject("c", Some("a"), &[])));
        assert!(!f.matches(&subject("c", Some("b"), &[])));
        assert_eq!(
            ok("'a' in ('b', 'a')"),
            Filter::Or(vec![never(), Filter::All])
        );
    }

    #[test]
    fn nulls() {
        let anonymous = subject("c", None, &[]);
        let alice = subject("c", Some("alice"), &[]);
        let is_null = ok("userId eq null");
        assert_eq!(is_null, Filter::UserIdIsNull);
        assert!(is_null.matches(&anonymous) && !is_null.matches(&alice));
        let not_null = ok("userId ne NULL");
        assert!(!not_null.matches(&anonymous) && not_null.matches(&alice));
        assert_eq!(ok("null eq userId"), Filter::UserIdIsNull);
        assert!(!ok("connectionId eq null").matches(&anonymous));
        assert!(ok("connectionId ne null").matches(&anonymous));
        // userId ne 'x' holds for connections without a user, as in OData.
        assert!(ok("userId ne 'x'").matches(&anonymous));
        assert!(!ok("userId eq 'x'").matches(&anonymous));
    }

    #[test]
    fn reversed_comparisons_and_ne() {
        assert_eq!(ok("'alice' eq userId"), Filter::UserId("alice".into()));
        assert_eq!(
            ok("'c1' ne connectionId"),
            not(Filter::ConnectionId("c1".into()))
        );
        assert_eq!(ok("'a' eq 'a'"), Filter::All);
        assert_eq!(ok("'a' ne 'a'"), never());
        assert_eq!(ok("'a' ne 'b'"), Filter::All);
    }

    #[test]
    fn booleans() {
        assert_eq!(ok("true"), Filter::All);
        assert_eq!(ok("FALSE"), never());
        assert_eq!(ok("not false"), not(never()));
        assert_eq!(ok("not not true"), not(not(Filter::All)));
        assert!(!ok("false").matches(&subject("c", None, &[])));
    }

    #[test]
    fn nested_parentheses_and_whitespace() {
        assert_eq!(ok("((( 'a' in groups )))"), group("a"));
        let f = ok("not\t(not ('a' in groups) or\n('b' in groups and ('c' in groups)))");
        assert_eq!(
            f,
            not(Filter::Or(vec![
                not(group("a")),
                Filter::And(vec![group("b"), group("c")]),
            ]))
        );
        assert!(f.matches(&subject("x", None, &["a"])));
        assert!(!f.matches(&subject("x", None, &["b", "c", "a"])));
        assert!(!f.matches(&subject("x", None, &[])));
        // Parenthesised operands of the same operator are spliced in.
        assert_eq!(
            ok("('a' in groups and 'b' in groups) and ('c' in groups)"),
            Filter::And(vec![group("a"), group("b"), group("c")])
        );
        assert_eq!(
            ok("('a' in groups or 'b' in groups) and 'c' in groups"),
            Filter::And(vec![Filter::Or(vec![group("a"), group("b")]), group("c")])
        );
        assert_eq!(
            ok("('a'in groups)and('b'in groups)").to_string(),
            "'a' in groups and 'b' in groups"
        );
    }

    #[test]
    fn error_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("'abc", 0, "unterminated string literal"),
            (
                "connectionId eq 'x' and 'y",
                24,
                "unterminated string literal",
            ),
            (
                "connectionId eq",
                15,
                "expected a string literal or null after 'eq', found the end of the filter",
            ),
            (
                "connectionId eq and",
                16,
                "expected a string literal or null after 'eq', found 'and'",
            ),
            ("foo eq 'x'", 0, "unknown identifier 'foo'"),
            ("userId eq bar", 10, "unknown identifier 'bar'"),
            (
                "'a' in groups 'b'",
                14,
                "expected 'and', 'or' or the end of the filter after 'groups', found string literal 'b'",
            ),
            ("'a' in groups)", 13, "found ')'"),
            (
                "'a' in",
                6,
                "expected 'groups' or a parenthesised list of string literals after 'in', found the end",
            ),
            ("'a' in users", 7, "found 'users'"),
            ("()", 1, "expected a filter expression after '(', found ')'"),
            (
                "userId in ()",
                11,
                "expected a string literal or null after '(', found ')'",
            ),
            ("userId in ('a' 'b')", 15, "expected ',' or ')'"),
            (
                "userId in ('a',)",
                15,
                "expected a string literal or null after ','",
            ),
            (
                "not 'a' in groups",
                4,
                "expected '(' after 'not', found string literal 'a'; 'not' binds tighter",
            ),
            ("connectionId gt 'a'", 13, "operator 'gt' is not supported"),
            (
                "length(userId) gt 3",
                0,
                "function 'length' is not supported",
            ),
            ("userId eq connectionId", 10, "comparing two identifiers"),
            ("groups eq 'a'", 0, "'groups' is a collection"),
            ("'a' eq groups", 7, "'groups' is a collection"),
            (
                "connectionId in groups",
                0,
                "expected a string literal before 'in groups'",
            ),
            (
                "'a' and 'b'",
                4,
                "expected 'eq', 'ne' or 'in' after string literal 'a', found 'and'",
            ),
            (
                "connectionId eq 'a' or",
                22,
                "expected a filter expression after 'or'",
            ),
            ("connectionId == 'a'", 13, "unexpected character '='"),
            ("userId eq 'a' ∧ true", 14, "unexpected character '∧'"),
            ("('a' in groups", 14, "expected 'and', 'or' or ')'"),
            ("userId eq 5", 10, "found '5'"),
            ("and", 0, "expected a filter expression, found 'and'"),
            ("userId", 6, "expected 'eq', 'ne' or 'in' after 'userId'"),
        ];
        for &(text, position, message) in cases {
            let e = err(text);
            assert_eq!(e.kind, FilterErrorKind::Syntax, "{text:?}: {e}");
            assert_eq!(e.position, position, "{text:?}: {e}");
            assert!(e.message.contains(message), "{text:?}: {e}");
        }
        assert_eq!(
            err("connectionId eq 'x' and").to_string(),
            "filter syntax error at position 23: expected a filter expression after 'and', found the end of the filter"
        );
    }

    #[test]
    fn long_tokens_are_shortened_in_messages() {
        let text = format!("'a' in groups '{}'", "x".repeat(1000));
        let e = err(&text);
        assert!(e.message.len() < 200, "{e}");
        assert!(e.message.contains('…'));
    }

    #[test]
    fn limits() {
        let deep = |n: usize| format!("{}'a' in groups{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(ok(&deep(MAX_DEPTH)), group("a"));
        let e = err(&deep(MAX_DEPTH + 1));
        assert_eq!((e.kind, e.position), (FilterErrorKind::Limit, MAX_DEPTH));
        assert!(
            e.to_string()
                .starts_with("filter too large at position 64: ")
        );

        let nots = |n: usize| format!("{}true", "not ".repeat(n));
        assert!(parse(&nots(MAX_DEPTH)).is_ok());
        let e = err(&nots(MAX_DEPTH + 1));
        assert_eq!(
            (e.kind, e.position),
            (FilterErrorKind::Limit, 4 * MAX_DEPTH)
        );

        let terms = |n: usize| vec!["'g' in groups"; n].join(" or ");
        assert!(parse(&terms(MAX_TERMS)).is_ok());
        let e = err(&terms(MAX_TERMS + 1));
        assert_eq!(e.kind, FilterErrorKind::Limit);
        assert_eq!(e.position, MAX_TERMS * "'g' in groups or ".len());

        let list = format!("userId in ({})", vec!["'u'"; MAX_TERMS + 1].join(","));
        assert_eq!(err(&list).kind, FilterErrorKind::Limit);

        let long = format!("'{}' in groups", "x".repeat(MAX_FILTER_LEN));
        let e = err(&long);
        assert_eq!(
            (e.kind, e.position),
            (FilterErrorKind::Limit, MAX_FILTER_LEN)
        );
        // Adversarial shapes fail fast without exhausting the stack.
        assert_eq!(
            err(&"(".repeat(MAX_FILTER_LEN)).kind,
            FilterErrorKind::Limit
        );
        assert_eq!(
            err(&"not ".repeat(MAX_FILTER_LEN / 4)).kind,
            FilterErrorKind::Limit
        );
    }

    #[test]
    fn prints_odata() {
        let f = Filter::Or(vec![
            group("a'b"),
            Filter::And(vec![
                Filter::Or(vec![Filter::UserIdIsNull, Filter::UserId("u".into())]),
                not(Filter::ConnectionId("c".into())),
                not(not(Filter::All)),
            ]),
        ]);
        assert_eq!(
            to_odata(&f),
            "'a''b' in groups or (userId eq null or userId eq 'u') and not (connectionId eq 'c') and not false"
        );
        assert_eq!(ok(&to_odata(&f)), f);
        assert_eq!(to_odata(&Filter::All), "true");
        assert_eq!(to_odata(&Filter::Or(vec![])), "false");
        assert_eq!(to_odata(&Filter::And(vec![])), "true");
    }

    /// The shape [`parse`] gives for the printed form of `f`: nested
    /// same-kind operators spliced, single operands unwrapped, empty `and`
    /// as `true` and empty `or` as `false`.
    fn normalize(f: &Filter) -> Filter {
        match f {
            Filter::Not(inner) => not(normalize(inner)),
            Filter::And(items) | Filter::Or(items) => {
                let and = matches!(f, Filter::And(_));
                let mut out = Vec::new();
                for item in items {
                    push_flat(&mut out, normalize(item), and);
                }
                match (out.len(), and) {
                    (0, true) => Filter::All,
                    (0, false) => never(),
                    (1, _) => out.pop().unwrap(),
                    (_, true) => Filter::And(out),
                    (_, false) => Filter::Or(out),
                }
            }
            other => other.clone(),
        }
    }

    fn text() -> impl Strategy<Value = String> {
        "[ab' ]{0,3}"
    }

    fn filter_strategy() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            Just(Filter::All),
            Just(Filter::UserIdIsNull),
            text().prop_map(Filter::ConnectionId),
            text().prop_map(Filter::UserId),
            text().prop_map(Filter::InGroup),
        ];
        leaf.prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Filter::And),
                prop::collection::vec(inner, 0..4).prop_map(Filter::Or),
            ]
        })
    }

    fn subject_strategy() -> impl Strategy<Value = Subject> {
        (
            text(),
            prop::option::of(text()),
            prop::collection::vec(text(), 0..4),
        )
            .prop_map(|(id, user, groups)| Subject { id, user, groups })
    }

    /// Strings made of filter tokens, to reach past the lexer.
    fn token_soup() -> impl Strategy<Value = String> {
        let token = prop::sample::select(vec![
            "(",
            ")",
            ",",
            "'a'",
            "'b'",
            "''''",
            "'",
            "and",
            "or",
            "not",
            "eq",
            "ne",
            "in",
            "groups",
            "userId",
            "connectionId",
            "null",
            "true",
            "false",
            "gt",
            "x",
            "5",
            " ",
            "\t",
        ]);
        prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.join(" "))
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in ".{0,200}") {
            let _ = parse(&input);
        }

        #[test]
        fn parse_never_panics_on_token_soup(input in token_soup()) {
            match parse(&input) {
                // What parses prints back to the same filter.
                Ok(filter) => prop_assert_eq!(parse(&to_odata(&filter)), Ok(filter)),
                Err(e) => {
                    prop_assert!(e.position <= input.len());
                    prop_assert!(input.is_char_boundary(e.position));
                }
            }
        }

        #[test]
        fn printed_filters_parse_back(
            filter in filter_strategy(),
            subjects in prop::collection::vec(subject_strategy(), 0..16),
        ) {
            let text = to_odata(&filter);
            let parsed = parse(&text);
            prop_assert!(parsed.is_ok(), "{:?} -> {:?}", text, parsed);
            let parsed = parsed.unwrap();
            prop_assert_eq!(&parsed, &normalize(&filter), "{}", text);
            for subject in &subjects {
                prop_assert_eq!(parsed.matches(subject), filter.matches(subject), "{} on {:?}", text, subject);
            }
        }
    }
}
