//! `ferry secrets keygen|encrypt|rotate`: the key and the `enc:v1:` values of config files
//! ([`crate::config::secrets`]; docs/secrets.md).
//!
//! `rotate` edits the files as text: each `enc:v1:` value is replaced where it stands, so
//! comments, order and layout stay as written; a file is replaced atomically (a temp file
//! beside it, fsync, rename) with its permissions kept.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK};
use crate::config::secrets::{KEY_FILE_VAR, SecretsKey, find_tokens};

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    pub command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Write a new random key to FILE (mode 600; an existing file is never replaced).
    Keygen {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Read a secret on standard input and print it sealed as an `enc:v1:` value to paste
    /// into config.yaml (the key from FERRY_SECRETS_KEY_FILE or FERRY_SECRETS_KEY).
    Encrypt {
        /// The key file (default: from the environment).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Seal every `enc:v1:` value of config.yaml and the task files again with a new key,
    /// in place (comments and layout kept); the current key opens them.
    Rotate {
        /// The new key (made by `ferry secrets keygen`).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
        /// The current key file (default: from the environment).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// The files to rewrite (default: config.yaml and the task files).
        files: Vec<PathBuf>,
    },
}

pub async fn run(cli: &Cli, args: &SecretsArgs) -> i32 {
    let result = match &args.command {
        SecretsCommand::Keygen { out } => keygen(out),
        SecretsCommand::Encrypt { key_file } => encrypt(key_file.as_deref()),
        SecretsCommand::Rotate {
            new_key_file,
            key_file,
            files,
        } => rotate(cli, new_key_file, key_file.as_deref(), files),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            code
        }
    }
}

type CmdResult = Result<(), (i32, String)>;

fn config_err(msg: String) -> (i32, String) {
    (EXIT_CONFIG, msg)
}

fn key(file: Option<&Path>) -> Result<SecretsKey, (i32, String)> {
    match file {
        Some(f) => SecretsKey::from_file(f),
        None => SecretsKey::from_env(),
    }
    .map_err(config_err)
}

fn keygen(out: &Path) -> CmdResult {
    let key = SecretsKey::generate().map_err(|e| (EXIT_FAILED, e))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).map_err(|e| {
        (
            EXIT_FAILED,
            format!(
                "cannot create key file {}: {}",
                out.display(),
                crate::config::io_message(&e)
            ),
        )
    })?;
    f.write_all(format!("{}\n", key.to_text()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| (EXIT_FAILED, format!("cannot write {}: {e}", out.display())))?;
    println!(
        "wrote key {} (id {}); point {KEY_FILE_VAR} at it and keep a copy in a safe place",
        out.display(),
        key.id()
    );
    Ok(())
}

fn encrypt(key_file: Option<&Path>) -> CmdResult {
    let key = key(key_file)?;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| config_err(format!("cannot read the secret on standard input: {e}")))?;
    let plain = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if plain.is_empty() {
        return Err(config_err(
            "nothing on standard input: type or pipe the secret to seal".into(),
        ));
    }
    println!("{}", key.seal(plain).map_err(|e| (EXIT_FAILED, e))?);
    Ok(())
}

/// config.yaml and the `.yaml` files of its `tasks_dir` (default `tasks`).
fn default_files(config: &Path) -> Vec<PathBuf> {
    let base = config.parent().unwrap_or(Path::new(""));
    let tasks_dir = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| {
            crate::config::yaml::parse_yaml::<crate::config::raw::RawConfig>(config, &text).ok()
        })
        .and_then(|raw| raw.tasks_dir.map(|t| t.value))
        .unwrap_or_else(|| "tasks".into());
    let mut files = vec![config.to_path_buf()];
    if let Ok(dir) = std::fs::read_dir(crate::config::resolve(base, &tasks_dir)) {
        let mut tasks: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        tasks.sort();
        files.extend(tasks);
    }
    files
}

/// The YAML key on the line around `at` (`password` of `  password: enc:v1:…`), for
/// messages.
fn key_on_line(text: &str, at: usize) -> Option<&str> {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..at].trim_start().trim_start_matches("- ");
    let key = line.split(':').next()?.trim();
    (!key.is_empty() && !key.contains(' ') && key != "enc").then_some(key)
}

/// `text` with every value not yet sealed with `new` sealed again; the number replaced.
/// An error names the line (and key) of each value `old` cannot open.
fn reseal(
    file: &Path,
    text: &str,
    old: &SecretsKey,
    new: &SecretsKey,
) -> Result<(String, usize), Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut count = 0;
    let mut errors = Vec::new();
    for r in find_tokens(text) {
        let token = &text[r.clone()];
        out.push_str(&text[last..r.start]);
        last = r.end;
        if SecretsKey::sealed_with(token).as_deref() == Some(new.id().as_str()) {
            out.push_str(token);
            continue;
        }
        match old.open(token).and_then(|plain| new.seal(&plain)) {
            Ok(sealed) => {
                out.push_str(&sealed);
                count += 1;
            }
            Err(e) => {
                let line = text[..r.start].matches('\n').count() + 1;
                let key = key_on_line(text, r.start)
                    .map(|k| format!(" {k}:"))
                    .unwrap_or_default();
                errors.push(format!("{}:{line}:{key} {e}", file.display()));
            }
        }
    }
    out.push_str(&text[last..]);
    if errors.is_empty() {
        Ok((out, count))
    } else {
        Err(errors)
    }
}

/// Replaces `path` with `text` atomically, keeping its permissions.
fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let partial = crate::format::partial_path(dir, &name);
    let perms = std::fs::metadata(path)?.permissions();
    let result = (|| {
        let mut f = std::fs::File::create(&partial)?;
        f.set_permissions(perms)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&partial, path)?;
        crate::format::sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn rotate(cli: &Cli, new_key_file: &Path, key_file: Option<&Path>, files: &[PathBuf]) -> CmdResult {
    let new = SecretsKey::from_file(new_key_file).map_err(config_err)?;
    let old = key(key_file)?;
    let files = if files.is_empty() {
        default_files(&cli.config)
    } else {
        files.to_vec()
    };
    // Every file is read and re-sealed before any is written: a value the current key
    // cannot open stops the rotation with nothing changed.
    let mut planned = Vec::new();
    let mut errors = Vec::new();
    for f in &files {
        let text = crate::fsread::read_text(f, crate::fsread::Kind::Config)
            .map_err(|e| config_err(e.to_string()))?;
        match reseal(f, &text, &old, &new) {
            Ok((out, n)) => planned.push((f, out, n, find_tokens(&text).len())),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(config_err(format!(
            "nothing was changed; these values do not open with the current key ({}):\n{}",
            old.source,
            errors.join("\n")
        )));
    }
    for (f, out, n, total) in planned {
        if n > 0 {
            replace_file(f, &out).map_err(|e| {
                (
                    EXIT_FAILED,
                    format!("cannot rewrite {}: {}", f.display(), e),
                )
            })?;
        }
        if total > 0 {
            println!(
                "{}: {n} of {total} value(s) sealed again with key {}",
                f.display(),
                new.id()
            );
        }
    }
    println!(
        "done: now make {} the key ferry reads ({KEY_FILE_VAR}) and restart or reload ferry",
        new_key_file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reseal_keeps_everything_but_the_values() {
        let old = SecretsKey::generate().unwrap();
        let new = SecretsKey::generate().unwrap();
        let a = old.seal("alpha").unwrap();
        let b = new.seal("beta").unwrap();
        let text = format!(
            "# keep me\nchannels:\n  m:\n    password: {a}   # trailing\n    url: x://u:{b}@h\n"
        );
        let (out, n) = reseal(Path::new("c.yaml"), &text, &old, &new).unwrap();
        assert_eq!(n, 1, "the value already under the new key stays");
        let tokens: Vec<_> = find_tokens(&out)
            .into_iter()
            .map(|r| out[r].to_string())
            .collect();
        assert_eq!(new.open(&tokens[0]).unwrap(), "alpha");
        assert_eq!(tokens[1], b);
        assert_eq!(out.replace(&tokens[0], "X"), text.replace(&a, "X"));

        let stranger = SecretsKey::generate().unwrap().seal("x").unwrap();
        let e = reseal(
            Path::new("c.yaml"),
            &format!("a: 1\n  secret: {stranger}\n"),
            &old,
            &new,
        )
        .unwrap_err();
        assert!(e[0].starts_with("c.yaml:2: secret: "), "{e:?}");
        assert!(e[0].contains("another key"), "{e:?}");
    }
}
