//! Least privilege, checked (issue 12 item 2): the read-only account recipes of
//! docs/configuration.md ("Creating a read-only account") are run as written against the
//! real PostgreSQL and MariaDB (through the superuser accounts of
//! `scripts/test-services.sh`); `ferry sources test` then finds the new accounts read-only
//! and the owner and superuser accounts not, with their reasons; a task on a
//! `require_read_only` datasource fails with the reason on the owner account, before its
//! query runs, and runs on the recipe's account. Under `CI=true` the servers must be there.

use crate::support::{Daemon, Project, describe, only_task, repo, stdout};

/// The SQL block after `<!-- recipe: NAME -->` in docs/configuration.md.
fn recipe(name: &str) -> String {
    let docs = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let marker = format!("<!-- recipe: {name} -->\n```sql\n");
    let start = docs
        .find(&marker)
        .unwrap_or_else(|| panic!("no `{marker}` in docs/configuration.md"))
        + marker.len();
    let len = docs[start..]
        .find("```")
        .expect("the recipe's closing fence");
    docs[start..start + len].to_string()
}

/// The PostgreSQL recipe for account `reader` with `password` on the test database, whose
/// tables the test account `ferry` owns.
fn pg_recipe(reader: &str, password: &str) -> String {
    recipe("postgres")
        .replace("ferry_reader", reader)
        .replace("change-me", password)
        .replace("DATABASE sales", "DATABASE ferry_test")
        .replace("app_owner", "ferry")
}

/// The test account's URL (`base`) and the superuser URL from `var`, when the test
/// server runs (under `CI=true` it must).
fn urls(base: Option<String>, var: &str) -> Option<(String, String)> {
    let base = base?;
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some((base, u)),
        _ => {
            crate::support::skip(
                "a read-only recipe account",
                &format!("{var} is not set (run the tests with scripts/test-services.sh)"),
            );
            None
        }
    }
}

/// `url` logging in as `user` with `password` instead.
fn as_account(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.rsplit_once('@').unwrap().1;
    format!("{scheme}://{user}:{password}@{host}")
}

/// A project with three datasources of `kind` — `owner` (the test account, which owns its
/// database) and `reader` (`reader_url`), both with `require_read_only`, and `root` (the
/// superuser) — and a task `t_NAME` per datasource that exports `query`.
fn project(kind: &str, env: &str, reader_url: &str, query: &str) -> Project {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "timezone: UTC\nstore: {{ url: \"sqlite://data/ferry.db\" }}\ndatasources:\n  \
             owner: {{ type: {kind}, url: \"${{FERRY_TEST_{env}_URL}}\", require_read_only: true }}\n  \
             reader: {{ type: {kind}, url: \"{reader_url}\", require_read_only: true }}\n  \
             root: {{ type: {kind}, url: \"${{FERRY_TEST_{env}_SUPER_URL}}\" }}\n"
        ),
    );
    for (i, name) in ["owner", "reader", "root"].into_iter().enumerate() {
        let body = format!(
            "schedule: \"0 3 * * *\"\nsource: {name}\nquery: {query}\noutput: {{ format: csv, file_name: \"t_{name}\" }}\n"
        );
        if i == 0 {
            only_task(&p, &format!("t_{name}"), &body);
        } else {
            p.write(&format!("tasks/t_{name}.yaml"), &body);
        }
    }
    p
}

/// The lines of `ferry sources test NAME` after the first, once its exit code and the
/// start of its first line are as expected.
fn verdict(p: &Project, name: &str, code: i32, first: &str) -> Vec<String> {
    let out = p.ferry(&["sources", "test", name]);
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    let text = stdout(&out);
    let mut lines = text.lines().map(str::to_string);
    let head = lines.next().unwrap_or_default();
    assert!(head.starts_with(first), "{text}");
    lines.collect()
}

/// `t_owner` fails with `refusal` and each of `reasons` in its error and exports nothing;
/// `t_reader` exports `csv`.
fn owner_refused_reader_runs(p: &Project, refusal: &str, reasons: &[&str], csv: &str) {
    let run = p.run_json("t_owner", &[], 1);
    let error = run["error"].as_str().unwrap();
    assert!(error.contains(refusal), "{error}");
    for r in reasons {
        assert!(error.contains(r), "no `{r}` in {error}");
    }
    assert!(exported(p, "owner").is_none());
    let run = p.run_json("t_reader", &[], 0);
    assert_eq!(run["rows"], 1, "{run}");
    assert_eq!(exported(p, "reader").as_deref(), Some(csv));
}

/// The exported CSV of task `t_NAME`, if the run wrote one.
fn exported(p: &Project, name: &str) -> Option<String> {
    p.files("exports")
        .into_iter()
        .find(|f| f.ends_with(&format!("t_{name}.csv")))
        .map(|f| std::fs::read_to_string(p.path().join("exports").join(f)).unwrap())
}

#[test]
fn postgres_recipe_makes_a_read_only_account_and_owners_are_refused() {
    let Some((owner_url, super_url)) = urls(crate::postgres::pg_url(), "FERRY_TEST_PG_SUPER_URL")
    else {
        return;
    };
    let reader = format!("ferry_reader_{}", std::process::id());
    let password = format!("ro-{}", std::process::id());
    // A table the owner made before the recipe, and one after it (default privileges).
    crate::postgres::exec(
        &owner_url,
        "DROP TABLE IF EXISTS ro_before, ro_after;
         CREATE TABLE ro_before (id int PRIMARY KEY, label text);
         INSERT INTO ro_before VALUES (1, 'before');",
    );
    let sql = pg_recipe(&reader, &password);
    crate::postgres::exec(&super_url, &sql);
    crate::postgres::exec(
        &owner_url,
        "CREATE TABLE ro_after (id int PRIMARY KEY, label text);
         INSERT INTO ro_after VALUES (2, 'after');",
    );
    let reader_url = as_account(&owner_url, &reader, &password);
    let p = project(
        "postgres",
        "PG",
        &reader_url,
        "SELECT b.id, b.label, a.label AS later FROM ro_before b, ro_after a",
    );

    let rest = verdict(&p, "reader", 0, "ok   reader (postgres): PostgreSQL ");
    assert_eq!(
        rest,
        [format!("     read-only: user {reader} can only read")]
    );

    let rest = verdict(&p, "owner", 1, "FAIL owner (postgres): PostgreSQL ");
    for reason in [
        "     not read-only: user ferry owns database ferry_test",
        "     not read-only: user ferry can CREATE in schema public",
        "     not read-only: user ferry owns schema public",
    ] {
        assert!(
            rest.iter().any(|l| l == reason),
            "no `{reason}` in {rest:#?}"
        );
    }
    assert!(
        rest.iter().any(|l| l.starts_with(
            "     not read-only: user ferry can INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER on "
        )),
        "{rest:#?}"
    );
    assert!(
        rest.last()
            .unwrap()
            .starts_with("     require_read_only is set: tasks on owner fail"),
        "{rest:#?}"
    );

    let rest = verdict(&p, "root", 0, "ok   root (postgres): ");
    assert_eq!(
        rest,
        [
            "     not read-only: user ferry_super is a superuser",
            "     give ferry an account that can only read (see docs/configuration.md#read-only-accounts)"
        ]
    );

    // The owner's run fails with the reasons and exports nothing; the reader's runs.
    owner_refused_reader_runs(
        &p,
        "datasource `owner`: require_read_only is set, but user ferry is not read-only (",
        &["owns database ferry_test", "can CREATE in schema public"],
        "id,label,later\n1,before,after\n",
    );
}

#[test]
fn mariadb_recipe_makes_a_read_only_account_and_owners_are_refused() {
    let Some((owner_url, super_url)) = urls(crate::mysql::my_url(), "FERRY_TEST_MYSQL_SUPER_URL")
    else {
        return;
    };
    let reader = format!("ferry_reader_{}", std::process::id());
    let password = format!("ro-{}", std::process::id());
    crate::mysql::exec(
        &owner_url,
        "DROP TABLE IF EXISTS ro_items;\nCREATE TABLE ro_items (id INT PRIMARY KEY, label VARCHAR(20));\nINSERT INTO ro_items VALUES (1, 'one');\n",
    );
    crate::mysql::exec(
        &super_url,
        &format!("DROP USER IF EXISTS '{reader}'@'127.0.0.1';\n"),
    );
    let sql = recipe("mysql")
        .replace("ferry_reader", &reader)
        .replace("change-me", &password)
        .replace("10.0.0.5", "127.0.0.1")
        .replace(" sales.*", " ferry_test.*");
    crate::mysql::exec(&super_url, &sql);
    let reader_url = as_account(&owner_url, &reader, &password);
    let p = project(
        "mysql",
        "MYSQL",
        &reader_url,
        "SELECT id, label FROM ro_items",
    );

    let rest = verdict(&p, "reader", 0, "ok   reader (mysql): MariaDB ");
    assert_eq!(
        rest,
        [format!(
            "     read-only: user '{reader}'@'127.0.0.1' can only read"
        )]
    );

    let rest = verdict(&p, "owner", 1, "FAIL owner (mysql): MariaDB ");
    assert_eq!(
        rest[..3],
        [
            "     not read-only: user 'ferry'@'127.0.0.1' has CONNECTION ADMIN on *.*",
            "     not read-only: user 'ferry'@'127.0.0.1' has the PROCESS privilege (sees every session's statements)",
            "     not read-only: user 'ferry'@'127.0.0.1' has ALL PRIVILEGES on `ferry_test`.*",
        ]
    );

    let rest = verdict(&p, "root", 0, "ok   root (mysql): MariaDB ");
    assert_eq!(
        rest[..2],
        [
            "     not read-only: user 'ferry_super'@'127.0.0.1' has ALL PRIVILEGES on *.*",
            "     not read-only: user 'ferry_super'@'127.0.0.1' can grant its privileges on *.* to others (WITH GRANT OPTION)",
        ]
    );

    owner_refused_reader_runs(
        &p,
        "datasource `owner`: require_read_only is set, but user 'ferry'@'127.0.0.1' is not read-only (",
        &[
            "has ALL PRIVILEGES on `ferry_test`.*",
            "has the PROCESS privilege",
        ],
        "id,label\n1,one\n",
    );
}

#[test]
fn sqlite_with_require_read_only_runs() {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &config.replace(
            "seed_sql: seed.sql }",
            "seed_sql: seed.sql, require_read_only: true }",
        ),
    );
    let out = p.ferry(&["sources", "test"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let run = p.run_json("types_csv", &["--no-notify"], 0);
    assert_eq!(run["status"], "succeeded", "{run}");
}

/// Moves the daemon to the fire at `t` and waits for its run to end.
async fn fire(d: &mut Daemon, t: &str) -> ferry::store::RunRecord {
    let t: chrono::DateTime<chrono::Utc> = t.parse().unwrap();
    d.advance_to(t).await;
    let runs = d
        .wait_runs("t", &format!("the fire at {t}"), |runs| {
            runs.last()
                .is_some_and(|r| r.scheduled_at == t && r.status != ferry::store::Status::Running)
        })
        .await;
    runs.last().unwrap().clone()
}

/// The verdict is kept 10 minutes of the daemon's clock and forgotten on reload; a refusal
/// is not kept. On the real PostgreSQL with the docs' read-only account: it runs; given
/// INSERT, it still runs within the 10 minutes, and fails after them; once INSERT is taken
/// back it runs at once; given INSERT again, a reload makes the next run check and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_a_read_only_verdict_ten_minutes_and_rechecks_on_reload() {
    use ferry::daemon::Event;
    use ferry::store::Status;

    let Some((owner_url, super_url)) = urls(crate::postgres::pg_url(), "FERRY_TEST_PG_SUPER_URL")
    else {
        return;
    };
    let reader = format!("ferry_cache_{}", std::process::id());
    let password = format!("ro-{}", std::process::id());
    let sql = pg_recipe(&reader, &password);
    let (owner, admin) = (owner_url.clone(), super_url.clone());
    tokio::task::spawn_blocking(move || {
        crate::postgres::exec(
            &owner,
            "CREATE TABLE IF NOT EXISTS ro_cache (id int); TRUNCATE ro_cache; INSERT INTO ro_cache VALUES (1);",
        );
        crate::postgres::exec(&admin, &sql);
    })
    .await
    .unwrap();
    let grant = |sql: String| {
        let admin = super_url.clone();
        tokio::task::spawn_blocking(move || crate::postgres::exec(&admin, &sql))
    };

    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "timezone: UTC\nstore: {{ url: \"sqlite://data/ferry.db\" }}\ndatasources:\n  \
             reader: {{ type: postgres, url: \"{}\", require_read_only: true }}\n",
            as_account(&owner_url, &reader, &password)
        ),
    );
    only_task(
        &p,
        "t",
        "schedule: \"1,2,11,12,13 0 * * *\"\nsource: reader\nquery: SELECT id FROM ro_cache\noutput: { format: csv }\n",
    );
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let mut d = Daemon::start(&p, at("2030-01-01T00:00:30Z")).await;
    let run = fire(&mut d, "2030-01-01T00:01:00Z").await;
    assert_eq!(run.status, Status::Succeeded, "{run:#?}");
    grant(format!("GRANT INSERT ON ro_cache TO {reader}"))
        .await
        .unwrap();
    // Within 10 minutes of the check: the kept verdict.
    let run = fire(&mut d, "2030-01-01T00:02:00Z").await;
    assert_eq!(run.status, Status::Succeeded, "{run:#?}");
    // 10 minutes after the check: checked again, refused with the reason.
    let run = fire(&mut d, "2030-01-01T00:11:00Z").await;
    assert_eq!(run.status, Status::Failed, "{run:#?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "require_read_only is set, but user {reader} is not read-only (can INSERT on public.ro_cache)"
        )),
        "{error}"
    );
    // The refusal is not kept: fixed, the next run goes.
    grant(format!("REVOKE INSERT ON ro_cache FROM {reader}"))
        .await
        .unwrap();
    let run = fire(&mut d, "2030-01-01T00:12:00Z").await;
    assert_eq!(run.status, Status::Succeeded, "{run:#?}");
    // A reload forgets the verdict kept at 00:12.
    grant(format!("GRANT INSERT ON ro_cache TO {reader}"))
        .await
        .unwrap();
    d.handle.reload();
    d.wait_for("the reload", |e| matches!(e, Event::Reloaded(_)))
        .await;
    let run = fire(&mut d, "2030-01-01T00:13:00Z").await;
    assert_eq!(run.status, Status::Failed, "{run:#?}");
    d.stop().await;
}
