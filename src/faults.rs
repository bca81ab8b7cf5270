//! Kill points for the crash tests: `FERRY_TEST_KILL_AT=<point>` makes the process kill
//! itself with SIGKILL when it reaches that point (no destructor, no flush, as a power cut
//! or the OOM killer would), so that a test can stop ferry between any two steps of a
//! protocol and check what the next process makes of it. Unset, a point costs one
//! environment lookup. Points: `ingest:judged` (after the body is read and classified,
//! before the claim), `ingest:claimed` (after the claim, before the run or reply),
//! `ingest:answered` (after the run or the reply is recorded, before the move) and
//! `ingest:moved` (after the move, before the store hears of it).

/// Kills this process with SIGKILL if `FERRY_TEST_KILL_AT` names `point`.
pub fn kill_point(point: &str) {
    if std::env::var_os("FERRY_TEST_KILL_AT").is_some_and(|v| v == point) {
        // SAFETY: kill(2) on our own pid with a constant signal; no memory is involved.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
