//! What a PostgreSQL account could change ([`read_access`]), for `ferry sources test` and
//! `require_read_only`. Checked for PostgreSQL 14 to 17 (and 18's new predefined role), in
//! a read-only transaction, over every role the account is a member of (it can `SET ROLE`
//! to each, so their rights are its rights):
//!
//! - role attributes: `SUPERUSER` (nothing else is checked then), `CREATEROLE`,
//!   `CREATEDB`, `REPLICATION`, `BYPASSRLS`;
//! - membership in the predefined roles that change or reach outside the data
//!   ([`WRITING_ROLES`]: `pg_write_all_data`, `pg_write_server_files`,
//!   `pg_execute_server_program`, `pg_read_server_files`, `pg_signal_backend`, …);
//!   `pg_read_all_data`, `pg_read_all_settings`, `pg_read_all_stats`, `pg_monitor`,
//!   `pg_stat_scan_tables` and `pg_use_reserved_connections` only read and do not count;
//! - `INSERT`, `UPDATE` (also on single columns), `DELETE`, `TRUNCATE`, `TRIGGER` and, from
//!   PostgreSQL 17, `MAINTAIN` on any table, view, materialized view or foreign table
//!   outside the system schemas; `USAGE` or `UPDATE` on a sequence (`nextval`, `setval`);
//! - ownership (owners can always write and grant) of relations, schemas, databases,
//!   functions and large objects;
//! - `CREATE` on any schema or database;
//! - `EXECUTE` on a `SECURITY DEFINER` function someone else owns (it runs with its
//!   owner's rights, which may write);
//! - large objects it may update, and `lo_compat_privileges = on` (every role may then
//!   write every large object).
//!
//! Not counted: temporary tables (`TEMPORARY` on the database, granted to everyone by
//! default; they vanish with the session), and creating large objects, which every role
//! may do outside a read-only transaction unless `EXECUTE` on `lo_create`/`lo_import`/
//! `lo_from_bytea` is revoked from `PUBLIC`. `default_transaction_read_only` is not
//! trusted: any session can turn it off.

use tokio_postgres::Client;

use crate::source::access::{Access, on_objects};

/// Predefined roles whose members can change something or reach outside the data, with
/// what they allow (PostgreSQL 14–18; a role the server does not have is not found).
pub const WRITING_ROLES: &[(&str, &str)] = &[
    ("pg_write_all_data", "writes every table"),
    ("pg_write_server_files", "writes files on the server"),
    ("pg_execute_server_program", "runs programs on the server"),
    (
        "pg_read_server_files",
        "reads any file the server can, its configuration and keys included",
    ),
    ("pg_signal_backend", "cancels and terminates other sessions"),
    ("pg_checkpoint", "runs CHECKPOINT"),
    ("pg_create_subscription", "creates subscriptions"),
    (
        "pg_maintain",
        "runs VACUUM, ANALYZE, REINDEX, CLUSTER, REFRESH MATERIALIZED VIEW and LOCK TABLE on every table",
    ),
    ("pg_signal_autovacuum_worker", "signals autovacuum workers"),
];

/// The table privileges that change data or schema, in the order messages list them
/// (`MAINTAIN` is asked for only from PostgreSQL 17, which has it).
const TABLE_PRIVILEGES: &[&str] = &["INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER"];

/// Who ferry is, its role attributes, the server version and `lo_compat_privileges`.
const ACCOUNT_SQL: &str = "
SELECT current_user::text,
       current_setting('server_version_num')::int,
       coalesce(current_setting('lo_compat_privileges', true), 'off')";

/// The attributes of every role the account can become (itself first).
const ROLES_SQL: &str = r"
SELECT rolname::text, rolname = current_user, rolsuper, rolcreaterole, rolcreatedb,
       rolreplication, rolbypassrls
  FROM pg_roles
 WHERE pg_has_role(current_user, oid, 'MEMBER')
   AND (rolname = current_user OR rolname NOT LIKE 'pg\_%')
 ORDER BY 2 DESC, 1";

/// The account's memberships among `$1` (predefined role names).
const MEMBERSHIPS_SQL: &str = "
SELECT rolname::text FROM pg_roles
 WHERE rolname = ANY($1::text[]) AND pg_has_role(current_user, oid, 'MEMBER')
 ORDER BY 1";

/// Everything the account (and the roles it can become) may change in this database and
/// cluster, one row per kind: the privileges, how many objects, one example, and the other
/// roles it comes through. `$1` is the table privileges to ask about.
const OBJECTS_SQL: &str = r"
WITH me AS (
    SELECT oid, rolname::text AS rolname FROM pg_roles
     WHERE pg_has_role(current_user, oid, 'MEMBER')
       AND (rolname = current_user OR rolname NOT LIKE 'pg\_%')
), ns AS (
    SELECT oid, nspname, nspowner FROM pg_namespace
     WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\_%'
), rel AS (
    SELECT c.oid, c.relkind, c.relowner, format('%I.%I', ns.nspname, c.relname) AS shown
      FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
), fn AS (
    SELECT p.oid, p.proowner, p.prosecdef,
           format('%I.%I(%s)', ns.nspname, p.proname,
                  pg_get_function_identity_arguments(p.oid)) AS shown
      FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
), found(what, priv, shown, via) AS (
    SELECT 'table', p.priv, rel.shown, me.rolname
      FROM me, rel, unnest($1::text[]) AS p(priv)
     WHERE rel.relkind <> 'S'
       AND CASE WHEN p.priv IN ('INSERT', 'UPDATE')
                THEN has_any_column_privilege(me.oid, rel.oid, p.priv)
                ELSE has_table_privilege(me.oid, rel.oid, p.priv) END
    UNION ALL
    SELECT 'sequence', p.priv, rel.shown, me.rolname
      FROM me, rel, unnest(ARRAY['USAGE', 'UPDATE']) AS p(priv)
     WHERE rel.relkind = 'S' AND has_sequence_privilege(me.oid, rel.oid, p.priv)
    UNION ALL
    SELECT 'owned relation', NULL, rel.shown, NULL FROM rel
     WHERE pg_has_role(current_user, rel.relowner, 'MEMBER')
    UNION ALL
    SELECT 'owned schema', NULL, format('%I', ns.nspname), NULL FROM ns
     WHERE pg_has_role(current_user, ns.nspowner, 'MEMBER')
    UNION ALL
    SELECT 'schema', 'CREATE', format('%I', ns.nspname), me.rolname FROM me, ns
     WHERE has_schema_privilege(me.oid, ns.oid, 'CREATE')
    UNION ALL
    SELECT 'owned database', NULL, format('%I', d.datname), NULL FROM pg_database d
     WHERE pg_has_role(current_user, d.datdba, 'MEMBER')
    UNION ALL
    SELECT 'database', 'CREATE', format('%I', d.datname), me.rolname FROM me, pg_database d
     WHERE has_database_privilege(me.oid, d.oid, 'CREATE')
    UNION ALL
    SELECT 'owned function', NULL, fn.shown, NULL FROM fn
     WHERE pg_has_role(current_user, fn.proowner, 'MEMBER')
    UNION ALL
    SELECT 'definer function', 'EXECUTE', fn.shown, me.rolname FROM me, fn
     WHERE fn.prosecdef AND NOT pg_has_role(current_user, fn.proowner, 'MEMBER')
       AND has_function_privilege(me.oid, fn.oid, 'EXECUTE')
    UNION ALL
    SELECT 'large object', NULL, m.oid::text, NULL FROM pg_largeobject_metadata m
     WHERE pg_has_role(current_user, m.lomowner, 'MEMBER')
        OR EXISTS (SELECT FROM aclexplode(m.lomacl) a
                    WHERE a.privilege_type = 'UPDATE'
                      AND CASE WHEN a.grantee = 0 THEN true
                               ELSE pg_has_role(current_user, a.grantee, 'MEMBER') END)
)
, marked AS (
    -- A role is named only where the account does not hold the right itself.
    SELECT f.*, f.via <> current_user AND NOT EXISTS (
               SELECT FROM found o
                WHERE o.what = f.what AND o.shown = f.shown AND o.priv = f.priv
                  AND o.via = current_user) AS only_via
      FROM found f
)
SELECT what,
       coalesce(array_agg(DISTINCT priv) FILTER (WHERE priv IS NOT NULL), '{}'),
       count(DISTINCT shown),
       min(shown),
       coalesce(array_agg(DISTINCT via) FILTER (WHERE only_via), '{}')
  FROM marked
 GROUP BY what
 ORDER BY array_position(ARRAY['table', 'sequence', 'owned relation', 'owned schema',
                               'schema', 'owned database', 'database', 'owned function',
                               'definer function', 'large object'], what)";

/// One row of [`OBJECTS_SQL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objects {
    pub what: String,
    pub privileges: Vec<String>,
    pub count: u64,
    pub example: String,
    pub via: Vec<String>,
}

/// A role the account can become, with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub is_self: bool,
    pub superuser: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub replication: bool,
    pub bypass_rls: bool,
}

/// Asks the server what the account could change. The caller has opened a read-only
/// transaction.
pub async fn read_access(client: &Client) -> Result<Access, tokio_postgres::Error> {
    let row = client.query_one(ACCOUNT_SQL, &[]).await?;
    let user: String = row.get(0);
    let version: i32 = row.get(1);
    let lo_compat = row.get::<_, String>(2) == "on";
    let roles: Vec<Role> = client
        .query(ROLES_SQL, &[])
        .await?
        .iter()
        .map(|r| Role {
            name: r.get(0),
            is_self: r.get(1),
            superuser: r.get(2),
            create_role: r.get(3),
            create_db: r.get(4),
            replication: r.get(5),
            bypass_rls: r.get(6),
        })
        .collect();
    if roles.iter().any(|r| r.is_self && r.superuser) {
        // A superuser can do anything: the rest would only list everything.
        return Ok(classify(&user, &roles, &[], &[], false));
    }
    let names: Vec<&str> = WRITING_ROLES.iter().map(|(n, _)| *n).collect();
    let members: Vec<String> = client
        .query(MEMBERSHIPS_SQL, &[&names])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut privileges = TABLE_PRIVILEGES.to_vec();
    if version >= 170000 {
        privileges.push("MAINTAIN");
    }
    let objects: Vec<Objects> = client
        .query(OBJECTS_SQL, &[&privileges])
        .await?
        .iter()
        .map(|r| Objects {
            what: r.get(0),
            privileges: r.get(1),
            count: r.get::<_, i64>(2).max(0) as u64,
            example: r.get::<_, Option<String>>(3).unwrap_or_default(),
            via: r.get(4),
        })
        .collect();
    Ok(classify(&user, &roles, &members, &objects, lo_compat))
}

/// The findings, from what the server said.
pub fn classify(
    user: &str,
    roles: &[Role],
    members: &[String],
    objects: &[Objects],
    lo_compat: bool,
) -> Access {
    let mut access = Access::read_only(format!("user {user}"));
    let findings = &mut access.findings;
    if roles.iter().any(|r| r.is_self && r.superuser) {
        findings.push("is a superuser".into());
        return access;
    }
    for role in roles {
        let attributes = [
            (role.superuser, "is a superuser"),
            (role.create_role, "can create roles (CREATEROLE)"),
            (role.create_db, "can create databases (CREATEDB)"),
            (
                role.replication,
                "can replicate and create replication slots (REPLICATION)",
            ),
            (role.bypass_rls, "reads past row-level security (BYPASSRLS)"),
        ];
        for (_, what) in attributes.iter().filter(|(has, _)| *has) {
            if role.is_self {
                findings.push(what.to_string());
            } else {
                findings.push(format!("can SET ROLE {}, which {what}", role.name));
            }
        }
    }
    for m in members {
        let what = WRITING_ROLES
            .iter()
            .find(|(n, _)| n == m)
            .map_or("", |(_, w)| w);
        findings.push(format!("is a member of {m} ({what})"));
    }
    for o in objects {
        let privs = in_order(&o.privileges);
        let n = o.count;
        let ex = o.example.as_str();
        let mut finding = match o.what.as_str() {
            "table" => format!("can {}", on_objects(&privs, n, ex, "table", "tables")),
            "sequence" => format!(
                "can advance or set sequences ({})",
                on_objects(&privs, n, ex, "sequence", "sequences")
            ),
            "owned relation" => format!(
                "owns {}",
                objects_text(n, ex, "relation", "relations (tables, views, sequences)")
            ),
            "owned schema" => format!("owns {}", objects_text(n, ex, "schema", "schemas")),
            "schema" => format!("can CREATE in {}", objects_text(n, ex, "schema", "schemas")),
            "owned database" => format!("owns {}", objects_text(n, ex, "database", "databases")),
            "database" => format!(
                "can CREATE schemas in {}",
                objects_text(n, ex, "database", "databases")
            ),
            "owned function" => format!("owns {}", objects_text(n, ex, "function", "functions")),
            "definer function" => format!(
                "can EXECUTE {} (it runs with its owner's rights)",
                objects_text(
                    n,
                    ex,
                    "SECURITY DEFINER function",
                    "SECURITY DEFINER functions"
                )
            ),
            "large object" => format!(
                "can write {}",
                objects_text(n, ex, "large object", "large objects")
            ),
            other => format!("can change {other} {ex}"),
        };
        if !o.via.is_empty() {
            finding.push_str(&format!(" (through role {})", o.via.join(", ")));
        }
        findings.push(finding);
    }
    if lo_compat {
        findings.push("can write every large object (lo_compat_privileges is on)".into());
    }
    access
}

/// `kind example` for one object, `N kinds, e.g. example` for more.
fn objects_text(n: u64, example: &str, one: &str, many: &str) -> String {
    if n <= 1 {
        format!("{one} {example}")
    } else {
        format!("{n} {many}, e.g. {example}")
    }
}

/// Privilege names in the order messages list them (the table privileges first, then
/// anything else as given).
fn in_order(privileges: &[String]) -> String {
    let mut sorted: Vec<&str> = privileges.iter().map(String::as_str).collect();
    let rank = |p: &str| {
        [
            "INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "MAINTAIN", "USAGE",
        ]
        .iter()
        .position(|x| *x == p)
        .unwrap_or(usize::MAX)
    };
    sorted.sort_by_key(|p| rank(p));
    sorted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, is_self: bool) -> Role {
        Role {
            name: name.into(),
            is_self,
            superuser: false,
            create_role: false,
            create_db: false,
            replication: false,
            bypass_rls: false,
        }
    }

    fn objects(
        what: &str,
        privileges: &[&str],
        count: u64,
        example: &str,
        via: &[&str],
    ) -> Objects {
        Objects {
            what: what.into(),
            privileges: privileges.iter().map(|p| p.to_string()).collect(),
            count,
            example: example.into(),
            via: via.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_superuser_is_only_said_to_be_one() {
        let mut me = role("admin", true);
        me.superuser = true;
        me.create_db = true;
        let a = classify(
            "admin",
            &[me],
            &["pg_write_all_data".into()],
            &[objects("table", &["INSERT"], 1, "public.t", &[])],
            true,
        );
        assert_eq!(a.sentences(), ["user admin is a superuser"]);
    }

    #[test]
    fn attributes_memberships_and_objects_are_each_a_reason() {
        let mut me = role("ferry", true);
        me.create_db = true;
        me.bypass_rls = true;
        let mut other = role("admin_role", false);
        other.superuser = true;
        let a = classify(
            "ferry",
            &[me, other],
            &["pg_write_server_files".into()],
            &[
                objects(
                    "table",
                    &["TRUNCATE", "INSERT", "UPDATE"],
                    3,
                    "public.orders",
                    &[],
                ),
                objects("table", &["DELETE"], 1, "public.t", &["writers"]),
                objects("sequence", &["UPDATE", "USAGE"], 1, "public.s", &[]),
                objects("owned relation", &[], 4, "public.a", &[]),
                objects("owned schema", &[], 1, "public", &[]),
                objects("schema", &["CREATE"], 2, "public", &[]),
                objects("owned database", &[], 1, "ferry_test", &[]),
                objects("database", &["CREATE"], 1, "ferry_test", &[]),
                objects(
                    "definer function",
                    &["EXECUTE"],
                    1,
                    "public.f(integer)",
                    &[],
                ),
                objects("large object", &[], 2, "16384", &[]),
            ],
            true,
        );
        assert_eq!(
            a.sentences(),
            [
                "user ferry can create databases (CREATEDB)",
                "user ferry reads past row-level security (BYPASSRLS)",
                "user ferry can SET ROLE admin_role, which is a superuser",
                "user ferry is a member of pg_write_server_files (writes files on the server)",
                "user ferry can INSERT, UPDATE, TRUNCATE on 3 tables, e.g. public.orders",
                "user ferry can DELETE on public.t (through role writers)",
                "user ferry can advance or set sequences (UPDATE, USAGE on public.s)",
                "user ferry owns 4 relations (tables, views, sequences), e.g. public.a",
                "user ferry owns schema public",
                "user ferry can CREATE in 2 schemas, e.g. public",
                "user ferry owns database ferry_test",
                "user ferry can CREATE schemas in database ferry_test",
                "user ferry can EXECUTE SECURITY DEFINER function public.f(integer) (it runs with its owner's rights)",
                "user ferry can write 2 large objects, e.g. 16384",
                "user ferry can write every large object (lo_compat_privileges is on)",
            ]
        );
    }

    #[test]
    fn an_account_with_nothing_to_change_is_read_only() {
        let a = classify("reader", &[role("reader", true)], &[], &[], false);
        assert!(a.is_read_only());
        assert_eq!(a.account, "user reader");
    }
}
