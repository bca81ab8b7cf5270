//! Where each field of a YAML file is: a second, shape-free parse of the same text that
//! records the line and column of every mapping value and list item by its field path
//! (`channels.mail.port`, `notify[1].to[0]`).
//!
//! The raw types lose positions inside internally tagged enums (`type: email` channels,
//! `type: mysql` datasources): serde buffers such a map before it knows the variant, and
//! the buffer has no locations. This index gives the validator the position of the field a
//! problem names, whatever the shape of the raw type that held it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Field path → 1-based (line, column) of its value, and of its key in block mappings.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    values: BTreeMap<String, (usize, usize)>,
    keys: BTreeMap<String, (usize, usize)>,
}

impl Positions {
    /// Indexes `text`; a text that does not parse gives an empty index (its parse error is
    /// reported by the typed parse).
    pub fn index(text: &str) -> Positions {
        let options = serde_saphyr::options! { with_snippet: false };
        let mut out = Positions::default();
        if let Ok(root) = serde_saphyr::from_str_with_options::<Node>(text, options) {
            let lines: Vec<&str> = text.lines().collect();
            walk(&root, String::new(), &lines, &mut out);
        }
        out
    }

    /// The position of the value at `field`, if the file has it.
    pub fn get(&self, field: &str) -> Option<(usize, usize)> {
        self.values.get(field).copied()
    }

    /// For a required `field` that is missing while a key of the same name sits elsewhere
    /// (most often one indented too little or too much): where that key is and a sentence
    /// saying how to indent it.
    pub fn misplaced(&self, field: &str) -> Option<((usize, usize), String)> {
        if self.values.contains_key(field) {
            return None;
        }
        let (parent, name) = match field.rsplit_once('.') {
            Some((p, n)) => (Some(p), n),
            None => (None, field),
        };
        let parent_key = parent.and_then(|p| self.keys.get(p).copied());
        let after = parent_key.map_or(0, |(line, _)| line);
        let (path, pos) = self
            .keys
            .iter()
            // A slip changes how deep the key sits: a key of that name at the same depth
            // elsewhere (`url` of another datasource) is not this one.
            .filter(|(path, _)| {
                path.rsplit('.').next() == Some(name) && depth(path) != depth(field)
            })
            .min_by_key(|(_, (line, _))| (*line <= after, line.abs_diff(after)))?;
        let read_as = match path.rsplit_once('.') {
            Some((p, _)) => format!("under `{p}`"),
            None => "at the top level".to_string(),
        };
        // Siblings show the indentation the key needs.
        let siblings = parent.map_or(String::new(), |p| format!("{p}."));
        let sibling = self
            .keys
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(&siblings)
                    .is_some_and(|rest| !rest.contains('.') && !rest.contains('['))
            })
            .map(|(k, at)| (k.rsplit('.').next().unwrap_or(k), at))
            .min_by_key(|(_, at)| **at);
        let how = match (parent, sibling) {
            (_, Some((k, (_, col)))) => format!("indent it to column {col}, like `{k}`"),
            (Some(p), None) => format!(
                "indent it more than `{}:`",
                p.rsplit('.').next().unwrap_or(p)
            ),
            (None, None) => "move it to the top level (column 1)".to_string(),
        };
        let wanted = match (parent, parent_key) {
            (Some(p), Some((line, _))) => format!("under `{p}` (line {line})"),
            (Some(p), None) => format!("under `{p}`"),
            (None, _) => "at the top level".to_string(),
        };
        Some((
            *pos,
            format!(
                "`{name}` on line {} is read {read_as}, not {wanted}: {how}",
                pos.0
            ),
        ))
    }
}

/// How deep a field path is (`a` 0, `a.b` 1, `a[0].b` 2).
fn depth(path: &str) -> usize {
    path.matches(['.', '[']).count()
}

fn walk(node: &Node, path: String, lines: &[&str], out: &mut Positions) {
    let loc = node.0.referenced;
    if !path.is_empty() && loc.line() > 0 {
        out.values
            .insert(path.clone(), (loc.line() as usize, loc.column() as usize));
    }
    match &node.0.value {
        Tree::Map(entries) => {
            for (key, value) in entries {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let at = value.0.referenced;
                if let Some(pos) = key_position(lines, key, at.line() as usize) {
                    out.keys.insert(p.clone(), pos);
                }
                walk(value, p, lines, out);
            }
        }
        Tree::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), lines, out);
            }
        }
        Tree::Leaf => {}
    }
}

/// Where `key:` starts a block-mapping line at or before `value_line` (the value of a
/// nested mapping starts on a later line than its key); `None` for flow mappings.
fn key_position(lines: &[&str], key: &str, value_line: usize) -> Option<(usize, usize)> {
    let last = value_line.min(lines.len());
    (1..=last).rev().find_map(|n| {
        let line = lines[n - 1];
        let body = line.trim_start_matches([' ', '-']);
        let col = line.len() - body.len() + 1;
        let bare = body.strip_prefix(key);
        let quoted = body
            .strip_prefix('"')
            .and_then(|b| b.strip_prefix(key))
            .and_then(|b| b.strip_prefix('"'));
        bare.or(quoted)
            .filter(|rest| rest.starts_with(':'))
            .map(|_| (n, col))
    })
}

/// Any YAML value with its position.
struct Node(Spanned<Tree>);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Spanned::deserialize(d).map(Node)
    }
}

enum Tree {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Leaf,
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

/// Scalars are leaves whatever their type.
macro_rules! leaf {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $ty) -> Result<Tree, E> { Ok(Tree::Leaf) })*
    };
}

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    leaf!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
          visit_u128: u128, visit_f64: f64, visit_str: &str, visit_bytes: &[u8]);

    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(TreeVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            match key.0 {
                Some(k) => entries.push((k, map.next_value::<Node>()?)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Tree::Map(entries))
    }
}

/// A mapping key as text (`None` for a null key: it names no field).
struct Key(Option<String>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key(None))
            }
        }
        // As an identifier, like the typed parse: `on:` is the key `on`, not `true`.
        d.deserialize_identifier(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_maps_and_lists_are_found_by_field_path() {
        let text = "channels:\n  mail:\n    type: email\n    port: 0\n    to: [a@x.test, \"b\"]\n  box: { type: outbox, dir: out }\nnotify:\n  - mail\n  - channel: box\n    on: failure\n";
        let p = Positions::index(text);
        assert_eq!(p.get("channels.mail"), Some((3, 5)));
        assert_eq!(p.get("channels.mail.port"), Some((4, 11)));
        assert_eq!(p.get("channels.mail.to[1]"), Some((5, 20)));
        assert_eq!(p.get("channels.box.dir"), Some((6, 29)));
        assert_eq!(p.get("notify[0]"), Some((8, 5)));
        assert_eq!(p.get("notify[1].on"), Some((10, 9)));
        assert_eq!(p.get("channels.mail.host"), None);
        // YAML 1.1 booleans as keys stay keys.
        assert_eq!(Positions::index("yes: 1\non: 2\n").get("on"), Some((2, 5)));
    }

    #[test]
    fn a_misindented_key_is_found() {
        let text = "schedule: x\noutput:\n  file_name: x\nformat: csv\n";
        let (pos, msg) = Positions::index(text).misplaced("output.format").unwrap();
        assert_eq!(pos, (4, 1));
        assert_eq!(
            msg,
            "`format` on line 4 is read at the top level, not under `output` (line 2): indent it to column 3, like `file_name`"
        );
        let text = "output:\n  format: csv\n  query: x\n";
        let (pos, msg) = Positions::index(text).misplaced("query").unwrap();
        assert_eq!(pos, (3, 3));
        assert_eq!(
            msg,
            "`query` on line 3 is read under `output`, not at the top level: indent it to column 1, like `output`"
        );
        assert!(Positions::index(text).misplaced("output.format").is_none());
        // Another datasource's `url` is not a slip of this one's.
        let text = "datasources:\n  a:\n    type: sqlite\n  b:\n    type: sqlite\n    url: x\n";
        assert!(
            Positions::index(text)
                .misplaced("datasources.a.url")
                .is_none()
        );
        assert!(Positions::index(text).misplaced("output.zip").is_none());
    }

    #[test]
    fn broken_text_gives_an_empty_index() {
        assert_eq!(Positions::index("a: [1, 2").get("a"), None);
        assert_eq!(Positions::index("").get(""), None);
    }
}
