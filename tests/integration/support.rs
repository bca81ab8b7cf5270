//! Test helpers: a throwaway copy of a fixture project and a way to run `ferry` in it;
//! `ferry serve` as a child process ([`serve`], [`terminate`]) or in this process with a
//! manual clock ([`Daemon`]); and the one way to wait for something: poll with a deadline
//! ([`poll`], [`wait_until`], [`wait_logged`], [`wait_log_lines`]), never a bare sleep.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of `tests/fixtures/<name>` in a temporary folder.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn fixture(name: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&repo().join("tests/fixtures").join(name), dir.path());
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `ferry --config config.yaml ARGS` in the project folder, to spawn or run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(FERRY);
        cmd.current_dir(self.path())
            .args(["--config", "config.yaml"])
            .args(args)
            .env_remove("FERRY_LOG");
        cmd
    }

    /// Runs `ferry --config config.yaml ARGS` in the project folder.
    pub fn ferry(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ferry")
    }

    /// Runs a task with `--json`, asserts the exit code, returns the JSON.
    pub fn run_json(&self, task: &str, extra: &[&str], code: i32) -> serde_json::Value {
        let mut args = vec!["run", task, "--json"];
        args.extend_from_slice(extra);
        let out = self.ferry(&args);
        assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
        let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8 stdout");
        assert_eq!(stdout.lines().count(), 1, "exactly one JSON line: {stdout}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Files (relative paths) under `rel`, sorted; hidden files included.
    pub fn files(&self, rel: &str) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.path().join(rel), &self.path().join(rel), &mut out);
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The first lines of a test project's `config.yaml`: UTC, the run store in `data/`.
pub const CONFIG_HEAD: &str = "timezone: UTC\nstore: { url: \"sqlite://data/ferry.db\" }\n";

/// Runs `cmd` with `input` on its standard input; what it wrote and how it ended.
pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// The line of `ferry validate`'s error output that refuses the query of task `name`
/// (`tasks/NAME.yaml:LINE:COL: query: refused: …`); it must give `why`.
pub fn refusal<'a>(err: &'a str, name: &str, why: &str) -> &'a str {
    let line = err
        .lines()
        .find(|l| l.contains(&format!("{name}.yaml:")) && l.contains(": query: refused: "))
        .unwrap_or_else(|| panic!("no refusal of {name}: {err}"));
    assert!(line.contains(why), "{name}: expected `{why}`: {line}");
    line
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Removes the project's task files and writes `tasks/<name>.yaml`.
pub fn only_task(p: &Project, name: &str, body: &str) {
    for f in std::fs::read_dir(p.path().join("tasks")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "yaml") {
            std::fs::remove_file(f).unwrap();
        }
    }
    p.write(&format!("tasks/{name}.yaml"), body);
}

/// What `ferry serve` children log: INFO, and every delivery pass (the passes that
/// attempted nothing are DEBUG lines), so tests wait for `delivery pass` and `reload`.
pub const SERVE_LOG: &str = "info,ferry::daemon::delivery=debug";

/// Spawns `ferry serve` in the project, its log (stderr) in the file `log`.
pub fn serve(p: &Project, log: &str) -> Child {
    let log = std::fs::File::create(p.path().join(log)).unwrap();
    p.command(&["serve"])
        .env("FERRY_LOG", SERVE_LOG)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// `ferry history --task TASK --json` (newest first).
pub fn history(p: &Project, task: &str) -> Vec<serde_json::Value> {
    let out = p.ferry(&["history", "--task", task, "--limit", "1000", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Sends SIGTERM and waits (up to a minute) for the child to exit; its exit code.
pub fn terminate(child: &mut Child) -> Option<i32> {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    poll(Duration::from_secs(60), "serve to stop on SIGTERM", || {
        child.try_wait().unwrap()
    })
    .code()
}

/// Calls `f` every 20 ms until it returns a value, which it returns; fails the test
/// after `limit`.
pub fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `cond` holds; fails the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    poll(limit, what, || cond().then_some(()))
}

/// Like [`wait_until`], but shows the serve log `log` and the history when it times out.
pub fn wait_logged(
    p: &Project,
    log: &str,
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            let text = read_log(p, log);
            let hist = p.ferry(&["history", "--limit", "50"]);
            panic!(
                "timed out waiting for {what}\n--- {log}\n{text}\n--- history\n{}{}",
                String::from_utf8_lossy(&hist.stdout),
                String::from_utf8_lossy(&hist.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The serve log `log` as written so far.
pub fn read_log(p: &Project, log: &str) -> String {
    std::fs::read_to_string(p.path().join(log)).unwrap_or_default()
}

/// How many lines of the serve log `log` contain `needle`.
pub fn log_lines(p: &Project, log: &str, needle: &str) -> usize {
    read_log(p, log)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits until at least `n` lines of the serve log `log` contain `needle` (30 s at most),
/// e.g. the `delivery pass` after the one a test saw, to know that an opportunity passed.
pub fn wait_log_lines(p: &Project, log: &str, needle: &str, n: usize) {
    wait_logged(
        p,
        log,
        Duration::from_secs(30),
        &format!("{n} `{needle}` line(s) in {log}"),
        || log_lines(p, log, needle) >= n,
    );
}

/// `ferry serve` in this process ([`ferry::daemon`]) on a project, with a manual clock:
/// tests move time and wait for the daemon's events instead of sleeping.
pub struct Daemon {
    pub clock: ferry::clock::ManualClock,
    pub store: std::sync::Arc<dyn ferry::store::Store>,
    pub handle: ferry::daemon::Handle,
    shutdown: tokio_util::sync::CancellationToken,
    events: tokio::sync::broadcast::Receiver<ferry::daemon::Event>,
    join: tokio::task::JoinHandle<()>,
}

/// How long a test waits for an event before it fails.
pub const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Daemon {
    /// Starts the daemon on `p` with the clock at `start`.
    pub async fn start(p: &Project, start: chrono::DateTime<chrono::Utc>) -> Daemon {
        Daemon::start_with(p, start, false).await
    }

    /// Like [`Daemon::start`]; with `watch_files` the reload watcher applies changes of
    /// config.yaml and the task files, as in `ferry serve`.
    pub async fn start_with(
        p: &Project,
        start: chrono::DateTime<chrono::Utc>,
        watch_files: bool,
    ) -> Daemon {
        use std::sync::Arc;
        let project = ferry::config::Project::load(&p.path().join("config.yaml"))
            .unwrap_or_else(|e| panic!("config: {e:?}"));
        let store = ferry::store::open(&project.config.store)
            .await
            .expect("store");
        let clock = ferry::clock::ManualClock::new(start);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let links_listener = project
            .config
            .links
            .as_ref()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("port"));
        let http_listener = project
            .config
            .http
            .as_ref()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("port"));
        let opts = ferry::daemon::DaemonOptions {
            config_path: p.path().join("config.yaml"),
            project,
            store: store.clone(),
            clock: Arc::new(clock.clone()),
            links_listener,
            http_listener,
            watch_files,
        };
        let daemon = ferry::daemon::Daemon::start(opts, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("daemon: {e}"));
        let handle = daemon.handle();
        let events = handle.events();
        let join = tokio::spawn(daemon.run());
        Daemon {
            clock,
            store,
            handle,
            shutdown,
            events,
            join,
        }
    }

    /// Waits for the first event that `pred` accepts (events before it are dropped).
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ferry::daemon::Event) -> bool,
    ) -> ferry::daemon::Event {
        let wait = async {
            loop {
                match self.events.recv().await {
                    Ok(e) if pred(&e) => return e,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("daemon events ended while waiting for {what}: {e}"),
                }
            }
        };
        tokio::time::timeout(EVENT_WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Moves the clock to `t` and waits until the scheduler has handled that instant.
    pub async fn advance_to(&mut self, t: chrono::DateTime<chrono::Utc>) {
        self.clock.set(t);
        self.wait_for(
            &format!("the scheduler's tick at {t}"),
            |e| matches!(e, ferry::daemon::Event::Ticked(at) if *at >= t),
        )
        .await;
    }

    /// The recorded runs of `task`, oldest fire first.
    pub async fn runs(&self, task: &str) -> Vec<ferry::store::RunRecord> {
        let mut runs = self
            .store
            .list(&ferry::store::HistoryFilter {
                task: Some(task.into()),
                limit: 10_000,
            })
            .await
            .expect("history");
        runs.sort_by_key(|r| r.scheduled_at);
        runs
    }

    /// Polls the store until `cond` holds for the runs of `task` (runs end on the
    /// executor's own time, which no event marks per task).
    pub async fn wait_runs(
        &self,
        task: &str,
        what: &str,
        mut cond: impl FnMut(&[ferry::store::RunRecord]) -> bool,
    ) -> Vec<ferry::store::RunRecord> {
        let start = std::time::Instant::now();
        loop {
            let runs = self.runs(task).await;
            if cond(&runs) {
                return runs;
            }
            assert!(
                start.elapsed() < EVENT_WAIT,
                "timed out waiting for {what}; runs of {task}: {runs:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Shuts the daemon down (as SIGTERM does) and waits for it to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(120), self.join)
            .await
            .expect("the daemon stops within its drain")
            .expect("the daemon task");
        ferry::store::Instances::close(&*self.store).await;
    }
}

/// Under `CI=true` a test that cannot get what it needs fails; elsewhere it is skipped
/// with the reason printed. Returns whether to go on.
pub fn required(what: &str, available: Result<(), String>) -> bool {
    match available {
        Ok(()) => true,
        Err(why) => {
            skip(what, &why);
            false
        }
    }
}

/// A test goes without `what` (`why`): under `CI=true` that fails it; elsewhere the reason
/// is printed and, when `FERRY_SKIPPED` names a file (scripts/test.sh sets it), added to
/// it as `test<TAB>what: why`, so that the run ends with the list of what was skipped.
pub fn skip(what: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is required under CI=true: {why}");
    }
    eprintln!("skipped: {what}: {why}");
    if let Some(path) = std::env::var_os("FERRY_SKIPPED") {
        let test = std::thread::current().name().unwrap_or("?").to_string();
        let line = format!("{test}\t{what}: {why}\n");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
}

/// A small tmpfs mounted on a temporary folder (a disk that fills up), unmounted when
/// dropped, whatever happened in the test (a lazy unmount: files still open do not keep
/// it mounted).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size_kib` KiB; `None` (outside CI) when this machine cannot mount.
    pub fn mount(size_kib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(dir.path())
            .output();
        let mounted = match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "mount -t tmpfs failed (root needed): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run mount: {e}")),
        };
        required("a tmpfs mount", mounted).then_some(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with `filler` until it has no room left.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join("filler")).expect("filler");
        let chunk = vec![0u8; 4096];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // tmpfs gives blocks as they are written: none is left now.
        let _ = f.sync_all();
    }

    /// Fills the file system until only `room_kib` KiB are left.
    pub fn fill_leaving(&self, room_kib: u64) {
        // SAFETY: statvfs only writes the struct it is given.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        let free = st.f_bavail * st.f_frsize;
        let fill = free.saturating_sub(room_kib * 1024);
        std::fs::write(self.path().join("filler"), vec![0u8; fill as usize]).expect("filler");
    }

    /// Frees the room [`Tmpfs::fill`] took.
    pub fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).expect("remove the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The `sqlite3` shell holding a lock on a database (what an operator's shell or a backup
/// tool does) until [`LockHolder::release`] or drop.
pub struct LockHolder {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
}

impl LockHolder {
    /// Whether the `sqlite3` shell is here (required under `CI=true`;
    /// `scripts/test-services.sh` installs it).
    pub fn available() -> bool {
        let found = Command::new("sqlite3")
            .arg("-version")
            .output()
            .map_err(|e| format!("sqlite3: {e}"))
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err("sqlite3 -version failed".into())
                }
            });
        required("the sqlite3 shell", found)
    }

    /// Runs `sql` in a `sqlite3` shell on `db` and returns once it has run; the shell
    /// keeps its transaction (and locks) open.
    pub fn hold(db: &Path, sql: &str) -> LockHolder {
        use std::io::{BufRead, Write};
        let mut child = Command::new("sqlite3")
            .args(["-batch", "-bail"])
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sqlite3");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{sql}\nSELECT 'lock held';").unwrap();
        stdin.flush().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in stdout.lines() {
            if line.unwrap() == "lock held" {
                return LockHolder {
                    child,
                    stdin: Some(stdin),
                };
            }
        }
        let out = child.wait_with_output().unwrap();
        panic!("sqlite3 could not take the lock:\n{}", describe(&out));
    }

    /// Ends the shell (its transaction and locks with it) and waits for it.
    pub fn release(mut self) {
        drop(self.stdin.take());
        self.child.wait().unwrap();
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The log lines of this test's thread (a `current_thread` runtime runs the daemon's
/// tasks on it), kept while the guard lives.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Captures INFO and above of ferry on this thread until the guard is dropped.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("ferry=info"))
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }

    /// Lines containing every one of `needles`.
    pub fn count(&self, needles: &[&str]) -> usize {
        self.text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
