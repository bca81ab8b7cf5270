//! CSV writer: RFC 4180 quoting, header row, NULL as an empty field, exact numbers,
//! optional UTF-8 BOM or GB18030 encoding, and formula escaping.
//!
//! Quoting follows RFC 4180 as the `csv` crate's `QuoteStyle::Necessary` does (and its
//! output is byte for byte the same; a test compares them): a field is quoted when it
//! contains the delimiter, `"`, CR or LF, a `"` inside is doubled, and a record that would
//! be an empty line (one empty field) is written as `""`. Values are rendered straight
//! into the output buffer ([`Encoder`]): this is the hot path of every CSV export.
//!
//! Formula escaping (on by default): a *text* value that begins with `=`, `+`, `-`, `@`,
//! TAB or CR gets a leading `'`, so that spreadsheet programs do not run it as a formula
//! (OWASP "CSV injection"). Numbers, dates and other non-text values are never touched.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use chrono_tz::Tz;

use super::{
    Finished, FormatError, FormatWriter, HashingWriter, Staged, WriterOptions, partial_path,
};
use crate::config::{CsvEncoding, CsvOptions};
use crate::value::{Column, Kind, Rows, Value, render_text};

const BUFFER: usize = 256 * 1024;

/// The byte sink under the csv writer: the file, possibly through a GB18030 encoder.
enum Sink {
    Utf8(BufWriter<HashingWriter<File>>),
    Gb18030(Gb18030Writer),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Utf8(w) => w.write(buf),
            Sink::Gb18030(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Utf8(w) => w.flush(),
            Sink::Gb18030(w) => w.flush(),
        }
    }
}

impl Sink {
    fn into_file(self) -> io::Result<HashingWriter<File>> {
        match self {
            Sink::Utf8(w) => w.into_inner().map_err(|e| e.into_error()),
            Sink::Gb18030(w) => w.finish(),
        }
    }
}

/// Transcodes a UTF-8 byte stream to GB18030 (which can encode every Unicode character).
/// Input may split a character across writes; the tail is kept until the next write.
pub struct Gb18030Writer {
    inner: BufWriter<HashingWriter<File>>,
    encoder: encoding_rs::Encoder,
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl Gb18030Writer {
    fn new(inner: BufWriter<HashingWriter<File>>) -> Self {
        Gb18030Writer {
            inner,
            encoder: encoding_rs::GB18030.new_encoder(),
            pending: Vec::new(),
            out: Vec::with_capacity(BUFFER),
        }
    }

    fn encode(&mut self, text: &str, last: bool) -> io::Result<()> {
        let mut input = text;
        loop {
            self.out.clear();
            self.out.reserve(input.len() * 2 + 16);
            let spare = self.out.capacity();
            self.out.resize(spare, 0);
            let (result, read, written) =
                self.encoder
                    .encode_from_utf8_without_replacement(input, &mut self.out, last);
            self.inner.write_all(&self.out[..written])?;
            input = &input[read..];
            match result {
                encoding_rs::EncoderResult::InputEmpty => return Ok(()),
                encoding_rs::EncoderResult::OutputFull => continue,
                encoding_rs::EncoderResult::Unmappable(c) => {
                    // GB18030 maps all of Unicode; keep going defensively.
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("character {c:?} cannot be encoded in GB18030"),
                    ));
                }
            }
        }
    }

    fn finish(mut self) -> io::Result<HashingWriter<File>> {
        if !self.pending.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated UTF-8 at the end of output",
            ));
        }
        self.encode("", true)?;
        self.inner.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for Gb18030Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(buf);
        let valid = match std::str::from_utf8(&data) {
            Ok(_) => data.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "invalid UTF-8 in CSV output",
                ));
            }
        };
        let text = std::str::from_utf8(&data[..valid]).expect("checked above");
        self.encode(text, false)?;
        self.pending = data[valid..].to_vec();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streams rows into one CSV file (or one file per part, see
/// [`FormatWriter::begin_part`]).
pub struct CsvWriter {
    dir: PathBuf,
    base_name: String,
    partial: PathBuf,
    final_name: String,
    wtr: Option<Encoder>,
    /// Files of the parts already written, fsynced.
    done: Vec<Staged>,
    finished: bool,
    opts: CsvOptions,
    tz: Tz,
}

impl CsvWriter {
    pub fn new(o: WriterOptions) -> Result<CsvWriter, FormatError> {
        let mut w = CsvWriter {
            dir: o.dir.clone(),
            base_name: o.base_name.clone(),
            partial: PathBuf::new(),
            final_name: String::new(),
            wtr: None,
            done: Vec::new(),
            finished: false,
            opts: o.output.csv.clone(),
            tz: o.tz,
        };
        w.open(format!("{}.csv", o.base_name))?;
        Ok(w)
    }

    /// Opens the partial file of `final_name` (the current file must be closed or unused).
    fn open(&mut self, final_name: String) -> Result<(), FormatError> {
        let partial = partial_path(&self.dir, &final_name);
        let file = File::create(&partial).map_err(|e| FormatError::io(&partial, e))?;
        self.partial = partial;
        self.final_name = final_name;
        let mut buffered = BufWriter::with_capacity(BUFFER, HashingWriter::new(file));
        let csv = &self.opts;
        if csv.bom && csv.encoding == CsvEncoding::Utf8 {
            buffered
                .write_all(b"\xEF\xBB\xBF")
                .map_err(|e| FormatError::io(&self.partial, e))?;
        }
        let sink = match csv.encoding {
            CsvEncoding::Utf8 => Sink::Utf8(buffered),
            CsvEncoding::Gb18030 => Sink::Gb18030(Gb18030Writer::new(buffered)),
        };
        self.wtr = Some(Encoder::new(sink, csv.delimiter, csv.crlf));
        Ok(())
    }

    /// Flushes and fsyncs the current file and returns it.
    fn close(&mut self) -> Result<Staged, FormatError> {
        let wtr = self.wtr.take().expect("a file is open");
        let hashing = wtr
            .into_sink()
            .and_then(Sink::into_file)
            .map_err(|e| FormatError::io(&self.partial, e))?;
        let (file, bytes, sha256) = hashing.finish();
        file.sync_all()
            .map_err(|e| FormatError::io(&self.partial, e))?;
        Ok(Staged {
            partial: self.partial.clone(),
            final_name: self.final_name.clone(),
            digest: Some((bytes, sha256)),
        })
    }

    fn err(&self, e: io::Error) -> FormatError {
        FormatError::io(&self.partial, e)
    }
}

/// The CSV encoder: fields are appended to one output buffer (rendered values straight
/// into it), quoted when they need it, and the buffer goes to the sink when it is full.
struct Encoder {
    sink: Sink,
    out: String,
    /// Bytes that make a field need quotes: the delimiter, `"`, CR and LF.
    special: [bool; 256],
    delimiter: char,
    terminator: &'static str,
    /// True when rendered non-text values (numbers, dates, times, `0x…` bytes, `true`,
    /// `NaN`) can never contain the delimiter, so they need no quoting check.
    plain_values: bool,
    /// Where the current record starts in `out`, and how many fields it has so far.
    record_start: usize,
    fields: usize,
}

impl Encoder {
    fn new(sink: Sink, delimiter: u8, crlf: bool) -> Encoder {
        let mut special = [false; 256];
        for b in [delimiter, b'"', b'\r', b'\n'] {
            special[usize::from(b)] = true;
        }
        Encoder {
            sink,
            out: String::with_capacity(BUFFER + 64 * 1024),
            special,
            // Validation allows ASCII delimiters only (never `"`, CR or LF).
            delimiter: char::from(delimiter),
            terminator: if crlf { "\r\n" } else { "\n" },
            plain_values: matches!(delimiter, b',' | b';' | b'\t' | b'|'),
            record_start: 0,
            fields: 0,
        }
    }

    /// Starts the next field: the delimiter unless it is the record's first.
    fn next_field(&mut self) -> usize {
        if self.fields > 0 {
            self.out.push(self.delimiter);
        }
        self.fields += 1;
        self.out.len()
    }

    /// A field whose text was appended to `out` from `start`: quoted now if it needs it.
    fn seal(&mut self, start: usize) {
        let special = &self.special;
        if self.out.as_bytes()[start..]
            .iter()
            .any(|&b| special[usize::from(b)])
        {
            let text = self.out.split_off(start);
            self.out.push('"');
            for (i, part) in text.split('"').enumerate() {
                if i > 0 {
                    self.out.push_str("\"\"");
                }
                self.out.push_str(part);
            }
            self.out.push('"');
        }
    }

    fn field(&mut self, text: &str) {
        let start = self.next_field();
        self.out.push_str(text);
        self.seal(start);
    }

    /// Ends the record; writes the buffer out when it is full.
    fn end_record(&mut self) -> io::Result<()> {
        if self.out.len() == self.record_start {
            // One empty field: `""`, or the record would read as an empty line.
            self.out.push_str("\"\"");
        }
        self.out.push_str(self.terminator);
        self.fields = 0;
        if self.out.len() >= BUFFER {
            self.sink.write_all(self.out.as_bytes())?;
            self.out.clear();
        }
        self.record_start = self.out.len();
        Ok(())
    }

    fn into_sink(mut self) -> io::Result<Sink> {
        self.sink.write_all(self.out.as_bytes())?;
        self.out.clear();
        Ok(self.sink)
    }
}

/// True if a spreadsheet would treat text starting like this as a formula.
pub fn looks_like_formula(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// The header text of a column (instants name the zone they are shown in).
pub fn header_text(c: &Column, tz: Tz) -> String {
    if c.kind == Kind::DateTimeTz {
        format!("{} ({})", c.name, tz.name())
    } else {
        c.name.clone()
    }
}

impl FormatWriter for CsvWriter {
    fn begin(&mut self, columns: &[Column]) -> Result<(), FormatError> {
        if !self.opts.header || columns.is_empty() {
            return Ok(());
        }
        let escape = self.opts.escape_formulas;
        let names: Vec<String> = columns
            .iter()
            .map(|c| {
                let h = header_text(c, self.tz);
                if escape && looks_like_formula(&h) {
                    format!("'{h}")
                } else {
                    h
                }
            })
            .collect();
        let wtr = self.wtr.as_mut().expect("writer open until finish");
        for n in &names {
            wtr.field(n);
        }
        let res = wtr.end_record();
        res.map_err(|e| self.err(e))
    }

    fn write_rows(&mut self, rows: &Rows) -> Result<(), FormatError> {
        let escape = self.opts.escape_formulas;
        let tz = self.tz;
        let wtr = self.wtr.as_mut().expect("writer open until finish");
        let mut result = Ok(());
        for row in rows {
            for v in row {
                let start = wtr.next_field();
                match v {
                    Value::Null => continue,
                    Value::Text(s) => {
                        if escape && looks_like_formula(s) {
                            wtr.out.push('\'');
                        }
                        wtr.out.push_str(s);
                        wtr.seal(start);
                        continue;
                    }
                    Value::Decimal(s) => wtr.out.push_str(s),
                    other => render_text(other, tz, &mut wtr.out),
                }
                if !wtr.plain_values {
                    wtr.seal(start);
                }
            }
            if let Err(e) = wtr.end_record() {
                result = Err(e);
                break;
            }
        }
        result.map_err(|e| self.err(e))
    }

    fn begin_part(&mut self, name: &str, columns: &[Column]) -> Result<(), FormatError> {
        if self.done.is_empty() && self.final_name == format!("{}.csv", self.base_name) {
            // The file opened by `new` for a single query: not used with parts.
            self.wtr = None;
            let _ = std::fs::remove_file(&self.partial);
        } else {
            let staged = self.close()?;
            self.done.push(staged);
        }
        let file = super::sanitize_file_name(&format!("{}_{name}", self.base_name));
        self.open(format!("{file}.csv"))?;
        self.begin(columns)
    }

    fn finish(mut self: Box<Self>) -> Result<Finished, FormatError> {
        let last = self.close()?;
        self.finished = true;
        let mut staged = std::mem::take(&mut self.done);
        staged.push(last);
        Ok(Finished {
            staged,
            warnings: Vec::new(),
        })
    }
}

impl Drop for CsvWriter {
    fn drop(&mut self) {
        // Dropped before `finish` (a failed or cancelled run): remove the partial files.
        if !self.finished {
            self.wtr = None;
            let _ = std::fs::remove_file(&self.partial);
            for s in &self.done {
                let _ = std::fs::remove_file(&s.partial);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_prefixes() {
        for s in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(looks_like_formula(s), "{s:?}");
        }
        for s in ["", "1", "a=b", " =x"] {
            assert!(!looks_like_formula(s), "{s:?}");
        }
    }

    /// The encoder writes exactly what the `csv` crate writes with `QuoteStyle::Necessary`,
    /// for every delimiter and terminator ferry allows and fields full of special bytes.
    #[test]
    fn encoder_matches_the_csv_crate() {
        let fields = [
            "",
            "a",
            "a,b",
            "a;b",
            "a\tb",
            "a|b",
            "say \"hi\"",
            "\"",
            "\"\"",
            "line\nbreak",
            "cr\rx",
            "\r\n",
            " lead",
            "trail ",
            "销售,😀",
            "x'y",
            "#c",
            "1.5",
            "-1",
        ];
        let mut records: Vec<Vec<&str>> = vec![vec![""], vec!["", ""], vec![","], vec![]];
        for (i, f) in fields.iter().enumerate() {
            records.push(vec![f]);
            records.push(vec![f, fields[(i * 7 + 3) % fields.len()], ""]);
            records.push(vec!["", f]);
        }
        for delimiter in [b',', b';', b'\t', b'|', b' ', b'.', b':', b'\''] {
            for crlf in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("x");
                let file = File::create(&path).unwrap();
                let sink = Sink::Utf8(BufWriter::new(HashingWriter::new(file)));
                let mut ours = Encoder::new(sink, delimiter, crlf);
                let mut theirs = ::csv::WriterBuilder::new()
                    .delimiter(delimiter)
                    .flexible(true)
                    .terminator(if crlf {
                        ::csv::Terminator::CRLF
                    } else {
                        ::csv::Terminator::Any(b'\n')
                    })
                    .quote_style(::csv::QuoteStyle::Necessary)
                    .from_writer(Vec::new());
                for r in &records {
                    for f in r {
                        ours.field(f);
                    }
                    ours.end_record().unwrap();
                    theirs.write_record(r).unwrap();
                }
                drop(ours.into_sink().unwrap().into_file().unwrap().finish());
                let expected = theirs.into_inner().unwrap();
                assert_eq!(
                    String::from_utf8(std::fs::read(&path).unwrap()).unwrap(),
                    String::from_utf8(expected).unwrap(),
                    "delimiter {:?}, crlf {crlf}",
                    char::from(delimiter)
                );
            }
        }
    }

    #[test]
    fn gb18030_writer_handles_split_characters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let file = File::create(&path).unwrap();
        let mut w = Gb18030Writer::new(BufWriter::new(super::super::HashingWriter::new(file)));
        let text = "销售,😀\n".as_bytes();
        // Split inside the multibyte characters.
        w.write_all(&text[..2]).unwrap();
        w.write_all(&text[2..8]).unwrap();
        w.write_all(&text[8..]).unwrap();
        drop(w.finish().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        let (decoded, _, had_errors) = encoding_rs::GB18030.decode(&bytes);
        assert!(!had_errors);
        assert_eq!(decoded, "销售,😀\n");
        assert_eq!(&bytes[..4], &[0xCF, 0xFA, 0xCA, 0xDB]);
    }
}
