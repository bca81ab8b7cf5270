//! What an Oracle account could change ([`read_access`]), for `ferry sources test` and
//! `require_read_only`. Not tested against a live database here: [`classify`] is
//! unit-tested with what the dictionary views return.
//!
//! Read-only here means:
//! - its session privileges (`SESSION_PRIVS`: its own and its enabled roles' system
//!   privileges) are only `CREATE SESSION` and the `SELECT ANY …`/`READ ANY …` reading
//!   privileges, except `SELECT ANY SEQUENCE` (`NEXTVAL` advances a sequence). Everything
//!   else counts, `ALTER SESSION` too (it can switch tracing on, which writes files on the
//!   server) and `UNLIMITED TABLESPACE`;
//! - the object privileges granted to it (`USER_TAB_PRIVS`) or to its enabled roles
//!   (`ROLE_TAB_PRIVS`) are only `SELECT` and `READ`, without `GRANTABLE`. `EXECUTE`
//!   counts: a definer's-rights procedure writes with its owner's rights;
//! - its schema privileges (Oracle 23ai and later, `SESSION_SCHEMA_PRIVS`) only read,
//!   by the same rule as system privileges;
//! - it owns no object (`USER_OBJECTS`): an owner can change and drop what it owns;
//! - every role granted to it is enabled in the session (`USER_ROLE_PRIVS` against
//!   `SESSION_ROLES`): ferry cannot see what a disabled role allows, and the account could
//!   `SET ROLE` to it.

use oracle::Connection;

use crate::source::access::{Access, count, on_objects};

/// The account's name.
const USER_SQL: &str = "SELECT USER FROM dual";

/// System privileges of the session (its own and its enabled roles').
const SESSION_PRIVS_SQL: &str = "SELECT privilege FROM session_privs ORDER BY privilege";

/// Object privileges beyond reading, granted to the account or its enabled roles.
const OBJECT_GRANTS_SQL: &str = "
SELECT owner, table_name, privilege, grantable, NULL AS via FROM user_tab_privs
 WHERE grantee = USER AND (privilege NOT IN ('SELECT', 'READ') OR grantable = 'YES')
UNION ALL
SELECT owner, table_name, privilege, grantable, role FROM role_tab_privs
 WHERE privilege NOT IN ('SELECT', 'READ') OR grantable = 'YES'
ORDER BY 1, 2, 3";

/// Schema privileges (Oracle 23ai and later: `GRANT INSERT ANY TABLE ON SCHEMA s`) of
/// the session; older databases have no such view (ORA-00942), and no such privileges.
const SCHEMA_PRIVS_SQL: &str =
    "SELECT privilege, schema FROM session_schema_privs ORDER BY schema, privilege";

/// The objects the account owns: how many, and one.
const OWNED_SQL: &str = "SELECT COUNT(*), MIN(object_type || ' ' || object_name) FROM user_objects";

/// Roles granted to the account that this session has not enabled.
const DISABLED_ROLES_SQL: &str = "
SELECT granted_role FROM user_role_privs
 WHERE granted_role NOT IN (SELECT role FROM session_roles)
 ORDER BY 1";

/// One object privilege the account holds beyond reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectGrant {
    pub owner: String,
    pub object: String,
    pub privilege: String,
    pub grantable: bool,
    /// The role it comes through; `None`: granted to the account itself.
    pub via: Option<String>,
}

/// Reads the dictionary views. The caller has set the call timeout and `SET TRANSACTION
/// READ ONLY`.
pub fn read_access(conn: &Connection) -> Result<Access, oracle::Error> {
    let user = conn.query_row_as::<String>(USER_SQL, &[])?;
    let privileges = conn
        .query_as::<String>(SESSION_PRIVS_SQL, &[])?
        .collect::<Result<Vec<_>, _>>()?;
    let grants = conn
        .query_as::<(String, String, String, String, Option<String>)>(OBJECT_GRANTS_SQL, &[])?
        .map(|r| {
            r.map(|(owner, object, privilege, grantable, via)| ObjectGrant {
                owner,
                object,
                privilege,
                grantable: grantable == "YES",
                via,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let schema_privileges = match conn.query_as::<(String, String)>(SCHEMA_PRIVS_SQL, &[]) {
        Ok(rows) => rows.collect::<Result<Vec<_>, _>>()?,
        Err(e) if e.oci_code() == Some(942) => Vec::new(),
        Err(e) => return Err(e),
    };
    let owned = conn.query_row_as::<(u64, Option<String>)>(OWNED_SQL, &[])?;
    let disabled = conn
        .query_as::<String>(DISABLED_ROLES_SQL, &[])?
        .collect::<Result<Vec<_>, _>>()?;
    let mut access = classify(&user, &privileges, &grants, owned, &disabled);
    access.findings.extend(schema_findings(&schema_privileges));
    Ok(access)
}

/// True for a system privilege that only reads.
pub fn is_read_privilege(privilege: &str) -> bool {
    let p = privilege.trim().to_ascii_uppercase();
    p == "CREATE SESSION"
        || ((p.starts_with("SELECT ANY ") || p.starts_with("READ ANY "))
            && p != "SELECT ANY SEQUENCE")
}

/// The findings, from what the dictionary said.
pub fn classify(
    user: &str,
    privileges: &[String],
    grants: &[ObjectGrant],
    owned: (u64, Option<String>),
    disabled_roles: &[String],
) -> Access {
    let mut access = Access::read_only(format!("user {user}"));
    let findings = &mut access.findings;
    let system: Vec<&str> = privileges
        .iter()
        .map(String::as_str)
        .filter(|p| !is_read_privilege(p))
        .collect();
    match system.len() {
        0 => {}
        n if n <= 4 => findings.push(format!("has system privileges {}", system.join(", "))),
        n => findings.push(format!(
            "has system privileges {} and {} more",
            system[..3].join(", "),
            n - 3
        )),
    }
    if let (n @ 1.., example) = owned {
        let example = example.unwrap_or_default();
        findings.push(if n == 1 {
            format!("owns {example}")
        } else {
            format!("owns {}, e.g. {example}", count(n, "object", "objects"))
        });
    }
    let writes: Vec<&ObjectGrant> = grants
        .iter()
        .filter(|g| !matches!(g.privilege.as_str(), "SELECT" | "READ"))
        .collect();
    if let Some(first) = writes.first() {
        findings.push(grants_finding(
            &writes,
            &format!("{}.{}", first.owner, first.object),
        ));
    }
    let grantable: Vec<&ObjectGrant> = grants.iter().filter(|g| g.grantable).collect();
    if let Some(first) = grantable.first() {
        let mut objects: Vec<String> = grantable
            .iter()
            .map(|g| format!("{}.{}", g.owner, g.object))
            .collect();
        objects.dedup();
        findings.push(format!(
            "can grant its privileges on {} to others (WITH GRANT OPTION){}",
            if objects.len() == 1 {
                format!("{}.{}", first.owner, first.object)
            } else {
                format!(
                    "{} objects, e.g. {}.{}",
                    objects.len(),
                    first.owner,
                    first.object
                )
            },
            via_text(&grantable)
        ));
    }
    for role in disabled_roles {
        findings.push(format!(
            "has role {role}, not enabled in this session, so ferry cannot see what it allows"
        ));
    }
    access
}

/// What schema privileges beyond reading allow, one finding per schema (`has INSERT ANY
/// TABLE, UPDATE ANY TABLE on schema SALES`).
pub fn schema_findings(privileges: &[(String, String)]) -> Vec<String> {
    let mut by_schema: Vec<(&str, Vec<&str>)> = Vec::new();
    for (privilege, schema) in privileges.iter().filter(|(p, _)| !is_read_privilege(p)) {
        match by_schema.iter_mut().find(|(s, _)| s == schema) {
            Some((_, ps)) => ps.push(privilege),
            None => by_schema.push((schema, vec![privilege])),
        }
    }
    by_schema
        .into_iter()
        .map(|(schema, ps)| format!("has {} on schema {schema}", ps.join(", ")))
        .collect()
}

/// `can INSERT, EXECUTE on 3 objects, e.g. HR.EMP (through role R)`.
fn grants_finding(writes: &[&ObjectGrant], example: &str) -> String {
    let mut privileges: Vec<&str> = writes.iter().map(|g| g.privilege.as_str()).collect();
    privileges.sort_unstable();
    privileges.dedup();
    let mut objects: Vec<(&str, &str)> = writes
        .iter()
        .map(|g| (g.owner.as_str(), g.object.as_str()))
        .collect();
    objects.sort_unstable();
    objects.dedup();
    format!(
        "can {}{}",
        on_objects(
            &privileges.join(", "),
            objects.len() as u64,
            example,
            "object",
            "objects"
        ),
        via_text(writes)
    )
}

/// ` (through role A, B)` for grants that come through roles, or nothing.
fn via_text(grants: &[&ObjectGrant]) -> String {
    let mut roles: Vec<&str> = grants.iter().filter_map(|g| g.via.as_deref()).collect();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        String::new()
    } else {
        format!(" (through role {})", roles.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn grant(
        owner: &str,
        object: &str,
        privilege: &str,
        grantable: bool,
        via: Option<&str>,
    ) -> ObjectGrant {
        ObjectGrant {
            owner: owner.into(),
            object: object.into(),
            privilege: privilege.into(),
            grantable,
            via: via.map(str::to_string),
        }
    }

    #[test]
    fn create_session_and_select_grants_are_read_only() {
        let a = classify(
            "REPORT_READER",
            &strings(&["CREATE SESSION", "SELECT ANY DICTIONARY", "READ ANY TABLE"]),
            &[],
            (0, None),
            &[],
        );
        assert!(a.is_read_only(), "{a:?}");
        assert_eq!(a.account, "user REPORT_READER");
    }

    #[test]
    fn system_privileges_beyond_reading_count() {
        for p in [
            "ALTER SESSION",
            "CREATE TABLE",
            "UNLIMITED TABLESPACE",
            "SELECT ANY SEQUENCE",
            "EXECUTE ANY PROCEDURE",
            "EXEMPT ACCESS POLICY",
            "SYSDBA",
            "BECOME USER",
        ] {
            assert!(!is_read_privilege(p), "{p}");
        }
        let a = classify(
            "APP",
            &strings(&["CREATE SESSION", "CREATE TABLE", "INSERT ANY TABLE"]),
            &[],
            (0, None),
            &[],
        );
        assert_eq!(
            a.sentences(),
            ["user APP has system privileges CREATE TABLE, INSERT ANY TABLE"]
        );
        let many = strings(&[
            "ALTER ANY TABLE",
            "CREATE PROCEDURE",
            "CREATE SEQUENCE",
            "CREATE TABLE",
            "DROP ANY TABLE",
        ]);
        assert_eq!(
            classify("APP", &many, &[], (0, None), &[]).findings,
            ["has system privileges ALTER ANY TABLE, CREATE PROCEDURE, CREATE SEQUENCE and 2 more"]
        );
    }

    #[test]
    fn owned_objects_grants_and_disabled_roles_count() {
        let grants = [
            grant("HR", "EMP", "INSERT", false, None),
            grant("HR", "EMP", "UPDATE", false, Some("HR_WRITER")),
            grant("SALES", "REFRESH_TOTALS", "EXECUTE", false, None),
            grant("SALES", "ORDERS", "SELECT", true, None),
        ];
        let a = classify(
            "REPORTS",
            &strings(&["CREATE SESSION"]),
            &grants,
            (2, Some("TABLE SCRATCH".into())),
            &strings(&["DBA"]),
        );
        assert_eq!(
            a.sentences(),
            [
                "user REPORTS owns 2 objects, e.g. TABLE SCRATCH",
                "user REPORTS can EXECUTE, INSERT, UPDATE on 2 objects, e.g. HR.EMP (through role HR_WRITER)",
                "user REPORTS can grant its privileges on SALES.ORDERS to others (WITH GRANT OPTION)",
                "user REPORTS has role DBA, not enabled in this session, so ferry cannot see what it allows",
            ]
        );
        let one = classify(
            "R",
            &[],
            &[grant("HR", "EMP", "DELETE", false, None)],
            (1, Some("VIEW V".into())),
            &[],
        );
        assert_eq!(one.findings, ["owns VIEW V", "can DELETE on HR.EMP"]);
    }

    #[test]
    fn schema_privileges_beyond_reading_count_per_schema() {
        let privs = [
            ("SELECT ANY TABLE".to_string(), "SALES".to_string()),
            ("INSERT ANY TABLE".to_string(), "SALES".to_string()),
            ("UPDATE ANY TABLE".to_string(), "SALES".to_string()),
            ("READ ANY TABLE".to_string(), "HR".to_string()),
            ("EXECUTE ANY PROCEDURE".to_string(), "HR".to_string()),
        ];
        assert_eq!(
            schema_findings(&privs),
            [
                "has INSERT ANY TABLE, UPDATE ANY TABLE on schema SALES",
                "has EXECUTE ANY PROCEDURE on schema HR"
            ]
        );
        assert!(schema_findings(&privs[..1]).is_empty());
    }
}
