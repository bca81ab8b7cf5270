//! The module graph has no cycles: each top-level module (`config`, `store`, `notify`, ...)
//! imports others only one way, so a plugin can be added beside the core without editing
//! it. Read from the source: `crate::<module>` in code outside comments and unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its (non-test) code names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, src: &Path, graph: &mut BTreeMap<String, BTreeSet<String>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, src, graph);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".rs") || name == "tests.rs" || name.ends_with("_tests.rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let top = first.trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let deps = graph.entry(top.clone()).or_default();
            let mut lines = text.lines().peekable();
            while let Some(line) = lines.next() {
                let code = line.trim();
                // Unit tests may reach anywhere; they end the file by convention.
                if code == "#[cfg(test)]"
                    && lines
                        .peek()
                        .is_some_and(|l| l.trim_start().starts_with("mod "))
                {
                    break;
                }
                let code = code.split("//").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let dep: String = code[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !dep.is_empty() && dep != top {
                        deps.insert(dep);
                    }
                }
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    walk(&src, &src, &mut graph);
    graph
}

/// A cycle through `start`, if there is one (as `a -> b -> a`).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<String> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                return Some(format!("{} -> {start}", path.join(" -> ")));
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn modules_import_each_other_one_way_only() {
    let graph = module_graph();
    assert!(
        graph.len() > 10,
        "the walk found too few modules: {graph:?}"
    );
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_from(&graph, m)).collect();
    assert!(
        cycles.is_empty(),
        "module cycles (see docs/architecture.md, Module dependencies):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn config_imports_only_leaf_modules() {
    let graph = module_graph();
    let allowed: BTreeSet<String> = [
        "clock", "fsread", "params", "schedule", "suggest", "template",
    ]
    .map(String::from)
    .into();
    let extra: Vec<&String> = graph["config"].difference(&allowed).collect();
    assert!(extra.is_empty(), "config imports {extra:?}");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycle_from(&graph, "a").as_deref(), Some("a -> b -> c -> a"));
    assert_eq!(cycle_from(&graph, "d"), None);
}
