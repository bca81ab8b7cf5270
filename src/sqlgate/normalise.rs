//! Reads a query's text the way the target server's lexer does, before sqlparser sees it.
//!
//! sqlparser's tokenizer differs from the servers' lexers in ways that hide calls from the
//! gate, so this pass runs first and either hands the parser an equivalent text it reads
//! correctly or refuses:
//!
//! - PostgreSQL `U&"…"` identifiers and `U&'…'` strings (Unicode escapes `\XXXX`,
//!   `\+XXXXXX`, an optional `UESCAPE 'c'`): sqlparser reads `U&"x"` as `U & "x"`, so
//!   `U&"pg\005fterminate\005fbackend"(pid)` is a call no name list matches. Both are
//!   decoded (a bad escape is refused, as the server would); names are replaced by their
//!   plain quoted form (`"pg_terminate_backend"`) in the text that is parsed.
//! - MySQL/MariaDB executable comments, every form (`/*!…*/`, `/*!50100 …*/`, `/*M!…*/`,
//!   `/*M!100100 …*/`): the server runs the text inside; sqlparser expands only the `/*!`
//!   forms, and which version-gated ones run depends on the server. A statement holding one
//!   is refused rather than expanded. So are optimizer hints (`/*+ … */`), which set
//!   `MAX_EXECUTION_TIME` or any variable (`SET_VAR`) for the statement.
//! - Comments are read by the server's rules and blanked before parsing, so a text the
//!   server runs is never taken for a comment by the parser (sqlparser ends a MySQL `--`
//!   comment at any Unicode space, MySQL needs an ASCII one). String literals reach the
//!   parser as `'xx…'` of the same length, for the same reason.
//! - A string literal whose end depends on a server setting (a backslash before a quote:
//!   `NO_BACKSLASH_ESCAPES` on MySQL, `standard_conforming_strings` on PostgreSQL) is
//!   refused: the text after it could be code under one reading and string under the other.
//!   The query is read both ways and must split into the same tokens.
//!
//! The same pass measures the query before anything is parsed (see [`Measure`]): sqlparser
//! builds a left-deep tree for `a OR b OR …` and `… UNION ALL …` chains without recursing,
//! but walking, printing or dropping that tree recurses once per operator, and each
//! `SELECT` costs about 15 KB of tree.

use super::Dialect;

/// Kinds of token, as far as the gate needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Quoted,
    Str,
    Number,
    Punct,
    Open,
    Close,
    Comment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    /// The plain form that replaces a PostgreSQL `U&` identifier.
    replace: Option<String>,
}

/// What the lexing pass learned about a query's size and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Measure {
    /// Upper bound for the depth of the parsed tree: along the deepest nesting path, the
    /// operators and keywords at each level (each can add one level to a left-deep
    /// chain) plus one per bracket.
    pub depth: usize,
    /// `SELECT` keywords in the whole query.
    pub selects: usize,
    /// Tokens (words, names, numbers, strings, operators, brackets), not counting commas
    /// and comments: each becomes at least one node of the tree.
    pub tokens: usize,
}

/// The query's text ready for the parser (PostgreSQL `U&` forms replaced) and its measure.
pub(super) fn normalise(sql: &str, dialect: Dialect) -> Result<(String, Measure), String> {
    let mut main = Lexer::new(sql, dialect, dialect == Dialect::Mysql);
    // A second reading with the other backslash rule, where a server setting can switch
    // it; both readings are walked in step, so nothing is collected.
    let mut other = match dialect {
        Dialect::Mysql => Some(("NO_BACKSLASH_ESCAPES", Lexer::new(sql, dialect, false))),
        Dialect::Postgres => Some((
            "standard_conforming_strings = off",
            Lexer::new(sql, dialect, true),
        )),
        Dialect::Sqlite | Dialect::Oracle => None,
    };
    let mut meter = Meter::default();
    let mut out = String::new();
    let mut last = 0;
    let mut prev_minus_end = None;
    loop {
        let t = main.next()?;
        if let Some((setting, lx)) = &mut other {
            let same = match (&t, lx.next()) {
                (Some(a), Ok(Some(b))) => (a.kind, a.start, a.end) == (b.kind, b.start, b.end),
                (None, Ok(None)) => true,
                _ => false,
            };
            if !same {
                return Err(format!(
                    "refused: a string literal ends at a different place when the server reads backslashes differently ({setting}): a backslash before a quote can turn the rest of the query into code; write a quote inside a string as '' and avoid a backslash right before a closing quote"
                ));
            }
        }
        let Some(t) = t else { break };
        meter.feed(sql, &t);
        // MySQL reads `--` not followed by an ASCII space as two minus signs; the parser
        // would take `--` and a Unicode space for a comment: it gets `- -`.
        let minus = t.kind == Kind::Punct && &sql[t.start..t.end] == "-";
        if minus && prev_minus_end == Some(t.start) {
            out.push_str(&sql[last..t.start]);
            out.push(' ');
            last = t.start;
        }
        prev_minus_end = minus.then_some(t.end);
        if t.kind == Kind::Str {
            // String literals reach the parser as `'xx…'` of the same length: what is
            // inside a string never decides anything, and this way the parser cannot
            // end one at a different place than the server does.
            out.push_str(&sql[last..t.start]);
            let n = sql[t.start..t.end].chars().count();
            out.push('\'');
            out.extend(
                sql[t.start..t.end]
                    .chars()
                    .skip(1)
                    .take(n.saturating_sub(2))
                    .map(|c| if c == '\n' { '\n' } else { 'x' }),
            );
            out.push('\'');
            last = t.end;
        } else if let Some(r) = &t.replace {
            out.push_str(&sql[last..t.start]);
            out.push_str(r);
            last = t.end;
        } else if t.kind == Kind::Comment {
            // Comments are blanked here, where they are read by the server's rules, so
            // the parser never decides what is a comment: sqlparser ends a MySQL `--`
            // comment at any Unicode space, MySQL only at ASCII ones.
            out.push_str(&sql[last..t.start]);
            out.extend(
                sql[t.start..t.end]
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' }),
            );
            last = t.end;
        }
    }
    if last == 0 {
        return Ok((sql.to_string(), meter.finish()));
    }
    out.push_str(&sql[last..]);
    Ok((out, meter.finish()))
}

/// Computes a [`Measure`] token by token.
struct Meter {
    /// One frame per open bracket: (operators and keywords at this level, deepest child).
    stack: Vec<(usize, usize)>,
    selects: usize,
    tokens: usize,
    upper: String,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            stack: vec![(0, 0)],
            selects: 0,
            tokens: 0,
            upper: String::new(),
        }
    }
}

impl Meter {
    fn feed(&mut self, sql: &str, t: &Tok) {
        if t.kind != Kind::Comment && &sql[t.start..t.end] != "," {
            self.tokens += 1;
        }
        match t.kind {
            Kind::Open => self.stack.push((0, 0)),
            Kind::Close if self.stack.len() > 1 => self.close(),
            Kind::Close => {}
            // A comma separates list items (a flat list in the tree), not operands.
            Kind::Punct if matches!(&sql[t.start..t.end], "," | ";") => {}
            Kind::Punct => self.count(t.end - t.start),
            Kind::Word => {
                self.upper.clear();
                self.upper.push_str(&sql[t.start..t.end]);
                self.upper.make_ascii_uppercase();
                if self.upper == "SELECT" {
                    self.selects += 1;
                }
                if sqlparser::keywords::ALL_KEYWORDS
                    .binary_search(&self.upper.as_str())
                    .is_ok()
                {
                    self.count(1);
                }
            }
            Kind::Quoted | Kind::Str | Kind::Number | Kind::Comment => {}
        }
    }

    fn count(&mut self, n: usize) {
        if let Some(top) = self.stack.last_mut() {
            top.0 += n;
        }
    }

    fn close(&mut self) {
        if let Some((count, child)) = self.stack.pop()
            && let Some(top) = self.stack.last_mut()
        {
            top.1 = top.1.max(count + child + 1);
        }
    }

    fn finish(mut self) -> Measure {
        while self.stack.len() > 1 {
            self.close();
        }
        let (count, child) = self.stack[0];
        Measure {
            depth: count + child,
            selects: self.selects,
            tokens: self.tokens,
        }
    }
}

/// The executable-comment forms MySQL and MariaDB run, for messages.
fn executable_form(body: &[u8]) -> Option<&'static str> {
    match body {
        [b'!', d, ..] if d.is_ascii_digit() => Some("/*!NNNNN …*/"),
        [b'!', ..] => Some("/*!…*/"),
        [b'M' | b'm', b'!', d, ..] if d.is_ascii_digit() => Some("/*M!NNNNNN …*/"),
        [b'M' | b'm', b'!', ..] => Some("/*M!…*/"),
        _ => None,
    }
}

struct Lexer<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    dialect: Dialect,
    /// Whether a backslash escapes the next character in a plain `'…'` string.
    backslash: bool,
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str, dialect: Dialect, backslash: bool) -> Self {
        Lexer {
            s,
            b: s.as_bytes(),
            i: 0,
            dialect,
            backslash,
        }
    }

    fn at(&self, k: usize) -> Option<u8> {
        self.b.get(self.i + k).copied()
    }

    fn tok(&mut self, kind: Kind, start: usize, end: usize) -> Option<Tok> {
        self.i = end;
        Some(Tok {
            kind,
            start,
            end,
            replace: None,
        })
    }

    fn next(&mut self) -> Result<Option<Tok>, String> {
        let b = self.b;
        while self.i < b.len() && b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
        let start = self.i;
        let Some(c) = self.at(0) else {
            return Ok(None);
        };
        let mysql = self.dialect == Dialect::Mysql;
        let pg = self.dialect == Dialect::Postgres;
        // Comments. MySQL needs a space or control character after `--` (`1--1` is 1 - -1).
        if c == b'-' && self.at(1) == Some(b'-') && (!mysql || self.at(2).is_none_or(|c| c <= b' '))
            || c == b'#' && mysql
        {
            let end = b[start..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| start + p);
            return Ok(self.tok(Kind::Comment, start, end));
        }
        if c == b'/' && self.at(1) == Some(b'*') {
            let end = self.block_comment(start)?;
            return Ok(self.tok(Kind::Comment, start, end));
        }
        let next = self.at(1);
        // Strings and quoted names.
        if c == b'\'' {
            let end = self.quoted(start, b'\'', self.backslash)?;
            return Ok(self.tok(Kind::Str, start, end));
        }
        if pg && matches!(c, b'e' | b'E') && next == Some(b'\'') {
            let end = self.quoted(start + 1, b'\'', true)?;
            return Ok(self.tok(Kind::Str, start, end));
        }
        if pg
            && matches!(c, b'u' | b'U')
            && next == Some(b'&')
            && matches!(self.at(2), Some(b'\'' | b'"'))
        {
            return self.unicode(start).map(Some);
        }
        if self.dialect == Dialect::Oracle
            && matches!(c, b'q' | b'Q' | b'n' | b'N')
            && let Some(end) = self.oracle_q_quote(start)?
        {
            return Ok(self.tok(Kind::Str, start, end));
        }
        if matches!(c, b'b' | b'B' | b'x' | b'X' | b'n' | b'N') && next == Some(b'\'') {
            let end = self.quoted(start + 1, b'\'', self.backslash)?;
            return Ok(self.tok(Kind::Str, start, end));
        }
        if c == b'"' {
            return Ok(if mysql {
                let end = self.quoted(start, b'"', self.backslash)?;
                self.tok(Kind::Str, start, end)
            } else {
                let end = self.quoted(start, b'"', false)?;
                self.tok(Kind::Quoted, start, end)
            });
        }
        if c == b'`' && matches!(self.dialect, Dialect::Mysql | Dialect::Sqlite) {
            let end = self.quoted(start, b'`', false)?;
            return Ok(self.tok(Kind::Quoted, start, end));
        }
        if c == b'[' && self.dialect == Dialect::Sqlite {
            let end = b[start..]
                .iter()
                .position(|&c| c == b']')
                .map(|p| start + p + 1)
                .ok_or("refused: the query has an unterminated [name]")?;
            return Ok(self.tok(Kind::Quoted, start, end));
        }
        if c == b'$'
            && pg
            && let Some(end) = self.dollar_quote(start)?
        {
            return Ok(self.tok(Kind::Str, start, end));
        }
        if c.is_ascii_digit() || c == b'.' && next.is_some_and(|c| c.is_ascii_digit()) {
            let mut end = start + 1;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'.') {
                end += 1;
            }
            return Ok(self.tok(Kind::Number, start, end));
        }
        if is_word_start(c) {
            let mut end = start + 1;
            while end < b.len() && is_word_char(b[end]) {
                end += 1;
            }
            return Ok(self.tok(Kind::Word, start, end));
        }
        let kind = match c {
            b'(' | b'[' => Kind::Open,
            b')' | b']' => Kind::Close,
            _ => Kind::Punct,
        };
        Ok(self.tok(kind, start, start + 1))
    }

    /// The end of a `/* … */` comment starting at `start` (nested on PostgreSQL).
    fn block_comment(&self, start: usize) -> Result<usize, String> {
        let b = self.b;
        if self.dialect == Dialect::Mysql {
            if let Some(form) = executable_form(&b[start + 2..]) {
                return Err(format!(
                    "refused: the query holds a MySQL/MariaDB executable comment ({form}); the server runs the text inside it, which the gate does not check: remove the comment or write its content as plain SQL"
                ));
            }
            if b.get(start + 2) == Some(&b'+') {
                return Err(
                    "refused: the query holds an optimizer hint (/*+ … */); hints can change the statement's settings, such as its timeout (MAX_EXECUTION_TIME, SET_VAR): remove it"
                        .into(),
                );
            }
        }
        let nested = self.dialect == Dialect::Postgres;
        let mut depth = 1;
        let mut i = start + 2;
        while i + 1 < b.len() {
            match (b[i], b[i + 1]) {
                (b'*', b'/') => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                (b'/', b'*') if nested => {
                    depth += 1;
                    i += 2;
                }
                _ => i += 1,
            }
        }
        Err("refused: the query has an unterminated /* comment".into())
    }

    /// The end (after the closing quote) of a quoted text whose opening `quote` is at
    /// `open`; a doubled quote stands for one, and with `backslash` a `\` escapes the next
    /// character.
    fn quoted(&self, open: usize, quote: u8, backslash: bool) -> Result<usize, String> {
        let b = self.b;
        let mut i = open + 1;
        while i < b.len() {
            let c = b[i];
            if backslash && c == b'\\' {
                i += 2;
            } else if c == quote {
                if b.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            } else {
                i += 1;
            }
        }
        Err(match quote {
            b'\'' => "refused: the query has an unterminated string literal".into(),
            q => format!(
                "refused: the query has an unterminated {}…{} name",
                q as char, q as char
            ),
        })
    }

    /// A PostgreSQL dollar-quoted string `$tag$…$tag$` at `start`, or `None` for a `$`
    /// that does not open one (`$1`).
    fn dollar_quote(&self, start: usize) -> Result<Option<usize>, String> {
        let b = self.b;
        let mut i = start + 1;
        if i < b.len() && b[i] != b'$' {
            if !is_word_start(b[i]) {
                return Ok(None);
            }
            while i < b.len() && is_word_char(b[i]) && b[i] != b'$' {
                i += 1;
            }
        }
        if b.get(i) != Some(&b'$') {
            return Ok(None);
        }
        let tag = &self.s[start..=i];
        match self.s[i + 1..].find(tag) {
            Some(p) => Ok(Some(i + 1 + p + tag.len())),
            None => Err("refused: the query has an unterminated $$ string".into()),
        }
    }

    /// An Oracle `q'[…]'` (or `nq'…'`) string at `start`, or `None`.
    fn oracle_q_quote(&self, start: usize) -> Result<Option<usize>, String> {
        let b = self.b;
        let mut i = start;
        if matches!(b[i], b'n' | b'N') {
            i += 1;
        }
        if !matches!(b.get(i), Some(b'q' | b'Q')) || b.get(i + 1) != Some(&b'\'') {
            return Ok(None);
        }
        let Some(open) = self.s[i + 2..].chars().next() else {
            return Err("refused: the query has an unterminated q'…' string".into());
        };
        let close = match open {
            '[' => ']',
            '{' => '}',
            '(' => ')',
            '<' => '>',
            c => c,
        };
        let body = i + 2 + open.len_utf8();
        let mut pat = String::from(close);
        pat.push('\'');
        match self.s[body..].find(&pat) {
            Some(p) => Ok(Some(body + p + pat.len())),
            None => Err("refused: the query has an unterminated q'…' string".into()),
        }
    }

    /// Skips whitespace and comments from `i`; returns where the next token starts.
    fn skip_blank(&self, mut i: usize) -> Result<usize, String> {
        let b = self.b;
        loop {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if b[i..].starts_with(b"--") {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
            } else if b[i..].starts_with(b"/*") {
                i = self.block_comment(i)?;
            } else {
                return Ok(i);
            }
        }
    }

    /// A PostgreSQL `U&"…"` identifier or `U&'…'` string at `start`, with an optional
    /// `UESCAPE 'c'`, decoded into the plain quoted form that replaces it.
    fn unicode(&mut self, start: usize) -> Result<Tok, String> {
        let b = self.b;
        let quote = b[start + 2];
        let close = self.quoted(start + 2, quote, false)?;
        let q = quote as char;
        let body = self.s[start + 3..close - 1].replace(&format!("{q}{q}"), &q.to_string());
        let mut end = close;
        let mut escape = '\\';
        let after = self.skip_blank(close)?;
        let word_end = after + 7;
        if b.len() >= word_end
            && b[after..word_end].eq_ignore_ascii_case(b"UESCAPE")
            && b.get(word_end).is_none_or(|&c| !is_word_char(c))
        {
            let lit = self.skip_blank(word_end)?;
            let bad = || {
                "refused: invalid UESCAPE clause after a U& name or string: it takes one character in single quotes".to_string()
            };
            if b.get(lit) != Some(&b'\'') {
                return Err(bad());
            }
            let lit_end = self.quoted(lit, b'\'', false)?;
            let text = &self.s[lit + 1..lit_end - 1];
            let mut chars = text.chars();
            escape = match (chars.next(), chars.next()) {
                (Some(c), None)
                    if !c.is_ascii_hexdigit()
                        && !matches!(c, '+' | '\'' | '"')
                        && !c.is_whitespace() =>
                {
                    c
                }
                _ => return Err(bad()),
            };
            end = lit_end;
        }
        // Decoded (and so checked) either way; only a name needs its plain form, a
        // string reaches the parser as a neutral literal.
        let decoded = decode_unicode(&body, escape)?;
        let (kind, replace) = if quote == b'"' {
            let plain = format!("\"{}\"", decoded.replace('"', "\"\""));
            (Kind::Quoted, Some(plain))
        } else {
            (Kind::Str, None)
        };
        self.i = end;
        Ok(Tok {
            kind,
            start,
            end,
            replace,
        })
    }
}

/// Decodes the body of a PostgreSQL `U&` literal: `e` + 4 hex digits, `e+` + 6 hex
/// digits (UTF-16 surrogate pairs combined), `ee` for `e` itself.
fn decode_unicode(body: &str, e: char) -> Result<String, String> {
    let bad =
        || format!("refused: invalid Unicode escape in a U& name or string (escape character {e})");
    let chars: Vec<char> = body.chars().collect();
    let mut out = String::with_capacity(body.len());
    let mut high: Option<u32> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != e {
            if high.is_some() {
                return Err(bad());
            }
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&e) {
            if high.is_some() {
                return Err(bad());
            }
            out.push(e);
            i += 2;
            continue;
        }
        let (skip, len) = if chars.get(i + 1) == Some(&'+') {
            (2, 6)
        } else {
            (1, 4)
        };
        let hex: String = chars
            .get(i + skip..i + skip + len)
            .ok_or_else(bad)?
            .iter()
            .collect();
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut cp = u32::from_str_radix(&hex, 16).map_err(|_| bad())?;
        i += skip + len;
        if (0xD800..0xDC00).contains(&cp) {
            if high.replace(cp).is_some() {
                return Err(bad());
            }
            continue;
        }
        if (0xDC00..0xE000).contains(&cp) {
            let h = high.take().ok_or_else(bad)?;
            cp = 0x10000 + ((h - 0xD800) << 10) + (cp - 0xDC00);
        } else if high.is_some() {
            return Err(bad());
        }
        if cp == 0 {
            return Err(bad());
        }
        out.push(char::from_u32(cp).ok_or_else(bad)?);
    }
    if high.is_some() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> String {
        normalise(sql, Dialect::Postgres).unwrap().0
    }

    #[test]
    fn unicode_names_and_strings_are_decoded() {
        assert_eq!(
            pg(r#"SELECT U&"pg\005fterminate\005fbackend"(pid) FROM t"#),
            r#"SELECT "pg_terminate_backend"(pid) FROM t"#
        );
        assert_eq!(
            pg(r#"SELECT u&"lo!005fexport" UESCAPE '!' (1, 'x')"#),
            r#"SELECT "lo_export" (1, 'x')"#
        );
        assert_eq!(
            pg("SELECT U&\"a\\+01F600b\\\\\"\"\" /* c */ uescape /* d */ '\\'"),
            "SELECT \"a😀b\\\"\"\""
        );
        // Strings reach the parser as neutral literals of the same length (after their
        // escapes were checked).
        assert_eq!(
            pg(r"SELECT U&'d\0061t\D83D\DE00', U&'it''s'"),
            format!("SELECT '{}', '{}'", "x".repeat(19), "x".repeat(7))
        );
        // Not the U& syntax (a space before the quote) or inside a string: left alone.
        assert_eq!(pg(r#"SELECT U& "x", 'U&"y"'"#), r#"SELECT U& "x", 'xxxxx'"#);
        for bad in [
            r#"SELECT U&"\00""#,
            r#"SELECT U&"\D800""#,
            r#"SELECT U&"\0000""#,
            r#"SELECT U&"x" UESCAPE '+'"#,
            r#"SELECT U&"x" UESCAPE 'ab'"#,
            r#"SELECT U&"x" UESCAPE"#,
        ] {
            let e = normalise(bad, Dialect::Postgres).unwrap_err();
            assert!(e.starts_with("refused: invalid U"), "{bad}: {e}");
        }
    }

    #[test]
    fn executable_comments_and_hints_are_refused_on_mysql_only() {
        for sql in [
            "SELECT 1 /*! INTO OUTFILE 'x' */",
            "SELECT 1 /*!50100 INTO OUTFILE 'x' */",
            "SELECT 1 /*M! INTO OUTFILE 'x' */",
            "SELECT 1 /*M!100100 INTO OUTFILE 'x' */",
            "SELECT 1 /*m! INTO OUTFILE 'x' */",
        ] {
            let e = normalise(sql, Dialect::Mysql).unwrap_err();
            assert!(e.contains("executable comment"), "{sql}: {e}");
            normalise(sql, Dialect::Postgres).unwrap();
        }
        let e = normalise("SELECT /*+ MAX_EXECUTION_TIME(0) */ 1", Dialect::Mysql).unwrap_err();
        assert!(e.contains("optimizer hint"), "{e}");
        // Text that only looks like one: in strings, names, ordinary or line comments.
        for sql in [
            "SELECT '/*M! x */', \"/*! y */\", `/*+ z */`",
            "SELECT 1 /* a /*M! b */",
            "SELECT 1 -- /*M! x */\n",
            "SELECT 1 # /*! x */\n",
        ] {
            normalise(sql, Dialect::Mysql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        // `--` without a space is not a comment on MySQL: what follows is code.
        let e = normalise("SELECT 1--1 /*M! x */", Dialect::Mysql).unwrap_err();
        assert!(e.contains("executable comment"), "{e}");
    }

    #[test]
    fn comments_are_blanked_by_the_servers_rules() {
        let (sql, _) = normalise("SELECT 1 -- x\n, 2 /* y */ # z\n", Dialect::Mysql).unwrap();
        assert_eq!(
            sql,
            format!("SELECT 1 {}\n, 2 {}\n", " ".repeat(4), " ".repeat(11))
        );
        // `--` and a no-break space: code for MySQL (two minus signs), so the parser
        // gets it as code too.
        let (sql, _) = normalise("SELECT 1 --\u{a0}, f()\n", Dialect::Mysql).unwrap();
        assert_eq!(sql, "SELECT 1 - -\u{a0}, f()\n");
        let (sql, _) = normalise("SELECT /* a /* b */ c */ 1", Dialect::Postgres).unwrap();
        assert_eq!(sql.trim_end(), "SELECT                   1");
    }

    #[test]
    fn strings_that_read_two_ways_are_refused() {
        // Under NO_BACKSLASH_ESCAPES the string ends at `\'` and the comment runs.
        let e = normalise("SELECT 'a\\' /*M! INTO OUTFILE 'x' */ '", Dialect::Mysql).unwrap_err();
        assert!(e.contains("NO_BACKSLASH_ESCAPES"), "{e}");
        let e = normalise("SELECT 'it\\'s'", Dialect::Mysql).unwrap_err();
        assert!(e.contains("NO_BACKSLASH_ESCAPES"), "{e}");
        let e = normalise("SELECT 'a\\' , pg_read_file('x') --'", Dialect::Postgres).unwrap_err();
        assert!(e.contains("standard_conforming_strings"), "{e}");
        // Backslashes that read the same both ways are fine.
        normalise(r"SELECT 'C:\\dir\\', '\d+'", Dialect::Mysql).unwrap();
        normalise(
            r"SELECT '\d+', E'\'', regexp_replace(a, '\\', '')",
            Dialect::Postgres,
        )
        .unwrap();
    }

    #[test]
    fn dollar_and_q_quotes_hide_nothing() {
        assert_eq!(
            pg(r#"SELECT $f$ U&"x" $f$, $$ U&"y" $$, a$b"#),
            "SELECT 'xxxxxxxxxxx', 'xxxxxxxxx', a$b"
        );
        normalise("SELECT q'[it's /*]' FROM dual", Dialect::Oracle).unwrap();
    }

    #[test]
    fn the_measure_bounds_chains_and_counts_selects() {
        let m = |sql: &str| normalise(sql, Dialect::Postgres).unwrap().1;
        let chain = (0..100)
            .map(|i| format!("a = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        assert!(m(&format!("SELECT 1 WHERE {chain}")).depth >= 199);
        let union = vec!["SELECT 1"; 50].join(" UNION ALL ");
        let u = m(&union);
        assert!(u.depth >= 50 && u.selects == 50, "{u:?}");
        // A long flat list is shallow.
        let list = (0..1000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        assert!(m(&format!("SELECT a FROM t WHERE a IN ({list})")).depth < 10);
        // Nesting adds up along a path.
        assert_eq!(m("SELECT ((p1 + p2) + p3)").depth, 1 + 1 + 1 + 1 + 1);
    }
}
