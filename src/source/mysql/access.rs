//! What a MySQL or MariaDB account could change ([`read_access`]), from `SHOW GRANTS`.
//!
//! Read-only here means: every privilege the account holds, itself or through a role it
//! was granted (default or not: it can `SET ROLE` to any), on any database, is one of
//! [`READ_ONLY_PRIVILEGES`] — `SELECT`, `SHOW VIEW` and `USAGE` (no privilege at all).
//! Anything else is a finding, named with its target (`has INSERT, UPDATE on `shop`.*`),
//! with a few called out for what they allow beyond the data:
//!
//! - `EXECUTE`: a routine with `SQL SECURITY DEFINER` (the default) runs with its
//!   definer's rights, which may write;
//! - `FILE`: reads and writes files on the database server (`LOAD_FILE`, `INTO OUTFILE`);
//! - `SUPER` and `ALL PRIVILEGES`: almost everything, writes despite `read_only`;
//! - `PROCESS`: not a write, but it shows every session's statements (data and passwords
//!   in them) and storage-engine internals, more than exporting needs;
//! - `WITH GRANT OPTION` / `WITH ADMIN OPTION`: it can give its rights to others, which
//!   writes the grant tables; `PROXY`: it can log in as someone else.
//!
//! Roles are followed: on MariaDB `SHOW GRANTS FOR role` for each granted role (nested
//! roles come with it) and the grants to `PUBLIC` (10.11+); on MySQL `SHOW GRANTS FOR
//! CURRENT_USER() USING …` with every granted and mandatory role. Grants that cannot be
//! read count as a finding: a verdict ferry cannot make is not "read-only".

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::source::access::Access;

/// The privileges that only read (`USAGE` is "no privilege").
pub const READ_ONLY_PRIVILEGES: &[&str] = &["SELECT", "SHOW VIEW", "USAGE"];

/// Most roles followed (a guard against a role graph that never ends).
const MAX_ROLES: usize = 100;

/// One line of `SHOW GRANTS`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `GRANT privileges ON target TO grantee [WITH GRANT OPTION]`.
    Privileges {
        privileges: Vec<String>,
        target: String,
        grantee: String,
        grant_option: bool,
    },
    /// `GRANT role[, role…] TO grantee [WITH ADMIN OPTION]`.
    Roles {
        roles: Vec<String>,
        grantee: String,
        admin_option: bool,
    },
}

/// The byte index of `pat` in `s` outside quotes, backticks and parentheses.
fn find_outside(s: &str, pat: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let (mut quote, mut depth) = (None::<u8>, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'`' | b'\'' | b'"' => quote = Some(b),
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                _ if depth == 0 && s[i..].starts_with(pat) => return Some(i),
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// `s` split on commas outside quotes and parentheses, each part trimmed.
fn split_list(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(i) = find_outside(rest, ",") {
        parts.push(rest[..i].trim().to_string());
        rest = &rest[i + 1..];
    }
    parts.push(rest.trim().to_string());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Reads one `SHOW GRANTS` line; `None` for lines that grant nothing (`SET DEFAULT ROLE`).
pub fn parse_grant(line: &str) -> Option<Grant> {
    let rest = line.trim().strip_prefix("GRANT ")?;
    let to = find_outside(rest, " TO ")?;
    let (head, tail) = (&rest[..to], &rest[to + 4..]);
    let grantee_end = find_outside(tail, " IDENTIFIED ")
        .or_else(|| find_outside(tail, " REQUIRE "))
        .or_else(|| find_outside(tail, " WITH "))
        .unwrap_or(tail.len());
    let grantee = tail[..grantee_end].trim().to_string();
    let with = tail[grantee_end..].to_ascii_uppercase();
    match find_outside(head, " ON ") {
        Some(on) => Some(Grant::Privileges {
            privileges: split_list(&head[..on]),
            target: head[on + 4..].trim().to_string(),
            grantee,
            grant_option: with.contains("WITH GRANT OPTION"),
        }),
        None => Some(Grant::Roles {
            roles: split_list(head),
            grantee,
            admin_option: with.contains("WITH ADMIN OPTION"),
        }),
    }
}

/// A privilege's name without its column list (`UPDATE (a, b)` is `UPDATE`), uppercase.
fn privilege_name(p: &str) -> String {
    p.split('(').next().unwrap_or(p).trim().to_ascii_uppercase()
}

/// What the grants in `lines` allow beyond reading, each a finding; grants to anyone but
/// `me` (a role, `PUBLIC`) say whom they come through.
pub fn findings(lines: &[String], me: &str) -> Vec<String> {
    let mut out = Vec::new();
    for grant in lines.iter().filter_map(|l| parse_grant(l)) {
        let (grantee, mut found) = match grant {
            Grant::Privileges {
                privileges,
                target,
                grantee,
                grant_option,
            } => {
                let mut found = Vec::new();
                let mut plain = Vec::new();
                for p in &privileges {
                    let name = privilege_name(p);
                    if READ_ONLY_PRIVILEGES.contains(&name.as_str()) {
                        continue;
                    }
                    match name.as_str() {
                        "FILE" => found.push(
                            "has the FILE privilege (reads and writes files on the database server)"
                                .to_string(),
                        ),
                        "SUPER" => found.push(
                            "has the SUPER privilege (server settings, other sessions, writes despite read_only)"
                                .to_string(),
                        ),
                        "PROCESS" => found.push(
                            "has the PROCESS privilege (sees every session's statements)"
                                .to_string(),
                        ),
                        "EXECUTE" => found.push(format!(
                            "can EXECUTE routines on {target} (a DEFINER routine runs with its definer's rights and can write)"
                        )),
                        "PROXY" => found.push(format!("can log in as {target} (PROXY)")),
                        _ => plain.push(p.as_str()),
                    }
                }
                if !plain.is_empty() {
                    found.insert(0, format!("has {} on {target}", plain.join(", ")));
                }
                if grant_option {
                    found.push(format!(
                        "can grant its privileges on {target} to others (WITH GRANT OPTION)"
                    ));
                }
                (grantee, found)
            }
            Grant::Roles {
                roles,
                grantee,
                admin_option,
            } => {
                let found = if admin_option {
                    vec![format!(
                        "can grant role {} to others (WITH ADMIN OPTION)",
                        roles.join(", ")
                    )]
                } else {
                    Vec::new()
                };
                (grantee, found)
            }
        };
        if !same_account(&grantee, me) {
            for f in &mut found {
                f.push_str(&format!(" (through {})", through(&grantee)));
            }
        }
        out.extend(found);
    }
    out
}

/// `PUBLIC` or `role `r``.
fn through(grantee: &str) -> String {
    if grantee.eq_ignore_ascii_case("PUBLIC") {
        "PUBLIC".to_string()
    } else {
        format!("role {grantee}")
    }
}

/// The roles granted in `lines`, as written (quoted, ready for `SHOW GRANTS FOR`).
pub fn granted_roles(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| match parse_grant(l) {
            Some(Grant::Roles { roles, .. }) => Some(roles),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The grantees of `lines` (whose grants have been read), as written.
fn grantees(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| match parse_grant(l)? {
            Grant::Privileges { grantee, .. } | Grant::Roles { grantee, .. } => Some(grantee),
        })
        .collect()
}

/// Whether two account names are the same once quotes are dropped (`` `ferry`@`%` `` and
/// `ferry@%`).
fn same_account(a: &str, b: &str) -> bool {
    let bare = |s: &str| s.replace(['`', '\''], "");
    bare(a) == bare(b)
}

/// `CURRENT_USER()` (`ferry@127.0.0.1`) as `SHOW GRANTS` quotes it: `'ferry'@'127.0.0.1'`.
pub fn account_name(current_user: &str) -> String {
    match current_user.rsplit_once('@') {
        Some((user, host)) => format!("'{user}'@'{host}'"),
        None => format!("'{current_user}'"),
    }
}

/// Asks the server what the account could change (`mariadb`: the server is MariaDB, whose
/// roles and `PUBLIC` are read differently from MySQL's).
pub async fn read_access(conn: &mut Conn, mariadb: bool) -> Result<Access, mysql_async::Error> {
    let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    let current = current.unwrap_or_default();
    let me = account_name(&current);
    let mut lines: Vec<String> = conn.query("SHOW GRANTS FOR CURRENT_USER()").await?;
    let mut unreadable = Vec::new();
    if mariadb {
        // Each granted role's grants come with the roles granted to it; a role whose
        // grants have not appeared yet is asked for in turn.
        let mut asked = 0;
        loop {
            let seen = grantees(&lines);
            let next = granted_roles(&lines)
                .into_iter()
                .find(|r| !seen.iter().any(|g| same_account(g, r)) && !unreadable.contains(r));
            let Some(role) = next else { break };
            asked += 1;
            if asked > MAX_ROLES {
                unreadable.push(format!("{role} and more (over {MAX_ROLES} roles)"));
                break;
            }
            match conn
                .query::<String, _>(format!("SHOW GRANTS FOR {role}"))
                .await
            {
                Ok(more) => lines.extend(more),
                Err(mysql_async::Error::Server(e)) => {
                    unreadable.push(role.clone());
                    tracing::debug!(role = %role, error = %e.message, "cannot read a role's grants");
                }
                Err(e) => return Err(e),
            }
        }
        match conn.query::<String, _>("SHOW GRANTS FOR PUBLIC").await {
            Ok(more) => lines.extend(more),
            // Before MariaDB 10.11 there is no PUBLIC to grant to.
            Err(mysql_async::Error::Server(e)) if matches!(e.code, 1064 | 1141) => {}
            Err(mysql_async::Error::Server(_)) => unreadable.push("PUBLIC".to_string()),
            Err(e) => return Err(e),
        }
    } else {
        let mandatory: Option<Option<String>> = conn
            .query_first("SELECT @@GLOBAL.mandatory_roles")
            .await
            .unwrap_or(None);
        let mut roles = granted_roles(&lines);
        roles.extend(
            split_list(&mandatory.flatten().unwrap_or_default())
                .into_iter()
                .filter(|r| r != "''"),
        );
        // Roles granted to roles: asked again until no new one appears.
        let mut using: Vec<String> = Vec::new();
        while roles.iter().any(|r| !using.contains(r)) && using.len() <= MAX_ROLES {
            for r in roles.drain(..) {
                if !using.contains(&r) {
                    using.push(r);
                }
            }
            let sql = format!("SHOW GRANTS FOR CURRENT_USER() USING {}", using.join(", "));
            match conn.query::<String, _>(sql).await {
                Ok(more) => {
                    roles = granted_roles(&more);
                    lines.extend(more);
                }
                Err(mysql_async::Error::Server(_)) => {
                    unreadable.push(using.join(", "));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut access = Access::read_only(format!("user {me}"));
    access.findings = findings(&lines, &me);
    access.findings.dedup();
    for r in unreadable {
        access.findings.push(format!(
            "has grants ferry cannot read (through {}), so they may write",
            through(&r)
        ));
    }
    Ok(access)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(ls: &[&str]) -> Vec<String> {
        ls.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn grant_lines_are_read_with_quotes_columns_and_options() {
        assert_eq!(
            parse_grant(
                "GRANT SELECT, UPDATE (a, b) ON `to db`.`t` TO `ferry`@`%` WITH GRANT OPTION"
            ),
            Some(Grant::Privileges {
                privileges: vec!["SELECT".into(), "UPDATE (a, b)".into()],
                target: "`to db`.`t`".into(),
                grantee: "`ferry`@`%`".into(),
                grant_option: true,
            })
        );
        assert_eq!(
            parse_grant("GRANT USAGE ON *.* TO `ro`@`%` IDENTIFIED BY PASSWORD '*AB'"),
            Some(Grant::Privileges {
                privileges: vec!["USAGE".into()],
                target: "*.*".into(),
                grantee: "`ro`@`%`".into(),
                grant_option: false,
            })
        );
        // MariaDB role grants, and MySQL's with hosts and no spaces.
        assert_eq!(
            parse_grant("GRANT `r1` TO `ferry`@`%` WITH ADMIN OPTION"),
            Some(Grant::Roles {
                roles: vec!["`r1`".into()],
                grantee: "`ferry`@`%`".into(),
                admin_option: true,
            })
        );
        assert_eq!(
            granted_roles(&lines(&["GRANT `r1`@`%`,`r2`@`localhost` TO `u`@`%`"])),
            ["`r1`@`%`", "`r2`@`localhost`"]
        );
        assert_eq!(parse_grant("SET DEFAULT ROLE `r1` FOR `u`@`%`"), None);
        // MySQL 8 dynamic privileges, comma-separated without spaces.
        assert_eq!(
            parse_grant("GRANT BACKUP_ADMIN,XA_RECOVER_ADMIN ON *.* TO `u`@`%`"),
            Some(Grant::Privileges {
                privileges: vec!["BACKUP_ADMIN".into(), "XA_RECOVER_ADMIN".into()],
                target: "*.*".into(),
                grantee: "`u`@`%`".into(),
                grant_option: false,
            })
        );
    }

    #[test]
    fn only_select_show_view_and_usage_are_read_only() {
        let me = account_name("ro@10.0.0.%");
        assert_eq!(me, "'ro'@'10.0.0.%'");
        let read = lines(&[
            "GRANT USAGE ON *.* TO `ro`@`10.0.0.%` IDENTIFIED BY PASSWORD '*AB'",
            "GRANT SELECT, SHOW VIEW ON `shop`.* TO `ro`@`10.0.0.%`",
            "GRANT SELECT (id, name) ON `shop`.`customers` TO `ro`@`10.0.0.%`",
            "SET DEFAULT ROLE NONE FOR `ro`@`10.0.0.%`",
        ]);
        assert!(findings(&read, &me).is_empty());

        let write = lines(&[
            "GRANT FILE, PROCESS, SUPER ON *.* TO `ro`@`10.0.0.%`",
            "GRANT ALL PRIVILEGES ON `ferry_test`.* TO `ro`@`10.0.0.%`",
            "GRANT SELECT, INSERT, UPDATE (a) ON `other`.`t` TO `ro`@`10.0.0.%`",
            "GRANT EXECUTE ON PROCEDURE `shop`.`refresh` TO `ro`@`10.0.0.%`",
            "GRANT SELECT ON `shop`.* TO `ro`@`10.0.0.%` WITH GRANT OPTION",
            "GRANT PROXY ON ''@'%' TO 'ro'@'10.0.0.%'",
            "GRANT LOCK TABLES, CREATE TEMPORARY TABLES ON `shop`.* TO `ro`@`10.0.0.%`",
            "GRANT `rw` TO `ro`@`10.0.0.%`",
            "GRANT DELETE ON `shop`.* TO `rw`",
            "GRANT INSERT ON `shop`.* TO PUBLIC",
        ]);
        assert_eq!(
            findings(&write, &me),
            [
                "has the FILE privilege (reads and writes files on the database server)",
                "has the PROCESS privilege (sees every session's statements)",
                "has the SUPER privilege (server settings, other sessions, writes despite read_only)",
                "has ALL PRIVILEGES on `ferry_test`.*",
                "has INSERT, UPDATE (a) on `other`.`t`",
                "can EXECUTE routines on PROCEDURE `shop`.`refresh` (a DEFINER routine runs with its definer's rights and can write)",
                "can grant its privileges on `shop`.* to others (WITH GRANT OPTION)",
                "can log in as ''@'%' (PROXY)",
                "has LOCK TABLES, CREATE TEMPORARY TABLES on `shop`.*",
                "has DELETE on `shop`.* (through role `rw`)",
                "has INSERT on `shop`.* (through PUBLIC)",
            ]
        );
    }

    #[test]
    fn quoted_names_hide_keywords() {
        assert_eq!(
            parse_grant("GRANT INSERT ON `a TO b`.* TO `u`@`%`"),
            Some(Grant::Privileges {
                privileges: vec!["INSERT".into()],
                target: "`a TO b`.*".into(),
                grantee: "`u`@`%`".into(),
                grant_option: false,
            })
        );
        assert!(same_account("`u`@`%`", "'u'@'%'"));
        assert!(!same_account("`u`@`%`", "'v'@'%'"));
    }
}
