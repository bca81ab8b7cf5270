//! `ferry validate`: checks config.yaml and every task file, reporting all problems at once.

use super::{Cli, EXIT_CONFIG, EXIT_OK, load_project, print_problems};

pub async fn run(cli: &Cli) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    for w in project.warnings() {
        eprintln!("warning: {w}");
    }
    let problems = project.problems();
    if !problems.is_empty() {
        print_problems(&problems);
        return EXIT_CONFIG;
    }
    println!(
        "{} and {} task(s) are valid",
        cli.config.display(),
        project.tasks.len()
    );
    EXIT_OK
}
