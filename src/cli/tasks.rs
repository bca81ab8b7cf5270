//! `ferry tasks`: every task with its schedule, zone, source, format and next fire.

use super::{Cli, EXIT_OK, load_project};

pub async fn run(cli: &Cli) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let now = crate::clock::wall_now();
    let mut rows = vec![[
        "NAME".to_string(),
        "SCHEDULE".into(),
        "ZONE".into(),
        "SOURCE".into(),
        "FORMAT".into(),
        "NEXT FIRE".into(),
    ]];
    for t in project.tasks.values() {
        let next = if !t.enabled {
            "disabled".to_string()
        } else {
            t.schedule
                .next_after(now)
                .map(|n| {
                    n.with_timezone(&t.timezone)
                        .format("%Y-%m-%d %H:%M:%S %:z")
                        .to_string()
                })
                .unwrap_or_else(|| "never".into())
        };
        let mut format = t.output.format.extension().to_string();
        if t.output.zip {
            format.push_str("+zip");
        }
        rows.push([
            t.name.clone(),
            t.schedule.expr().to_string(),
            t.timezone.name().to_string(),
            t.source.clone(),
            format,
            next,
        ]);
    }
    for name in project.task_problems.keys().filter(|n| !n.is_empty()) {
        rows.push([
            name.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "INVALID (see ferry validate)".into(),
        ]);
    }
    print_table(&rows);
    EXIT_OK
}

/// Prints rows as aligned columns (widths in characters).
pub fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        println!("{}", line.trim_end());
    }
}
