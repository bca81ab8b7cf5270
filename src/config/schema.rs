//! JSON Schemas (draft 7) of `config.yaml` and of task files, generated from the raw
//! types ([`super::raw`]) that ferry itself reads the files with: editors with the YAML
//! language server complete and check fields from them (`ferry schema`). They check the
//! shape (fields, types, unknown keys); the meaning (cron syntax, names that must exist,
//! ranges) is `ferry validate`'s.

use schemars::generate::SchemaSettings;

use super::raw::{RawConfig, RawTask};

/// Which file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    Config,
    Task,
}

/// The schema of `kind` as JSON.
pub fn schema(kind: SchemaKind) -> serde_json::Value {
    let generator = SchemaSettings::draft07().into_generator();
    let schema = match kind {
        SchemaKind::Config => generator.into_root_schema_for::<RawConfig>(),
        SchemaKind::Task => generator.into_root_schema_for::<RawTask>(),
    };
    let mut value = schema.to_value();
    let title = match kind {
        SchemaKind::Config => "ferry config.yaml",
        SchemaKind::Task => "ferry task file",
    };
    value["title"] = title.into();
    value
}

/// The schema of `kind` as pretty JSON text, ending in a newline.
pub fn schema_text(kind: SchemaKind) -> String {
    let mut text = serde_json::to_string_pretty(&schema(kind)).expect("a schema is JSON");
    text.push('\n');
    text
}
