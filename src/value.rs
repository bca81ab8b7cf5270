//! The value model shared by every source and format writer.
//!
//! A [`Value`] keeps the type the database gave it, exactly: integers stay integers
//! (signed and unsigned 64-bit), decimals stay the decimal text the server sent (never
//! rounded through a float), dates and times keep their precision, and an instant with a
//! zone keeps its offset. Writers decide how each kind becomes a CSV field or an XLSX
//! cell; sources decide how their wire types become a `Value`.
//!
//! Rows travel in chunks (`Vec<Row>`) so that per-row overhead stays small, and the
//! column metadata ([`Column`]) is known before the first row.

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
    use std::fmt::Write;
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
                let _ = write!(out, "{f}");
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
    let digits = buf.len() - i;
    for _ in digits..width {
        out.push('0');
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ascii digits"));
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
    push_padded(out, y as u32, 4);
    out.push('-');
    push_padded(out, d.month(), 2);
    out.push('-');
    push_padded(out, d.day(), 2);
}

/// `HH:MM:SS`, then `.fff`, `.ffffff` or `.fffffffff` when there is a fraction.
fn push_time(out: &mut String, t: NaiveTime) {
    use chrono::Timelike;
    push_padded(out, t.hour(), 2);
    out.push(':');
    push_padded(out, t.minute(), 2);
    out.push(':');
    push_padded(out, t.second(), 2);
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
