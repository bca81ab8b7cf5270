//! `ferry schema`: the JSON Schemas of config.yaml and task files, checked with Python's
//! `jsonschema` (Draft 7): every config and task file of the repository passes, and the
//! bad-input corpus's shape errors (unknown fields, wrong types, a mis-indented required
//! key) are rejected.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{FERRY, copy_dir, describe, repo, skip, stdout};

/// Validates YAML files against a schema, reading YAML as ferry does (YAML 1.2 core
/// schema: `on`, `yes` and `22:00` are text, not booleans or numbers). Prints one JSON
/// object: file → list of errors.
const CHECK: &str = r#"
import json, re, sys
import jsonschema, yaml

class Core(yaml.SafeLoader):
    pass

Core.yaml_implicit_resolvers = {}
for tag, pattern, first in [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
]:
    Core.add_implicit_resolver("tag:yaml.org,2002:" + tag, re.compile(pattern), list(first) + ([""] if tag == "null" else []))

def construct_int(loader, node):
    v = loader.construct_scalar(node)
    return int(v, 8) if v.startswith("0o") else int(v, 0) if v.startswith("0x") else int(v)
Core.add_constructor("tag:yaml.org,2002:int", construct_int)

schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft7Validator(schema)
out = {}
for path in sys.argv[2:]:
    try:
        doc = yaml.load(open(path, encoding="utf-8"), Loader=Core)
        out[path] = [
            "/".join(map(str, e.absolute_path)) + ": " + e.message
            for e in validator.iter_errors(doc)
        ]
    except yaml.YAMLError as e:
        out[path] = ["yaml: " + str(e).splitlines()[0]]
print(json.dumps(out))
"#;

/// Whether Python with `jsonschema` and `yaml` is here (scripts/test-services.sh installs
/// them); otherwise the test is skipped, or fails under `CI=true`.
fn python_ready() -> bool {
    let out = Command::new("python3")
        .args(["-c", "import jsonschema, yaml"])
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            skip(
                "Python's jsonschema and yaml modules",
                &format!(
                    "{} (Debian: python3-jsonschema python3-yaml; scripts/test-services.sh installs them)",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                ),
            );
            false
        }
        Err(e) => {
            skip("python3", &e.to_string());
            false
        }
    }
}

/// Writes `ferry schema KIND` into `dir`; its path.
fn schema_file(dir: &Path, kind: &str) -> PathBuf {
    let out = Command::new(FERRY).args(["schema", kind]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let path = dir.join(format!("{kind}.schema.json"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// The errors of each file against the schema.
fn check(schema: &Path, files: &[PathBuf]) -> serde_json::Map<String, serde_json::Value> {
    let out = Command::new("python3")
        .args(["-c", CHECK])
        .arg(schema)
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v.as_object().unwrap().clone()
}

/// The repository's config and task files: (configs, tasks). Files under a `tasks/`
/// folder are tasks; the bad-input corpus counts only with its valid base.
fn repository_files() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let out = Command::new("git")
        .current_dir(repo())
        .args(["ls-files", "*.yaml"])
        .output();
    let listed: Vec<String> = match out {
        Ok(o) if o.status.success() => stdout(&o).lines().map(str::to_string).collect(),
        // Not a git checkout: the known places.
        _ => vec![],
    };
    let (mut configs, mut tasks) = (Vec::new(), Vec::new());
    for rel in listed {
        if rel.starts_with("tests/fixtures/bad/") && !rel.starts_with("tests/fixtures/bad/_base/") {
            continue;
        }
        let path = repo().join(&rel);
        if rel.contains("tasks/") {
            tasks.push(path);
        } else if rel.ends_with("config.yaml") {
            configs.push(path);
        }
    }
    (configs, tasks)
}

#[test]
fn every_config_and_task_file_of_the_repository_passes() {
    if !python_ready() {
        return;
    }
    let (configs, tasks) = repository_files();
    assert!(
        configs.len() >= 4 && tasks.len() >= 15,
        "{configs:?} {tasks:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    for (kind, files) in [("config", &configs), ("task", &tasks)] {
        let schema = schema_file(dir.path(), kind);
        let failed: Vec<String> = check(&schema, files)
            .into_iter()
            .filter(|(_, errors)| !errors.as_array().unwrap().is_empty())
            .map(|(file, errors)| format!("{file}: {errors}"))
            .collect();
        assert!(
            failed.is_empty(),
            "{kind} files the schema refuses:\n{}",
            failed.join("\n")
        );
    }
}

#[test]
fn the_corpus_shape_errors_are_rejected() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config_schema = schema_file(dir.path(), "config");
    let task_schema = schema_file(dir.path(), "task");
    let bad = repo().join("tests/fixtures/bad");
    for case in [
        "channel_port_range",
        "channel_unknown_field",
        "config_unknown_field",
        "config_wrong_kind",
        "datasource_empty",
        "indent_config",
        "indent_empty",
        "indent_less",
        "required_missing",
        "required_missing_task",
        "shape_words",
        "sql_gate_type",
        "sql_gate_value",
        "unknown_field",
        "wrong_type",
    ] {
        let project = dir.path().join(case);
        copy_dir(&bad.join("_base"), &project);
        copy_dir(&bad.join(case), &project);
        let tasks: Vec<PathBuf> = std::fs::read_dir(project.join("tasks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let mut errors: Vec<String> = Vec::new();
        for (schema, files) in [
            (&config_schema, vec![project.join("config.yaml")]),
            (&task_schema, tasks),
        ] {
            for (file, e) in check(schema, &files) {
                for e in e.as_array().unwrap() {
                    errors.push(format!("{file}: {e}"));
                }
            }
        }
        assert!(!errors.is_empty(), "{case}: the schema accepts it");
    }
}
