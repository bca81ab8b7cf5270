//! The value model shared by every source and format writer.
//!
//! A [`Value`] keeps the type the database gave it, exactly: integers stay integers
//! (signed and unsigned 64-bit), decimals stay the decimal text the server sent (never
//! rounded through a float), dates and times keep their precision, and an instant with a
//! zone keeps its offset. Writers decide how each kind becomes a CSV field or an XLSX
//! cell; sources decide how their wire types become a `Value`.
//!
//! Rows travel in chunks ([`Rows`]: the values of many rows in one flat buffer, with no
//! allocation per row), and the column metadata ([`Column`]) is known before the first row.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};

/// One cell of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// An exact decimal number as text (`-12.50`, `12345678901234567890.1234567890`).
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    DateTime(NaiveDateTime),
    /// An instant with its UTC offset; writers render it in the task's zone.
    DateTimeTz(DateTime<FixedOffset>),
}

/// A result row: one value per column, in column order.
pub type Row = Vec<Value>;

/// A chunk of result rows, stored flat: row `r` is `values[r * width..(r + 1) * width]`.
///
/// One buffer per chunk instead of one `Vec` per row: the reader fills it value by value
/// and the buffer is handed back to be reused (see `source::RowsPool`), so a streaming
/// export allocates no memory per row for the row itself.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    width: usize,
    values: Vec<Value>,
}

impl Rows {
    /// An empty chunk of rows with `width` columns, with room for `rows` rows.
    pub fn with_capacity(width: usize, rows: usize) -> Rows {
        Rows {
            width,
            values: Vec::with_capacity(width * rows),
        }
    }

    /// A chunk holding `rows`, each of which must have `width` values.
    pub fn from_rows(width: usize, rows: impl IntoIterator<Item = Row>) -> Rows {
        let mut out = Rows::with_capacity(width, 0);
        for row in rows {
            assert_eq!(row.len(), width, "every row of a chunk has `width` values");
            out.values.extend(row);
        }
        out
    }

    /// The number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The number of complete rows.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one value to the row being filled; a row is complete after `width` pushes.
    #[inline]
    pub fn push(&mut self, value: Value) {
        self.values.push(value);
    }

    /// True when the values fill whole rows (no row is half filled).
    pub fn is_row_complete(&self) -> bool {
        self.values.len() == self.len() * self.width
    }

    /// The complete rows, in order.
    pub fn iter(&self) -> std::slice::ChunksExact<'_, Value> {
        let complete = self.len() * self.width;
        self.values[..complete].chunks_exact(self.width.max(1))
    }

    /// Drops every value and sets the width, keeping the buffer.
    pub fn reset(&mut self, width: usize) {
        self.values.clear();
        self.width = width;
    }

    /// The capacity of the buffer, in values.
    pub fn capacity(&self) -> usize {
        self.values.capacity()
    }
}

impl<'a> IntoIterator for &'a Rows {
    type Item = &'a [Value];
    type IntoIter = std::slice::ChunksExact<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The broad kind of a column, as declared by the source. Values may still be `Null`, and
/// dynamically typed sources (SQLite) may deliver a different kind in some rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Float,
    Decimal,
    Text,
    Bytes,
    Date,
    Time,
    DateTime,
    DateTimeTz,
    /// Nothing is known about the column (SQLite expressions without a declared type).
    Unknown,
}

impl Kind {
    /// True for kinds whose values are numbers (CSV formula escaping never touches them).
    pub fn is_numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::Float | Kind::Decimal)
    }
}

/// Column metadata, known before the first row arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// The type name as the database reported it (`INTEGER`, `numeric`, `DATETIME`...).
    pub db_type: String,
    pub kind: Kind,
}

impl Value {
    /// The bytes the value holds outside its slot (text, binary, decimal digits).
    #[inline]
    pub fn heap_len(&self) -> usize {
        match self {
            Value::Text(s) | Value::Decimal(s) => s.len(),
            Value::Bytes(b) => b.len(),
            _ => 0,
        }
    }

    /// True if the value is a number (integer, float or exact decimal).
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Decimal(_)
        )
    }
}

/// Counts the significant digits of an integer or decimal text (`-0012.3400` has 4:
/// leading zeros never count, trailing fraction zeros do not either).
pub fn significant_digits(text: &str) -> usize {
    let digits = text.trim_start_matches(['-', '+']);
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f.trim_end_matches('0')),
        None => (digits, ""),
    };
    let all: String = int_part.chars().chain(frac_part.chars()).collect();
    let trimmed = all.trim_start_matches('0');
    if frac_part.is_empty() {
        trimmed
            .trim_end_matches('0')
            .len()
            .max(usize::from(!trimmed.is_empty()))
    } else {
        trimmed.len()
    }
}

/// True if `text` is a plain decimal number: optional sign, digits, optional fraction.
pub fn is_decimal_text(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match frac_part {
        Some(f) => (!int_part.is_empty() || !f.is_empty()) && digits_ok(int_part) && digits_ok(f),
        None => !int_part.is_empty() && digits_ok(int_part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits_ignore_leading_and_trailing_zeros() {
        assert_eq!(significant_digits("0"), 0);
        assert_eq!(significant_digits("12"), 2);
        assert_eq!(significant_digits("1200"), 2);
        assert_eq!(significant_digits("-0012.3400"), 4);
        assert_eq!(significant_digits("0.001"), 1);
        assert_eq!(significant_digits("123456789012345"), 15);
        assert_eq!(significant_digits("1234567890123456"), 16);
        assert_eq!(significant_digits("12345678901234567890.1234567890"), 29);
    }

    #[test]
    fn rows_are_stored_flat_and_only_complete_rows_count() {
        let mut rows = Rows::with_capacity(2, 4);
        assert!(rows.is_empty());
        for i in 0..5 {
            rows.push(Value::Int(i));
        }
        // The fifth value starts a row that is not complete yet.
        assert_eq!(rows.len(), 2);
        let seen: Vec<Vec<Value>> = rows.iter().map(<[Value]>::to_vec).collect();
        assert_eq!(
            seen,
            vec![
                vec![Value::Int(0), Value::Int(1)],
                vec![Value::Int(2), Value::Int(3)]
            ]
        );
        let cap = rows.capacity();
        rows.reset(3);
        assert!(rows.is_empty());
        assert_eq!((rows.width(), rows.capacity()), (3, cap));
        // No columns: never any rows.
        let mut none = Rows::with_capacity(0, 4);
        none.push(Value::Null);
        assert_eq!((none.len(), none.iter().count()), (0, 0));
        assert_eq!(
            Rows::from_rows(1, [vec![Value::Int(7)]]).iter().next(),
            Some(&[Value::Int(7)][..])
        );
    }

    #[test]
    fn decimal_text_is_recognised() {
        for ok in ["1", "-1", "+1.5", "0.25", ".5", "5."] {
            assert!(is_decimal_text(ok), "{ok}");
        }
        for bad in ["", "-", ".", "1e5", "1.2.3", "abc", "1,000", " 1"] {
            assert!(!is_decimal_text(bad), "{bad}");
        }
    }
}

/// Appends the text form of `v` to `out` (CSV fields, XLSX text fallbacks): exact digits for
/// numbers and decimals, ISO 8601 for dates and times, instants converted to `tz` with
/// their offset, bytes as `0x` + hex, NULL as nothing. See `docs/types.md`.
pub fn render_text(v: &Value, tz: chrono_tz::Tz, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        Value::UInt(u) => out.push_str(itoa::Buffer::new().format(*u)),
        Value::Float(f) => {
            if f.is_nan() {
                out.push_str("NaN");
            } else if f.is_infinite() {
                out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" });
            } else {
                push_float(out, *f);
            }
        }
        Value::Decimal(d) => out.push_str(d),
        Value::Text(s) => out.push_str(s),
        Value::Bytes(b) => {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.reserve(2 + 2 * b.len());
            out.push_str("0x");
            for byte in b {
                out.push(HEX[(byte >> 4) as usize] as char);
                out.push(HEX[(byte & 0xF) as usize] as char);
            }
        }
        Value::Date(d) => push_date(out, *d),
        Value::Time(t) => push_time(out, *t),
        Value::DateTime(t) => {
            push_date(out, t.date());
            out.push(' ');
            push_time(out, t.time());
        }
        Value::DateTimeTz(t) => {
            let local = t.with_timezone(&tz);
            push_date(out, local.date_naive());
            out.push(' ');
            push_time(out, local.time());
            use chrono::Offset;
            let east = local.offset().fix().local_minus_utc();
            out.push(if east < 0 { '-' } else { '+' });
            let minutes = east.unsigned_abs() / 60;
            push_padded(out, minutes / 60, 2);
            out.push(':');
            push_padded(out, minutes % 60, 2);
        }
    }
}

/// "00" to "99".
const TWO_DIGITS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `n % 100` as two digits at `buf[at..at + 2]`.
fn put2(buf: &mut [u8], at: usize, n: u32) {
    let i = (n % 100) as usize * 2;
    buf[at..at + 2].copy_from_slice(&TWO_DIGITS[i..i + 2]);
}

/// Appends ASCII bytes (digits and punctuation written by this module).
fn push_ascii(out: &mut String, bytes: &[u8]) {
    out.push_str(std::str::from_utf8(bytes).unwrap_or_default());
}

/// Appends `n` zero-padded to `width` digits (`n` < 10^width for the common case).
fn push_padded(out: &mut String, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(buf.len().saturating_sub(width));
    push_ascii(out, &buf[start..]);
}

/// `YYYY-MM-DD` (years outside 0..=9999 use chrono's form).
fn push_date(out: &mut String, d: NaiveDate) {
    use chrono::Datelike;
    let y = d.year();
    if !(0..=9999).contains(&y) {
        use std::fmt::Write;
        let _ = write!(out, "{}", d.format("%Y-%m-%d"));
        return;
    }
    let mut buf = *b"0000-00-00";
    put2(&mut buf, 0, y as u32 / 100);
    put2(&mut buf, 2, y as u32);
    put2(&mut buf, 5, d.month());
    put2(&mut buf, 8, d.day());
    push_ascii(out, &buf);
}

/// `HH:MM:SS`, then `.fff`, `.ffffff` or `.fffffffff` when there is a fraction.
fn push_time(out: &mut String, t: NaiveTime) {
    use chrono::Timelike;
    let mut buf = *b"00:00:00";
    put2(&mut buf, 0, t.hour());
    put2(&mut buf, 3, t.minute());
    put2(&mut buf, 6, t.second());
    push_ascii(out, &buf);
    let ns = t.nanosecond() % 1_000_000_000;
    if ns != 0 {
        out.push('.');
        if ns.is_multiple_of(1_000_000) {
            push_padded(out, ns / 1_000_000, 3);
        } else if ns.is_multiple_of(1_000) {
            push_padded(out, ns / 1_000, 6);
        } else {
            push_padded(out, ns, 9);
        }
    }
}

/// A finite float as Rust's `Display` writes it (the shortest digits that read back as
/// the same number, positional, never an exponent: `0.1`, `1`, `-0`, `1e21` as
/// `1000000000000000000000`), from ryu's shortest digits, which are several times faster
/// to find than `core::fmt`'s.
fn push_float(out: &mut String, f: f64) {
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The significant digits, and where the decimal point goes among them.
    let mut digits = [0u8; 40];
    let mut n = 0;
    for &b in int.as_bytes().iter().chain(frac.as_bytes()) {
        if n < digits.len() {
            digits[n] = b;
            n += 1;
        }
    }
    let mut point = int.len() as i32 + exp;
    let lead = digits[..n].iter().take_while(|&&b| b == b'0').count();
    let digits = &digits[lead..n];
    point -= lead as i32;
    let trail = digits.iter().rev().take_while(|&&b| b == b'0').count();
    let digits = &digits[..digits.len() - trail];
    if negative {
        out.push('-');
    }
    if digits.is_empty() {
        out.push('0');
    } else if point <= 0 {
        out.push_str("0.");
        for _ in 0..-point {
            out.push('0');
        }
        push_ascii(out, digits);
    } else if point as usize >= digits.len() {
        push_ascii(out, digits);
        for _ in digits.len()..point as usize {
            out.push('0');
        }
    } else {
        push_ascii(out, &digits[..point as usize]);
        out.push('.');
        push_ascii(out, &digits[point as usize..]);
    }
}

/// Fast parse of `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])?;
    let m = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    NaiveDate::from_ymd_opt(y as i32, m, d)
}

/// Fast parse of `HH:MM:SS[.fraction]`.
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    let b = s.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    let nanos = match &b[8..] {
        [] => 0,
        [b'.', frac @ ..] if !frac.is_empty() && frac.len() <= 9 => {
            digits(frac)? * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    NaiveTime::from_hms_nano_opt(h, m, sec, nanos)
}

/// Fast parse of `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`), without an offset.
pub fn parse_naive_datetime(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() < 19 || !(b[10] == b' ' || b[10] == b'T') {
        return None;
    }
    Some(parse_date(&s[..10])?.and_time(parse_time(&s[11..])?))
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

#[cfg(test)]
mod render_tests {
    use super::*;

    #[test]
    fn fast_parsers_agree_with_chrono() {
        assert_eq!(
            parse_date("2024-02-29"),
            Some("2024-02-29".parse().unwrap())
        );
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-2-29"), None);
        assert_eq!(
            parse_time("23:59:59.5"),
            Some("23:59:59.5".parse().unwrap())
        );
        assert_eq!(parse_time("24:00:00"), None);
        assert_eq!(parse_time("10:30:00Z"), None);
        assert_eq!(
            parse_naive_datetime("2026-01-01T00:00:00.5"),
            Some("2026-01-01T00:00:00.5".parse().unwrap())
        );
        assert_eq!(parse_naive_datetime("2026-01-01 00:00:00+08:00"), None);
    }

    /// ryu's digits laid out positionally read back as the same float and are as short as
    /// `Display`'s, in the same layout, for a few million floats: random bit patterns
    /// (every exponent) and short decimals. The text is `Display`'s except where two
    /// shortest texts are equally close (`Display` rounds the tie up, ryu to even).
    #[test]
    fn floats_render_like_display() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ties = 0;
        let mut check = |f: f64| {
            if f.is_finite() {
                let mut s = String::new();
                push_float(&mut s, f);
                let display = format!("{f}");
                assert_eq!(
                    s.parse::<f64>().ok(),
                    Some(f),
                    "{s}: bits {:#x}",
                    f.to_bits()
                );
                assert_eq!(s.len(), display.len(), "{s} vs {display}");
                if s != display {
                    ties += 1;
                }
            }
        };
        for f in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e21,
            1e-7,
            1e300,
            -1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            check(f);
        }
        let mut tie = String::new();
        push_float(&mut tie, f64::from_bits(0x4317_9085_685d_83c9));
        assert_eq!(tie, "1658206780088562.2"); // 1658206780088562.25: to even
        check(f64::from_bits(1)); // the smallest subnormal
        for _ in 0..2_000_000 {
            let bits = next();
            check(f64::from_bits(bits));
            let cents = (bits % 100_000_000) as f64 / 100.0;
            check(cents);
            check(-((bits % 1_000_000) as f64) / 1000.0);
        }
        assert!(ties < 1000, "{ties} floats differ from Display");
    }

    fn text(v: Value) -> String {
        let mut s = String::new();
        render_text(&v, chrono_tz::Asia::Shanghai, &mut s);
        s
    }

    #[test]
    fn values_render_exactly() {
        assert_eq!(text(Value::Null), "");
        assert_eq!(text(Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(Value::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(text(Value::Float(0.1)), "0.1");
        assert_eq!(text(Value::Float(-0.0)), "-0");
        assert_eq!(text(Value::Float(1e21)), "1000000000000000000000");
        assert_eq!(
            text(Value::Time("10:30:00.000001".parse().unwrap())),
            "10:30:00.000001"
        );
        assert_eq!(
            text(Value::Date("0042-01-09".parse().unwrap())),
            "0042-01-09"
        );
        assert_eq!(text(Value::Float(f64::NAN)), "NaN");
        assert_eq!(
            text(Value::Decimal("12345678901234567890.1234567890".into())),
            "12345678901234567890.1234567890"
        );
        assert_eq!(text(Value::Bytes(vec![0, 0xab])), "0x00AB");
        assert_eq!(
            text(Value::Date("2026-11-25".parse().unwrap())),
            "2026-11-25"
        );
        assert_eq!(
            text(Value::Time("10:30:00.250".parse().unwrap())),
            "10:30:00.250"
        );
        assert_eq!(
            text(Value::DateTimeTz(
                DateTime::parse_from_rfc3339("2026-11-25T02:00:00Z").unwrap()
            )),
            "2026-11-25 10:00:00+08:00"
        );
    }
}
