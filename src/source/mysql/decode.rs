//! Decoding MySQL-protocol values into ferry's [`Value`]s, one [`Decoder`] per column, by
//! column type and flags (see `docs/types.md`): exact DECIMAL text, signed and UNSIGNED
//! 64-bit integers, TIMESTAMP as an instant in UTC, text vs bytes by character set.

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use mysql_async::Value as MyValue;
use mysql_async::consts::{ColumnFlags, ColumnType};

use crate::source::Chunker;
use crate::value::{Column, Kind, Value};

/// The character set number MySQL uses for binary strings (BINARY, VARBINARY, BLOB).
const BINARY_CHARSET: u16 = 63;

/// How one column's values become [`Value`]s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Decoder {
    Int,
    Float,
    Decimal,
    Bit,
    Date,
    DateTime,
    /// TIMESTAMP: the session's zone is UTC.
    Timestamp,
    Time,
    Text,
    Bytes,
    Null,
    /// A type ferry does not know: text if valid UTF-8, else bytes (with a warning).
    Fallback,
}

impl Decoder {
    fn for_column(c: &mysql_async::Column) -> Decoder {
        use ColumnType::*;
        let binary = c.character_set() == BINARY_CHARSET;
        match c.column_type() {
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_INT24 | MYSQL_TYPE_YEAR => Decoder::Int,
            MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => Decoder::Float,
            MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => Decoder::Decimal,
            MYSQL_TYPE_BIT => Decoder::Bit,
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Decoder::Date,
            MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => Decoder::DateTime,
            MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => Decoder::Timestamp,
            MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Decoder::Time,
            MYSQL_TYPE_JSON | MYSQL_TYPE_ENUM | MYSQL_TYPE_SET => Decoder::Text,
            MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_STRING
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB => {
                let flags = c.flags();
                if flags.intersects(ColumnFlags::ENUM_FLAG | ColumnFlags::SET_FLAG) || !binary {
                    Decoder::Text
                } else {
                    Decoder::Bytes
                }
            }
            MYSQL_TYPE_NULL => Decoder::Null,
            _ => Decoder::Fallback,
        }
    }

    fn kind(self) -> Kind {
        match self {
            Decoder::Int | Decoder::Bit => Kind::Int,
            Decoder::Float => Kind::Float,
            Decoder::Decimal => Kind::Decimal,
            Decoder::Date => Kind::Date,
            Decoder::DateTime => Kind::DateTime,
            Decoder::Timestamp => Kind::DateTimeTz,
            Decoder::Time => Kind::Time,
            Decoder::Text => Kind::Text,
            Decoder::Bytes => Kind::Bytes,
            Decoder::Null | Decoder::Fallback => Kind::Unknown,
        }
    }

    #[inline]
    fn decode(self, v: MyValue) -> Result<Value, String> {
        Ok(match (self, v) {
            (_, MyValue::NULL) => Value::Null,
            (_, MyValue::Int(i)) => Value::Int(i),
            (_, MyValue::UInt(u)) => Value::UInt(u),
            (_, MyValue::Float(f)) => Value::Float(f32_to_f64(f)),
            (_, MyValue::Double(f)) => Value::Float(f),
            (Decoder::Timestamp, MyValue::Date(y, mo, d, h, mi, s, us)) => {
                match naive_datetime(y, mo, d, h, mi, s, us) {
                    Some(t) => Value::DateTimeTz(
                        FixedOffset::east_opt(0)
                            .expect("zero offset")
                            .from_utc_datetime(&t),
                    ),
                    None => Value::Text(zero_date_text(y, mo, d, h, mi, s, us, true)),
                }
            }
            (Decoder::Date, MyValue::Date(y, mo, d, h, mi, s, us)) => {
                match NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(d)) {
                    Some(date) => Value::Date(date),
                    None => Value::Text(zero_date_text(y, mo, d, h, mi, s, us, false)),
                }
            }
            (_, MyValue::Date(y, mo, d, h, mi, s, us)) => {
                match naive_datetime(y, mo, d, h, mi, s, us) {
                    Some(t) => Value::DateTime(t),
                    None => Value::Text(zero_date_text(y, mo, d, h, mi, s, us, true)),
                }
            }
            (_, MyValue::Time(neg, days, h, mi, s, us)) => time_value(neg, days, h, mi, s, us),
            (Decoder::Decimal, MyValue::Bytes(b)) => {
                let t = String::from_utf8(b).map_err(|_| "a DECIMAL that is not text")?;
                if !crate::value::is_decimal_text(&t) {
                    return Err(format!("`{t}` is not a decimal number"));
                }
                Value::Decimal(t)
            }
            (Decoder::Bit, MyValue::Bytes(b)) => {
                if b.len() > 8 {
                    Value::Bytes(b)
                } else {
                    Value::UInt(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
                }
            }
            (Decoder::Bytes, MyValue::Bytes(b)) => Value::Bytes(b),
            (_, MyValue::Bytes(b)) => match String::from_utf8(b) {
                Ok(s) => Value::Text(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            },
        })
    }
}

/// Decodes one row into the chunk; on failure, the column index and the reason.
///
/// A plain function, not part of the async reader: inside the reader's state machine every
/// value was moved through the future's memory several times per cell, which the profile
/// showed as the reader's main cost.
#[inline(never)]
pub(super) fn decode_row(
    decoders: &[Decoder],
    row: mysql_async::Row,
    chunk: &mut Chunker,
) -> Result<(), (usize, String)> {
    for (i, (dec, v)) in decoders.iter().zip(row.unwrap_raw()).enumerate() {
        // `None` is a value taken out of the row, which ferry never does.
        let v = v.unwrap_or(MyValue::NULL);
        chunk.push(dec.decode(v).map_err(|e| (i, e))?);
    }
    Ok(())
}

fn naive_datetime(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(d))?.and_hms_micro_opt(
        u32::from(h),
        u32::from(mi),
        u32::from(s),
        us,
    )
}

/// MySQL's own text for a date chrono cannot hold (`0000-00-00`, `2026-00-00`).
#[allow(clippy::too_many_arguments)]
fn zero_date_text(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32, time: bool) -> String {
    let mut t = format!("{y:04}-{mo:02}-{d:02}");
    if time {
        t.push_str(&format!(" {h:02}:{mi:02}:{s:02}"));
        if us != 0 {
            t.push_str(&format!(".{us:06}"));
        }
    }
    t
}

/// A TIME value: a time of day when it is one (0 to 24 h), otherwise MySQL's text for it
/// (`-01:30:00`, `838:59:59`).
fn time_value(neg: bool, days: u32, h: u8, mi: u8, s: u8, us: u32) -> Value {
    if !neg
        && days == 0
        && let Some(t) =
            NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(mi), u32::from(s), us)
    {
        return Value::Time(t);
    }
    let hours = u64::from(days) * 24 + u64::from(h);
    let mut t = format!("{}{hours:02}:{mi:02}:{s:02}", if neg { "-" } else { "" });
    if us != 0 {
        let f = format!(".{us:06}");
        t.push_str(f.trim_end_matches('0'));
    }
    Value::Text(t)
}

/// A FLOAT as the f64 whose shortest text is the f32's shortest text (`0.1`, not
/// `0.10000000149011612`).
fn f32_to_f64(f: f32) -> f64 {
    if f.is_finite() {
        f.to_string().parse().unwrap_or(f64::from(f))
    } else {
        f64::from(f)
    }
}

/// The column type as MySQL names it.
fn type_name(c: &mysql_async::Column) -> String {
    use ColumnType::*;
    let flags = c.flags();
    let binary = c.character_set() == BINARY_CHARSET;
    let name = match c.column_type() {
        MYSQL_TYPE_TINY => "TINYINT",
        MYSQL_TYPE_SHORT => "SMALLINT",
        MYSQL_TYPE_INT24 => "MEDIUMINT",
        MYSQL_TYPE_LONG => "INT",
        MYSQL_TYPE_LONGLONG => "BIGINT",
        MYSQL_TYPE_YEAR => "YEAR",
        MYSQL_TYPE_FLOAT => "FLOAT",
        MYSQL_TYPE_DOUBLE => "DOUBLE",
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => "DECIMAL",
        MYSQL_TYPE_BIT => "BIT",
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => "DATE",
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => "DATETIME",
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => "TIMESTAMP",
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => "TIME",
        MYSQL_TYPE_JSON => "JSON",
        MYSQL_TYPE_ENUM => "ENUM",
        MYSQL_TYPE_SET => "SET",
        MYSQL_TYPE_NULL => "NULL",
        MYSQL_TYPE_GEOMETRY => "GEOMETRY",
        MYSQL_TYPE_VECTOR => "VECTOR",
        _ if flags.contains(ColumnFlags::ENUM_FLAG) => "ENUM",
        _ if flags.contains(ColumnFlags::SET_FLAG) => "SET",
        MYSQL_TYPE_STRING => {
            if binary {
                "BINARY"
            } else {
                "CHAR"
            }
        }
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
            if binary {
                "VARBINARY"
            } else {
                "VARCHAR"
            }
        }
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB => {
            if binary {
                "BLOB"
            } else {
                "TEXT"
            }
        }
        other => return format!("type {}", other as u8),
    };
    let numeric = matches!(
        c.column_type(),
        MYSQL_TYPE_TINY
            | MYSQL_TYPE_SHORT
            | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_DECIMAL
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_FLOAT
            | MYSQL_TYPE_DOUBLE
    );
    if numeric && flags.contains(ColumnFlags::UNSIGNED_FLAG) {
        format!("{name} UNSIGNED")
    } else {
        name.to_string()
    }
}

/// Columns, decoders and warnings of a result set.
pub(super) fn describe_columns(
    cols: &[mysql_async::Column],
) -> (Vec<Column>, Vec<Decoder>, Vec<String>) {
    let mut columns = Vec::with_capacity(cols.len());
    let mut decoders = Vec::with_capacity(cols.len());
    let mut warnings = Vec::new();
    for c in cols {
        let dec = Decoder::for_column(c);
        let db_type = type_name(c);
        if dec == Decoder::Fallback {
            warnings.push(format!(
                "column `{}` has MySQL type `{db_type}`, which ferry cannot read: its values are written as text when they are UTF-8 and as hex bytes otherwise; convert it in the query (CAST(... AS CHAR)) to choose",
                c.name_str()
            ));
        }
        columns.push(Column {
            name: c.name_str().into_owned(),
            db_type,
            kind: dec.kind(),
        });
        decoders.push(dec);
    }
    (columns, decoders, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamValue;
    use crate::source::mysql::param_value;

    #[test]
    fn times_outside_a_day_are_text() {
        assert_eq!(
            time_value(false, 0, 10, 30, 0, 250_000),
            Value::Time(NaiveTime::from_hms_micro_opt(10, 30, 0, 250_000).unwrap())
        );
        assert_eq!(
            time_value(true, 0, 1, 30, 0, 0),
            Value::Text("-01:30:00".into())
        );
        assert_eq!(
            time_value(false, 34, 22, 59, 59, 0),
            Value::Text("838:59:59".into())
        );
        assert_eq!(
            time_value(false, 1, 0, 0, 0, 500_000),
            Value::Text("24:00:00.5".into())
        );
    }

    #[test]
    fn values_decode_by_column_kind() {
        assert_eq!(
            Decoder::Decimal.decode(MyValue::Bytes(b"-0.0000000001".to_vec())),
            Ok(Value::Decimal("-0.0000000001".into()))
        );
        assert!(
            Decoder::Decimal
                .decode(MyValue::Bytes(b"x".to_vec()))
                .is_err()
        );
        assert_eq!(
            Decoder::Bit.decode(MyValue::Bytes(vec![1, 2])),
            Ok(Value::UInt(258))
        );
        assert_eq!(
            Decoder::Date.decode(MyValue::Date(0, 0, 0, 0, 0, 0, 0)),
            Ok(Value::Text("0000-00-00".into()))
        );
        assert_eq!(
            Decoder::DateTime.decode(MyValue::Date(0, 0, 0, 0, 0, 0, 0)),
            Ok(Value::Text("0000-00-00 00:00:00".into()))
        );
        assert_eq!(
            Decoder::Fallback.decode(MyValue::Bytes(vec![0xff])),
            Ok(Value::Bytes(vec![0xff]))
        );
        assert_eq!(
            Decoder::Text.decode(MyValue::Bytes("销售 😀".as_bytes().to_vec())),
            Ok(Value::Text("销售 😀".into()))
        );
        assert_eq!(f32_to_f64(0.1), 0.1);
        assert_eq!(
            param_value(&ParamValue::Date(
                NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
            )),
            MyValue::Date(2026, 10, 1, 0, 0, 0, 0)
        );
    }
}
