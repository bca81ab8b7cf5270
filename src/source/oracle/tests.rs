//! Unit tests of the Oracle source: type mapping, binds, the connect descriptor and the
//! error messages (no live Oracle database is available here).

use super::*;

fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ns: u32) -> Timestamp {
    Timestamp::new(y, mo, d, h, mi, s, ns).unwrap()
}

fn dec(t: OracleType, f: Fetched) -> Value {
    Decoder::for_type(&t).decode(f).unwrap()
}

#[test]
fn numbers_map_to_exact_integers_and_decimals() {
    // NUMBER(p) up to 18 digits always fits an i64; the driver sends p < 18 natively.
    for t in [
        OracleType::Number(1, 0),
        OracleType::Number(10, 0),
        OracleType::Number(18, 0),
        OracleType::Number(16, -2),
        OracleType::Int64,
    ] {
        assert_eq!(Decoder::for_type(&t), Decoder::Int, "{t}");
        assert_eq!(Decoder::for_type(&t).kind(), Kind::Int);
    }
    assert_eq!(
        dec(OracleType::Number(10, 0), Fetched::Int(-42)),
        Value::Int(-42)
    );
    assert_eq!(
        dec(
            OracleType::Number(18, 0),
            Fetched::Text("999999999999999999".into())
        ),
        Value::Int(999_999_999_999_999_999)
    );
    // Wider integers and unconstrained NUMBER stay exact decimal text.
    for t in [
        OracleType::Number(19, 0),
        OracleType::Number(38, 0),
        OracleType::Number(0, -127),
        OracleType::Number(0, 0),
        OracleType::Number(17, -2),
        OracleType::Float(126),
        OracleType::Float(63),
    ] {
        assert_eq!(Decoder::for_type(&t), Decoder::Decimal { scale: 0 }, "{t}");
        assert_eq!(Decoder::for_type(&t).kind(), Kind::Decimal);
    }
    assert_eq!(
        dec(
            OracleType::Number(38, 0),
            Fetched::Text("12345678901234567890123456789012345678".into())
        ),
        Value::Decimal("12345678901234567890123456789012345678".into())
    );
    assert_eq!(
        dec(OracleType::Number(0, -127), Fetched::Text("0.1".into())),
        Value::Decimal("0.1".into())
    );
    assert_eq!(
        dec(
            OracleType::Number(0, -127),
            Fetched::Text("-0.000001".into())
        ),
        Value::Decimal("-0.000001".into())
    );
    // NUMBER(p,s): the fraction padded to the column's scale, never rounded.
    assert_eq!(
        Decoder::for_type(&OracleType::Number(38, 10)),
        Decoder::Decimal { scale: 10 }
    );
    assert_eq!(
        dec(
            OracleType::Number(38, 10),
            Fetched::Text("1234567890123456789012345678.1234567891".into())
        ),
        Value::Decimal("1234567890123456789012345678.1234567891".into())
    );
    assert_eq!(
        dec(OracleType::Number(38, 10), Fetched::Text("-12.5".into())),
        Value::Decimal("-12.5000000000".into())
    );
    assert_eq!(
        dec(OracleType::Number(10, 2), Fetched::Text("7".into())),
        Value::Decimal("7.00".into())
    );
    assert_eq!(
        dec(OracleType::Number(10, 2), Fetched::Text("0.05".into())),
        Value::Decimal("0.05".into())
    );
    assert!(
        Decoder::for_type(&OracleType::Number(10, 2))
            .decode(Fetched::Text("1e5".into()))
            .is_err()
    );
}

#[test]
fn binary_floats_keep_their_short_text() {
    assert_eq!(
        Decoder::for_type(&OracleType::BinaryFloat),
        Decoder::BinaryFloat
    );
    assert_eq!(
        dec(OracleType::BinaryFloat, Fetched::F32(0.1)),
        Value::Float(0.1)
    );
    assert_eq!(
        dec(OracleType::BinaryDouble, Fetched::F64(1e300)),
        Value::Float(1e300)
    );
    assert!(matches!(
        dec(OracleType::BinaryDouble, Fetched::F64(f64::NAN)),
        Value::Float(f) if f.is_nan()
    ));
    assert_eq!(Decoder::BinaryDouble.kind(), Kind::Float);
}

#[test]
fn dates_and_timestamps_keep_their_precision() {
    let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    assert_eq!(Decoder::for_type(&OracleType::Date).kind(), Kind::DateTime);
    assert_eq!(
        dec(
            OracleType::Date,
            Fetched::Timestamp(ts(2026, 11, 25, 14, 30, 5, 0))
        ),
        Value::DateTime(t("2026-11-25 14:30:05"))
    );
    assert_eq!(
        dec(
            OracleType::Timestamp(9),
            Fetched::Timestamp(ts(2026, 2, 28, 23, 59, 59, 123_456_789))
        ),
        Value::DateTime(t("2026-02-28 23:59:59.123456789"))
    );
    // Years before the common era are dates too (Oracle goes back to 4712 BC).
    assert!(matches!(
        dec(
            OracleType::Date,
            Fetched::Timestamp(ts(-4712, 1, 1, 0, 0, 0, 0))
        ),
        Value::DateTime(_)
    ));
}

#[test]
fn zoned_timestamps_are_instants_with_their_offset() {
    for t in [OracleType::TimestampTZ(6), OracleType::TimestampLTZ(3)] {
        assert_eq!(Decoder::for_type(&t), Decoder::Instant);
        assert_eq!(Decoder::Instant.kind(), Kind::DateTimeTz);
    }
    let v = dec(
        OracleType::TimestampTZ(6),
        Fetched::Timestamp(
            ts(2026, 11, 25, 10, 0, 0, 500_000_000)
                .and_tz_hm_offset(8, 0)
                .unwrap(),
        ),
    );
    let Value::DateTimeTz(i) = v else {
        panic!("{v:?}")
    };
    assert_eq!(i.to_rfc3339(), "2026-11-25T10:00:00.500+08:00");
    let mut text = String::new();
    crate::value::render_text(&Value::DateTimeTz(i), chrono_tz::Europe::Berlin, &mut text);
    assert_eq!(text, "2026-11-25 03:00:00.500+01:00");
    let west = dec(
        OracleType::TimestampLTZ(6),
        Fetched::Timestamp(
            ts(2026, 7, 1, 20, 30, 0, 0)
                .and_tz_hm_offset(-3, -30)
                .unwrap(),
        ),
    );
    let Value::DateTimeTz(w) = west else {
        panic!("{west:?}")
    };
    assert_eq!(w.to_rfc3339(), "2026-07-01T20:30:00-03:30");
}

#[test]
fn intervals_are_oracle_text() {
    assert_eq!(
        Decoder::for_type(&OracleType::IntervalDS(2, 6)),
        Decoder::IntervalDs { lead: 2, frac: 6 }
    );
    assert_eq!(Decoder::IntervalDs { lead: 2, frac: 6 }.kind(), Kind::Text);
    assert_eq!(
        dec(
            OracleType::IntervalDS(2, 6),
            Fetched::IntervalDs(IntervalDS::new(1, 2, 3, 4, 500_000_000).unwrap())
        ),
        Value::Text("+01 02:03:04.500000".into())
    );
    assert_eq!(
        dec(
            OracleType::IntervalDS(3, 0),
            Fetched::IntervalDs(IntervalDS::new(-1, -2, 0, 0, 0).unwrap())
        ),
        Value::Text("-001 02:00:00".into())
    );
    assert_eq!(
        dec(
            OracleType::IntervalYM(2),
            Fetched::IntervalYm(IntervalYM::new(1, 6).unwrap())
        ),
        Value::Text("+01-06".into())
    );
}

#[test]
fn text_bytes_and_booleans() {
    for t in [
        OracleType::Varchar2(4000),
        OracleType::NVarchar2(100),
        OracleType::Char(10),
        OracleType::NChar(10),
        OracleType::Rowid,
        OracleType::CLOB,
        OracleType::NCLOB,
        OracleType::Long,
        OracleType::Xml,
        OracleType::Json,
    ] {
        assert_eq!(Decoder::for_type(&t), Decoder::Text, "{t}");
    }
    assert_eq!(
        dec(OracleType::NVarchar2(10), Fetched::Text("销售 😀".into())),
        Value::Text("销售 😀".into())
    );
    // CHAR keeps Oracle's blank padding: it is part of the value.
    assert_eq!(
        dec(OracleType::Char(5), Fetched::Text("ab   ".into())),
        Value::Text("ab   ".into())
    );
    assert_eq!(
        dec(
            OracleType::Rowid,
            Fetched::Text("AAAR3sAAEAAAACXAAA".into())
        ),
        Value::Text("AAAR3sAAEAAAACXAAA".into())
    );
    for t in [
        OracleType::Raw(16),
        OracleType::LongRaw,
        OracleType::BLOB,
        OracleType::BFILE,
    ] {
        assert_eq!(Decoder::for_type(&t), Decoder::Bytes, "{t}");
    }
    let raw = dec(OracleType::Raw(16), Fetched::Bytes(vec![0xde, 0xad, 0x01]));
    let mut text = String::new();
    crate::value::render_text(&raw, chrono_tz::UTC, &mut text);
    assert_eq!(text, "0xDEAD01");
    assert_eq!(Decoder::for_type(&OracleType::Boolean), Decoder::Bool);
    assert_eq!(
        dec(OracleType::Boolean, Fetched::Bool(true)),
        Value::Bool(true)
    );
    assert_eq!(Decoder::Bool.kind(), Kind::Bool);
}

#[test]
fn unknown_types_fall_back_to_text_with_a_warning() {
    assert_eq!(Decoder::for_type(&OracleType::RefCursor), Decoder::Fallback);
    assert_eq!(Decoder::Fallback.kind(), Kind::Unknown);
    assert_eq!(
        Decoder::Fallback.decode(Fetched::Text("MDSYS.SDO_GEOMETRY(2001, ...)".into())),
        Ok(Value::Text("MDSYS.SDO_GEOMETRY(2001, ...)".into()))
    );
    assert_eq!(
        fallback_warning("SHAPE", "MDSYS.SDO_GEOMETRY"),
        "column `SHAPE` has Oracle type `MDSYS.SDO_GEOMETRY`, which ferry cannot read: its values are written as the driver's text for them; convert it in the query (TO_CHAR(...), JSON_SERIALIZE(...)) to choose"
    );
    // A type the driver cannot even describe fails the run with what to do.
    let m = run_message(&Failure {
        ora: None,
        dpi: None,
        text: "unsupported Oracle type JSON".into(),
    });
    assert!(m.contains("JSON_SERIALIZE(col RETURNING CLOB)"), "{m}");
}

#[test]
fn parameters_bind_with_oracle_types() {
    let d = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    assert_eq!(bind_type(&ParamValue::Date(d)), OracleType::Date);
    assert_eq!(
        bind_type(&ParamValue::DateTime(d.and_hms_opt(2, 30, 0).unwrap())),
        OracleType::Date
    );
    assert_eq!(
        bind_type(&ParamValue::DateTime(
            d.and_hms_milli_opt(2, 30, 0, 5).unwrap()
        )),
        OracleType::Timestamp(9)
    );
    assert_eq!(
        bind_type(&ParamValue::Instant(crate::clock::wall_now())),
        OracleType::TimestampTZ(9)
    );
    assert_eq!(bind_type(&ParamValue::Int(5)), OracleType::Number(0, 0));
    assert_eq!(bind_type(&ParamValue::Bool(true)), OracleType::Number(0, 0));
    assert_eq!(
        bind_type(&ParamValue::Text("销售".into())),
        OracleType::Varchar2(6)
    );
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T18:30:00Z")
        .unwrap()
        .naive_utc();
    let t = timestamp_of(at, true).unwrap();
    assert_eq!(
        (
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.tz_offset()
        ),
        (2026, 11, 24, 18, 30, 0)
    );
    assert!(t.with_tz());
    assert!(!timestamp_of(at, false).unwrap().with_tz());
}

#[test]
fn the_connect_descriptor_names_the_listener_service_and_timeout() {
    assert_eq!(
        connect_descriptor(
            "db.example.com",
            1521,
            "ORCLPDB1",
            Duration::from_millis(2500)
        ),
        "(DESCRIPTION=(CONNECT_TIMEOUT=3)(TRANSPORT_CONNECT_TIMEOUT=3)(RETRY_COUNT=0)(ADDRESS=(PROTOCOL=TCP)(HOST=db.example.com)(PORT=1521))(CONNECT_DATA=(SERVICE_NAME=ORCLPDB1)))"
    );
    assert!(connect_descriptor("::1", 1, "s", Duration::ZERO).contains("(HOST=::1)(PORT=1)"));
}

fn connect_text(ora: Option<i32>, dpi: Option<i32>, text: &str) -> String {
    connect_message(
        &Failure {
            ora,
            dpi,
            text: text.into(),
        },
        "ferry",
        "127.0.0.1",
        1521,
        "FREEPDB1",
        "oracle://ferry:***@127.0.0.1:1521/FREEPDB1",
    )
}

#[test]
fn connect_errors_say_what_went_wrong() {
    assert_eq!(
        connect_text(
            Some(1017),
            None,
            "ORA-01017: invalid username/password; logon denied"
        ),
        "authentication failed for user `ferry` at oracle://ferry:***@127.0.0.1:1521/FREEPDB1 (ORA-01017: invalid username/password; logon denied): check the user and password in the url"
    );
    assert_eq!(
        connect_text(Some(12541), None, "ORA-12541: TNS:no listener"),
        "no Oracle listener at 127.0.0.1:1521 (ORA-12541: TNS:no listener): check the host and port in the url, and that the listener runs (`lsnrctl status` on the server)"
    );
    assert!(
        connect_text(
            Some(12514),
            None,
            "ORA-12514: TNS:listener does not currently know of service requested in connect descriptor"
        )
        .starts_with("the listener at 127.0.0.1:1521 does not know the service `FREEPDB1` (ORA-12514")
    );
    assert!(
        connect_text(Some(12170), None, "ORA-12170: TNS:Connect timeout occurred")
            .starts_with("no answer from 127.0.0.1:1521 within the connect timeout")
    );
    assert_eq!(
        connect_text(Some(600), None, "ORA-00600: internal error"),
        "cannot connect to oracle://ferry:***@127.0.0.1:1521/FREEPDB1: ORA-00600: internal error"
    );
    let missing = connect_text(
        None,
        Some(1047),
        "DPI-1047: Cannot locate a 64-bit Oracle Client library: \"libclntsh.so: cannot open shared object file: No such file or directory\"",
    );
    assert_eq!(
        missing,
        format!(
            "cannot load Oracle's client library (DPI-1047: Cannot locate a 64-bit Oracle Client library: \"libclntsh.so: cannot open shared object file: No such file or directory\"): {CLIENT_MISSING}"
        )
    );
    assert!(missing.contains("Oracle Instant Client Basic or Basic Light, 64-bit"));
    assert!(missing.contains("LD_LIBRARY_PATH"));
    assert!(missing.contains("ldconfig"));
}

#[test]
fn odpi_help_links_are_dropped() {
    assert_eq!(
        strip_help_link(
            "DPI-1047: Cannot locate a 64-bit Oracle Client library: \"x\". See https://oracle.github.io/odpi/doc/installation.html#linux for help"
        ),
        "DPI-1047: Cannot locate a 64-bit Oracle Client library: \"x\""
    );
    assert_eq!(
        strip_help_link("ORA-00942: table or view does not exist"),
        "ORA-00942: table or view does not exist"
    );
}

#[test]
fn run_errors_name_timeouts_cancels_and_read_only() {
    let f = |ora, dpi, text: &str| {
        run_message(&Failure {
            ora,
            dpi,
            text: text.into(),
        })
    };
    assert_eq!(
        f(
            None,
            Some(1067),
            "DPI-1067: call timeout of 70000 ms exceeded with ORA-3156"
        ),
        "DPI-1067: call timeout of 70000 ms exceeded with ORA-3156 (the task's timeout, applied as the Oracle call timeout)"
    );
    assert_eq!(
        f(
            Some(1013),
            None,
            "ORA-01013: user requested cancel of current operation"
        ),
        "ORA-01013: user requested cancel of current operation (the run was stopped; ferry cancelled the statement)"
    );
    assert_eq!(
        f(
            Some(1456),
            None,
            "ORA-01456: may not perform insert/delete/update operation inside a READ ONLY transaction"
        ),
        "ORA-01456: may not perform insert/delete/update operation inside a READ ONLY transaction (ferry runs every query in a read-only transaction)"
    );
    assert_eq!(
        f(Some(942), None, "ORA-00942: table or view does not exist"),
        "ORA-00942: table or view does not exist"
    );
    assert_eq!(
        BindError::Missing("day".into()).message(),
        "no value for parameter `:day`"
    );
}

#[test]
fn call_timeout_has_the_margin_and_stays_in_range() {
    assert_eq!(
        call_timeout(Duration::from_secs(60)),
        Duration::from_secs(70)
    );
    assert_eq!(
        call_timeout(Duration::from_secs(400 * 24 * 3600)),
        Duration::from_secs(49 * 24 * 3600)
    );
}

#[test]
fn a_trailing_semicolon_is_dropped() {
    assert_eq!(
        statement_text("SELECT 1 FROM dual;\n"),
        "SELECT 1 FROM dual"
    );
    assert_eq!(
        statement_text("SELECT ';' FROM dual"),
        "SELECT ';' FROM dual"
    );
    assert_eq!(
        statement_text("SELECT 1 FROM dual ; "),
        "SELECT 1 FROM dual"
    );
}

#[test]
fn statement_ids_fit_plan_table() {
    let id = statement_id();
    assert!(id.len() <= 30, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    assert_ne!(id, statement_id());
}
