//! The SQLite schema: append-only migrations. A released migration is never edited; a
//! change is a new entry at the end.

/// Append-only schema migrations: `(version, SQL)`.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE runs (
        run_id       TEXT PRIMARY KEY,
        task         TEXT NOT NULL,
        scheduled_at TEXT NOT NULL,
        trigger      TEXT NOT NULL,
        status       TEXT NOT NULL,
        node         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        duration_ms  INTEGER,
        rows         INTEGER NOT NULL DEFAULT 0,
        files        TEXT NOT NULL DEFAULT '[]',
        warnings     TEXT NOT NULL DEFAULT '[]',
        error        TEXT,
        UNIQUE (task, scheduled_at)
    );
    CREATE INDEX runs_task_started ON runs (task, started_at);
    CREATE INDEX runs_status ON runs (status);",
    ),
    (
        2,
        "ALTER TABLE runs ADD COLUMN reason TEXT;
    ALTER TABLE runs ADD COLUMN deferred_until TEXT;
    CREATE TABLE schedule_cursors (
        task       TEXT PRIMARY KEY,
        cursor     TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );",
    ),
    // Download links and their requests. No foreign keys: retention may remove runs and
    // links in any order, and a download row outlives nothing it needs.
    (
        3,
        "CREATE TABLE links (
        id         TEXT PRIMARY KEY,
        run_id     TEXT NOT NULL,
        path       TEXT NOT NULL,
        name       TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (run_id, path)
    );
    CREATE TABLE downloads (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        link_id      TEXT NOT NULL,
        at           TEXT NOT NULL,
        client       TEXT NOT NULL,
        range_header TEXT,
        status       INTEGER NOT NULL,
        bytes_sent   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX downloads_link_at ON downloads (link_id, at);",
    ),
    // One row per notification of a run (task notify entry × channel): sent with its
    // receipt (the email Message-ID), or failed with the reason and whether a retry helps.
    (
        4,
        "CREATE TABLE deliveries (
        run_id     TEXT NOT NULL,
        channel    TEXT NOT NULL,
        occurrence INTEGER NOT NULL,
        status     TEXT NOT NULL,
        retryable  INTEGER NOT NULL DEFAULT 0,
        receipt    TEXT,
        error      TEXT,
        at         TEXT NOT NULL,
        PRIMARY KEY (run_id, channel, occurrence)
    );",
    ),
    // The delivery ledger: `status` becomes the delivery's state (pending, sending, sent,
    // failed, maybe_duplicate) and `error` its last error; each row keeps its attempts,
    // when it is tried next, the rendered message (JSON) so that a retry or a restart sends
    // exactly the same message, and the process holding it while an attempt is under way.
    (
        5,
        "ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT;
    ALTER TABLE deliveries ADD COLUMN message TEXT;
    ALTER TABLE deliveries ADD COLUMN owner_node TEXT;
    ALTER TABLE deliveries ADD COLUMN owner_pid INTEGER;
    CREATE INDEX deliveries_open ON deliveries (status, next_attempt_at);",
    ),
    // Owner alerts: when each task's owners were last alerted, and how many failures were
    // held back since (they are summarised in the next alert).
    (
        6,
        "CREATE TABLE owner_alerts (
        task TEXT PRIMARY KEY,
        last_sent_at TEXT NOT NULL,
        held INTEGER NOT NULL DEFAULT 0
    );",
    ),
    // The delivery ledger per recipient (email): one row per envelope recipient of each
    // message part (`part` 0 for a message sent whole), so that a retry goes only to the
    // recipients not yet delivered and a part never goes twice to one recipient. Each
    // delivery also keeps when each of its attempts started (`tried_at`, a JSON array).
    (
        7,
        "CREATE TABLE delivery_recipients (
        run_id     TEXT NOT NULL,
        channel    TEXT NOT NULL,
        occurrence INTEGER NOT NULL,
        part       INTEGER NOT NULL,
        recipient  TEXT NOT NULL,
        status     TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        error      TEXT,
        reply      TEXT,
        sent_at    TEXT,
        at         TEXT NOT NULL,
        PRIMARY KEY (run_id, channel, occurrence, part, recipient)
    );
    ALTER TABLE deliveries ADD COLUMN tried_at TEXT NOT NULL DEFAULT '[]';",
    ),
    // Instances and their heartbeats: a live `ferry serve` (or `ferry run`) beats every
    // few seconds; one whose beat is older than the lease is dead (see
    // `crate::store::instances`).
    (
        8,
        "CREATE TABLE instances (
        instance_id  TEXT PRIMARY KEY,
        node         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        started_at   TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL,
        stopped_at   TEXT
    );
    CREATE INDEX instances_node_pid ON instances (node, pid);",
    ),
    // Channel pauses (DingTalk's 130101 "send too fast" asks for 10 minutes): kept in the
    // store so that a restart does not send into the pause.
    (
        9,
        "CREATE TABLE channel_pauses (
        pause_key TEXT PRIMARY KEY,
        until_at  TEXT NOT NULL,
        reason    TEXT NOT NULL
    );",
    ),
    // An explicit order for deliveries and recipients (instead of SQLite's rowid), so that
    // every backend lists them the same way: `seq` grows with each insert.
    (
        10,
        "ALTER TABLE deliveries ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    UPDATE deliveries SET seq = rowid;
    ALTER TABLE delivery_recipients ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    UPDATE delivery_recipients SET seq = rowid;
    CREATE INDEX deliveries_seq ON deliveries (seq);
    CREATE INDEX delivery_recipients_seq ON delivery_recipients (seq);",
    ),
    // Why a download request was refused (`bad signature`, `expired`, …; none when
    // served), so that the audit tells refusals with the same status apart.
    (11, "ALTER TABLE downloads ADD COLUMN reason TEXT;"),
    // Owner alerts are deliveries of their run too (recorded, retried, shown in history),
    // told apart from the run's own notifications by their purpose.
    (
        12,
        "ALTER TABLE deliveries ADD COLUMN purpose TEXT NOT NULL DEFAULT 'notify';",
    ),
    // How often a delivery left `sending` by a process that died was taken over: the one
    // resend is not repeated when it was interrupted too.
    (
        13,
        "ALTER TABLE deliveries ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;",
    ),
    // Query by email: every mail ingest handled (one verdict each; the unique keys are
    // the claim), and the UIDVALIDITY last seen per mailbox.
    (
        14,
        "CREATE TABLE mail_requests (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        mailbox     TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid         INTEGER NOT NULL,
        message_key TEXT NOT NULL UNIQUE,
        message_id  TEXT,
        sender      TEXT,
        subject     TEXT NOT NULL,
        verdict     TEXT NOT NULL,
        reason      TEXT,
        detail      TEXT NOT NULL,
        reply       INTEGER NOT NULL,
        database    TEXT,
        run_id      TEXT,
        received_at TEXT NOT NULL,
        day         TEXT NOT NULL,
        folder      TEXT NOT NULL,
        moved_at    TEXT,
        replied_at  TEXT,
        capped      INTEGER NOT NULL DEFAULT 0,
        UNIQUE (mailbox, uidvalidity, uid)
    );
    CREATE INDEX mail_requests_sender_day ON mail_requests (sender, day);
    CREATE TABLE mail_mailboxes (
        mailbox     TEXT PRIMARY KEY,
        uidvalidity INTEGER NOT NULL,
        seen_at     TEXT NOT NULL
    );",
    ),
    // Tasks paused by hand (`ferry tasks pause`): who, why and when; the scheduler records
    // a paused task's fires as skipped until `ferry tasks resume` deletes the row. And when
    // retention removed a run's result files (the run keeps their names, sizes, sha256).
    (
        15,
        "CREATE TABLE task_pauses (
        task      TEXT PRIMARY KEY,
        paused_by TEXT NOT NULL,
        reason    TEXT,
        paused_at TEXT NOT NULL
    );
    ALTER TABLE runs ADD COLUMN files_removed_at TEXT;
    CREATE INDEX downloads_link ON downloads (link_id);
    CREATE INDEX links_run ON links (run_id);",
    ),
    // The HTTP API and the console (issue 14): who started a run by hand; the keyset
    // order of run pages; users (argon2id hashes), API tokens (SHA-256 of the token),
    // console sessions (SHA-256 of the cookie, with the CSRF token), the audit trail,
    // and every version of the task files written through ferry. Portable SQL: TEXT
    // instants, no AUTOINCREMENT, no reserved column names.
    (
        16,
        "ALTER TABLE runs ADD COLUMN started_by TEXT;
    CREATE INDEX runs_scheduled ON runs (scheduled_at, run_id);
    CREATE INDEX runs_status_scheduled ON runs (status, scheduled_at, run_id);
    CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE TABLE api_tokens (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        role         TEXT NOT NULL,
        token_hash   TEXT NOT NULL UNIQUE,
        created_by   TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        expires_at   TEXT,
        revoked_at   TEXT,
        last_used_at TEXT
    );
    CREATE INDEX api_tokens_name ON api_tokens (name);
    CREATE TABLE sessions (
        id_hash    TEXT PRIMARY KEY,
        user_name  TEXT NOT NULL,
        csrf       TEXT NOT NULL,
        client     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX sessions_user ON sessions (user_name);
    CREATE TABLE audit (
        id     TEXT PRIMARY KEY,
        at     TEXT NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT,
        client TEXT
    );
    CREATE INDEX audit_at ON audit (at, id);
    CREATE TABLE task_revisions (
        task    TEXT NOT NULL,
        rev     INTEGER NOT NULL,
        at      TEXT NOT NULL,
        author  TEXT NOT NULL,
        action  TEXT NOT NULL,
        content TEXT,
        PRIMARY KEY (task, rev)
    );",
    ),
];
