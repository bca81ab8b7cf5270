//! Integration tests: drive the real `ferry` binary the way a user does, against real
//! SQLite databases built from fixtures, and read the files it writes back.

mod support;

mod alerts;
mod api;
mod api_access;
mod bad_input;
mod cancel;
mod cleanup;
mod conformance;
mod crash;
mod daemon;
mod docs;
mod dry_run;
mod email;
mod email_faults;
mod fake_robots;
mod full_disk_exports;
mod ingest;
mod ingest_imap;
mod ingest_poll;
mod init;
mod ledger;
mod links;
mod log_files;
mod multi;
mod mysql;
mod notifier_conformance;
mod notls_proxy;
mod odd_files;
#[cfg(feature = "oracle")]
mod oracle;
mod outputs;
mod pause;
mod postgres;
mod read_only;
mod reports;
mod robots;
mod runs;
mod schedule;
mod schema;
mod sealed_secrets;
mod secrets;
mod serve;
mod shell;
mod smtp_proxy;
mod source_errors;
mod sources;
mod sqlgate_corpus;
mod store_conformance;
mod store_conformance_access;
mod store_faults;
mod systemd_notify;
mod tls;
