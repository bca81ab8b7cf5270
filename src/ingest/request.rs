//! What a request asks for: the `database: NAME` keyword line of its text body, and its
//! query files (every part whose file name ends in `.sql` or `.txt`), decoded to text.

use std::borrow::Cow;

use mail_parser::{Encoding, Message, MessagePart, MimeHeaders, PartType};

/// The keyword line's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyword {
    /// One name (written once or repeated identically).
    One(String),
    None,
    /// Two or more different names.
    Ambiguous(Vec<String>),
}

/// Finds `database: NAME` in `text`: the key in any case, `:` or full-width `：`, spaces
/// allowed around key, colon and name; lines quoted with `>` are skipped.
pub fn keyword(text: &str) -> Keyword {
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start_matches(['\u{feff}']).trim();
        if line.starts_with('>') {
            continue;
        }
        let Some(head) = line.get(..8) else { continue };
        if !head.eq_ignore_ascii_case("database") {
            continue;
        }
        let rest = line[8..].trim_start();
        let Some(name) = rest
            .strip_prefix(':')
            .or_else(|| rest.strip_prefix('：'))
            .map(str::trim)
        else {
            continue;
        };
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    match names.len() {
        0 => Keyword::None,
        1 => Keyword::One(names.remove(0)),
        _ => Keyword::Ambiguous(names),
    }
}

/// The text a person wrote in the mail: its text/plain body, or the HTML body read with
/// block elements as line breaks (quoted HTML, `<blockquote>`, left out). Parts that
/// carry a file name are attachments, not body.
pub fn body_text(msg: &Message<'_>) -> String {
    let mut out = String::new();
    let plain: Vec<&MessagePart<'_>> = msg
        .text_body
        .iter()
        .filter_map(|&i| msg.parts.get(i as usize))
        .filter(|p| p.attachment_name().is_none())
        .filter(|p| matches!(p.body, PartType::Text(_)))
        .collect();
    if !plain.is_empty() {
        for p in plain {
            if let PartType::Text(t) = &p.body {
                out.push_str(t);
                out.push('\n');
            }
        }
        return out;
    }
    for &i in &msg.html_body {
        if let Some(p) = msg.parts.get(i as usize)
            && p.attachment_name().is_none()
            && let PartType::Html(h) = &p.body
        {
            out.push_str(&html_text(h));
            out.push('\n');
        }
    }
    out
}

/// HTML as lines of text: block elements and `<br>` end lines, other tags vanish, the
/// common entities are decoded, `<blockquote>` (a quoted earlier mail), `<script>`,
/// `<style>` and `<head>` are left out.
pub fn html_text(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
        "pre", "hr", "section", "article", "header", "footer", "dd", "dt", "td", "th",
    ];
    const SKIPPED: &[&str] = &["blockquote", "script", "style", "head", "title"];
    let mut out = String::with_capacity(html.len());
    let mut skip_depth = 0usize;
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        if skip_depth == 0 {
            out.push_str(&decode_entities(&rest[..lt]));
        }
        let after = &rest[lt + 1..];
        // Comments end at `-->`.
        if let Some(c) = after.strip_prefix("!--") {
            rest = c.find("-->").map_or("", |e| &c[e + 3..]);
            continue;
        }
        let Some(gt) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if SKIPPED.contains(&name.as_str()) {
            if closing {
                skip_depth = skip_depth.saturating_sub(1);
            } else if !tag.ends_with('/') {
                skip_depth += 1;
            }
            out.push('\n');
            continue;
        }
        if skip_depth == 0 && BLOCKS.contains(&name.as_str()) {
            out.push('\n');
        }
    }
    if skip_depth == 0 {
        out.push_str(&decode_entities(rest));
    }
    out
}

fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let ent = &after[..e];
            let c = match ent {
                "nbsp" => Some(' '),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => ent
                    .strip_prefix("#x")
                    .or_else(|| ent.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One query file of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryFile {
    /// The decoded file name, as the sender sent it.
    pub file_name: String,
    /// The query text, or why it cannot be read as text.
    pub text: Result<String, String>,
}

/// Every part whose decoded file name ends in `.sql` or `.txt` (any case, any
/// disposition or type), in the order of the message. Parts of an attached mail
/// (`message/rfc822`) are that mail's, not this one's.
pub fn query_files(msg: &Message<'_>) -> Vec<QueryFile> {
    let raw = msg.raw_message();
    let mut out = Vec::new();
    for part in &msg.parts {
        let Some(name) = part.attachment_name() else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        if !(lower.ends_with(".sql") || lower.ends_with(".txt")) {
            continue;
        }
        if matches!(part.body, PartType::Message(_) | PartType::Multipart(_)) {
            continue;
        }
        let bytes = part_bytes(raw, part);
        let charset = part
            .content_type()
            .and_then(|ct| ct.attribute("charset"))
            .map(str::to_string);
        out.push(QueryFile {
            file_name: name.to_string(),
            text: bytes.and_then(|b| decode_text(&b, charset.as_deref())),
        });
    }
    out
}

/// A part's body as sent, before any charset decoding: the transfer encoding undone.
fn part_bytes(raw: &[u8], part: &MessagePart<'_>) -> Result<Vec<u8>, String> {
    let body = raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .ok_or("the attachment's body is cut off")?;
    match part.encoding {
        Encoding::None => Ok(body.to_vec()),
        Encoding::Base64 => mail_parser::decoders::base64::base64_decode(body)
            .ok_or_else(|| "the attachment's base64 encoding is broken".to_string()),
        Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
                .ok_or_else(|| "the attachment's quoted-printable encoding is broken".to_string())
        }
    }
}

/// Query text from bytes: a BOM decides (UTF-8, UTF-16 LE/BE); else valid UTF-8 is
/// UTF-8; else the part's declared charset, or GB18030 (which reads GBK and GB2312) when
/// none is declared. Bytes that do not decode cleanly are refused, never guessed at.
pub fn decode_text(bytes: &[u8], charset: Option<&str>) -> Result<String, String> {
    let text = decode_bytes(bytes, charset)?;
    if text.contains('\0') {
        return Err(
            "the file holds NUL characters: it is binary, or UTF-16 without a byte-order mark \
             (save it as UTF-8)"
                .into(),
        );
    }
    Ok(text)
}

fn decode_bytes(bytes: &[u8], charset: Option<&str>) -> Result<String, String> {
    let (enc, body) = if let Some(b) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        (encoding_rs::UTF_8, b)
    } else if let Some(b) = bytes.strip_prefix(b"\xFF\xFE") {
        (encoding_rs::UTF_16LE, b)
    } else if let Some(b) = bytes.strip_prefix(b"\xFE\xFF") {
        (encoding_rs::UTF_16BE, b)
    } else if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_string());
    } else {
        let declared = charset
            .and_then(|c| encoding_rs::Encoding::for_label(c.trim().as_bytes()))
            .filter(|e| *e != encoding_rs::UTF_8);
        (declared.unwrap_or(encoding_rs::GB18030), bytes)
    };
    let (text, had_errors) = enc.decode_without_bom_handling(body);
    if had_errors {
        return Err(format!(
            "the file is not valid {} text (save it as UTF-8)",
            enc.name()
        ));
    }
    Ok(text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyword_line_is_read_as_people_write_it() {
        for body in [
            "database: sales",
            "Database:sales",
            "DATABASE : sales  ",
            "  database：sales",
            "database ： sales",
            "hi\n\ndatabase: sales\nthanks",
            "database: sales\ndatabase: sales",
            "\u{feff}database: sales",
        ] {
            assert_eq!(keyword(body), Keyword::One("sales".into()), "{body:?}");
        }
        assert_eq!(keyword("hello"), Keyword::None);
        assert_eq!(keyword("> database: sales"), Keyword::None);
        assert_eq!(keyword("  >> database: sales"), Keyword::None);
        assert_eq!(keyword("databases: sales"), Keyword::None);
        assert_eq!(keyword("database sales"), Keyword::None);
        assert_eq!(keyword("database:"), Keyword::None);
        assert_eq!(
            keyword("database: sales\n> database: hr\ndatabase: hr"),
            Keyword::Ambiguous(vec!["sales".into(), "hr".into()])
        );
        // The name is exact: case and inner text are kept.
        assert_eq!(keyword("database: Sales"), Keyword::One("Sales".into()));
    }

    #[test]
    fn html_reads_as_lines() {
        let t = html_text(
            "<html><head><title>database: x</title></head><body><div>Hi</div><div>database:&nbsp;sales</div><p>thanks<br>bob</p><blockquote><div>database: hr</div></blockquote><!-- database: y --></body></html>",
        );
        assert_eq!(keyword(&t), Keyword::One("sales".into()), "{t:?}");
        assert!(t.contains("thanks\nbob"), "{t:?}");
        assert_eq!(
            html_text("a&lt;b &amp;&#65;&#x42; &bogus; & x"),
            "a<b &AB &bogus; & x"
        );
    }

    #[test]
    fn query_text_in_the_usual_encodings() {
        let sql = "SELECT '订单' AS x";
        assert_eq!(decode_text(sql.as_bytes(), None).unwrap(), sql);
        let bom = [b"\xEF\xBB\xBF".as_slice(), sql.as_bytes()].concat();
        assert_eq!(decode_text(&bom, None).unwrap(), sql);
        let (gbk, _, _) = encoding_rs::GBK.encode(sql);
        assert_eq!(decode_text(&gbk, None).unwrap(), sql);
        assert_eq!(decode_text(&gbk, Some("gb2312")).unwrap(), sql);
        let mut le = vec![0xFF, 0xFE];
        le.extend(sql.encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(decode_text(&le, None).unwrap(), sql);
        let mut be = vec![0xFE, 0xFF];
        be.extend(sql.encode_utf16().flat_map(|u| u.to_be_bytes()));
        assert_eq!(decode_text(&be, None).unwrap(), sql);
        // UTF-16 without a BOM is not guessed.
        let bare: Vec<u8> = sql.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert!(decode_text(&bare, None).is_err());
    }
}
