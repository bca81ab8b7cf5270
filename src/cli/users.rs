//! `ferry users add|passwd|remove|list` (console logins) and `ferry tokens
//! create|list|revoke` (API tokens), in the run store. Passwords are read from the
//! terminal without echo, or from the first line of standard input: never from the
//! command line, where `ps` and the shell history would show them. Every change is
//! recorded in the audit trail as the login that made it.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand};

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_with_store, print_error};
use crate::access::{self, Role};
use crate::clock::wall_now;
use crate::store::{Store, UserRecord, fmt_instant};

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is asked for (or read from the first line of standard
    /// input).
    Add {
        name: String,
        /// viewer, operator, editor or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Set a user's password (ends the user's sessions).
    Passwd { name: String },
    /// Remove a user (ends the user's sessions).
    Remove { name: String },
    /// List the users and their roles.
    List,
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token and print it (the only time it is shown).
    Create {
        name: String,
        /// viewer, operator, editor or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// How long it works, e.g. `90d` (default: until revoked).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List the tokens (never the tokens themselves).
    List,
    /// Revoke the token of this name (or id).
    Revoke { name: String },
}

/// Reads a password: from the terminal without echo (asked twice when `confirm`), or
/// the first line of standard input.
fn read_password(prompt: &str, confirm: bool) -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let first = prompt_hidden(prompt)?;
    if confirm && prompt_hidden("again: ")? != first {
        return Err("the two passwords differ".into());
    }
    Ok(first)
}

/// One line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data filled by tcgetattr on a valid descriptor.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is standard input, `old` a valid termios to fill.
    let got = unsafe { libc::tcgetattr(fd, &mut old) } == 0;
    if got {
        let mut quiet = old;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: sets attributes read above, echo off.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if got {
        // SAFETY: restores the attributes read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    }
    eprintln!();
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn check_password(p: &str) -> Result<(), String> {
    if p.chars().count() < access::MIN_PASSWORD_CHARS {
        Err(format!(
            "the password is too short: at least {} characters",
            access::MIN_PASSWORD_CHARS
        ))
    } else {
        Ok(())
    }
}

/// Hashes on a blocking thread (argon2id is deliberately slow).
async fn hash(password: String) -> String {
    tokio::task::spawn_blocking(move || access::hash_password(&password))
        .await
        .expect("hashing does not panic")
}

async fn audit(store: &dyn Store, who: &str, action: &str, target: &str, detail: Option<String>) {
    let _ = access::audit(store, who, None, action, target, detail, wall_now()).await;
}

fn usage(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    EXIT_CONFIG
}

pub async fn users(cli: &Cli, args: &UsersArgs) -> i32 {
    let (project, store) = match load_with_store(cli).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let who = super::who(&project.config);
    let code = users_with(&*store, &who, &args.command).await;
    store.close().await;
    code
}

async fn users_with(store: &dyn Store, who: &str, cmd: &UsersCommand) -> i32 {
    let failed = |e: &dyn std::error::Error| {
        print_error(e);
        EXIT_FAILED
    };
    match cmd {
        UsersCommand::Add { name, role } => {
            if let Err(e) = access::check_name(name) {
                return usage(e);
            }
            let role = match access::parse_role(role) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            match store.user(name).await {
                Ok(Some(_)) => {
                    return usage(format!(
                        "user `{name}` exists (`ferry users passwd {name}` sets a new password)"
                    ));
                }
                Ok(None) => {}
                Err(e) => return failed(&e),
            }
            let password =
                match read_password(&format!("password for {name}: "), true).and_then(|p| {
                    check_password(&p)?;
                    Ok(p)
                }) {
                    Ok(p) => p,
                    Err(e) => return usage(e),
                };
            let now = wall_now();
            let user = UserRecord {
                name: name.clone(),
                role,
                password_hash: hash(password).await,
                created_at: now,
                updated_at: now,
            };
            match store.add_user(&user).await {
                Ok(true) => {
                    audit(store, who, "user.add", name, Some(role.as_str().into())).await;
                    println!("user `{name}` added with role {}", role.as_str());
                    EXIT_OK
                }
                Ok(false) => usage(format!("user `{name}` exists")),
                Err(e) => failed(&e),
            }
        }
        UsersCommand::Passwd { name } => {
            match store.user(name).await {
                Ok(Some(_)) => {}
                Ok(None) => return usage(format!("no user `{name}`")),
                Err(e) => return failed(&e),
            }
            let password = match read_password(&format!("new password for {name}: "), true)
                .and_then(|p| {
                    check_password(&p)?;
                    Ok(p)
                }) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            match store
                .set_password(name, &hash(password).await, wall_now())
                .await
            {
                Ok(true) => {
                    audit(store, who, "user.passwd", name, None).await;
                    println!("password of `{name}` changed; the user's sessions ended");
                    EXIT_OK
                }
                Ok(false) => usage(format!("no user `{name}`")),
                Err(e) => failed(&e),
            }
        }
        UsersCommand::Remove { name } => match store.remove_user(name).await {
            Ok(true) => {
                audit(store, who, "user.remove", name, None).await;
                println!("user `{name}` removed; the user's sessions ended");
                EXIT_OK
            }
            Ok(false) => usage(format!("no user `{name}`")),
            Err(e) => failed(&e),
        },
        UsersCommand::List => match store.users().await {
            Ok(list) => {
                let mut rows = vec![["NAME".to_string(), "ROLE".into(), "CHANGED".into()]];
                rows.extend(list.iter().map(|u| {
                    [
                        u.name.clone(),
                        u.role.as_str().into(),
                        fmt_instant(u.updated_at),
                    ]
                }));
                super::tasks::print_table(&rows);
                EXIT_OK
            }
            Err(e) => failed(&e),
        },
    }
}

pub async fn tokens(cli: &Cli, args: &TokensArgs) -> i32 {
    let (project, store) = match load_with_store(cli).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let who = super::who(&project.config);
    let code = tokens_with(&*store, &who, &args.command).await;
    store.close().await;
    code
}

async fn tokens_with(store: &dyn Store, who: &str, cmd: &TokensCommand) -> i32 {
    let failed = |e: &dyn std::error::Error| {
        print_error(e);
        EXIT_FAILED
    };
    match cmd {
        TokensCommand::Create {
            name,
            role,
            expires,
        } => {
            if let Err(e) = access::check_name(name) {
                return usage(e);
            }
            let role: Role = match access::parse_role(role) {
                Ok(r) => r,
                Err(e) => return usage(e),
            };
            let expires = match expires.as_deref().map(crate::config::parse_duration) {
                Some(Err(e)) => return usage(format!("--expires: {e}")),
                Some(Ok(d)) => Some(d),
                None => None,
            };
            let now = wall_now();
            let (token, record) = access::new_token(name, role, who, now, expires);
            match store.add_token(&record, now).await {
                Ok(true) => {
                    audit(store, who, "token.create", name, Some(role.as_str().into())).await;
                    eprintln!(
                        "token `{name}` ({}{}) created; it is shown once, store it now:",
                        role.as_str(),
                        record
                            .expires_at
                            .map(|e| format!(", expires {}", fmt_instant(e)))
                            .unwrap_or_default()
                    );
                    println!("{token}");
                    EXIT_OK
                }
                Ok(false) => usage(format!(
                    "a token named `{name}` is in use: revoke it first (`ferry tokens revoke {name}`) or choose another name"
                )),
                Err(e) => failed(&e),
            }
        }
        TokensCommand::List => match store.tokens().await {
            Ok(list) => {
                let now = wall_now();
                let mut rows = vec![[
                    "NAME".to_string(),
                    "ID".into(),
                    "ROLE".into(),
                    "CREATED".into(),
                    "EXPIRES".into(),
                    "STATE".into(),
                ]];
                rows.extend(list.iter().map(|t| {
                    [
                        t.name.clone(),
                        t.id.clone(),
                        t.role.as_str().into(),
                        format!("{} by {}", fmt_instant(t.created_at), t.created_by),
                        t.expires_at.map_or("never".into(), fmt_instant),
                        access::token_refusal(t, now).map_or("active".into(), |r| {
                            r.trim_start_matches("the token ").into()
                        }),
                    ]
                }));
                super::tasks::print_table(&rows);
                EXIT_OK
            }
            Err(e) => failed(&e),
        },
        TokensCommand::Revoke { name } => match store.revoke_token(name, wall_now()).await {
            Ok(0) => usage(format!("no live token named `{name}`")),
            Ok(n) => {
                audit(store, who, "token.revoke", name, None).await;
                println!("token `{name}` revoked ({n})");
                EXIT_OK
            }
            Err(e) => failed(&e),
        },
    }
}
