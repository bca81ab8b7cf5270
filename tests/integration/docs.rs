//! The docs against the code: the README's tour commands run as written on the demo, and
//! every field of the configuration types appears in docs/configuration.md.

use std::time::Duration;

use crate::support::{Project, copy_dir, describe, read_log, repo, serve, terminate, wait_logged};

/// The demo project (config.yaml, tasks, templates, demo database seed) in a temp folder.
fn demo() -> Project {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["tasks", "templates", "demo"] {
        copy_dir(&repo().join(sub), &dir.path().join(sub));
    }
    std::fs::copy(repo().join("config.yaml"), dir.path().join("config.yaml")).unwrap();
    Project { dir }
}

/// The `ferry ...` lines of the first `sh` block after `heading` in `text`, without their
/// comments, each as its words.
fn commands_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let from = text.find(heading).unwrap_or_else(|| panic!("no {heading}"));
    let block = text[from..].split("```sh\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn readme_tour_commands_run_on_the_demo() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands = commands_after(&readme, "## A short tour");
    assert!(commands.len() >= 8, "{commands:?}");
    let p = demo();
    for words in &commands {
        assert_eq!(words[0], "ferry", "{words:?}");
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        if args == ["serve"] {
            let mut child = serve(&p, "serve.log");
            wait_logged(
                &p,
                "serve.log",
                Duration::from_secs(60),
                "serve to start",
                || read_log(&p, "serve.log").contains("ferry serve started"),
            );
            assert_eq!(
                terminate(&mut child),
                Some(0),
                "{}",
                read_log(&p, "serve.log")
            );
            continue;
        }
        let out = p.ferry(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "`{}`: {}",
            words.join(" "),
            describe(&out)
        );
    }
}

/// The field names of the `Raw*` types in `src/config/raw.rs` (serde renames applied).
fn config_fields(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut rename: Option<String> = None;
    for line in source.lines() {
        let t = line.trim();
        if let Some(rest) = t
            .strip_prefix("pub struct ")
            .or_else(|| t.strip_prefix("pub enum "))
        {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
            current = name.starts_with("Raw").then_some(name);
            continue;
        }
        if line.starts_with('}') {
            current = None;
            continue;
        }
        if let Some(r) = t.strip_prefix("#[serde(rename = \"") {
            rename = r.split('"').next().map(str::to_string);
            continue;
        }
        let Some(ty) = &current else { continue };
        let field = t.strip_prefix("pub ").unwrap_or(t);
        if let Some((name, _)) = field.split_once(": ")
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !t.starts_with("//")
        {
            out.push((
                ty.clone(),
                rename.take().unwrap_or_else(|| name.to_string()),
            ));
        }
    }
    out
}

#[test]
fn every_config_field_is_in_the_configuration_reference() {
    let source = std::fs::read_to_string(repo().join("src/config/raw.rs")).unwrap();
    let fields = config_fields(&source);
    // The scan must see the types it is meant to: a broken scan would pass vacuously.
    for (ty, field) in [
        ("RawConfig", "timezone"),
        ("RawTask", "on_empty"),
        ("RawDatasource", "require_read_only"),
        ("RawRobot", "mention_all"),
        ("RawIngestReply", "daily_cap"),
        ("RawNotify", "on"),
        ("RawOutbox", "type"),
    ] {
        assert!(
            fields.iter().any(|(t, f)| t == ty && f == field),
            "{ty}.{field} not found by the scan: {fields:?}"
        );
    }
    assert!(fields.len() > 100, "{}", fields.len());
    let doc = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let missing: Vec<String> = fields
        .iter()
        .filter(|(_, f)| {
            // `name`, `section.name` or `name.sub` (a section documented field by field).
            ![format!("`{f}`"), format!(".{f}`"), format!("`{f}.")]
                .iter()
                .any(|form| doc.contains(form.as_str()))
        })
        .map(|(t, f)| format!("{t}.{f}"))
        .collect();
    assert!(
        missing.is_empty(),
        "fields of the config types that docs/configuration.md does not name: {missing:?}"
    );
}

#[test]
fn the_scan_finds_fields_and_renames() {
    let text = "pub struct RawX {\n    /// doc: with a colon\n    #[serde(rename = \"type\")]\n    pub kind: u8,\n    pub a_b: Option<u8>,\n}\npub enum RawY {\n    V {\n        url: String,\n    },\n}\npub struct Other {\n    pub z: u8,\n}\n";
    assert_eq!(
        config_fields(text),
        [
            ("RawX".to_string(), "type".to_string()),
            ("RawX".to_string(), "a_b".to_string()),
            ("RawY".to_string(), "url".to_string()),
        ]
    );
}
