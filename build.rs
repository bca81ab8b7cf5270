//! Build script:
//!
//! - puts the git commit of the source into `FERRY_GIT_COMMIT` for `ferry --version`
//!   (`0123456789ab 2026-12-07`), or `no git commit` when the source is not a git
//!   checkout or git is missing. It reruns when HEAD moves;
//! - on Linux with glibc, links the binary with packed relative relocations (`-z
//!   pack-relative-relocs`, DT_RELR: glibc ≥ 2.36, binutils ≥ 2.38): the table the
//!   dynamic linker reads at every start shrinks from about 1.8 MB to a few KB, and so
//!   does the memory every command maps for it (docs/benchmarks.md, "Startup memory").
//!   The executable stays position-independent. `FERRY_NO_RELR=1` turns it off (an
//!   older toolchain).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["log", "-1", "--format=%h %cs", "--abbrev=12"]);
    // Rebuild when HEAD or the branch it names moves (paths that exist only: cargo
    // reruns a script every time for a missing one).
    if let (Some(dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) {
        let mut watch = vec![
            PathBuf::from(&dir).join("HEAD"),
            PathBuf::from(&common).join("packed-refs"),
        ];
        if let Some(branch) = git(&["rev-parse", "--symbolic-full-name", "HEAD"])
            && branch.starts_with("refs/")
        {
            watch.push(PathBuf::from(&common).join(branch));
        }
        for path in watch.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!(
        "cargo:rustc-env=FERRY_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("no git commit")
    );
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    println!("cargo:rerun-if-env-changed=FERRY_NO_RELR");
    if os == "linux" && env == "gnu" && std::env::var_os("FERRY_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
