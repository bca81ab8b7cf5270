//! The SQL read-only gate: a first line of defence before a query reaches a database.
//!
//! The query is parsed (sqlparser, with the target database's dialect) and refused unless
//! it is exactly one read-only query: a `SELECT`/`WITH … SELECT`/`VALUES`, an `EXPLAIN`
//! (without `ANALYZE`) of one, or a `SHOW …`. The whole tree is walked, so a
//! data-modifying statement hidden in a CTE or a subquery, `SELECT … INTO`, a locking
//! clause (`FOR UPDATE`/`FOR SHARE`) or a call to a known side-effect function is refused
//! as well. A query that does not parse is refused with the parser's message (fail closed).
//!
//! The parser is not a security boundary: the real enforcement is the database's read-only
//! transaction (SQLite `query_only`) and a SELECT-only account. The gate gives a clear
//! message early, at `ferry validate` and before a run connects.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor, Visit,
    Visitor,
};
use sqlparser::dialect::{MySqlDialect, OracleDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::config::DatasourceSpec;
use crate::params::{self, Style};

/// The SQL dialect a query is parsed with: always the target database's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
    Oracle,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL",
            Dialect::Oracle => "Oracle",
        }
    }

    /// The dialect of a datasource.
    pub fn of(spec: &DatasourceSpec) -> Dialect {
        match spec {
            DatasourceSpec::Sqlite { .. } => Dialect::Sqlite,
            DatasourceSpec::Postgres { .. } => Dialect::Postgres,
            DatasourceSpec::Mysql { .. } => Dialect::Mysql,
            DatasourceSpec::Oracle { .. } => Dialect::Oracle,
        }
    }
}

/// Functions with side effects (writes, files, other sessions, sequences) that a read-only
/// export has no business calling. Matched on the last part of the name, case-insensitively.
const DENIED_FUNCTIONS: &[&str] = &[
    // PostgreSQL: other sessions, sequences, files, large objects, settings, queries as text.
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_promote",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_file_write",
    "pg_notify",
    "set_config",
    "nextval",
    "setval",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_create",
    "lo_from_bytea",
    "lo_put",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    // MySQL/MariaDB: files and named locks (`sleep` is fine: the timeout bounds it).
    "load_file",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "sys_exec",
    "sys_eval",
    // SQLite: loading native code, writing files.
    "load_extension",
    "writefile",
    "edit",
    // Oracle: URL fetches from inside the database.
    "httpuritype",
];

/// Oracle packages that reach files, the network, other sessions, locks or the job queue,
/// or run SQL given as text: any function of theirs is refused (`utl_http.request`,
/// `sys.dbms_pipe.send_message`). Matched on any part of the name but the last.
const DENIED_PACKAGES: &[&str] = &[
    "utl_file",
    "utl_http",
    "utl_tcp",
    "utl_smtp",
    "utl_mail",
    "utl_inaddr",
    "dbms_pipe",
    "dbms_alert",
    "dbms_aq",
    "dbms_lock",
    "dbms_job",
    "dbms_scheduler",
    "dbms_sql",
    "dbms_xmlgen",
];

/// Function-name prefixes that are refused (PostgreSQL `dblink`, `dblink_exec`, …).
const DENIED_PREFIXES: &[&str] = &["dblink", "pg_advisory_"];

/// Checks that `sql` is exactly one read-only query. The error says what was found and why
/// it is refused; it starts with `refused: `.
pub fn check(sql: &str, dialect: Dialect) -> Result<(), String> {
    // `:name` placeholders become what the source sends to the driver (Oracle binds the
    // `:name` form itself, so its text is parsed as it is).
    let sql = match dialect {
        Dialect::Postgres => params::rewrite(sql, Style::Dollar).0,
        Dialect::Sqlite | Dialect::Mysql => params::rewrite(sql, Style::Question).0,
        Dialect::Oracle => sql.to_string(),
    };
    let parsed = match dialect {
        Dialect::Sqlite => Parser::parse_sql(&SQLiteDialect {}, &sql),
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, &sql),
        Dialect::Mysql => Parser::parse_sql(&MySqlDialect {}, &sql),
        Dialect::Oracle => Parser::parse_sql(&OracleDialect {}, &sql),
    };
    let statements = parsed.map_err(|e| {
        format!(
            "refused: the query does not parse as {} SQL: {e}",
            dialect.name()
        )
    })?;
    let statement = match statements.as_slice() {
        [] => return Err("refused: no SQL statement found".into()),
        [one] => one,
        many => {
            return Err(format!(
                "refused: only one read-only query is allowed; found {} statements",
                many.len()
            ));
        }
    };
    let query = match statement {
        Statement::Query(q) => q,
        Statement::Explain {
            analyze,
            statement,
            options,
            ..
        } => {
            let analyze_option = options.iter().flatten().any(|o| {
                o.name.value.eq_ignore_ascii_case("analyze")
                    && !matches!(&o.arg, Some(Expr::Value(v)) if v.to_string().eq_ignore_ascii_case("false"))
            });
            if *analyze || analyze_option {
                return Err(
                    "refused: EXPLAIN ANALYZE runs the statement; only a plain EXPLAIN is allowed"
                        .into(),
                );
            }
            match statement.as_ref() {
                Statement::Query(q) => q,
                other => {
                    return Err(format!(
                        "refused: EXPLAIN is allowed only of a read-only query; found EXPLAIN {}",
                        kind(other)
                    ));
                }
            }
        }
        s if is_show(s) => return Ok(()),
        other => {
            return Err(format!(
                "refused: only a read-only query (SELECT, WITH … SELECT, EXPLAIN or SHOW) is allowed; found {}",
                kind(other)
            ));
        }
    };
    match query.visit(&mut Gate) {
        ControlFlow::Break(reason) => Err(reason),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn is_show(s: &Statement) -> bool {
    matches!(
        s,
        Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowProcessList { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowCharset(_)
            | Statement::ShowObjects(_)
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowCollation { .. }
    )
}

/// The leading keyword(s) of a statement, for messages: `DELETE`, `DROP TABLE`, `SET`.
fn kind(s: &Statement) -> String {
    let text = s.to_string();
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" | "TRUNCATE" => match words.next() {
            Some(w) => format!("{first} {}", w.to_ascii_uppercase()),
            None => first,
        },
        _ => first,
    }
}

fn dml_kind(body: &SetExpr) -> Option<String> {
    match body {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            Some(kind(s))
        }
        _ => None,
    }
}

fn denied(name: &ObjectName) -> Option<String> {
    let last = match name.0.last()? {
        ObjectNamePart::Identifier(id) => id.value.to_ascii_lowercase(),
        ObjectNamePart::Function(_) => return None,
    };
    let hit = DENIED_FUNCTIONS.contains(&last.as_str())
        || DENIED_PREFIXES.iter().any(|p| last.starts_with(p));
    if hit {
        return Some(last);
    }
    let parts = &name.0[..name.0.len() - 1];
    parts
        .iter()
        .any(|part| {
            matches!(part, ObjectNamePart::Identifier(id)
                if DENIED_PACKAGES.contains(&id.value.to_ascii_lowercase().as_str()))
        })
        .then(|| name.to_string().to_ascii_lowercase())
}

fn denied_message(name: &str) -> String {
    format!(
        "refused: the function `{name}` has side effects (writes, files, sequences or other sessions) and is not allowed in a read-only export"
    )
}

/// Walks a query and stops at the first thing a read-only export may not contain.
struct Gate;

impl Visitor for Gate {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                if let Some(k) = dml_kind(&cte.query.body) {
                    return ControlFlow::Break(format!(
                        "refused: a data-modifying CTE ({k}) is not allowed in a read-only export"
                    ));
                }
            }
        }
        if let Some(lock) = query.locks.first() {
            return ControlFlow::Break(format!(
                "refused: a locking clause ({lock}) takes row locks and is not allowed in a read-only export"
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!(
                "refused: a data-modifying statement ({}) inside the query is not allowed in a read-only export",
                kind(other)
            )),
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        if select.into.is_some() {
            return ControlFlow::Break(
                "refused: SELECT … INTO creates a table (or writes variables) and is not allowed in a read-only export"
                    .into(),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        let name = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => name,
            TableFactor::Function { name, .. } => name,
            _ => return ControlFlow::Continue(()),
        };
        match denied(name) {
            Some(f) => ControlFlow::Break(denied_message(&f)),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        if let Expr::Function(f) = expr
            && let Some(name) = denied(&f.name)
        {
            return ControlFlow::Break(denied_message(&name));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
