//! The SQL read-only gate: a first line of defence before a query reaches a database.
//!
//! [`check`] refuses a query unless it is exactly one read-only query: a
//! `SELECT`/`WITH … SELECT`/`VALUES`, an `EXPLAIN` (without `ANALYZE`) of one, or a
//! `SHOW …`. In order:
//!
//! 1. **Size.** At most [`MAX_QUERY_BYTES`] (1 MiB).
//! 2. **Reading as the server reads** (`normalise.rs`): a lexer per dialect decodes
//!    PostgreSQL `U&"…"` names (sqlparser reads them as `U & "…"`), refuses MySQL/MariaDB
//!    executable comments of every form (`/*!…*/`, `/*!50100 …*/`, `/*M!…*/`,
//!    `/*M!100100 …*/`) and optimizer hints, and refuses string literals whose end depends
//!    on the server's backslash setting. It also measures the query: at most
//!    [`MAX_TOKENS`] tokens, [`MAX_SELECTS`] `SELECT`s and a chain depth of [`MAX_DEPTH`]
//!    (a 70,000-term `OR` chain is refused here, before anything is parsed).
//! 3. **Parsing** with the target database's sqlparser dialect, nesting at most
//!    [`MAX_NESTING`] levels; a query that does not parse is refused with the parser's
//!    message (fail closed).
//! 4. **One statement, read-only**, and a walk of the whole tree: a data-modifying
//!    statement in a CTE or subquery, `SELECT … INTO`, locking clauses, `:=` assignments,
//!    Oracle `seq.NEXTVAL`, and calls of functions with effects outside the transaction
//!    (`lists.rs`: per database, matched on the normalised, lowercased last part of the
//!    name, exactly or by family prefix) are refused, each with the reason.
//!
//! [`Mode::Strict`] (`sql_gate: strict`, and SQL mailed in from outside) turns the
//! function denylist into an allowlist: only the pure functions of [`STRICT_ALLOWED`]
//! and the standard operators, one `SELECT`; anything else is refused with its name.
//!
//! The check runs on its own thread with a 64 MiB stack, so no query can overflow the
//! caller's stack; a panic in the parser is a refusal.
//!
//! The parser is not a security boundary: the real enforcement is the database's read-only
//! transaction (SQLite `query_only`), its server-side timeout and a SELECT-only account.
//! The gate gives a clear message early, at `ferry validate` and before a run connects.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement,
    TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{MySqlDialect, OracleDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::{Parser, ParserError};

use crate::config::DatasourceSpec;
use crate::params::{self, Style};

mod lists;
mod normalise;

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
            DatasourceSpec::Postgres(_) => Dialect::Postgres,
            DatasourceSpec::Mysql(_) => Dialect::Mysql,
            DatasourceSpec::Oracle(_) => Dialect::Oracle,
        }
    }
}

/// How strictly a datasource's queries are checked (`sql_gate: true` or `strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One read-only query (or `EXPLAIN`/`SHOW`); functions with effects are refused by
    /// name (the denylists in `lists.rs`), anything else is allowed.
    #[default]
    Standard,
    /// One `SELECT` (`WITH … SELECT`, `VALUES`) calling only the pure functions of
    /// [`STRICT_ALLOWED`] and the standard operators; anything else is refused with its
    /// name. For SQL from outside (mailed-in requests).
    Strict,
}

pub use lists::STRICT_ALLOWED;

/// The longest query the gate reads, in bytes (1 MiB). Longer ones are refused unread.
pub const MAX_QUERY_BYTES: usize = 1 << 20;
// A query file (src/fsread.rs) may be as long as the gate reads, and no longer.
const _: () = assert!(crate::fsread::Kind::Query.limit() == MAX_QUERY_BYTES as u64);

/// The most operators and keywords along one nesting path of a query (see
/// `normalise::Measure`): an upper bound for the depth of its parsed tree. `a OR b OR …`
/// with 10,000 terms is about 20,000.
pub const MAX_DEPTH: usize = 10_000;

/// The most `SELECT`s in one query (each costs about 15 KB of parsed tree).
pub const MAX_SELECTS: usize = 2_000;

/// The most tokens in one query (words, names, numbers, strings, operators; commas and
/// comments are not counted): each becomes at least one node of the parsed tree, about
/// 1.4 KB with its share of the lists holding it. An `IN (…)` list of 100,000 values fits.
pub const MAX_TOKENS: usize = 100_000;

/// How deep brackets and subqueries may nest: sqlparser's recursion limit (its default).
pub const MAX_NESTING: usize = 50;

/// The stack of the thread the gate runs on. The parse (at most [`MAX_NESTING`] levels,
/// about 25 KB each in a debug build), the walk (at most [`MAX_DEPTH`] levels, about
/// 2.3 KB each in a debug build) and dropping the tree fit with room to spare; the
/// pages are only reserved, not used, unless a query needs them.
pub const GATE_STACK_BYTES: usize = 64 << 20;

/// Why the gate refused a query: what kind of problem, and the message that says it
/// (it starts with `refused: `). Mail requests answer with the kind (docs/ingest.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

/// The kinds of [`Refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The statement could change something, or reach outside its transaction.
    NotReadOnly,
    /// The text is not SQL the gate can read (syntax, unterminated strings or comments).
    Unparsable,
    /// Only comments or blanks.
    NoStatement,
    /// More than one statement.
    MultipleStatements,
    /// Over one of the gate's limits (size, tokens, depth, nesting).
    TooComplex,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: String) -> Refusal {
        Refusal { kind, message }
    }

    /// A refusal of the lexer ([`normalise`]): text it cannot read is unparsable;
    /// constructs it refuses (executable comments, hints, strings the server could read
    /// another way) are not read-only.
    fn lexing(message: String) -> Refusal {
        let kind = if message.contains("unterminated") || message.contains("invalid Unicode") {
            RefusalKind::Unparsable
        } else {
            RefusalKind::NotReadOnly
        };
        Refusal { kind, message }
    }
}

/// A refusal whose kind is not said is one of a statement that is not read-only.
impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal::new(RefusalKind::NotReadOnly, message)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks that `sql` is exactly one read-only query, as `mode` defines it. The error says
/// what was found and why it is refused; it starts with `refused: `.
///
/// The check runs on the gate's own thread, which has a large stack, so no query, however
/// deep, can overflow the caller's stack; a panic inside the parser is a refusal too. The
/// thread is started once and reused: starting one per query made loading 10,000 task
/// files take 4.3 s instead of 1.3 s (`benches/scheduler.sh`).
pub fn check(sql: &str, dialect: Dialect, mode: Mode) -> Result<(), Refusal> {
    if sql.len() > MAX_QUERY_BYTES {
        return Err(Refusal::new(
            RefusalKind::TooComplex,
            format!(
                "refused: the query is {} bytes long; the gate reads at most {MAX_QUERY_BYTES} bytes (1 MiB)",
                sql.len()
            ),
        ));
    }
    if ON_GATE_STACK.get() {
        return check_guarded(sql, dialect, mode);
    }
    let Some(gate) = gate_thread() else {
        return Err("refused: cannot start the SQL gate's thread"
            .to_string()
            .into());
    };
    let (reply, answer) = std::sync::mpsc::channel();
    let job = GateJob {
        sql: sql.to_string(),
        dialect,
        mode,
        reply,
    };
    if gate.send(job).is_err() {
        return Err("refused: the SQL gate's thread has stopped"
            .to_string()
            .into());
    }
    answer.recv().unwrap_or_else(|_| {
        Err("refused: the SQL gate's thread has stopped"
            .to_string()
            .into())
    })
}

/// One query for the gate's thread, and where its answer goes.
struct GateJob {
    sql: String,
    dialect: Dialect,
    mode: Mode,
    reply: std::sync::mpsc::Sender<Result<(), Refusal>>,
}

/// The gate's thread (started at the first check): it checks one query after another,
/// each to its end, dropping the parsed tree on its own stack too.
fn gate_thread() -> Option<&'static std::sync::mpsc::Sender<GateJob>> {
    static GATE: std::sync::OnceLock<Option<std::sync::mpsc::Sender<GateJob>>> =
        std::sync::OnceLock::new();
    GATE.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<GateJob>();
        std::thread::Builder::new()
            .name("sqlgate".into())
            .stack_size(GATE_STACK_BYTES)
            .spawn(move || {
                ON_GATE_STACK.set(true);
                for job in queue {
                    let _ = job
                        .reply
                        .send(check_guarded(&job.sql, job.dialect, job.mode));
                }
            })
            .ok()
            .map(|_| jobs)
    })
    .as_ref()
}

thread_local! {
    /// Set on a thread started with the gate's stack ([`on_gate_stack`], the gate's own
    /// thread): checks run right there.
    static ON_GATE_STACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread, started with [`GATE_STACK_BYTES`] of stack, as one where checks run
/// in place (the task-loading threads of a project load).
pub fn on_this_thread() {
    ON_GATE_STACK.set(true);
}

/// Runs `f` on a thread with the gate's stack, where every [`check`] runs in place
/// instead of going to the gate's thread and back. Loading a project checks every task's
/// query: one thread for the whole load costs less than a round trip per query (two
/// thread wake-ups; loading 10,000 task files spent a quarter of its time in them).
/// Without a thread (the system refuses one), `f` runs here and checks go to the gate's
/// thread as usual. A panic in `f` is resumed on the caller's thread.
pub fn on_gate_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if ON_GATE_STACK.get() {
        return f();
    }
    // The closure goes to the thread, or stays here when the thread does not start.
    let slot = std::sync::Mutex::new(Some(f));
    let take = || {
        slot.lock()
            .ok()
            .and_then(|mut f| f.take())
            .expect("run once")
    };
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("sqlgate-load".into())
            .stack_size(GATE_STACK_BYTES)
            .spawn_scoped(scope, || {
                ON_GATE_STACK.set(true);
                take()()
            });
        match spawned {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => take()(),
        }
    })
}

/// [`check_here`], with a parser panic as a refusal (quietly: no raw panic print).
fn check_guarded(sql: &str, dialect: Dialect, mode: Mode) -> Result<(), Refusal> {
    crate::panics::catch(|| check_here(sql, dialect, mode)).unwrap_or_else(|_| {
        Err(Refusal::new(
            RefusalKind::Unparsable,
            "refused: the SQL parser failed on this query".into(),
        ))
    })
}

fn check_here(sql: &str, dialect: Dialect, mode: Mode) -> Result<(), Refusal> {
    // `:name` placeholders become what the source sends to the driver (Oracle binds the
    // `:name` form itself, so its text is parsed as it is).
    let sql = match dialect {
        Dialect::Postgres => params::rewrite(sql, Style::Dollar).0,
        Dialect::Sqlite | Dialect::Mysql => params::rewrite(sql, Style::Question).0,
        Dialect::Oracle => sql.to_string(),
    };
    let (sql, measure) = normalise::normalise(&sql, dialect).map_err(Refusal::lexing)?;
    if measure.tokens > MAX_TOKENS {
        return Err(Refusal::new(
            RefusalKind::TooComplex,
            format!(
                "refused: the query has {} tokens (words, names, numbers, strings, operators; commas not counted); the gate reads at most {MAX_TOKENS}",
                measure.tokens
            ),
        ));
    }
    if measure.depth > MAX_DEPTH {
        return Err(Refusal::new(
            RefusalKind::TooComplex,
            format!(
                "refused: the query is too deeply chained for the gate to check safely (about {} operators and keywords along one path; at most {MAX_DEPTH}): write a long OR chain as IN (…), split a long UNION ALL",
                measure.depth
            ),
        ));
    }
    if measure.selects > MAX_SELECTS {
        return Err(Refusal::new(
            RefusalKind::TooComplex,
            format!(
                "refused: the query has {} SELECTs; the gate checks at most {MAX_SELECTS}",
                measure.selects
            ),
        ));
    }
    let parsed = match dialect {
        Dialect::Sqlite => parse(&SQLiteDialect {}, &sql),
        Dialect::Postgres => parse(&PostgreSqlDialect {}, &sql),
        Dialect::Mysql => parse(&MySqlDialect {}, &sql),
        Dialect::Oracle => parse(&OracleDialect {}, &sql),
    };
    let statements = parsed.map_err(|e| match e {
        ParserError::RecursionLimitExceeded => Refusal::new(
            RefusalKind::TooComplex,
            format!(
                "refused: brackets or subqueries nest deeper than the gate reads ({MAX_NESTING} levels)"
            ),
        ),
        e => Refusal::new(
            RefusalKind::Unparsable,
            format!(
                "refused: the query does not parse as {} SQL: {e}",
                dialect.name()
            ),
        ),
    })?;
    let statement = match statements.as_slice() {
        [] => {
            return Err(Refusal::new(
                RefusalKind::NoStatement,
                "refused: no SQL statement found".into(),
            ));
        }
        [one] => one,
        many => {
            return Err(Refusal::new(
                RefusalKind::MultipleStatements,
                format!(
                    "refused: only one read-only query is allowed; found {} statements",
                    many.len()
                ),
            ));
        }
    };
    let query = match statement {
        Statement::Query(q) => q,
        Statement::Explain { .. } | Statement::ExplainTable { .. } if mode == Mode::Strict => {
            return Err(
                "refused: sql_gate: strict allows only a SELECT; found EXPLAIN"
                    .to_string()
                    .into(),
            );
        }
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
                        .to_string()
                        .into(),
                );
            }
            match statement.as_ref() {
                Statement::Query(q) => q,
                other => {
                    return Err(format!(
                        "refused: EXPLAIN is allowed only of a read-only query; found EXPLAIN {}",
                        kind(other)
                    )
                    .into());
                }
            }
        }
        s if is_show(s) => {
            return match mode {
                Mode::Standard => Ok(()),
                Mode::Strict => Err(format!(
                    "refused: sql_gate: strict allows only a SELECT; found {}",
                    kind(s)
                )
                .into()),
            };
        }
        other => {
            let k = kind(other);
            let why = if k == "SET" {
                " (a setting can switch off the server's timeout or read-only mode)"
            } else {
                ""
            };
            return Err(format!(
                "refused: only a read-only query (SELECT, WITH … SELECT, EXPLAIN or SHOW) is allowed; found {k}{why}"
            )
            .into());
        }
    };
    let mut gate = Gate {
        mode,
        refusal: None,
        depth: 0,
    };
    let _ = query.visit(&mut gate);
    match gate.refusal {
        Some(reason) => Err(reason.into()),
        None => Ok(()),
    }
}

fn parse<D: sqlparser::dialect::Dialect>(
    dialect: &D,
    sql: &str,
) -> Result<Vec<Statement>, ParserError> {
    Parser::new(dialect)
        .with_recursion_limit(MAX_NESTING)
        .try_with_sql(sql)?
        .parse_statements()
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
///
/// Printing a statement recurses once per level of its expressions, so the statements
/// that carry expressions are named without printing them, and the others are printed
/// into a buffer that stops after a few words.
fn kind(s: &Statement) -> String {
    let known = match s {
        Statement::Query(_) => "SELECT",
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge(_) => "MERGE",
        Statement::Set(_) => "SET",
        Statement::Call(_) => "CALL",
        Statement::Copy { .. } => "COPY",
        Statement::Execute { .. } => "EXECUTE",
        Statement::Prepare { .. } => "PREPARE",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::CreateView(_) => "CREATE VIEW",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::Truncate(_) => "TRUNCATE",
        Statement::Drop { object_type, .. } => return format!("DROP {object_type}"),
        _ => "",
    };
    if !known.is_empty() {
        return known.into();
    }
    let mut text = Capped(String::new());
    let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{s}"));
    let mut words = text.0.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" | "TRUNCATE" => match words.next() {
            Some(w) => format!("{first} {}", w.to_ascii_uppercase()),
            None => first,
        },
        _ => first,
    }
}

/// A buffer that refuses writes past 32 bytes, which ends the printing early.
struct Capped(String);

impl std::fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = 32 - self.0.len();
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let cut = (0..=room)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        self.0.push_str(&s[..cut]);
        Err(std::fmt::Error)
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

/// The (lowercase) name a function is called by, and whether it is qualified by a schema
/// or package; `None` for a computed name (dialect-specific `IDENTIFIER(…)` forms).
fn function_name(name: &ObjectName) -> Option<(String, bool)> {
    match name.0.last()? {
        ObjectNamePart::Identifier(id) => Some((id.value.to_lowercase(), name.0.len() > 1)),
        ObjectNamePart::Function(_) => None,
    }
}

/// Why a call of `name` is refused in `mode`, if it is.
fn refuse_call(name: &ObjectName, mode: Mode) -> Option<String> {
    let shown = name.to_string();
    let Some((last, qualified)) = function_name(name) else {
        return Some(format!(
            "refused: the function name `{shown}` is computed, so the gate cannot tell what it calls"
        ));
    };
    if let Some(effect) = lists::denied(&last) {
        return Some(format!(
            "refused: the function `{last}` {} and is not allowed in a read-only export",
            effect.why()
        ));
    }
    let package = name.0[..name.0.len() - 1]
        .iter()
        .find_map(|part| match part {
            ObjectNamePart::Identifier(id)
                if lists::ORACLE_PACKAGES.contains(&id.value.to_lowercase().as_str()) =>
            {
                Some(id.value.to_lowercase())
            }
            _ => None,
        });
    if let Some(package) = package {
        return Some(format!(
            "refused: the function `{}` belongs to the package `{package}`, which reaches files, the network, other sessions or runs SQL given as text, and is not allowed in a read-only export",
            shown.to_lowercase()
        ));
    }
    if mode == Mode::Strict && (qualified || !lists::STRICT_ALLOWED.contains(&last.as_str())) {
        return Some(format!(
            "refused: the function `{}` is not one of the pure functions sql_gate: strict allows (aggregates, string, math, date/time, conditional, cast and JSON-reading functions; see docs/configuration.md)",
            shown.to_lowercase()
        ));
    }
    None
}

/// Walks a query and stops at the first thing a read-only export may not contain.
///
/// The reason is kept in the visitor, not carried in the `Break` value: in a debug build
/// every `ControlFlow` temporary of sqlparser's (large, recursive) `visit` functions gets
/// its own stack slot, and a `String` there makes each level of recursion about 7 times
/// bigger (15.6 KB instead of 2.3 KB, measured).
struct Gate {
    mode: Mode,
    refusal: Option<String>,
    /// Expressions entered and not yet left: the walk stops before it recurses deeper
    /// than [`MAX_DEPTH`] (the lexing pass already refuses deeper queries; this keeps the
    /// bound if that estimate is ever wrong).
    depth: usize,
}

impl Gate {
    fn refuse(&mut self, reason: impl Into<String>) -> ControlFlow<()> {
        self.refusal = Some(reason.into());
        ControlFlow::Break(())
    }
}

impl Visitor for Gate {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                if let Some(k) = dml_kind(&cte.query.body) {
                    return self.refuse(format!(
                        "refused: a data-modifying CTE ({k}) is not allowed in a read-only export"
                    ));
                }
            }
        }
        if let Some(lock) = query.locks.first() {
            return self.refuse(format!(
                "refused: a locking clause ({lock}) takes row locks and is not allowed in a read-only export"
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            other => self.refuse(format!(
                "refused: a data-modifying statement ({}) inside the query is not allowed in a read-only export",
                kind(other)
            )),
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.into.is_some() {
            return self.refuse(
                "refused: SELECT … INTO creates a table (or writes variables) and is not allowed in a read-only export",
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let name = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => name,
            TableFactor::Function { name, .. } => name,
            _ => return ControlFlow::Continue(()),
        };
        match refuse_call(name, self.mode) {
            Some(reason) => self.refuse(reason),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.refuse(format!(
                "refused: expressions nest deeper than the gate checks ({MAX_DEPTH} levels)"
            ));
        }
        let refusal = match expr {
            Expr::Function(f) => refuse_call(&f.name, self.mode),
            // MySQL `@v := …` assigns a user variable: session state.
            Expr::BinaryOp {
                op: BinaryOperator::Assignment,
                ..
            } => Some(
                "refused: `:=` assigns a session variable and is not allowed in a read-only export"
                    .into(),
            ),
            Expr::BinaryOp {
                op: op @ (BinaryOperator::PGCustomBinaryOperator(_) | BinaryOperator::Custom(_)),
                ..
            } if self.mode == Mode::Strict => Some(format!(
                "refused: the operator `{op}` is not one of the standard operators sql_gate: strict allows"
            )),
            // Oracle (and MariaDB in Oracle mode) `seq.NEXTVAL` advances a sequence.
            Expr::CompoundIdentifier(parts)
                if parts
                    .last()
                    .is_some_and(|p| p.value.eq_ignore_ascii_case("nextval")) =>
            {
                Some(format!(
                    "refused: `{expr}` advances a sequence (not undone by a rollback) and is not allowed in a read-only export"
                ))
            }
            _ => None,
        };
        match refusal {
            Some(reason) => self.refuse(reason),
            None => ControlFlow::Continue(()),
        }
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;

impl crate::config::Config {
    /// The gate's dialect and mode for a datasource's queries, or `None` when the
    /// datasource is unknown or has `sql_gate: false`.
    pub fn sql_gate(&self, datasource: &str) -> Option<(Dialect, Mode)> {
        if self.sql_gate_off.contains(datasource) {
            return None;
        }
        let mode = if self.sql_gate_strict.contains(datasource) {
            Mode::Strict
        } else {
            Mode::Standard
        };
        self.datasources
            .get(datasource)
            .map(|spec| (Dialect::of(spec), mode))
    }
}

/// A task's query against the gate of its datasource `source` (nothing when the
/// datasource has `sql_gate: false` or is unknown): the refusal's reason.
pub fn check_task_query(
    config: &crate::config::Config,
    source: &str,
    sql: &str,
) -> Result<(), String> {
    match config.sql_gate(source) {
        Some((dialect, mode)) => check(sql, dialect, mode).map_err(|r| r.message),
        None => Ok(()),
    }
}
