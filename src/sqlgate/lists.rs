//! The gate's function lists: per database, the functions whose effects outlast the
//! read-only transaction or reach beyond it (the denylist of the default mode), and the
//! pure functions `sql_gate: strict` allows (its allowlist).
//!
//! Names are matched case-insensitively on the last part of the (normalised) name, so
//! `pg_catalog."PG_TERMINATE_BACKEND"` and `U&"pg\005fterminate\005fbackend"` match
//! `pg_terminate_backend`. A name ending in `*` is a family matched by prefix, used only
//! where every member of the family has effects (`pg_advisory_*`, `lo_*`). A query on any
//! datasource is checked against every database's list: a name with effects on one
//! server is refused on all (a MySQL-protocol datasource may be any such server, and
//! names travel through foreign tables).

/// What a denied function does that a read-only export must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    Signal,
    Replication,
    Statistics,
    Lock,
    LargeObject,
    File,
    Network,
    Notify,
    Sequence,
    Setting,
    Session,
    SqlText,
    Storage,
    Code,
}

impl Effect {
    pub(super) fn why(self) -> &'static str {
        match self {
            Effect::Signal => "signals or controls server processes (backends, WAL, backups)",
            Effect::Replication => "changes replication state (slots, origins, WAL positions)",
            Effect::Statistics => "resets or rewrites the server's statistics",
            Effect::Lock => "takes or releases a lock that outlives the query",
            Effect::LargeObject => "creates, changes or exports large objects",
            Effect::File => "reads, lists or writes files on the database server",
            Effect::Network => "opens connections to other servers",
            Effect::Notify => "sends a notification to other sessions",
            Effect::Sequence => "advances or sets a sequence (not undone by a rollback)",
            Effect::Setting => "changes a server setting",
            Effect::Session => "changes the session's state",
            Effect::SqlText => "runs SQL given as text, which the gate cannot check",
            Effect::Storage => "writes to tables, indexes or the catalog",
            Effect::Code => "runs code on the database server",
        }
    }
}

use Effect::*;

/// PostgreSQL 14–17 (and the common extensions: dblink, adminpack, pg_stat_statements,
/// tablefunc, xml2, pg_visibility, pg_prewarm, postgres_fdw, pgsql-http, pg_net).
pub(super) const POSTGRES: &[(&str, Effect)] = &[
    // Other backends and the server itself.
    ("pg_cancel_backend", Signal),
    ("pg_terminate_backend", Signal),
    ("pg_reload_conf", Signal),
    ("pg_rotate_logfile", Signal),
    ("pg_log_backend_memory_contexts", Signal),
    ("pg_log_standby_snapshot", Signal),
    ("pg_promote", Signal),
    ("pg_switch_wal", Signal),
    ("pg_switch_xlog", Signal),
    ("pg_wal_replay_*", Signal),
    ("pg_backup_*", Signal),
    ("pg_start_backup", Signal),
    ("pg_stop_backup", Signal),
    // Replication.
    ("pg_create_*", Replication), // physical/logical slots, restore points
    ("pg_drop_replication_slot", Replication),
    ("pg_copy_*", Replication), // pg_copy_physical/logical_replication_slot
    ("pg_replication_slot_advance", Replication),
    ("pg_sync_replication_slots", Replication),
    ("pg_logical_*", Replication), // slot get/peek changes (consumes), emit_message
    ("pg_replication_origin_create", Replication),
    ("pg_replication_origin_drop", Replication),
    ("pg_replication_origin_advance", Replication),
    ("pg_replication_origin_session_setup", Replication),
    ("pg_replication_origin_session_reset", Replication),
    ("pg_replication_origin_xact_setup", Replication),
    ("pg_replication_origin_xact_reset", Replication),
    // Statistics.
    ("pg_stat_reset*", Statistics), // and _shared, _single_*_counters, _slru, _replication_slot, _subscription_stats
    ("pg_stat_statements_reset", Statistics),
    ("pg_stat_force_next_flush", Statistics),
    ("pg_stat_clear_snapshot", Statistics),
    ("pg_clear_relation_stats", Statistics),
    ("pg_clear_attribute_stats", Statistics),
    ("pg_restore_relation_stats", Statistics),
    ("pg_restore_attribute_stats", Statistics),
    // Locks.
    ("pg_advisory_*", Lock),
    ("pg_try_advisory_*", Lock),
    // Large objects.
    ("lo_*", LargeObject),
    ("loread", LargeObject),
    ("lowrite", LargeObject),
    // Files.
    ("pg_read_*", File), // pg_read_file, pg_read_binary_file
    ("pg_ls_*", File),   // pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, …
    ("pg_stat_file", File),
    ("pg_current_logfile", File),
    ("pg_file_*", File), // adminpack: pg_file_write, pg_file_rename, pg_file_unlink, …
    ("pg_logdir_ls", File),
    // Network.
    ("dblink*", Network),
    ("postgres_fdw_disconnect*", Network),
    ("http", Network),
    ("http_*", Network),
    // Notifications, sequences, settings, session state, transaction ids.
    ("pg_notify", Notify),
    ("nextval", Sequence),
    ("setval", Sequence),
    ("set_config", Setting),
    ("setseed", Session),
    ("pg_export_snapshot", Session),
    ("txid_current", Storage),
    ("pg_current_xact_id", Storage),
    // Writes below SQL: catalog, indexes, visibility map, buffer cache.
    ("pg_nextoid", Storage),
    ("pg_import_system_collations", Storage),
    ("brin_summarize_new_values", Storage),
    ("brin_summarize_range", Storage),
    ("brin_desummarize_range", Storage),
    ("gin_clean_pending_list", Storage),
    ("pg_truncate_visibility_map", Storage),
    ("pg_prewarm", Storage),
    // SQL given as text.
    ("query_to_xml", SqlText),
    ("query_to_xmlschema", SqlText),
    ("query_to_xml_and_xmlschema", SqlText),
    ("cursor_to_xml", SqlText),
    ("cursor_to_xmlschema", SqlText),
    ("ts_stat", SqlText),
    ("crosstab*", SqlText),
    ("connectby", SqlText),
    ("xpath_table", SqlText),
];

/// MySQL 8 and MariaDB (and common UDF libraries: lib_mysqludf_sys, Spider, keyring,
/// audit log, version tokens, the locking service).
pub(super) const MYSQL: &[(&str, Effect)] = &[
    ("load_file", File),
    ("get_lock", Lock),
    ("release_lock", Lock),
    ("release_all_locks", Lock),
    ("service_get_read_locks", Lock),
    ("service_get_write_locks", Lock),
    ("service_release_locks", Lock),
    ("master_pos_wait", Replication),
    ("source_pos_wait", Replication),
    ("master_gtid_wait", Replication),
    ("wait_for_executed_gtid_set", Replication),
    ("wait_until_sql_thread_after_gtids", Replication),
    ("nextval", Sequence),
    ("setval", Sequence),
    ("last_insert_id", Session),
    ("sys_exec", Code),
    ("sys_eval", Code),
    ("sys_get", Session),
    ("sys_set", Session),
    ("spider_*", Network),
    ("keyring_*", Setting),
    ("audit_log_*", Setting),
    ("version_tokens_*", Setting),
];

/// SQLite (with the CLI's and common extensions' functions).
pub(super) const SQLITE: &[(&str, Effect)] = &[
    ("load_extension", Code),
    ("writefile", File),
    ("readfile", File),
    ("edit", Code),
    ("fsdir", File),
    ("zipfile", File),
    ("fts3_tokenizer", Code),
];

/// Oracle functions (packages are in [`ORACLE_PACKAGES`]).
pub(super) const ORACLE: &[(&str, Effect)] = &[("httpuritype", Network)];

/// Oracle packages that reach files, the network, other sessions, locks or the job
/// queue, or run SQL given as text: any function of theirs is refused
/// (`utl_http.request`, `sys.dbms_pipe.send_message`). Matched on any part of the name
/// but the last.
pub(super) const ORACLE_PACKAGES: &[&str] = &[
    "utl_file",
    "utl_http",
    "utl_tcp",
    "utl_smtp",
    "utl_mail",
    "utl_inaddr",
    "utl_dbws",
    "dbms_pipe",
    "dbms_alert",
    "dbms_aq",
    "dbms_lock",
    "dbms_job",
    "dbms_scheduler",
    "dbms_sql",
    "dbms_xmlgen",
    "dbms_xmlquery",
    "dbms_ldap",
    "dbms_java",
];

/// The denylist entry a (lowercase) function name matches, in any database's list.
pub(super) fn denied(name: &str) -> Option<Effect> {
    [POSTGRES, MYSQL, SQLITE, ORACLE]
        .iter()
        .flat_map(|list| list.iter())
        .find(|(pattern, _)| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        })
        .map(|&(_, effect)| effect)
}

/// `sql_gate: strict`: the only functions allowed, pure ones (results depend only on
/// the arguments, the rows and the clock). Anything else is refused with its name.
pub const STRICT_ALLOWED: &[&str] = &[
    // Aggregates.
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "string_agg",
    "array_agg",
    "group_concat",
    "listagg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "json_arrayagg",
    "json_objectagg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "std",
    "variance",
    "var_pop",
    "var_samp",
    "median",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "corr",
    "covar_pop",
    "covar_samp",
    "any_value",
    "grouping",
    // Window functions.
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // Strings.
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "lower",
    "upper",
    "lcase",
    "ucase",
    "initcap",
    "substr",
    "substring",
    "substring_index",
    "left",
    "right",
    "lpad",
    "rpad",
    "ltrim",
    "rtrim",
    "btrim",
    "trim",
    "replace",
    "translate",
    "reverse",
    "repeat",
    "concat",
    "concat_ws",
    "position",
    "strpos",
    "instr",
    "locate",
    "split_part",
    "format",
    "chr",
    "char",
    "ascii",
    "md5",
    "sha1",
    "sha2",
    "encode",
    "regexp_replace",
    "regexp_substr",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_instr",
    "regexp_count",
    "regexp_split_to_table",
    "regexp_split_to_array",
    "starts_with",
    "space",
    "field",
    "find_in_set",
    "elt",
    "hex",
    "unhex",
    "soundex",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    // Numbers.
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "truncate",
    "mod",
    "power",
    "pow",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log2",
    "log10",
    "sign",
    "pi",
    "degrees",
    "radians",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "cot",
    "div",
    "width_bucket",
    "gcd",
    "lcm",
    // Dates and times.
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "sysdate",
    "systimestamp",
    "curdate",
    "curtime",
    "utc_date",
    "utc_time",
    "utc_timestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "date_trunc",
    "date_part",
    "date_bin",
    "extract",
    "age",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "to_date",
    "to_timestamp",
    "to_char",
    "to_number",
    "date_add",
    "date_sub",
    "adddate",
    "subdate",
    "addtime",
    "subtime",
    "datediff",
    "timediff",
    "timestampdiff",
    "timestampadd",
    "date_format",
    "time_format",
    "str_to_date",
    "from_unixtime",
    "unix_timestamp",
    "year",
    "quarter",
    "month",
    "monthname",
    "week",
    "weekofyear",
    "weekday",
    "yearweek",
    "day",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "dayname",
    "hour",
    "minute",
    "second",
    "microsecond",
    "last_day",
    "add_months",
    "months_between",
    "next_day",
    "makedate",
    "maketime",
    "sec_to_time",
    "time_to_sec",
    "to_days",
    "from_days",
    "convert_tz",
    "isfinite",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "generate_series",
    // Conditionals.
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "if",
    "ifnull",
    "isnull",
    "nvl",
    "nvl2",
    "decode",
    "iif",
    // JSON (reading and building values) and arrays.
    "json_extract",
    "json_unquote",
    "json_value",
    "json_query",
    "json_contains",
    "json_contains_path",
    "json_keys",
    "json_length",
    "json_type",
    "json_valid",
    "json_exists",
    "json_search",
    "json_overlaps",
    "json_depth",
    "json_quote",
    "json_pretty",
    "json_array_length",
    "jsonb_array_length",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "json_typeof",
    "jsonb_typeof",
    "jsonb_path_query",
    "jsonb_path_query_first",
    "jsonb_path_query_array",
    "jsonb_path_exists",
    "jsonb_path_match",
    "json_object_keys",
    "jsonb_object_keys",
    "json_each",
    "jsonb_each",
    "json_each_text",
    "jsonb_each_text",
    "json_array_elements",
    "jsonb_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements_text",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "json_object",
    "json_array",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "array_to_json",
    "jsonb_pretty",
    "json_strip_nulls",
    "jsonb_strip_nulls",
    "array_length",
    "cardinality",
    "unnest",
    "array_to_string",
    "string_to_array",
    "array_position",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_lowercase_and_have_no_duplicates() {
        for list in [POSTGRES, MYSQL, SQLITE, ORACLE] {
            let mut seen = std::collections::BTreeSet::new();
            for (name, _) in list {
                assert_eq!(*name, name.to_ascii_lowercase());
                assert!(seen.insert(name), "{name} twice");
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in STRICT_ALLOWED {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(seen.insert(name), "{name} twice");
            assert!(denied(name).is_none(), "{name} is allowed and denied");
        }
    }

    #[test]
    fn families_match_by_prefix_only_where_marked() {
        assert_eq!(denied("pg_try_advisory_lock"), Some(Lock));
        assert_eq!(denied("pg_try_advisory_xact_lock_shared"), Some(Lock));
        assert_eq!(denied("pg_stat_reset_shared"), Some(Statistics));
        assert_eq!(
            denied("pg_create_physical_replication_slot"),
            Some(Replication)
        );
        assert_eq!(denied("lo_export"), Some(LargeObject));
        assert_eq!(denied("nextval"), Some(Sequence));
        assert_eq!(denied("nextvalue"), None);
        assert_eq!(denied("lower"), None);
        assert_eq!(denied("pg_stat_get_live_tuples"), None);
        assert_eq!(denied("pg_replication_origin_oid"), None);
    }
}
