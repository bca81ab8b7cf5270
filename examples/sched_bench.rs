//! Scheduler benchmark (not a test): loads N generated task files, then runs the real
//! scheduler loop against the wall clock for M minutes with a no-op runner and reports fire
//! lateness (start of the run minus its scheduled instant), peak memory and CPU time.
//!
//! `cargo run --release --example sched_bench -- [TASKS] [MINUTES]` (defaults 10000 and 5).
//! benches/scheduler.sh wraps it and writes the figures into docs/benchmarks.md by hand.

use std::sync::{Arc, Mutex};

/// The allocator of the `ferry` binary (src/main.rs), so that memory is measured as
/// `ferry serve` would use it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use ferry::config::Project;
use ferry::scheduler::{Job, Runner, Scheduler};
use ferry::store::sqlite::SqliteStore;
use ferry::store::{Outcome, Status, Store};

struct NoopRunner {
    store: Arc<dyn Store>,
    lateness_ms: Mutex<Vec<f64>>,
}

#[async_trait]
impl Runner for NoopRunner {
    async fn run(&self, job: Job) {
        let late = (job.fired_at - job.scheduled_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        self.lateness_ms.lock().unwrap().push(late);
        let outcome = Outcome {
            status: Status::Succeeded,
            finished_at: Utc::now(),
            rows: 0,
            files: vec![],
            warnings: vec![],
            error: None,
        };
        self.store.finish(&job.run_id, &outcome).await.unwrap();
    }
}

/// (user + system CPU seconds, peak RSS in MB) of this process.
fn usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, r)| r.split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    (cpu, hwm)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tasks: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let minutes: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("tasks")).unwrap();
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::write(root.join("templates/report.md.j2"), "{{ task_name }}").unwrap();
    std::fs::write(
        root.join("config.yaml"),
        "timezone: UTC\nscheduler: { max_workers: 16 }\ndatasources:\n  db: { type: sqlite, url: \"sqlite://db.sqlite\" }\n",
    )
    .unwrap();
    for i in 0..tasks {
        // Spread over every second of the minute: task i fires at second i % 60.
        std::fs::write(
            root.join(format!("tasks/t{i:05}.yaml")),
            format!(
                "description: benchmark task {i}\nschedule: \"{} * * * * *\"\nsource: db\nquery: SELECT {i} AS n WHERE :run_date IS NOT NULL\noutput:\n  format: csv\n  file_name: \"t{i}_{{{{ run_date | strftime('%Y%m%d') }}}}\"\n",
                i % 60
            ),
        )
        .unwrap();
    }
    let started = Instant::now();
    let project = Project::load(&root.join("config.yaml")).unwrap();
    let load = started.elapsed();
    assert_eq!(
        project.tasks.len(),
        tasks,
        "{:?}",
        project.problems().first()
    );
    let (cpu0, rss_load) = usage();
    println!(
        "load+validate {tasks} task files: {:.3} s (cpu {cpu0:.2} s, peak RSS {rss_load:.1} MB)",
        load.as_secs_f64()
    );

    let store = Arc::new(
        SqliteStore::open(&root.join("data/ferry.db"))
            .await
            .unwrap(),
    );
    let runner = Arc::new(NoopRunner {
        store: store.clone(),
        lateness_ms: Mutex::new(Vec::new()),
    });
    let mut sched = Scheduler::new(
        project,
        store.clone(),
        runner.clone(),
        std::sync::Arc::new(ferry::clock::SystemClock),
    );
    sched.start(Utc::now()).await.unwrap();
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    let (cpu_start, _) = usage();
    while Instant::now() < end {
        let now = Utc::now();
        sched.tick(now).await.unwrap();
        let sleep = sched
            .sleep_for(now, Duration::from_secs(30))
            .min(end.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = sched.completed() => {}
        }
    }
    sched.wait_idle().await;
    let (cpu_end, rss) = usage();
    let mut late = runner.lateness_ms.lock().unwrap().clone();
    late.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{} fires in {minutes} min: lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; cpu {:.1} s ({:.1}% of one core); peak RSS {rss:.1} MB",
        late.len(),
        percentile(&late, 50.0),
        percentile(&late, 99.0),
        late.last().copied().unwrap_or(0.0),
        cpu_end - cpu_start,
        100.0 * (cpu_end - cpu_start) / (minutes as f64 * 60.0)
    );
}
