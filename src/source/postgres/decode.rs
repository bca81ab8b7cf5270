//! Decoding PostgreSQL's binary wire format into ferry's [`Value`]s, one [`Decoder`] per
//! column (see `docs/types.md`): exact `numeric` digits, 64-bit integers, dates and instants
//! with full precision, arrays in PostgreSQL's text syntax; a type ferry does not know is
//! read as text when its binary form is text and otherwise as bytes.

use chrono::{NaiveDateTime, NaiveTime, TimeZone, Utc};
use tokio_postgres::types::{Kind as PgKind, Type};

use super::pg_epoch;
use crate::source::{Chunker, error_chain};
use crate::value::{Kind, Value};

/// A column value as the raw bytes of its binary form (`None` for NULL), for any type.
pub(super) struct Raw<'a>(pub(super) Option<&'a [u8]>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// How one column's binary values become [`Value`]s.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decoder {
    Bool,
    Int2,
    Int4,
    Int8,
    /// `oid` and friends: unsigned 32-bit.
    Oid,
    Float4,
    Float8,
    Numeric,
    /// Any type whose binary form is its UTF-8 text (text, varchar, enums, json, xml...).
    Text,
    /// `"char"`: one byte.
    Char,
    Jsonb,
    Bytes,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Uuid,
    Interval,
    /// An array of a known element type, written in PostgreSQL's `{a,b}` syntax.
    Array(Box<Decoder>),
    /// A type ferry cannot read: the raw binary form as bytes (with a warning).
    Fallback,
}

impl Decoder {
    pub(super) fn for_type(ty: &Type) -> Decoder {
        match *ty {
            Type::BOOL => Decoder::Bool,
            Type::INT2 => Decoder::Int2,
            Type::INT4 => Decoder::Int4,
            Type::INT8 => Decoder::Int8,
            Type::OID | Type::XID | Type::CID | Type::REGPROC | Type::REGTYPE | Type::REGCLASS => {
                Decoder::Oid
            }
            Type::FLOAT4 => Decoder::Float4,
            Type::FLOAT8 => Decoder::Float8,
            Type::NUMERIC => Decoder::Numeric,
            Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::UNKNOWN
            | Type::JSON
            | Type::XML
            | Type::JSONPATH => Decoder::Text,
            Type::CHAR => Decoder::Char,
            Type::JSONB => Decoder::Jsonb,
            Type::BYTEA => Decoder::Bytes,
            Type::DATE => Decoder::Date,
            Type::TIME => Decoder::Time,
            Type::TIMETZ => Decoder::TimeTz,
            Type::TIMESTAMP => Decoder::Timestamp,
            Type::TIMESTAMPTZ => Decoder::TimestampTz,
            Type::UUID => Decoder::Uuid,
            Type::INTERVAL => Decoder::Interval,
            _ => match ty.kind() {
                // An enum's binary form is its label.
                PgKind::Enum(_) => Decoder::Text,
                PgKind::Domain(base) => Decoder::for_type(base),
                PgKind::Array(elem) => match Decoder::for_type(elem) {
                    Decoder::Fallback => Decoder::Fallback,
                    d => Decoder::Array(Box::new(d)),
                },
                // Extension types whose binary form is text (citext sends text as-is).
                _ if matches!(ty.name(), "citext") => Decoder::Text,
                _ => Decoder::Fallback,
            },
        }
    }

    pub(super) fn kind(&self) -> Kind {
        match self {
            Decoder::Bool => Kind::Bool,
            Decoder::Int2 | Decoder::Int4 | Decoder::Int8 | Decoder::Oid => Kind::Int,
            Decoder::Float4 | Decoder::Float8 => Kind::Float,
            Decoder::Numeric => Kind::Decimal,
            Decoder::Bytes | Decoder::Fallback => Kind::Bytes,
            Decoder::Date => Kind::Date,
            Decoder::Time => Kind::Time,
            Decoder::Timestamp => Kind::DateTime,
            Decoder::TimestampTz => Kind::DateTimeTz,
            Decoder::Text
            | Decoder::Char
            | Decoder::Jsonb
            | Decoder::TimeTz
            | Decoder::Uuid
            | Decoder::Interval
            | Decoder::Array(_) => Kind::Text,
        }
    }

    /// Decodes one non-NULL value.
    fn decode(&self, b: &[u8]) -> Result<Value, String> {
        Ok(match self {
            Decoder::Bool => Value::Bool(fixed::<1>(b)?[0] != 0),
            Decoder::Int2 => Value::Int(i16::from_be_bytes(fixed(b)?).into()),
            Decoder::Int4 => Value::Int(i32::from_be_bytes(fixed(b)?).into()),
            Decoder::Int8 => Value::Int(i64::from_be_bytes(fixed(b)?)),
            Decoder::Oid => Value::Int(u32::from_be_bytes(fixed(b)?).into()),
            Decoder::Float4 => Value::Float(f32_to_f64(f32::from_be_bytes(fixed(b)?))),
            Decoder::Float8 => Value::Float(f64::from_be_bytes(fixed(b)?)),
            Decoder::Numeric => numeric(b)?,
            Decoder::Text => Value::Text(utf8(b)),
            Decoder::Char => Value::Text(utf8(b)),
            Decoder::Jsonb => match b.split_first() {
                Some((1, rest)) => Value::Text(utf8(rest)),
                _ => return Err("unknown jsonb version".into()),
            },
            Decoder::Bytes | Decoder::Fallback => Value::Bytes(b.to_vec()),
            Decoder::Date => date(i32::from_be_bytes(fixed(b)?)),
            Decoder::Time => {
                let us = i64::from_be_bytes(fixed(b)?);
                match time_of_day(us) {
                    Some(t) => Value::Time(t),
                    None => Value::Text(time_text(us)), // 24:00:00
                }
            }
            Decoder::TimeTz => {
                let (us, rest) = b.split_at_checked(8).ok_or("short timetz")?;
                let us = i64::from_be_bytes(fixed(us)?);
                // The zone is stored in seconds *west* of UTC.
                let east = -i32::from_be_bytes(fixed(rest)?);
                Value::Text(format!("{}{}", time_text(us), offset_text(east)))
            }
            Decoder::Timestamp => match timestamp(i64::from_be_bytes(fixed(b)?)) {
                Ok(t) => Value::DateTime(t),
                Err(text) => Value::Text(text),
            },
            Decoder::TimestampTz => match timestamp(i64::from_be_bytes(fixed(b)?)) {
                Ok(t) => Value::DateTimeTz(Utc.from_utc_datetime(&t).fixed_offset()),
                Err(text) => Value::Text(text),
            },
            Decoder::Uuid => {
                Value::Text(uuid::Uuid::from_bytes(fixed(b)?).hyphenated().to_string())
            }
            Decoder::Interval => {
                let us = i64::from_be_bytes(fixed(&b[..8.min(b.len())])?);
                let days = i32::from_be_bytes(fixed(b.get(8..12).ok_or("short interval")?)?);
                let months = i32::from_be_bytes(fixed(b.get(12..).ok_or("short interval")?)?);
                Value::Text(interval_text(months, days, us))
            }
            Decoder::Array(elem) => Value::Text(array_text(elem, b)?),
        })
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `f64` whose shortest text equals the `f32`'s (`0.1`, not `0.10000000149011612`).
fn f32_to_f64(f: f32) -> f64 {
    if f.is_finite() {
        f.to_string().parse().unwrap_or(f64::from(f))
    } else {
        f64::from(f)
    }
}

/// `numeric`: sign, weight (base-10000 exponent of the first digit), display scale and
/// base-10000 digits, turned into the exact decimal text PostgreSQL itself prints.
fn numeric(b: &[u8]) -> Result<Value, String> {
    let header = b.get(..8).ok_or("short numeric")?;
    let ndigits = u16::from_be_bytes([header[0], header[1]]) as usize;
    let weight = i16::from_be_bytes([header[2], header[3]]) as i32;
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let dscale = u16::from_be_bytes([header[6], header[7]]) as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok(Value::Float(f64::NAN)),
        0xD000 => return Ok(Value::Float(f64::INFINITY)),
        0xF000 => return Ok(Value::Float(f64::NEG_INFINITY)),
        other => return Err(format!("unknown numeric sign {other:#x}")),
    }
    let body = b.get(8..8 + 2 * ndigits).ok_or("short numeric digits")?;
    // Digit i (base 10000) stands for digit(i) * 10000^(weight - i).
    let digit = |i: usize| u16::from_be_bytes([body[2 * i], body[2 * i + 1]]);
    if (0..ndigits).any(|i| digit(i) > 9999) {
        return Err("numeric digit out of range".into());
    }
    let group = |pos: i32| -> u16 {
        let i = weight - pos;
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            digit(i as usize)
        }
    };
    let push4 = |out: &mut String, g: u16| {
        for d in [g / 1000, g / 100 % 10, g / 10 % 10, g % 10] {
            out.push((b'0' + d as u8) as char);
        }
    };
    let mut out = String::with_capacity(4 * (ndigits + 2) + dscale);
    if sign == 0x4000 && (0..ndigits).any(|i| digit(i) != 0) {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(itoa::Buffer::new().format(group(weight)));
        for pos in (0..weight).rev() {
            push4(&mut out, group(pos));
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut pos = -1;
        while out.len() - start < dscale {
            push4(&mut out, group(pos));
            pos -= 1;
        }
        out.truncate(start + dscale);
    }
    Ok(Value::Decimal(out))
}

fn date(days: i32) -> Value {
    match days {
        i32::MAX => Value::Text("infinity".into()),
        i32::MIN => Value::Text("-infinity".into()),
        _ => match pg_epoch()
            .date()
            .checked_add_signed(chrono::Duration::days(days.into()))
        {
            Some(d) => Value::Date(d),
            None => Value::Text(format!("(date out of range: {days} days after 2000-01-01)")),
        },
    }
}

fn timestamp(us: i64) -> Result<NaiveDateTime, String> {
    match us {
        i64::MAX => Err("infinity".into()),
        i64::MIN => Err("-infinity".into()),
        _ => pg_epoch()
            .checked_add_signed(chrono::Duration::microseconds(us))
            .ok_or_else(|| format!("(timestamp out of range: {us} microseconds after 2000-01-01)")),
    }
}

fn time_of_day(us: i64) -> Option<NaiveTime> {
    let secs = u32::try_from(us.div_euclid(1_000_000)).ok()?;
    let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
}

/// `HH:MM:SS[.ffffff]` for a time of day (also `24:00:00`), trailing zeros trimmed.
fn time_text(us: i64) -> String {
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    push_fraction(&mut s, frac);
    s
}

fn push_fraction(s: &mut String, micros: i64) {
    if micros != 0 {
        let f = format!(".{:06}", micros.abs());
        s.push_str(f.trim_end_matches('0'));
    }
}

/// `+08`, `-03:30`, `+05:45:10` as PostgreSQL prints a zone offset.
fn offset_text(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    match (m, s) {
        (0, 0) => format!("{sign}{h:02}"),
        (_, 0) => format!("{sign}{h:02}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{s:02}"),
    }
}

/// An interval in PostgreSQL's default output style (`IntervalStyle = postgres`):
/// `1 year 2 mons 3 days 04:05:06.5`, `-1 days +02:00:00`, `00:00:00`.
fn interval_text(months: i32, days: i32, us: i64) -> String {
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let mut part = |value: i64, unit: &str, out: &mut String| {
        if value == 0 {
            return;
        }
        if !is_zero {
            out.push(' ');
        }
        if is_before && value > 0 {
            out.push('+');
        }
        out.push_str(&format!(
            "{value} {unit}{}",
            if value != 1 { "s" } else { "" }
        ));
        is_before = value < 0;
        is_zero = false;
    };
    part(i64::from(months / 12), "year", &mut out);
    part(i64::from(months % 12), "mon", &mut out);
    part(i64::from(days), "day", &mut out);
    if is_zero || us != 0 {
        if !is_zero {
            out.push(' ');
        }
        if us < 0 {
            out.push('-');
        } else if is_before {
            out.push('+');
        }
        let a = us.unsigned_abs();
        let secs = a / 1_000_000;
        out.push_str(&format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ));
        push_fraction(&mut out, (a % 1_000_000) as i64);
    }
    out
}

/// An array in PostgreSQL's text syntax (`{1,2,NULL}`, `{{a,b},{c,d}}`, `[0:1]={x,y}`),
/// each element written as ferry writes that type (instants in UTC).
fn array_text(elem: &Decoder, b: &[u8]) -> Result<String, String> {
    let int = |at: usize| -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(
            b.get(at..at + 4).ok_or("short array")?,
        )?))
    };
    let ndim = int(0)?;
    if ndim == 0 {
        return Ok("{}".into());
    }
    let ndim = usize::try_from(ndim).map_err(|_| "bad array dimensions")?;
    let mut dims = Vec::with_capacity(ndim);
    let mut prefix = String::new();
    for d in 0..ndim {
        let len = usize::try_from(int(12 + 8 * d)?).map_err(|_| "bad array length")?;
        let lower = int(16 + 8 * d)?;
        dims.push(len);
        prefix.push_str(&format!(
            "[{}:{}]",
            lower,
            i64::from(lower) + len as i64 - 1
        ));
    }
    let mut at = 12 + 8 * ndim;
    let total: usize = dims.iter().product();
    let mut items = Vec::with_capacity(total);
    for _ in 0..total {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            items.push("NULL".to_string());
            continue;
        }
        let raw = b.get(at..at + len as usize).ok_or("short array element")?;
        at += len as usize;
        let mut text = String::new();
        crate::value::render_text(&elem.decode(raw)?, chrono_tz::UTC, &mut text);
        items.push(quote_array_item(text));
    }
    let mut out = String::new();
    if dims_need_prefix(b, ndim)? {
        out.push_str(&prefix);
        out.push('=');
    }
    let mut items = items.into_iter();
    nest(&dims, &mut items, &mut out);
    Ok(out)
}

fn dims_need_prefix(b: &[u8], ndim: usize) -> Result<bool, String> {
    for d in 0..ndim {
        let at = 16 + 8 * d;
        let lower = i32::from_be_bytes(fixed(b.get(at..at + 4).ok_or("short array")?)?);
        if lower != 1 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn nest(dims: &[usize], items: &mut impl Iterator<Item = String>, out: &mut String) {
    out.push('{');
    for i in 0..dims[0] {
        if i > 0 {
            out.push(',');
        }
        if dims.len() > 1 {
            nest(&dims[1..], items, out);
        } else if let Some(item) = items.next() {
            out.push_str(&item);
        }
    }
    out.push('}');
}

fn quote_array_item(text: String) -> String {
    let needs = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if !needs {
        return text;
    }
    let mut q = String::with_capacity(text.len() + 2);
    q.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Decodes one row into the chunk; on failure, the column index and the reason.
///
/// A plain function, not part of the async reader, so that values are built in place
/// instead of being moved through the reader's future for every cell (see the MySQL
/// source's `decode_row`).
#[inline(never)]
pub(super) fn decode_row(
    decoders: &[Decoder],
    row: &tokio_postgres::Row,
    chunk: &mut Chunker,
) -> Result<(), (usize, String)> {
    for (i, dec) in decoders.iter().enumerate() {
        let value = match row.try_get::<_, Raw<'_>>(i) {
            Ok(Raw(None)) => Ok(Value::Null),
            Ok(Raw(Some(b))) => dec.decode(b),
            Err(e) => Err(error_chain(&e)),
        };
        chunk.push(value.map_err(|e| (i, e))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    fn dec(b: &[u8]) -> String {
        match numeric(b).unwrap() {
            Value::Decimal(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12345678901234567890.1234567890
        let b = numeric_bytes(4, 0, 10, &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000]);
        assert_eq!(dec(&b), "12345678901234567890.1234567890");
        assert_eq!(dec(&numeric_bytes(0, 0, 0, &[])), "0");
        assert_eq!(dec(&numeric_bytes(0, 0, 2, &[])), "0.00");
        assert_eq!(dec(&numeric_bytes(-1, 0x4000, 3, &[500])), "-0.050");
        assert_eq!(dec(&numeric_bytes(1, 0, 0, &[1])), "10000");
        assert_eq!(dec(&numeric_bytes(-2, 0, 8, &[12])), "0.00000012");
        assert_eq!(dec(&numeric_bytes(0, 0x4000, 1, &[12, 5000])), "-12.5");
        assert!(
            matches!(numeric(&numeric_bytes(0, 0xC000, 0, &[])), Ok(Value::Float(f)) if f.is_nan())
        );
        assert_eq!(
            numeric(&numeric_bytes(0, 0xF000, 0, &[])),
            Ok(Value::Float(f64::NEG_INFINITY))
        );
    }

    #[test]
    fn intervals_print_like_postgres() {
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        assert_eq!(
            interval_text(14, 3, 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000),
            "1 year 2 mons 3 days 04:05:06.5"
        );
        assert_eq!(interval_text(0, -1, 7_200_000_000), "-1 days +02:00:00");
        assert_eq!(interval_text(0, 1, -1), "1 day -00:00:00.000001");
        assert_eq!(interval_text(-13, 0, 0), "-1 years -1 mons");
        assert_eq!(interval_text(0, 0, 90_000_000_000), "25:00:00");
    }

    #[test]
    fn times_and_offsets() {
        assert_eq!(time_text(86_400_000_000), "24:00:00");
        assert_eq!(time_text(3_723_250_000), "01:02:03.25");
        assert_eq!(offset_text(8 * 3600), "+08");
        assert_eq!(offset_text(-(3 * 3600 + 1800)), "-03:30");
        assert_eq!(date(i32::MAX), Value::Text("infinity".into()));
        assert_eq!(
            date(-1),
            Value::Date(NaiveDate::from_ymd_opt(1999, 12, 31).unwrap())
        );
    }

    #[test]
    fn float4_keeps_its_short_text() {
        assert_eq!(f32_to_f64(0.1), 0.1);
        assert!(f32_to_f64(f32::NAN).is_nan());
    }

    #[test]
    fn array_items_are_quoted_when_needed() {
        assert_eq!(quote_array_item("abc".into()), "abc");
        assert_eq!(quote_array_item("".into()), "\"\"");
        assert_eq!(quote_array_item("null".into()), "\"null\"");
        assert_eq!(quote_array_item("a b,\"c\"".into()), "\"a b,\\\"c\\\"\"");
    }
}
