//! `ferry status`: what is going on now, from the run store: the live ferry processes,
//! the runs in progress and deferred, and the tasks paused by hand (who, when, why).

use super::tasks::{pause_text, print_table};
use super::{Cli, EXIT_FAILED, EXIT_OK, print_error};
use crate::store::{Store, StoreError, fmt_instant};

pub async fn run(cli: &Cli) -> i32 {
    let (_project, store) = match super::load_with_store(cli).await {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let shown = show(store.as_ref()).await;
    store.close().await;
    match shown {
        Ok(()) => EXIT_OK,
        Err(e) => {
            print_error(&e);
            EXIT_FAILED
        }
    }
}

async fn show(store: &dyn Store) -> Result<(), StoreError> {
    let now = crate::clock::wall_now();
    let live: Vec<_> = store
        .instances()
        .await?
        .into_iter()
        .filter(|i| i.alive(now))
        .collect();
    if live.is_empty() {
        println!("processes: none (no `ferry serve` or `ferry run` is working on this store)");
    } else {
        println!("processes:");
        for i in &live {
            println!(
                "  {} pid {}, up since {}, last heartbeat {}",
                i.node,
                i.pid,
                fmt_instant(i.started_at),
                fmt_instant(i.heartbeat_at)
            );
        }
    }
    let running = store.running().await?;
    let deferred = store.deferred().await?;
    println!(
        "runs: {} running, {} deferred",
        running.len(),
        deferred.len()
    );
    for r in running.iter().chain(&deferred) {
        println!(
            "  {} {} (fire at {}, run {})",
            r.task,
            r.status,
            fmt_instant(r.scheduled_at),
            r.run_id
        );
    }
    let paused = store.paused_tasks().await?;
    if paused.is_empty() {
        println!("paused tasks: none");
    } else {
        println!("paused tasks:");
        let rows: Vec<[String; 2]> = paused
            .iter()
            .map(|p| [format!("  {}", p.task), pause_text(p)])
            .collect();
        print_table(&rows);
    }
    Ok(())
}
