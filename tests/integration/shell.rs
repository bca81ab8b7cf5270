//! Help in the shell: completion scripts for bash, zsh and fish (bash's and fish's run
//! for real, zsh's parsed), the man pages, and `ferry --version` with the git commit.

use std::process::Command;

use std::path::Path;

use crate::support::{FERRY, describe, repo, skip, stdout};

fn ferry(args: &[&str]) -> String {
    let out = Command::new(FERRY).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
    stdout(&out)
}

/// Every subcommand of `ferry --help`.
fn subcommands() -> Vec<String> {
    let help = ferry(&["--help"]);
    let list = help.split("Commands:\n").nth(1).unwrap();
    let list = list.split("\n\n").next().unwrap();
    let names: Vec<String> = list
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(names.len() >= 13, "{names:?}");
    names
}

/// What bash completes for the words `line` (the last one being completed), with the
/// script `ferry completions bash` printed loaded.
fn bash_completes(script: &str, line: &[&str]) -> Vec<String> {
    let words = line
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let cword = line.len() - 1;
    let program = format!(
        "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _ferry ferry '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        line.join(" "),
        line[cword],
        line[cword - 1]
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_commands_and_options() {
    let script = ferry(&["completions", "bash"]);
    assert!(script.contains("complete -F _ferry"), "{script}");
    let mut got = bash_completes(&script, &["ferry", "in"]);
    got.sort();
    assert_eq!(got, ["ingest", "init"]);
    assert_eq!(
        bash_completes(&script, &["ferry", "run", "--no"]),
        ["--no-notify"]
    );
    let all = bash_completes(&script, &["ferry", ""]);
    for name in subcommands() {
        assert!(all.contains(&name), "{name} not offered: {all:?}");
    }
}

/// Whether `program` runs here (scripts/test-services.sh installs zsh, fish and groff);
/// otherwise the test is skipped, or fails under `CI=true`.
fn installed(program: &str, package: &str) -> bool {
    match Command::new(program).arg("--version").output() {
        Ok(_) => true,
        Err(e) => {
            skip(
                program,
                &format!("{e} (Debian: {package}; scripts/test-services.sh installs it)"),
            );
            false
        }
    }
}

/// What fish completes for `line`, with the script `ferry completions fish` printed.
fn fish_completes(script: &Path, line: &str) -> Vec<String> {
    let program = format!("source '{}'; complete -C '{line}'", script.display());
    let out = Command::new("fish")
        .args(["--no-config", "-c", &program])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    stdout(&out)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

#[test]
fn fish_completes_commands_and_options() {
    let script = ferry(&["completions", "fish"]);
    assert!(script.contains("complete -c ferry"), "{script}");
    for name in subcommands() {
        assert!(
            script.contains(&format!("-a \"{name}\"")),
            "fish lacks {name}"
        );
    }
    if !installed("fish", "fish") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.fish");
    std::fs::write(&path, &script).unwrap();
    let mut got = fish_completes(&path, "ferry in");
    got.sort();
    assert_eq!(got, ["ingest", "init"]);
    assert_eq!(fish_completes(&path, "ferry run --no"), ["--no-notify"]);
}

#[test]
fn the_zsh_script_names_every_command_and_parses() {
    let script = ferry(&["completions", "zsh"]);
    assert!(script.starts_with("#compdef ferry\n"), "{script}");
    for name in subcommands() {
        assert!(script.contains(&format!("'{name}:")), "zsh lacks {name}");
    }
    let out = Command::new(FERRY)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    if !installed("zsh", "zsh") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("_ferry");
    std::fs::write(&path, &script).unwrap();
    let out = Command::new("zsh").arg("-n").arg(&path).output().unwrap();
    assert!(out.status.success(), "zsh -n: {}", describe(&out));
}

/// Renders a roff page with groff (groff-base, which `man` itself needs) and asserts it
/// renders without a warning (`-k`: through preconv, as `man` does).
fn renders(page: &str) {
    if !installed("groff", "groff-base") {
        return;
    }
    let mut groff = Command::new("groff");
    groff.args(["-k", "-man", "-Tutf8", "-ww", "-z"]);
    let out = crate::support::with_stdin(groff, page);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        describe(&out)
    );
}

#[test]
fn the_man_pages_cover_every_command_and_render() {
    let page = ferry(&["man"]);
    assert!(page.contains(".TH ferry 1"), "{page}");
    renders(&page);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("man1");
    ferry(&["man", "--dir", target.to_str().unwrap()]);
    let main = std::fs::read_to_string(target.join("ferry.1")).unwrap();
    assert!(main.contains(".TH ferry 1"), "{main}");
    // (`help` is a command of clap's own: it has no page.)
    for name in subcommands().into_iter().filter(|n| n != "help") {
        assert!(
            main.contains(&format!("ferry\\-{}(1)", name.replace('-', "\\-"))),
            "ferry.1 lacks {name}"
        );
        let sub = std::fs::read_to_string(target.join(format!("ferry-{name}.1")))
            .unwrap_or_else(|e| panic!("ferry-{name}.1: {e}"));
        assert!(sub.contains(&format!(".TH ferry-{name} 1")), "{sub}");
        renders(&sub);
    }
    let run = std::fs::read_to_string(target.join("ferry-run.1")).unwrap();
    assert!(run.contains("no\\-notify"), "{run}");
}

#[test]
fn version_names_the_git_commit() {
    let version = ferry(&["--version"]);
    let git = Command::new("git")
        .current_dir(repo())
        .args(["log", "-1", "--format=%h %cs", "--abbrev=12"])
        .output();
    match git {
        Ok(out) if out.status.success() => {
            let commit = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                version,
                format!("ferry {} ({})\n", env!("CARGO_PKG_VERSION"), commit.trim())
            );
        }
        _ => assert_eq!(
            version,
            format!("ferry {} (no git commit)\n", env!("CARGO_PKG_VERSION"))
        ),
    }
}
