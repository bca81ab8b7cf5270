//! YAML loading: reads a file, parses it with serde-saphyr, and turns the first error
//! into a located [`Problem`] (the field path, serde's message made readable, a "did you
//! mean" hint for unknown fields).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

pub use crate::fsread::io_message;
use crate::fsread::{self, Kind};

use super::Problem;
use super::positions::Positions;
use super::problem::hint;
use super::raw::{ChannelType, RawChannel, RawChannelType};

/// Parses YAML text into `T`, turning the first error into a located problem with the
/// field path and a "did you mean" hint for unknown fields.
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Problem> {
    parse_yaml_seed(file, text, std::marker::PhantomData::<T>)
}

/// [`parse_yaml`] with a seed.
pub(crate) fn parse_yaml_seed<S, V>(file: &Path, text: &str, seed: S) -> Result<V, Problem>
where
    S: for<'de> DeserializeSeed<'de, Value = V>,
{
    let mut track = serde_path_to_error::Track::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        seed.deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    let path = track.path().to_string();
    result.map_err(|e| {
        let pos = e
            .location()
            .filter(|l| l.line() > 0)
            .map(|l| (l.line() as usize, l.column() as usize));
        let mut message = strip_location(&e.to_string());
        if let Some(idx) = message.rfind(" at line ")
            && message[idx..].contains(", column ")
        {
            message.truncate(idx);
        }
        if let Some(h) = unknown_field_hint(&message) {
            message.push_str(&h);
        }
        if message.contains("duplicate mapping key") {
            message = message
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(&message)
                .to_string();
        }
        for (int, range) in [
            ("u64", "of 0 or more"),
            ("usize", "of 0 or more"),
            ("u32", "of 0 or more"),
            ("u16", "from 0 to 65535"),
            ("u8", "from 0 to 255"),
        ] {
            if message == format!("invalid {int}") {
                message = format!("expected a whole number {range}");
            }
        }
        if message.contains("found a tab") {
            message.push_str(" (YAML indentation must use spaces, not tabs)");
        }
        let mut field = clean_path(&path);
        let mut pos = pos;
        indentation(text, &mut field, &mut message, &mut pos);
        let message = plain_words(&message);
        // A datasource is read through its `type` (serde buffers the map): the path stops
        // at the datasource; the message is `sql_gate`'s own.
        if message.starts_with("expected true, false or strict") && !field.ends_with(".sql_gate") {
            field.push_str(".sql_gate");
            pos = Positions::index(text).get(&field).or(pos);
        }
        Problem {
            file: file.to_path_buf(),
            pos,
            field,
            message,
        }
    })
}

/// serde's words for shapes, in the user's: "a list" for "sequence start", "a mapping with
/// a `type` field" for "internally tagged enum RawDatasource", "value" for "variant".
fn plain_words(message: &str) -> String {
    let m = message.replace("unknown variant `", "unknown value `");
    match m.as_str() {
        "expected sequence start" => return "expected a list (`- item` lines, or `[a, b]`)".into(),
        "expected string scalar" => return "expected a text value".into(),
        "invalid boolean" => return "expected true or false".into(),
        _ => {}
    }
    let Some((got, want)) = m
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    else {
        return m;
    };
    let got = match got {
        "unit value" => "nothing".to_string(),
        g => g.replacen("string ", "the text ", 1),
    };
    let want = if want.starts_with("internally tagged enum ") {
        "a mapping with a `type:` field"
    } else if want.starts_with("struct ") || want == "a map" {
        "a mapping (`key: value` lines)"
    } else {
        want
    };
    format!("expected {want}, got {got}")
}

/// Says where an indentation slip is: a required field reported missing while a key of
/// that name sits elsewhere points at that key; a mapping left empty names the line
/// after it when that line is not indented under it.
fn indentation(
    text: &str,
    field: &mut String,
    message: &mut String,
    pos: &mut Option<(usize, usize)>,
) {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'));
    if let Some(name) = missing {
        let full = if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        if let Some((at, how)) = Positions::index(text).misplaced(&full) {
            *message = format!("missing; {how}");
            *pos = Some(at);
        } else if field.is_empty() {
            *message = format!("missing: add `{name}:` at the top level");
        } else {
            let parent = field.rsplit('.').next().unwrap_or(field);
            *message = format!("missing: add `{name}:` under `{parent}:`");
        }
        *field = full;
        return;
    }
    let Some((line, _)) = *pos else { return };
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let Some(own) = lines.get(line - 1) else {
        return;
    };
    if message.as_str() == "mapping values are not allowed in this context" {
        // A line indented deeper than the `key: value` above it continues that value.
        let prev = lines[..line - 1]
            .iter()
            .enumerate()
            .rev()
            .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if let Some((n, prev)) = prev
            && indent(own) > indent(prev)
            && let Some((key, value)) = prev.trim_start_matches([' ', '-']).split_once(": ")
            && !value.trim().is_empty()
        {
            let this = own.trim_start().split(':').next().unwrap_or("").trim();
            *message = format!(
                "`{this}` is indented more than `{key}:` on line {}, so it reads as the rest of \
                 `{key}`'s value: give `{this}` the same indentation as `{key}`",
                n + 1
            );
            *pos = Some((line, indent(own) + 1));
        }
        return;
    }
    if message.as_str() != "expected mapping start" || field.is_empty() {
        return;
    }
    *message = "expected a mapping (`key: value` lines)".to_string();
    // `output:` with nothing after it on its line, and the next line not indented more.
    let name = field.rsplit('.').next().unwrap_or(field);
    let own_body = own.trim_start_matches([' ', '-']);
    if !own_body.starts_with(&format!("{name}:")) || !own_body[name.len() + 1..].trim().is_empty() {
        return;
    }
    let next = lines
        .iter()
        .enumerate()
        .skip(line)
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((n, next)) = next else {
        *message = format!(
            "`{name}:` is empty: write its fields on the lines after it, indented more than `{name}:`"
        );
        return;
    };
    if indent(next) <= indent(own) {
        let key = next.trim_start_matches([' ', '-']);
        let key = key.split(':').next().unwrap_or(key).trim();
        *message = format!(
            "`{name}:` has nothing indented under it; if `{key}` on line {} belongs to `{name}`, indent it more than `{name}:`",
            n + 1
        );
        *pos = Some((line, indent(own) + 1));
    }
}

/// Turns serde_path_to_error's path into the user's field path: no `?` for unknown
/// positions, no `.value` from span wrappers.
pub(crate) fn clean_path(path: &str) -> String {
    path.split('.')
        .filter(|seg| !seg.is_empty() && *seg != "?" && *seg != "value")
        .collect::<Vec<_>>()
        .join(".")
        .replace(".[", "[")
}

/// Reads each channel's map as the struct of its `type` (see [`RawChannelType`]); the
/// first shape error (a wrong type, a number out of range, an unknown field) is the
/// problem, at the field's own position.
pub(crate) fn read_channels(
    file: &Path,
    text: &str,
    types: &BTreeMap<String, Spanned<RawChannelType>>,
) -> Result<BTreeMap<String, Spanned<RawChannel>>, Problem> {
    fn read<T: DeserializeOwned>(file: &Path, text: &str, name: &str) -> Result<T, Problem> {
        let path = ["channels", name];
        parse_yaml_seed(file, text, At::<T>::new(&path))?.ok_or_else(|| {
            Problem::new(
                file,
                format!("channels.{name}"),
                "the channel was not found",
            )
        })
    }
    let mut out = BTreeMap::new();
    for (name, t) in types {
        let channel = match t.value.kind {
            ChannelType::Outbox => RawChannel::Outbox(read(file, text, name)?),
            ChannelType::Email => RawChannel::Email(read(file, text, name)?),
            ChannelType::Dingtalk => RawChannel::Dingtalk(read(file, text, name)?),
            ChannelType::Wecom => RawChannel::Wecom(read(file, text, name)?),
            ChannelType::Feishu => RawChannel::Feishu(read(file, text, name)?),
            ChannelType::Webhook => RawChannel::Webhook(read(file, text, name)?),
        };
        out.insert(name.clone(), Spanned::new(channel, t.referenced, t.defined));
    }
    Ok(out)
}

/// Reads only the value at `path` (mapping keys from the root) as `T`, skipping the rest;
/// `None` when the file has no such value.
pub(crate) struct At<'p, T> {
    path: &'p [&'p str],
    _value: std::marker::PhantomData<T>,
}

impl<'p, T> At<'p, T> {
    fn new(path: &'p [&'p str]) -> Self {
        At {
            path,
            _value: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for At<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        if self.path.is_empty() {
            T::deserialize(d).map(Some)
        } else {
            d.deserialize_map(self)
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for At<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Ok(None);
        };
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == *first && found.is_none() {
                found = map.next_value_seed(At::<T>::new(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A short, lowercase description of an I/O error.
pub(crate) fn strip_location(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg);
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(after) = rest.strip_prefix("line ")
        && let Some(idx) = after.find(": ")
        && after[..idx].contains("column")
    {
        return after[idx + 2..].to_string();
    }
    rest.to_string()
}

/// For `unknown field `x`, expected one of a, b` (or `expected `a` or `b``), a hint.
pub(crate) fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (given, tail) = rest.split_once('`')?;
    let expected = tail.split_once("expected")?.1;
    let candidates: Vec<&str> = expected
        .split([',', ' ', '`'])
        .filter(|w| !w.is_empty() && !matches!(*w, "one" | "of" | "or"))
        .collect();
    let h = hint(given, candidates.iter().copied());
    (!h.is_empty()).then_some(h)
}

/// The text of a config or task file (regular files only, up to the kind's limit).
pub(crate) fn read_file(path: &Path, kind: Kind) -> Result<String, Problem> {
    fsread::read_text(path, kind).map_err(|e| Problem::new(path, "", e.reason()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_prefix_is_stripped() {
        assert_eq!(
            strip_location("error: line 4 column 10: invalid u64"),
            "invalid u64"
        );
        assert_eq!(strip_location("something else"), "something else");
    }

    #[test]
    fn unknown_field_gets_a_hint() {
        let m = "unknown field `schedul`, expected one of description, owners, schedule";
        assert_eq!(
            unknown_field_hint(m).unwrap(),
            " (did you mean `schedule`?)"
        );
        assert_eq!(
            unknown_field_hint("unknown field `zzz`, expected `a` or `b`"),
            None
        );
    }
}
